"""Running 2D networks on 3D (volumetric) bundle pipelines, slice by slice.

The 2D networks of :mod:`brainbundles.networks` (:class:`~brainbundles.networks.TwoPathwayCNN`,
:class:`~brainbundles.networks.InputCascadeCNN`, :class:`~brainbundles.networks.PereiraCNN`) accept a 4D input
(B, C, H, W) and a 5D input (B, C, H, W, D). A 5D input is processed as D independent axial slices: D is folded
into the batch, the 2D network runs once, and the result is unfolded to (B, out_channels, H, W, D). The
bundles' 3D transforms, training patches such as [64, 64, 1] or [64, 64, 8], and MONAI's sliding-window
inference on whole volumes therefore work unchanged with a 2D network.

Private to the package.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

__all__ = ["SliceWise2D", "apply_slicewise"]


def apply_slicewise(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply the 2D map ``fn`` ((N, C, H, W) -> (N, C', H', W')) to ``x``.

    ``x`` is (B, C, H, W), passed to ``fn`` as is, or (B, C, H, W, D), processed slice by slice along the last
    axis: the D slices of every sample are folded into the batch and the result is returned as a contiguous
    (B, C', H', W', D) tensor, slice ``k`` of the output being ``fn`` of slice ``k`` of the input.

    Raises:
        ValueError: if ``x`` is neither 4D nor 5D.
    """
    if x.dim() == 4:
        return fn(x)
    if x.dim() == 5:
        b, c, h, w, d = x.shape
        y = fn(x.permute(0, 4, 1, 2, 3).reshape(b * d, c, h, w))
        return y.reshape(b, d, y.shape[1], y.shape[2], y.shape[3]).permute(0, 2, 3, 4, 1).contiguous()
    raise ValueError(
        f"x must have shape (B, C, H, W) or (B, C, H, W, D) (processed slice by slice along D), "
        f"got {x.dim()} dims in total."
    )


class SliceWise2D(nn.Module):
    """Base class of the 2D networks: subclasses implement :meth:`forward_2d`; :meth:`forward` also takes 5D.

    The subclasses contain no batch-dependent layer (no batch normalisation), so folding slices into the batch
    does not change any slice's result.
    """

    def forward_2d(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, C, H, W) to (N, out_channels, H, W)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, C, H, W) to (B, out_channels, H, W), or (B, C, H, W, D) to (B, out_channels, H, W, D)."""
        return apply_slicewise(self.forward_2d, x)
