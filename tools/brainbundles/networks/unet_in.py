"""UNetIN: the one-convolution-per-level U-Net with summation skips of the IBSR18 brain tissue study.

References:
    - Gómez, Vaca, Tascón (2020): brain tissue segmentation (CSF, GM, WM) on IBSR18 with 3D patch-based
      U-Net variants; the variant used here is "a 3D U-Net with one convolution per level and summation
      skips, widened from 32 to 64 initial features (512 at the bottleneck), with instance normalisation
      and dropout".
    - Ronneberger, Fischer, Brox (2015), "U-Net: Convolutional Networks for Biomedical Image Segmentation",
      MICCAI.
    - Çiçek, Abdulkadir, Lienkamp, Brox, Ronneberger (2016), "3D U-Net: Learning Dense Volumetric
      Segmentation from Sparse Annotation", MICCAI.
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
    max_pool_layer,
    spatial_dropout,
)

__all__ = ["UNetIN"]


class _ConvNormAct(nn.Sequential):
    """conv (k×k[×k], 'same' padding) -> norm -> act -> spatial dropout."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: ActType,
        norm: NormType,
        dropout: float,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.conv = conv_layer(spatial_dims, in_channels, out_channels, kernel_size)
        self.norm = make_norm(norm, spatial_dims, out_channels)
        self.act = make_act(act)
        self.dropout = spatial_dropout(spatial_dims, dropout)


class UNetIN(nn.Module):
    """U-Net with ONE 3×3×3 convolution per level, instance normalisation and summation skips.

    This is the network of the IBSR18 brain tissue study (Gómez, Vaca, Tascón, 2020): a 3D patch-based U-Net
    (Ronneberger et al., 2015; Çiçek et al., 2016) reduced to one convolution per level, with the decoder's
    upsampled features *added* to the encoder features of the same level instead of concatenated, widened
    from 32 to 64 initial features (512 at the bottleneck), with instance normalisation and dropout.

    Architecture, for ``L = len(features)`` levels:

    - encoder level 0: conv(in_channels -> features[0]) -> norm -> act;
      encoder level i > 0: 2× max-pool -> conv(features[i-1] -> features[i]) -> norm -> act.
      The last encoder level is the bottleneck.
    - spatial dropout (``nn.Dropout3d``/``nn.Dropout2d``) after the convolution of the deeper half of the
      levels, bottleneck included (levels 2 and 3 with the default four levels; see
      :attr:`dropout_levels`). As in Ronneberger et al., it acts at the end of the contracting path.
    - decoder level i (from L-2 down to 0): 2× transposed convolution (kernel 2, stride 2) mapping
      features[i+1] -> features[i], **summed** with the encoder output of level i, then
      conv(features[i] -> features[i]) -> norm -> act. The transposed convolution matches the channel
      counts, so no 1×1 projection is needed.
    - head: 1×1 convolution features[0] -> out_channels. ``forward`` returns raw logits (no softmax).

    Input size: every spatial size must be divisible by ``2 ** (len(features) - 1)`` (8 with the default
    four levels); ``forward`` raises ``ValueError`` otherwise. Works for 2D and 3D.
    Instance normalisation in training mode needs more than one voxel per channel, so the bottleneck
    must not be 1×1×1: use inputs of at least ``2 * self.divisor`` along one axis for training.

    Only ``nn.Conv``/``nn.ConvTranspose``/pooling/normalisation ops and additions are used (no ``.view``), so the
    network runs with ``torch.channels_last_3d`` inputs and under ``torch.autocast``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: number of input channels (MRI contrasts), >= 1.
        out_channels: number of output classes (logit channels), >= 1.
        features: channel count of each resolution level, from full resolution to the bottleneck; at least
            two entries. Default ``(64, 128, 256, 512)`` as in the study.
        dropout: spatial dropout probability in [0, 1) used at the deeper levels (0 disables it).
        act: activation, MONAI ``get_act_layer`` spec, e.g. ``"leakyrelu"``, ``"relu"``,
            ``("leakyrelu", {"negative_slope": 0.01})``.
        norm: normalisation, MONAI ``get_norm_layer`` spec, e.g. ``"instance"``,
            ``("instance", {"affine": True})``, ``("group", {"num_groups": 8})``; ``None`` disables it.

    Raises:
        ValueError: on an invalid argument; the message names the argument.
    """

    #: how skip connections are merged; "sum" (never "concat") for this network.
    skip_mode: str = "sum"

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (64, 128, 256, 512),
        dropout: float = 0.0,
        act: ActType = "leakyrelu",
        norm: NormType = "instance",
    ) -> None:
        super().__init__()
        feats = validate_common(spatial_dims, in_channels, out_channels, features, dropout, act, norm)
        num_levels = len(feats)
        self.spatial_dims = spatial_dims
        self.features = feats
        self.divisor = 2 ** (num_levels - 1)
        self.dropout_levels = tuple(dropout_levels(num_levels))

        self.encoders = nn.ModuleList()
        for i, f in enumerate(feats):
            block = _ConvNormAct(
                spatial_dims,
                in_channels if i == 0 else feats[i - 1],
                f,
                act,
                norm,
                float(dropout) if i in self.dropout_levels else 0.0,
            )
            self.encoders.append(block if i == 0 else nn.Sequential(max_pool_layer(spatial_dims), block))

        # ups[j] / decoders[j] serve level i = L - 2 - j (deepest first).
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(num_levels - 1)):
            self.ups.append(conv_transpose_layer(spatial_dims, feats[i + 1], feats[i]))
            self.decoders.append(_ConvNormAct(spatial_dims, feats[i], feats[i], act, norm, 0.0))

        self.head = conv_layer(spatial_dims, feats[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` of shape (B, in_channels, *spatial) to logits of shape (B, out_channels, *spatial)."""
        check_input(x, self.spatial_dims, self.divisor)
        skips: list[torch.Tensor] = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        skips.pop()  # the bottleneck is x
        for up, decoder in zip(self.ups, self.decoders, strict=True):
            # summation skip, in place, each skip let go once used: the full-resolution level holds two
            # feature maps at a time instead of four (peak memory of whole-volume inference)
            x = decoder(up(x).add_(skips.pop()))
        return self.head(x)
