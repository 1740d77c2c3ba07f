"""Data-parallel training must end with the same weights in every process: the check that says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from brainbundles.distributed import check_ranks_agree, weights_digest


def _rank(rank: int, world: int, init_file: str, same: bool, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0 if same else rank)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    try:
        result = {"digest": check_ranks_agree(net)}
    except RuntimeError as e:
        result = {"error": str(e)}
    Path(out, f"{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


@pytest.mark.parametrize("same", [True, False])
def test_two_processes_agree_only_with_identical_weights(tmp_path, same):
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), same, str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)]
    if same:
        assert results[0] == results[1] and len(results[0]["digest"]) == 64
    else:
        for r in results:
            assert "different weights" in r["error"] and "rank 0" in r["error"] and "rank 1" in r["error"]


def test_digest_sees_every_parameter_and_buffer():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    before = weights_digest(net)
    assert weights_digest(net) == before and check_ranks_agree(net) == before  # no group: its own
    net[1].running_mean += 1e-7  # a buffer
    assert weights_digest(net) != before
    net[1].running_mean -= 1e-7
    with torch.no_grad():
        net[0].weight[0, 0] = torch.nextafter(net[0].weight[0, 0], torch.tensor(2.0))  # one bit
    assert weights_digest(net) != before
