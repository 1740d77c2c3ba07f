"""VNet: the residual, fully convolutional V-Net of Milletari, Navab and Ahmadi (2016).

Reference:
    Milletari, Navab, Ahmadi (2016), "V-Net: Fully Convolutional Neural Networks for Volumetric Medical
    Image Segmentation", 3DV 2016, arXiv:1606.04797.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from ._checks import validate_common
from ._common import (
    ActType,
    NormType,
    check_input,
    conv_layer,
    conv_transpose_layer,
    dropout_levels,
    make_act,
    make_norm,
    spatial_dropout,
)

__all__ = ["VNet"]


class _ConvNormAct(nn.Sequential):
    """conv -> norm -> act (per-channel PReLU for ``"prelu"``)."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        act: ActType,
        norm: NormType,
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.conv = conv_layer(spatial_dims, in_channels, out_channels, kernel_size, stride)
        self.norm = make_norm(norm, spatial_dims, out_channels)
        self.act = make_act(act, out_channels, prelu_per_channel=True)


class _UpConvNormAct(nn.Sequential):
    """2× transposed conv (kernel 2, stride 2) -> norm -> act."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, act: ActType, norm: NormType
    ) -> None:
        super().__init__()
        self.conv = conv_transpose_layer(spatial_dims, in_channels, out_channels)
        self.norm = make_norm(norm, spatial_dims, out_channels)
        self.act = make_act(act, out_channels, prelu_per_channel=True)


class _ChannelRepeat(nn.Module):
    """Tile the channels ``repeats`` times: the V-Net input stage's parameter-free shortcut."""

    def __init__(self, repeats: int) -> None:
        super().__init__()
        self.repeats = repeats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = [1] * x.dim()
        sizes[1] = self.repeats
        return x.repeat(sizes)


class _ResidualStage(nn.Module):
    """One V-Net stage: ``num_convs`` 5×5×5 conv-norm-act layers plus a residual connection.

    ``out = act(convs(dropout(x)) + shortcut(x))``; the shortcut is the identity when the channel counts match,
    otherwise the channel tiling of the paper (``out_channels`` a multiple of ``in_channels``) or a 1×1 conv.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        num_convs: int,
        kernel_size: int,
        act: ActType,
        norm: NormType,
        dropout: float,
    ) -> None:
        super().__init__()
        self.dropout = spatial_dropout(spatial_dims, dropout)
        self.convs = nn.Sequential(
            *[
                _ConvNormAct(
                    spatial_dims,
                    in_channels if k == 0 else out_channels,
                    out_channels,
                    kernel_size,
                    act,
                    norm,
                )
                for k in range(num_convs)
            ]
        )
        self.shortcut: nn.Module
        if in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif out_channels % in_channels == 0:
            self.shortcut = _ChannelRepeat(out_channels // in_channels)
        else:
            self.shortcut = conv_layer(spatial_dims, in_channels, out_channels, kernel_size=1)
        self.act = make_act(act, out_channels, prelu_per_channel=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(self.dropout(x)) + self.shortcut(x))


class VNet(nn.Module):
    """V-Net (Milletari, Navab, Ahmadi, 2016): residual stages, strided-conv downsampling, concatenation skips.

    Architecture, for ``L = len(features)`` levels (paper: ``features=(16, 32, 64, 128, 256)``):

    - input stage (level 0): ``convs_per_stage[0]`` 5×5×5 convolutions in_channels -> features[0]; the
      residual shortcut tiles the input channels (the paper replicates the single MRI channel 16 times; a 1×1
      convolution is used instead when features[0] is not a multiple of in_channels).
    - down stage i = 1..L-1: 2×2×2 convolution with stride 2 features[i-1] -> features[i] (-> norm -> act),
      then a residual stage of ``convs_per_stage[i]`` 5×5×5 convolutions. Level L-1 is the bottleneck.
    - up stage i = L-2..0: 2×2×2 transposed convolution with stride 2 to features[i] channels
      (-> norm -> act), **concatenated** with the encoder output of level i (2·features[i] channels), then a
      residual stage of ``convs_per_stage[i]`` 5×5×5 convolutions at 2·features[i] channels.
    - head: 1×1 convolution 2·features[0] -> out_channels. ``forward`` returns raw logits (the paper's
      softmax is left to the loss / post-processing).

    Every residual stage computes ``act(convs(x) + x)``. Spatial dropout is applied to the input of the
    stages in the deeper half of the levels (0-based levels 3 and 4 of 5 by default, see
    :attr:`dropout_levels`), in the encoder and the decoder, similar to the reference PyTorch implementation.

    The paper uses 1, 2, 3, 3 convolutions in the encoder stages, 3 at the bottleneck and 3, 3, 2, 1 in the
    decoder stages (mirrored), which is the default (``convs_per_stage=None`` gives ``min(i + 1, 3)`` for
    level i, i.e. ``(1, 2, 3, 3, 3)`` for five levels); MONAI's ``VNet``
    follows the reference PyTorch port instead (1, 2, 3, 2 down; 2, 2, 1, 1 up). The paper has no
    normalisation (``norm=None`` reproduces that); the default here is instance normalisation, as in the
    package's other networks, which does not depend on the (small) patch batch size used for brain MRI.
    With ``act="prelu"`` (the default) and no explicit ``num_parameters``, every PReLU learns one slope per
    channel, as in the reference implementation.

    Input size: every spatial size must be divisible by ``2 ** (len(features) - 1)`` (16 by default);
    ``forward`` raises ``ValueError`` otherwise. Works for 2D (5×5 kernels) and 3D. Only plain convolutions,
    ``torch.cat``, ``repeat`` and additions are used, so channels-last inputs and autocast are supported.
    Instance normalisation in training mode needs more than one voxel per channel, so the bottleneck
    must not be 1×1×1: use inputs of at least ``2 * self.divisor`` along one axis for training.

    Args:
        spatial_dims: 2 or 3.
        in_channels: number of input channels, >= 1.
        out_channels: number of output classes (logit channels), >= 1.
        features: channel count of each resolution level, full resolution first; at least two entries.
        dropout: spatial dropout probability in [0, 1) for the deeper stages (0 disables it).
        act: activation, MONAI ``get_act_layer`` spec (default ``"prelu"``).
        norm: normalisation, MONAI ``get_norm_layer`` spec, or ``None`` for none (as in the paper).
        convs_per_stage: number of 5×5×5 convolutions in the stage of each level (same length as
            ``features``, each >= 1); the decoder stage of level i uses ``convs_per_stage[i]`` too. ``None``
            (default) follows the paper: ``min(i + 1, 3)`` for level i.
        kernel_size: odd kernel size of the stage convolutions (5 in the paper).

    Raises:
        ValueError: on an invalid argument; the message names the argument.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (16, 32, 64, 128, 256),
        dropout: float = 0.0,
        act: ActType = "prelu",
        norm: NormType = "instance",
        convs_per_stage: Sequence[int] | None = None,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        feats = validate_common(spatial_dims, in_channels, out_channels, features, dropout, act, norm)
        if convs_per_stage is None:
            convs_per_stage = tuple(min(i + 1, 3) for i in range(len(feats)))
        if (
            isinstance(convs_per_stage, str | bytes)
            or not isinstance(convs_per_stage, Sequence)
            or len(convs_per_stage) != len(feats)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in convs_per_stage)
        ):
            raise ValueError(
                f"convs_per_stage must be a sequence of ints >= 1 with one entry per level "
                f"(len(features) = {len(feats)}), got {convs_per_stage!r}."
            )
        if (
            isinstance(kernel_size, bool)
            or not isinstance(kernel_size, int)
            or kernel_size < 1
            or kernel_size % 2 == 0
        ):
            raise ValueError(f"kernel_size must be an odd int >= 1, got {kernel_size!r}.")
        num_levels = len(feats)
        self.spatial_dims = spatial_dims
        self.features = feats
        self.convs_per_stage = tuple(convs_per_stage)
        self.divisor = 2 ** (num_levels - 1)
        self.dropout_levels = tuple(dropout_levels(num_levels))

        def p(level: int) -> float:
            return float(dropout) if level in self.dropout_levels else 0.0

        self.input_stage = _ResidualStage(
            spatial_dims, in_channels, feats[0], convs_per_stage[0], kernel_size, act, norm, 0.0
        )
        self.downs = nn.ModuleList()
        self.down_stages = nn.ModuleList()
        for i in range(1, num_levels):
            self.downs.append(_ConvNormAct(spatial_dims, feats[i - 1], feats[i], 2, act, norm, stride=2))
            self.down_stages.append(
                _ResidualStage(
                    spatial_dims, feats[i], feats[i], convs_per_stage[i], kernel_size, act, norm, p(i)
                )
            )

        # ups[j] / up_stages[j] serve level i = L - 2 - j (deepest first).
        self.ups = nn.ModuleList()
        self.up_stages = nn.ModuleList()
        channels = feats[-1]
        for i in reversed(range(num_levels - 1)):
            self.ups.append(_UpConvNormAct(spatial_dims, channels, feats[i], act, norm))
            channels = 2 * feats[i]
            self.up_stages.append(
                _ResidualStage(
                    spatial_dims, channels, channels, convs_per_stage[i], kernel_size, act, norm, p(i)
                )
            )
        self.head = conv_layer(spatial_dims, channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` of shape (B, in_channels, *spatial) to logits of shape (B, out_channels, *spatial)."""
        check_input(x, self.spatial_dims, self.divisor)
        x = self.input_stage(x)
        skips: list[torch.Tensor] = [x]
        for down, stage in zip(self.downs, self.down_stages, strict=True):
            x = stage(down(x))
            skips.append(x)
        num_skips = len(skips)
        j = 0
        for up, stage in zip(self.ups, self.up_stages, strict=True):
            x = stage(torch.cat([up(x), skips[num_skips - 2 - j]], dim=1))  # concatenation skip
            j += 1
        return self.head(x)
