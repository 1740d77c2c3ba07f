"""Process-group set-up for `torchrun` training: NCCL on GPUs, gloo on CPUs."""

from __future__ import annotations

import hashlib
import logging
import os

import torch
import torch.distributed as dist

__all__ = [
    "RANK_ZERO_HANDLERS",
    "check_ranks_agree",
    "weights_digest",
    "destroy_distributed",
    "init_distributed",
    "rank_zero_only",
]

logger = logging.getLogger("brainbundles")


def init_distributed() -> int:
    """Join the process group that `torchrun` describes in the environment; returns this rank.

    Uses NCCL when CUDA is available (and pins this process to its local GPU), gloo otherwise.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "init_distributed: RANK/WORLD_SIZE unset; start multi_gpu_train.json with torchrun"
        )
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist.get_rank()


def weights_digest(network: torch.nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of every parameter and buffer of ``network``
    (a ``DistributedDataParallel`` wrapper is looked through)."""
    module = getattr(network, "module", network)
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def check_ranks_agree(network: torch.nn.Module) -> str:
    """Raise ``RuntimeError`` unless every process of the group ends with bit-identical weights (what
    data-parallel training must give: the same start and the same averaged gradients); returns the
    common sha256 (:func:`weights_digest`), logged by rank 0. Outside a process group, this one's."""
    mine = weights_digest(network)
    if not dist.is_initialized():
        return mine
    digests: list = [None] * dist.get_world_size()
    dist.all_gather_object(digests, mine)
    if len(set(digests)) != 1:
        listing = ", ".join(f"rank {r}: {d[:12]}" for r, d in enumerate(digests))
        raise RuntimeError(f"the processes ended training with different weights ({listing})")
    if dist.get_rank() == 0:
        logger.info("weights identical on all %d processes (sha256 %s)", len(digests), mine)
    return mine


def destroy_distributed() -> None:
    """Leave the process group, if one was joined, once every process has got here (a process that
    tears gloo down while another still finishes its last epoch's writes can abort the run)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


#: handlers that log or write files, which only the first process should run
RANK_ZERO_HANDLERS = ("StatsHandler", "TensorBoardStatsHandler", "MetricsSaver", "CheckpointSaver")


def rank_zero_only(handlers: list, names: tuple[str, ...] = RANK_ZERO_HANDLERS) -> list:
    """``handlers`` on rank 0 (or outside a process group); elsewhere without the logging/writing
    handlers named in ``names``, so that N processes do not log N times or write the same files."""
    if not dist.is_initialized() or dist.get_rank() == 0:
        return list(handlers)
    return [h for h in handlers if type(h).__name__ not in names]
