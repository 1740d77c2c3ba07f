"""Argument validation and layer factories shared by the networks in :mod:`brainbundles.networks`.

Everything here is private to the package; the public surface is the network classes.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import split_args
from monai.networks.layers.utils import get_act_layer, get_norm_layer

__all__ = [
    "check_input",
    "conv_layer",
    "conv_transpose_layer",
    "dropout_levels",
    "make_act",
    "make_norm",
    "max_pool_layer",
    "spatial_dropout",
]

ActType = str | tuple
NormType = str | tuple | None


def make_act(act: ActType, channels: int | None = None, prelu_per_channel: bool = False) -> nn.Module:
    """Build an activation layer from a MONAI-style ``act`` spec.

    With ``prelu_per_channel`` and a PReLU spec that does not set ``num_parameters``, the PReLU learns one
    slope per channel (the V-Net reference implementation does this); otherwise MONAI's defaults apply.
    """
    if prelu_per_channel and channels is not None and act != "":
        name, args = split_args(act)
        if str(name).lower() == "prelu" and "num_parameters" not in args:
            return get_act_layer(("prelu", {**args, "num_parameters": channels}))
    return get_act_layer(act)


def make_norm(norm: NormType, spatial_dims: int, channels: int) -> nn.Module:
    """Build a normalisation layer from a MONAI-style ``norm`` spec; ``None`` or ``""`` gives ``nn.Identity``.

    Instance normalisation without running statistics is built as ``nn.GroupNorm`` with one group per
    channel: the same function and the same parameters (``weight``, ``bias`` when affine), but PyTorch's
    group norm keeps channels-last 3D tensors channels-last and ran 3-7x faster than ``nn.InstanceNorm3d``
    on them on the CPU (which also returns them contiguous, so the next convolution converts back).
    """
    if norm is None or norm == "":
        return nn.Identity()
    layer = get_norm_layer(norm, spatial_dims=spatial_dims, channels=channels)
    if isinstance(layer, nn.modules.instancenorm._InstanceNorm) and not layer.track_running_stats:
        return nn.GroupNorm(channels, channels, eps=layer.eps, affine=layer.affine)
    return layer


def conv_layer(
    spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1
) -> nn.Module:
    """Plain N-d convolution with 'same' padding for odd kernels (and none for kernel == stride)."""
    conv_cls = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    padding = (kernel_size - 1) // 2 if kernel_size % 2 == 1 else 0
    return conv_cls(in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding)


def conv_transpose_layer(spatial_dims: int, in_channels: int, out_channels: int, scale: int = 2) -> nn.Module:
    """Transposed convolution with kernel == stride == ``scale``: exactly multiplies every spatial size by ``scale``."""
    conv_cls = nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d
    return conv_cls(in_channels, out_channels, kernel_size=scale, stride=scale)


def max_pool_layer(spatial_dims: int, scale: int = 2) -> nn.Module:
    pool_cls = nn.MaxPool3d if spatial_dims == 3 else nn.MaxPool2d
    return pool_cls(kernel_size=scale, stride=scale)


def spatial_dropout(spatial_dims: int, p: float) -> nn.Module:
    """Spatial (channel-wise) dropout, ``nn.Dropout3d``/``nn.Dropout2d``; ``nn.Identity`` when ``p == 0``."""
    if p <= 0.0:
        return nn.Identity()
    return nn.Dropout3d(p) if spatial_dims == 3 else nn.Dropout2d(p)


def dropout_levels(num_levels: int) -> range:
    """Indices of the resolution levels that get dropout: the deeper half, always including the bottleneck.

    4 levels -> (2, 3); 5 levels -> (3, 4); 3 levels -> (2,); 2 levels -> (1,).
    """
    return range((num_levels + 1) // 2, num_levels)


def check_input(x: torch.Tensor, spatial_dims: int, divisor: int) -> None:
    """Raise ``ValueError`` unless ``x`` is (B, C, *spatial) with every spatial size divisible by ``divisor``."""
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            f"x must have shape (B, C, *spatial) with {spatial_dims} spatial dims, got {x.dim()} dims in total."
        )
    for size in x.shape[2:]:
        if size % divisor != 0:
            raise ValueError(f"every spatial size of x must be divisible by {divisor}, got a size of {size}.")
