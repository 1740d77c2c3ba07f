"""HeMIS: hetero-modal image segmentation, robust to missing MRI sequences.

References:
    - Havaei, Guizard, Chapados, Bengio (2016), "HeMIS: Hetero-Modal Image Segmentation", MICCAI 2016,
      LNCS 9901:469-477.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from ._checks import (
    check_act,
    check_dropout,
    check_int,
    check_int_sequence,
    check_norm,
    check_spatial_dims,
)
from ._common import ActType, NormType, check_input, conv_layer, make_act, make_norm, spatial_dropout

__all__ = ["HeMIS"]


def _conv_block(
    spatial_dims: int, channels: Sequence[int], kernel_size: int, act: ActType, norm: NormType
) -> nn.Sequential:
    """conv -> norm -> act for every consecutive pair of ``channels`` ('same' padding)."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
        layers += [
            conv_layer(spatial_dims, c_in, c_out, kernel_size),
            make_norm(norm, spatial_dims, c_out),
            make_act(act, channels=c_out),
        ]
    return nn.Sequential(*layers)


class HeMIS(nn.Module):
    """HeMIS (Havaei, Guizard, Chapados, Bengio, MICCAI 2016): segmentation from any subset of the sequences.

    - front end: every input channel (one MRI sequence, "modality") has its own encoder,
      ``len(features)`` [2] convolutions (``kernel_size`` [3], 'same' padding) of widths ``features``
      [16, 32], each followed by norm and act, applied to that channel alone;
    - abstraction layer: the encoders' outputs are fused by their mean and their variance over the
      modalities **present** for the sample, concatenated into ``2 * features[-1]`` channels. The variance is
      the unbiased one (division by n - 1), and 0 when a single modality is present (as in the paper);
    - back end: ``len(backend_features)`` [2] convolutions of widths ``backend_features`` [32, 32], each
      followed by norm and act, spatial ``dropout``, and the 1×1(×1) convolution :attr:`output_layer` to
      ``out_channels`` logits.

    A modality is **absent** for a sample when its whole input channel is exactly zero in that sample (the
    bundle fills a missing sequence with zeros, and its random sequence dropout zeroes channels); absent
    modalities contribute nothing to the fusion: the output does not depend on their encoders, and gradients
    reach only the encoders of present modalities. When no channel is non-zero (a background patch), every
    modality counts as present. Presence is decided per input, so with sliding-window inference per window.

    Deviations from the paper: 'same' padding (the output has the input's size; any input size works), no
    max-pooling inside the encoders (the paper: 5×5 convolutions with 48 maps, a 2×2 stride-1 max-pooling
    between them, a 5×5 back-end convolution with 16 maps and a 21×21 output convolution), 2D or 3D, and
    configurable normalisation. With batch normalisation in the encoders, absent (zero) samples take part in
    that encoder's batch statistics during training; use instance or group normalisation, or none (default).

    Args:
        spatial_dims: 2 or 3.
        in_channels: number of modalities (one encoder each), >= 1. Default 4 (T1, T1c, T2, FLAIR).
        out_channels: number of output channels, >= 1. Default 3.
        features: widths of each modality's encoder layers, at least one. Default (16, 32).
        backend_features: widths of the back-end convolutions after the fusion, possibly empty.
            Default (32, 32).
        kernel_size: odd kernel size of the encoder and back-end convolutions, >= 1. Default 3.
        dropout: spatial dropout probability in [0, 1) before the output layer. Default 0.
        act: activation, MONAI ``get_act_layer`` spec. Default ``"relu"`` (the paper).
        norm: normalisation, MONAI ``get_norm_layer`` spec, or ``None`` (default, as in the paper).

    Raises:
        ValueError: on an invalid argument; the message names the argument.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = 3,
        features: Sequence[int] = (16, 32),
        backend_features: Sequence[int] = (32, 32),
        kernel_size: int = 3,
        dropout: float = 0.0,
        act: ActType = "relu",
        norm: NormType = None,
    ) -> None:
        super().__init__()
        spatial_dims = check_spatial_dims(spatial_dims)
        c_in = check_int("in_channels", in_channels)
        c_out = check_int("out_channels", out_channels)
        feats = check_int_sequence("features", features, min_len=1)
        back = check_int_sequence("backend_features", backend_features, min_len=0)
        k = check_int("kernel_size", kernel_size)
        if k % 2 == 0:
            raise ValueError(f"kernel_size must be odd ('same' padding), got {kernel_size!r}.")
        p = check_dropout(dropout)
        check_act(act)
        check_norm(norm, spatial_dims, {*feats, *back})
        self.spatial_dims = spatial_dims
        self.in_channels = c_in
        self.out_channels = c_out
        self.features = feats
        self.backend_features = back
        self.dropout = p

        self.encoders = nn.ModuleList(
            _conv_block(spatial_dims, (1, *feats), k, act, norm) for _ in range(c_in)
        )
        self.backend = _conv_block(spatial_dims, (2 * feats[-1], *back), k, act, norm)
        self.output_dropout = spatial_dropout(spatial_dims, p)
        #: the output layer (1×1(×1) convolution to out_channels), for two-phase training.
        self.output_layer = conv_layer(
            spatial_dims, back[-1] if back else 2 * feats[-1], c_out, kernel_size=1
        )

    @staticmethod
    def present(x: torch.Tensor) -> torch.Tensor:
        """Boolean (B, C): whether each input channel is present (not entirely zero) in each sample.

        A sample with no present channel counts all of them as present.
        """
        present = (x != 0).flatten(2).any(dim=2)
        return present | ~present.any(dim=1, keepdim=True)

    def fuse(self, x: torch.Tensor) -> torch.Tensor:
        """The abstraction layer: (B, in_channels, *spatial) -> (B, 2 * features[-1], *spatial), the mean and
        the variance of the encoders' outputs over the modalities present in each sample."""
        check_input(x, self.spatial_dims, 1)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have in_channels = {self.in_channels} channels, got {x.shape[1]}.")
        encoded = torch.stack([enc(x[:, i : i + 1]) for i, enc in enumerate(self.encoders)], dim=1)
        # (B, M) -> (B, M, 1, 1, ...) to broadcast over (B, M, F, *spatial)
        mask = self.present(x).reshape(x.shape[0], self.in_channels, *([1] * (self.spatial_dims + 1)))
        count = mask.sum(dim=1).to(encoded.dtype)  # >= 1
        # torch.where (not a multiplication): absent encoders get exactly zero gradient, even if non-finite.
        mean = torch.where(mask, encoded, 0.0).sum(dim=1) / count
        squares = torch.where(mask, (encoded - mean.unsqueeze(1)) ** 2, 0.0).sum(dim=1)
        variance = squares / (count - 1).clamp(min=1)  # one modality: 0 / 1 = 0
        return torch.cat([mean, variance], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` of shape (B, in_channels, *spatial) to logits of shape (B, out_channels, *spatial)."""
        return self.output_layer(self.output_dropout(self.backend(self.fuse(x))))
