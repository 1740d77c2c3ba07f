"""Mixed precision on the CPU: bf16 autocast with channels-last 3D convolutions.

MONAI's engines bring AMP on CUDA (``amp=True``); on a CPU with native bf16 (AMX or AVX-512 BF16),
:class:`MixedPrecisionInferer` runs the forward pass of any MONAI inferer under
``torch.autocast("cpu", dtype=torch.bfloat16)`` with channels-last inputs, and hands back float32.
Elsewhere (CUDA tensors, CPUs without bf16, ``enabled=False``) it is the wrapped inferer unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer

__all__ = ["cpu_has_bf16", "MixedPrecisionInferer"]


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AMX-BF16 or AVX-512 BF16 in ``/proc/cpuinfo``)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    if x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


class MixedPrecisionInferer(Inferer):
    """Run ``inferer`` in bf16 with channels-last tensors on CPUs that support it.

    Args:
        inferer: the inferer to wrap (default ``SimpleInferer``), e.g. a ``SlidingWindowInferer``.
        enabled: master switch; ``False`` always runs the wrapped inferer in float32.
        channels_last: convert the network's inputs to channels-last memory format.
    """

    def __init__(self, inferer: Inferer | None = None, enabled: bool = True, channels_last: bool = True) -> None:
        super().__init__()
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.enabled = enabled
        self.channels_last = channels_last

    def active(self, inputs: torch.Tensor) -> bool:
        """Whether bf16 autocast is used for ``inputs``."""
        return bool(self.enabled and inputs.device.type == "cpu" and cpu_has_bf16())

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.active(inputs):
            return self.inferer(inputs, network, *args, **kwargs)
        if self.channels_last and isinstance(network, torch.nn.Module):
            network.to(memory_format=torch.channels_last_3d if inputs.ndim == 5 else torch.channels_last)

        def forward(x: torch.Tensor, *a: Any, **k: Any) -> Any:
            return network(_channels_last(x) if self.channels_last else x, *a, **k)

        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.inferer(inputs, forward, *args, **kwargs)
        if isinstance(out, torch.Tensor):
            return out.float().contiguous()
        if isinstance(out, (tuple, list)):
            return type(out)(o.float().contiguous() if isinstance(o, torch.Tensor) else o for o in out)
        return out
