"""Brosch et al.'s 3D convolutional encoder network with a shortcut, for multiple sclerosis lesions, same-size.

References:
    - Brosch, Tang, Yoo, Li, Traboulsee, Tam (2016), "Deep 3D convolutional encoder networks with shortcuts for
      multiscale feature integration applied to multiple sclerosis lesion segmentation", IEEE Transactions on
      Medical Imaging 35(5):1229-1239 (the 7-layer CEN with a shortcut, "CEN-s").
    - Brosch, Yoo, Tang, Li, Traboulsee, Tam (2015), "Deep convolutional encoder networks for multiple
      sclerosis lesion segmentation", MICCAI (the CEN without the shortcut).
    - The paper's loss, a weighted sum of the squared errors on lesion and non-lesion voxels, is
      :class:`brainbundles.losses.SensitivitySpecificityLoss`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import (
    check_act,
    check_dropout,
    check_int,
    check_int_sequence,
    check_norm,
    check_spatial_dims,
)
from ._common import ActType, NormType, check_input, conv_layer, make_act, make_norm, spatial_dropout

__all__ = ["BroschCEN"]


class _ShortcutOutput(nn.Module):
    """The last (de)convolution layer of the CEN-s: ``main(x) + shortcut(skip)``, one bias (in ``main``).

    ``main`` sees the unpooled decoder features, ``shortcut`` the first convolution layer's features: the paper's
    output layer sums the deconvolutions of both (independent filters) before its nonlinearity. Without a
    shortcut (``shortcut=None``, the plain CEN) it is ``main(x)``.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int, shortcut: bool
    ) -> None:
        super().__init__()
        self.main = conv_layer(spatial_dims, in_channels, out_channels, kernel_size)
        self.shortcut: nn.Module | None = None
        if shortcut:
            conv_cls = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
            self.shortcut = conv_cls(
                in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False
            )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        y = self.main(x)
        if self.shortcut is not None:
            y = y + self.shortcut(skip)
        return y


class BroschCEN(nn.Module):
    """The 7-layer convolutional encoder network with a shortcut (CEN-s) of Brosch et al. (IEEE TMI 2016).

    Layers, with ``features = (F0, F1)`` [(32, 32)], ``kernel_sizes = (k1, k2)`` [(9, 5)] and ``pool = p`` [2]:

    - encoder: convolution k1 (``in_channels`` -> F0) -> act [ReLU]; average pooling by p; convolution k2
      (F0 -> F1) -> act;
    - decoder: deconvolution k2 (F1 -> F0) -> act; unpooling by p (each value repeated over a p×…×p block);
      deconvolution k1 (F0 -> ``out_channels``), :attr:`output_layer`;
    - the shortcut: the first convolution layer's output (after its activation) is deconvolved with its own
      k1 filters (F0 -> ``out_channels``) and **summed** into the last deconvolution layer, as in the paper,
      so the output layer integrates the high-resolution features of layer 1 with the coarser features of the
      deep pathway. ``shortcut=False`` gives the plain CEN (Brosch et al., MICCAI 2015).

    ``forward`` returns raw logits (the paper applies a sigmoid to one output map). ``norm`` [none] and
    ``act`` act after the first three (de)convolutions; spatial ``dropout`` [0] acts after the second
    convolution's activation (the end of the encoder). Weights are initialised as in He et al. (2015) (normal,
    variance 2 / fan-in) with zero biases; the paper pre-trains its layers as convolutional RBMs instead.

    Same-size output (deviation from the paper): the paper's convolutions are valid and its deconvolutions full
    (a valid k1 convolution shrinks every axis by k1 - 1 voxels and the full k1 deconvolution restores them).
    Here every (de)convolution is zero-padded ('same'; a stride-1 'same' deconvolution is a 'same' convolution
    with the kernel flipped, and is implemented as one), so the output has the input's spatial size for any
    input size. Average pooling pads the end of every axis to a multiple of ``pool`` and divides each window by
    its number of real voxels (``ceil(size / pool)`` pooled voxels); unpooling repeats every pooled voxel
    ``pool`` times along every axis and crops to the input size. Away from the border (wherever the receptive
    field below lies inside the input), for inputs the paper's network takes (``size - k1 + 1`` a multiple of
    ``pool``) and when ``(k1 - 1) / 2`` is a multiple of ``pool`` (as with the defaults, so the pooling grids
    coincide), the logits are exactly those of the paper's valid/full network with the same (flipped)
    filters; near the border this network sees zero padding where the paper's has no feature.

    Receptive field: the logit at voxel ``i`` depends on input voxels ``j`` with ``|i - j|`` at most
    :attr:`receptive_radius` ``= k1 + p * k2 - 2`` along every axis (17 voxels with the defaults; the exact
    reach towards either side alternates between 17 and 16 with the parity of ``i``, a 34-voxel window); the
    bound is tight. The shortcut alone reaches ``k1 - 1`` voxels (8 with the defaults).

    Only convolutions, pooling, padding, ``index_select`` and additions are used, so the network runs with
    channels-last inputs, under ``torch.autocast``, through ``torch.export`` and with ``torch.jit.script``.

    Args:
        spatial_dims: 3 (the paper) or 2 (same structure with 2D kernels).
        in_channels: number of input channels (MRI sequences), >= 1. Default 2.
        out_channels: number of output channels, >= 1. Default 2 (background and lesion; the paper: one
            sigmoid map).
        features: filters of the two convolution layers, (F0, F1). Default (32, 32) (the paper).
        kernel_sizes: kernel sizes of the first and second convolution layer, odd, (k1, k2); the deconvolution
            layers mirror them. Default (9, 5).
        pool: average pooling and unpooling factor along every axis, >= 1. Default 2 (the paper).
        dropout: spatial (channel-wise) dropout probability in [0, 1) after the second convolution. Default 0.
        act: activation, MONAI ``get_act_layer`` spec. Default ``"relu"`` (the paper).
        norm: normalisation after the first three (de)convolutions, MONAI ``get_norm_layer`` spec, or
            ``None`` (the paper). Default ``None``.
        shortcut: whether the shortcut from layer 1 to the output layer is built. Default True (CEN-s).

    Raises:
        ValueError: on an invalid argument; the message names the argument.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 2,
        out_channels: int = 2,
        features: Sequence[int] = (32, 32),
        kernel_sizes: Sequence[int] = (9, 5),
        pool: int = 2,
        dropout: float = 0.0,
        act: ActType = "relu",
        norm: NormType = None,
        shortcut: bool = True,
    ) -> None:
        super().__init__()
        spatial_dims = check_spatial_dims(spatial_dims)
        c_in = check_int("in_channels", in_channels)
        c_out = check_int("out_channels", out_channels)
        feats = check_int_sequence("features", features, min_len=2)
        if len(feats) != 2:
            raise ValueError(f"features must have exactly 2 entries (F0, F1), got {feats!r}.")
        kernels = check_int_sequence("kernel_sizes", kernel_sizes, min_len=2)
        if len(kernels) != 2 or any(k % 2 == 0 for k in kernels):
            raise ValueError(f"kernel_sizes must be 2 odd ints (k1, k2), got {kernels!r}.")
        p = check_int("pool", pool)
        drop = check_dropout(dropout)
        check_act(act)
        check_norm(norm, spatial_dims, feats, context=f" (features {feats})")
        if not isinstance(shortcut, bool):
            raise ValueError(f"shortcut must be a bool, got {shortcut!r}.")

        self.spatial_dims = spatial_dims
        self.in_channels = c_in
        self.out_channels = c_out
        self.features = feats
        self.kernel_sizes = kernels
        self.pool = p
        self.dropout = drop
        self.has_shortcut = shortcut
        #: the largest distance (along each axis) between a voxel and an input voxel its logit depends on.
        self.receptive_radius = kernels[0] + p * kernels[1] - 2

        f0, f1 = feats
        k1, k2 = kernels
        self.conv1 = nn.Sequential(
            conv_layer(spatial_dims, c_in, f0, k1), make_norm(norm, spatial_dims, f0), make_act(act)
        )
        self.conv2 = nn.Sequential(
            conv_layer(spatial_dims, f0, f1, k2),
            make_norm(norm, spatial_dims, f1),
            make_act(act),
            spatial_dropout(spatial_dims, drop),
        )
        self.deconv2 = nn.Sequential(
            conv_layer(spatial_dims, f1, f0, k2), make_norm(norm, spatial_dims, f0), make_act(act)
        )
        #: plain average pooling (kernel = stride = pool), used by :meth:`avg_pool`.
        self.pool_layer = nn.AvgPool3d(p) if spatial_dims == 3 else nn.AvgPool2d(p)
        #: the last deconvolution layer (with the shortcut's deconvolution), for two-phase training.
        self.output_layer = _ShortcutOutput(spatial_dims, f0, c_out, k1, shortcut)

        for m in self.modules():  # He et al. (2015) initialisation
            if isinstance(m, nn.Conv3d | nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def avg_pool(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` average-pooled by ``pool`` (kernel = stride): ``x`` is zero-padded at the end of every axis to a
        multiple of ``pool`` and every window is divided by its number of real (non-padding) voxels; the result
        has ``ceil(size / pool)`` voxels along every axis."""
        k = self.pool
        if k == 1:
            return x
        pad: list[int] = []
        for axis in range(x.dim() - 1, 1, -1):  # F.pad's order: last axis first (not reversed(): TorchScript)
            pad += [0, (-x.shape[axis]) % k]
        real = F.pad(torch.ones_like(x[:1, :1]), pad)
        return self.pool_layer(F.pad(x, pad)) / self.pool_layer(real)

    def unpool(self, x: torch.Tensor, size: list[int]) -> torch.Tensor:
        """Repeat every voxel of ``x`` ``pool`` times along every axis and crop to ``size``: voxel ``i`` of the
        result is voxel ``i // pool`` of ``x``."""
        if self.pool == 1:
            return x
        for i in range(len(size)):
            index = torch.arange(size[i], device=x.device) // self.pool
            x = x.index_select(i + 2, index)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` of shape (B, in_channels, *spatial) to logits of shape (B, out_channels, *spatial)."""
        check_input(x, self.spatial_dims, 1)
        h1 = self.conv1(x)
        h = self.deconv2(self.conv2(self.avg_pool(h1)))
        return self.output_layer(self.unpool(h, list(x.shape[2:])), h1)
