"""Process-group set-up for `torchrun` training: NCCL on GPUs, gloo on CPUs."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["RANK_ZERO_HANDLERS", "init_distributed", "destroy_distributed", "rank_zero_only"]


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
