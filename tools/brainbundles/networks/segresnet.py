"""SegResNet: MONAI's encoder-decoder with residual blocks, with the package's argument names.

References:
    - Myronenko (2018), "3D MRI brain tumor segmentation using autoencoder regularization", BrainLes 2018
      (MICCAI BraTS 2018 winner). The variational auto-encoder branch is not included (as in MONAI).
    - MONAI model zoo, ``brats_mri_segmentation`` bundle: init_filters 16, blocks_down (1, 2, 2, 4),
      blocks_up (1, 1, 1), dropout 0.2, three sigmoid outputs (tumour core, whole tumour, enhancing tumour).
"""

from __future__ import annotations

from collections.abc import Sequence

import monai.networks.nets
import torch
import torch.nn as nn
from monai.utils import UpsampleMode

from ._checks import (
    check_act,
    check_dropout,
    check_int,
    check_int_sequence,
    check_norm,
    check_spatial_dims,
)
from ._common import ActType, NormType, check_input

__all__ = ["SegResNet"]

_UPSAMPLE_MODES = tuple(m.value for m in UpsampleMode)


class SegResNet(monai.networks.nets.SegResNet):
    """MONAI's :class:`monai.networks.nets.SegResNet` (Myronenko, BrainLes 2018) with the package's signature.

    A thin subclass: ``dropout`` is MONAI's ``dropout_prob`` (0 means no dropout layer), arguments are
    validated with ``ValueError`` naming the offending one, and ``forward`` checks the input size. The module
    tree and the state dict are MONAI's, so MONAI model-zoo weights load unchanged.

    Architecture: a 3×3×3 convolution to ``init_filters`` channels, (element-wise) dropout, then
    ``len(blocks_down)`` encoder levels of ``blocks_down[i]`` pre-activation residual blocks (norm -> act ->
    conv, twice) with ``init_filters * 2**i`` channels, each level after the first entered by a stride-2
    3×3×3 convolution; a decoder of ``len(blocks_up)`` levels (1×1×1 convolution halving the channels,
    upsampling, summation with the encoder features of the level, ``blocks_up[j]`` residual blocks); and
    norm -> act -> 1×1×1 convolution to ``out_channels`` (:attr:`output_layer`). Returns raw logits of the
    input's spatial size; the tumour bundle applies a sigmoid per channel (overlapping regions).

    Input size: every spatial size must be divisible by :attr:`divisor` ``= 2 ** (len(blocks_down) - 1)``
    (8 with the defaults); ``forward`` raises ``ValueError`` otherwise.

    Args:
        spatial_dims: 2 or 3.
        in_channels: number of input channels (MRI sequences), >= 1. Default 4 (T1, T1c, T2, FLAIR).
        out_channels: number of output channels, >= 1. Default 3 (TC, WT, ET).
        init_filters: channels of the first level, doubled at every level; >= 1. Default 16 (model zoo).
        blocks_down: residual blocks per encoder level, at least one level, each >= 1. Default (1, 2, 2, 4).
        blocks_up: residual blocks per decoder level, ``len(blocks_down) - 1`` entries, each >= 0.
            Default (1, 1, 1).
        dropout: dropout probability in [0, 1) after the first convolution (the model zoo uses 0.2).
        act: activation, MONAI ``get_act_layer`` spec. Default ``("RELU", {"inplace": True})`` (MONAI's).
        norm: normalisation, MONAI ``get_norm_layer`` spec, required (MONAI's residual blocks need one);
            with group normalisation the group count must divide ``init_filters``.
            Default ``("GROUP", {"num_groups": 8})`` (MONAI's).
        upsample_mode: ``"nontrainable"`` (trilinear, default), ``"deconv"`` or ``"pixelshuffle"``.

    Raises:
        ValueError: on an invalid argument; the message names the argument.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = 3,
        init_filters: int = 16,
        blocks_down: Sequence[int] = (1, 2, 2, 4),
        blocks_up: Sequence[int] = (1, 1, 1),
        dropout: float = 0.0,
        act: ActType = ("RELU", {"inplace": True}),
        norm: NormType = ("GROUP", {"num_groups": 8}),
        upsample_mode: str = "nontrainable",
    ) -> None:
        spatial_dims = check_spatial_dims(spatial_dims)
        in_channels = check_int("in_channels", in_channels)
        out_channels = check_int("out_channels", out_channels)
        init_filters = check_int("init_filters", init_filters)
        down = check_int_sequence("blocks_down", blocks_down, min_len=1, minimum=1)
        up = check_int_sequence("blocks_up", blocks_up, min_len=0, minimum=0)
        if len(up) != len(down) - 1:
            raise ValueError(
                f"blocks_up must have len(blocks_down) - 1 = {len(down) - 1} entries (one per decoder level), "
                f"got {up!r}."
            )
        p = check_dropout(dropout)
        check_act(act)
        features = tuple(init_filters * 2**i for i in range(len(down)))
        check_norm(norm, spatial_dims, features, allow_none=False)
        mode = upsample_mode.value if isinstance(upsample_mode, UpsampleMode) else upsample_mode
        if mode not in _UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {_UPSAMPLE_MODES}, got {upsample_mode!r}.")
        super().__init__(
            spatial_dims=spatial_dims,
            init_filters=init_filters,
            in_channels=in_channels,
            out_channels=out_channels,
            dropout_prob=p if p > 0.0 else None,
            act=act,
            norm=norm,
            blocks_down=down,
            blocks_up=up,
            upsample_mode=mode,
        )
        self.out_channels = out_channels
        #: channels of each resolution level, from full resolution to the bottleneck.
        self.features = features
        #: every spatial size of the input must be divisible by this.
        self.divisor = 2 ** (len(down) - 1)

    @property
    def output_layer(self) -> nn.Module:
        """The final 1×1(×1) convolution (``conv_final[-1]``), for two-phase training."""
        return self.conv_final[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` of shape (B, in_channels, *spatial) to logits of shape (B, out_channels, *spatial)."""
        check_input(x, self.spatial_dims, self.divisor)
        return super().forward(x)
