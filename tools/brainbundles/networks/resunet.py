"""ResUNet: a NeuroNet-like U-Net with a residual encoder (residual units, strided-convolution downsampling).

References:
    - Rajchl, Pawlowski, Rueckert, Matthews, Glocker (2018), "NeuroNet: Fast and Robust Reproduction of
      Multiple Brain Image Segmentation Pipelines", MIDL 2018 (residual encoder with 2 residual units per
      scale, 4 scales with 16-32-64-128 features, strided convolutions; DLTK reference implementation).
    - He, Zhang, Ren, Sun (2016), "Identity Mappings in Deep Residual Networks", ECCV (pre-activation units).
    - Ronneberger, Fischer, Brox (2015), "U-Net", MICCAI; Çiçek et al. (2016), "3D U-Net", MICCAI.
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

__all__ = ["ResUNet"]


class _PreActResidualUnit(nn.Module):
    """Pre-activation residual unit (He et al., 2016).

    ``h = act(norm(x)); out = conv2(dropout(act(norm(conv1(h, stride))))) + shortcut``, with the identity as
    shortcut when shapes match, otherwise a 1×1 convolution (with the unit's stride) applied to ``h``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        stride: int,
        act: ActType,
        norm: NormType,
        dropout: float,
    ) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, spatial_dims, in_channels)
        self.act1 = make_act(act)
        self.conv1 = conv_layer(spatial_dims, in_channels, out_channels, 3, stride)
        self.norm2 = make_norm(norm, spatial_dims, out_channels)
        self.act2 = make_act(act)
        self.dropout = spatial_dropout(spatial_dims, dropout)
        self.conv2 = conv_layer(spatial_dims, out_channels, out_channels, 3)
        self.project = stride != 1 or in_channels != out_channels
        self.shortcut = (
            conv_layer(spatial_dims, in_channels, out_channels, 1, stride) if self.project else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.norm1(x))
        residual = self.shortcut(h) if self.project else x
        h = self.conv1(h)
        h = self.conv2(self.dropout(self.act2(self.norm2(h))))
        return h + residual


class ResUNet(nn.Module):
    """NeuroNet-like residual U-Net: ``num_res_units`` residual units per scale, strided-conv downsampling.

    Follows the residual U-Net of the NeuroNet authors (Rajchl et al., 2018; DLTK ``residual_unet_3d`` /
    ``neuronet_3d``, configured with ``filters=(16, 32, 64, 128)``, ``num_residual_units=2``): an initial
    convolution at full resolution, then ``num_res_units`` pre-activation residual units (He et al., 2016) at
    each lower scale, the first of them downsampling with a stride-2 convolution.

    Architecture, for ``L = len(features)`` scales:

    - scale 0 (full resolution): stem, a 3×3×3 convolution in_channels -> features[0].
    - encoder scale s = 1..L-1: a residual unit whose first convolution has stride 2 (with a stride-2 1×1
      projection shortcut) features[s-1] -> features[s], then ``num_res_units - 1`` residual units at
      features[s]. Scale L-1 is the bottleneck.
    - decoder scale s = L-2..0: 2×2×2 transposed convolution with stride 2 features[s+1] -> features[s],
      **concatenated** with the encoder output of scale s, then one residual unit 2·features[s] -> features[s]
      (the "asymmetric" DLTK variant: the residual capacity sits in the encoder).
    - head: norm -> act -> 1×1 convolution features[0] -> out_channels. ``forward`` returns raw logits.

    Each residual unit is ``conv(act(norm(conv(act(norm(x)), stride)))) + shortcut``. Spatial dropout sits
    between the two convolutions of the encoder units in the deeper half of the scales (scales 2 and 3 by
    default, see :attr:`dropout_levels`).

    Differences from the DLTK reference: transposed convolutions instead of linear upsampling, 3×3×3 strided
    convolutions with a 1×1 projection shortcut instead of 4×4×4 ones with a max-pool + zero-padding shortcut,
    a final norm/act before the classifier, and configurable ``act``/``norm`` (NeuroNet used ReLU6,
    ``act="relu6"``, and batch normalisation, ``norm="batch"``). NeuroNet's multi-task FCN decoders are not
    reproduced: this is the single-task U-Net.

    Why not ``monai.networks.nets.UNet(num_res_units=2)``: there ``num_res_units`` is the number of
    convolutions inside ONE residual unit per scale, the first unit is already strided (no convolution at full
    resolution in the encoder), and the full-resolution output path is squeezed through ``out_channels``
    normalised channels. That is a different architecture (and parameter layout), so this class implements
    the NeuroNet one directly.

    Input size: every spatial size must be divisible by ``2 ** (len(features) - 1)`` (8 by default);
    ``forward`` raises ``ValueError`` otherwise. Works for 2D and 3D, channels-last inputs and autocast.
    Instance normalisation in training mode needs more than one voxel per channel, so the bottleneck
    must not be 1×1×1: use inputs of at least ``2 * self.divisor`` along one axis for training.

    Args:
        spatial_dims: 2 or 3.
        in_channels: number of input channels, >= 1.
        out_channels: number of output classes (logit channels), >= 1.
        features: channel count of each scale, full resolution first; at least two entries.
        dropout: spatial dropout probability in [0, 1) for the deeper encoder units (0 disables it).
        act: activation, MONAI ``get_act_layer`` spec (default ``"leakyrelu"``).
        norm: normalisation, MONAI ``get_norm_layer`` spec (default ``"instance"``; NeuroNet used batch
            normalisation), or ``None`` for none.
        num_res_units: residual units per encoder scale below full resolution, >= 1 (2 in NeuroNet).

    Raises:
        ValueError: on an invalid argument; the message names the argument.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (16, 32, 64, 128),
        dropout: float = 0.0,
        act: ActType = "leakyrelu",
        norm: NormType = "instance",
        num_res_units: int = 2,
    ) -> None:
        super().__init__()
        feats = validate_common(spatial_dims, in_channels, out_channels, features, dropout, act, norm)
        if isinstance(num_res_units, bool) or not isinstance(num_res_units, int) or num_res_units < 1:
            raise ValueError(f"num_res_units must be an int >= 1, got {num_res_units!r}.")
        num_levels = len(feats)
        self.spatial_dims = spatial_dims
        self.features = feats
        self.num_res_units = num_res_units
        self.divisor = 2 ** (num_levels - 1)
        self.dropout_levels = tuple(dropout_levels(num_levels))

        self.stem = conv_layer(spatial_dims, in_channels, feats[0], 3)
        # encoders[s - 1] serves scale s = 1..L-1.
        self.encoders = nn.ModuleList()
        for s in range(1, num_levels):
            p = float(dropout) if s in self.dropout_levels else 0.0
            units = [_PreActResidualUnit(spatial_dims, feats[s - 1], feats[s], 2, act, norm, p)]
            units += [
                _PreActResidualUnit(spatial_dims, feats[s], feats[s], 1, act, norm, p)
                for _ in range(num_res_units - 1)
            ]
            self.encoders.append(nn.Sequential(*units))

        # ups[j] / decoders[j] serve scale s = L - 2 - j (deepest first).
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for s in reversed(range(num_levels - 1)):
            self.ups.append(conv_transpose_layer(spatial_dims, feats[s + 1], feats[s]))
            self.decoders.append(_PreActResidualUnit(spatial_dims, 2 * feats[s], feats[s], 1, act, norm, 0.0))

        self.head = nn.Sequential(
            make_norm(norm, spatial_dims, feats[0]),
            make_act(act),
            conv_layer(spatial_dims, feats[0], out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` of shape (B, in_channels, *spatial) to logits of shape (B, out_channels, *spatial)."""
        check_input(x, self.spatial_dims, self.divisor)
        x = self.stem(x)
        skips: list[torch.Tensor] = [x]
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        num_skips = len(skips)
        j = 0
        for up, decoder in zip(self.ups, self.decoders, strict=True):
            x = decoder(torch.cat([up(x), skips[num_skips - 2 - j]], dim=1))  # concatenation skip
            j += 1
        return self.head(x)
