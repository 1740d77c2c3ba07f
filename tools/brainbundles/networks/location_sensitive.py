"""Ghafoorian et al.'s location-sensitive multi-scale 2D CNN for white-matter hyperintensities, made dense.

References:
    - Ghafoorian, Karssemeijer, Heskes, van Uden, Sánchez, Litjens, de Leeuw, van Ginneken, Marchiori,
      Platel (2017), "Location sensitive deep convolutional neural networks for segmentation of white matter
      hyperintensities", Scientific Reports 7:5110 (multi-scale late fusion with independent weights, and
      explicit spatial features fused in the fully connected layers).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_act, check_dropout, check_int, check_int_sequence, check_norm, check_spatial_dims
from ._common import ActType, NormType, make_act, make_norm
from ._slicewise import SliceWise2D

__all__ = ["LocationSensitiveCNN"]


def _stream_receptive_field(num_blocks: int) -> int:
    """Side of the square window of its own (downsampled) image that one position of a stream's last feature
    map depends on: two 3×3 convolutions per block and 2×2 max-pooling between blocks give
    ``4 * 2**num_blocks + 2**(num_blocks - 1) - 4`` (5, 14, 32, 67 for 1, 2, 3, 4 blocks)."""
    return 4 * 2**num_blocks + 2 ** (num_blocks - 1) - 4


class _Stream(nn.Module):
    """One scale's stream: average-pool by ``scale``, conv blocks with 2×2 max-pooling between them, and
    bilinear upsampling of the last feature map to the input's size."""

    def __init__(
        self, in_channels: int, scale: int, features: Sequence[int], act: ActType, norm: NormType
    ) -> None:
        super().__init__()
        self.scale = scale
        #: stride of the last feature map, in input pixels.
        self.stride = scale * 2 ** (len(features) - 1)
        blocks: list[nn.Module] = []
        c = in_channels
        for f in features:
            layers: list[nn.Module] = []
            for _ in range(2):
                layers += [nn.Conv2d(c, f, kernel_size=3, padding=1), make_norm(norm, 2, f), make_act(act)]
                c = f
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    @property
    def last_conv(self) -> nn.Conv2d:
        """The stream's last convolution."""
        return [m for m in self.blocks[-1].modules() if isinstance(m, nn.Conv2d)][-1]

    def downsample(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` average-pooled by ``scale`` (kernel = stride): ``x`` is zero-padded at the end of each axis to a
        multiple of ``scale`` and every window is divided by its number of real (non-padding) pixels, so a
        window overlapping the padding averages the real pixels; ``ceil(size / scale)`` pixels per axis."""
        k = self.scale
        pad = [0, (-x.shape[3]) % k, 0, (-x.shape[2]) % k]
        real = F.pad(torch.ones_like(x[:1, :1]), pad)
        return F.avg_pool2d(F.pad(x, pad), k, k) / F.avg_pool2d(real, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, C, H, W) to (N, features[-1], H, W)."""
        size = (x.shape[2], x.shape[3])
        scale = float(self.stride)
        h = self.downsample(x) if self.scale > 1 else x
        for i, block in enumerate(self.blocks):
            if i > 0:  # 2×2 max-pooling; an odd size is padded with -inf: ceil(size / 2) pixels per axis
                h = F.max_pool2d(F.pad(h, [0, h.shape[3] % 2, 0, h.shape[2] % 2], value=float("-inf")), 2, 2)
            h = block(h)
        # Bilinear upsampling to H×W with the scale fixed to exactly ``stride``, so feature position k lands on
        # pixel (k + 1/2) * stride - 1/2 whatever the image size. F.interpolate takes either the output size
        # or the scale; with the size alone it would use the ratio ceil(H / stride) / H and stretch the grid
        # (by up to one feature position across the image) when H is not a multiple of the stride. This
        # overload of the aten operator behind F.interpolate takes both: the result equals F.interpolate with
        # scale_factor=stride (recompute_scale_factor=False) cropped to H×W.
        return torch.ops.aten.upsample_bilinear2d(h, [size[0], size[1]], False, scale, scale)


class LocationSensitiveCNN(SliceWise2D):
    """The location-sensitive multi-scale CNN of Ghafoorian et al. (Scientific Reports 2017), evaluated densely.

    The paper classifies the centre pixel of 2D patches (T1 and FLAIR as channels) at three scales, 32×32,
    64×64 and 128×128, the larger two downsampled to 32×32; each scale has its own convolutional stream
    (independent weights), and the streams' outputs are fused in fully connected layers together with
    explicit spatial features of the pixel (its position, its distances to the ventricles, the cortex and the
    midsagittal plane), with dropout 0.3. Here (defaults in brackets):

    - the input's first ``in_channels - spatial_features`` channels are the image channels (MRI sequences)
      and its last ``spatial_features`` [6] channels the per-pixel spatial features, computed elsewhere and
      stacked as extra channels;
    - one stream per entry ``s`` of ``scales`` [(1, 2, 4)]: the image channels average-pooled by ``s``
      (kernel = stride = ``s``; a window overlapping the end of the image averages its real pixels, so any
      H, W >= 1 works), then ``n = len(features)`` blocks of two 3×3 'same' convolutions with ``features[b]``
      [32, 64, 128] maps (each convolution followed by ``norm`` [none] and ``act`` [ReLU]), with 2×2
      max-pooling (stride 2; an odd size keeps its last row or column) between blocks. Its last feature map,
      of stride ``T = s * 2**(n - 1)`` input pixels (4, 8, 16 by default), is upsampled bilinearly
      (``align_corners=False``) to H×W with the scale factor fixed to exactly ``T`` (as if upsampled by ``T``
      and cropped to H×W), so feature position k always lands on pixel ``(k + 1/2) * T - 1/2``, whatever
      the image size;
    - the upsampled stream features and the spatial feature channels (at full resolution, unmodified) are
      concatenated, then the fully connected layers of ``dense_features`` [(256, 128)] units as 1×1
      convolutions (each followed by ``act`` and element-wise ``dropout`` [0.3]), and the output layer
      :attr:`output_layer`, a 1×1 convolution to ``out_channels``. ``forward`` returns raw logits.

    Receptive field: one position of a stream's last feature map sees an ``R`` × ``R`` window of the stream's
    downsampled image, ``R = 4 * 2**n + 2**(n - 1) - 4`` (:attr:`stream_receptive_field`; 32 for the
    default three blocks, the paper's 32×32 patch), i.e. ``s * R`` input pixels (32, 64, 128 by default)
    centred on the position, zero-padded where it leaves the image. Bilinear upsampling mixes the two
    nearest positions along each axis, so the logit at pixel (i, j) depends only on its own spatial-feature
    values and on image pixels (i', j') with ``|i - i'|`` and ``|j - j'|`` at most
    :attr:`receptive_radius`, the maximum over the streams of ``T - 1 + (s * R) // 2`` (79 by default,
    from the 128×128 stream: a 159×159 window), for every image size. The bound is tight: away from the
    border, among any ``T`` consecutive rows (columns) are pixels whose logit depends on image pixels exactly
    that far above, and below (left, right).

    Differences from the paper: the paper evaluates its patch classifier once per pixel, on patches centred
    on it; here every stream runs once over the whole slice (pooling, 'same' convolutions, bilinear
    upsampling), which is far cheaper but not the same function: a pixel's stream features are interpolated
    between coarse feature positions whose windows are aligned to the image grid rather than centred on the
    pixel, and windows overlapping the image border see zero padding. In particular the image reaches the
    output only through maps of stride ``T`` (4 pixels or more by default) interpolated bilinearly, so the
    logits vary smoothly on that scale: structures a few pixels across are resolved less sharply than by the
    paper's per-pixel patches. Widths, depths and the normalisation are this implementation's choices, and
    weights are initialised as in He et al. (2015) (normal, variance 2 / fan-in) with zero biases.
    ``spatial_features=0`` gives the plain multi-scale network without location information.

    No batch-dependent layer: batch normalisation is rejected (slices of a 5D input are folded into the
    batch); instance or group normalisation may be used.

    Inputs: (B, in_channels, H, W), or (B, in_channels, H, W, D) processed slice by slice along the last
    axis (see :mod:`brainbundles.networks._slicewise`); any H, W >= 1.

    Args:
        spatial_dims: must be 2 (a 2D network; 3D volumes are processed slice by slice).
        in_channels: number of input channels, image channels followed by spatial features, >= 1. Default 8
            (T1 and FLAIR, and 6 spatial features).
        out_channels: number of output channels, >= 1. Default 2.
        spatial_features: number of trailing input channels that are spatial features, in
            [0, in_channels). Default 6.
        scales: the downsampling factor of each stream, at least one. Default (1, 2, 4) (the paper's 32×32,
            64×64 and 128×128 patches as 32×32 inputs).
        features: maps of each stream's conv blocks, at least one block. Default (32, 64, 128).
        dense_features: units of the fully connected (1×1 convolution) layers, at least one.
            Default (256, 128).
        dropout: element-wise dropout probability in [0, 1) after every fully connected layer. Default 0.3.
        act: activation, MONAI ``get_act_layer`` spec. Default ``"relu"``.
        norm: normalisation after every stream convolution, MONAI ``get_norm_layer`` spec (not batch
            normalisation), or ``None``. Default ``None``.

    Raises:
        ValueError: on an invalid argument; the message names the argument.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 8,
        out_channels: int = 2,
        spatial_features: int = 6,
        scales: Sequence[int] = (1, 2, 4),
        features: Sequence[int] = (32, 64, 128),
        dense_features: Sequence[int] = (256, 128),
        dropout: float = 0.3,
        act: ActType = "relu",
        norm: NormType = None,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, allowed=(2,))
        c_in = check_int("in_channels", in_channels)
        c_out = check_int("out_channels", out_channels)
        n_spatial = check_int("spatial_features", spatial_features, minimum=0)
        if n_spatial >= c_in:
            raise ValueError(
                f"spatial_features must be smaller than in_channels ({c_in}): at least one image channel is "
                f"needed, got {n_spatial}."
            )
        scale_list = check_int_sequence("scales", scales, min_len=1)
        feats = check_int_sequence("features", features, min_len=1)
        dense = check_int_sequence("dense_features", dense_features, min_len=1)
        p = check_dropout(dropout)
        check_act(act)
        check_norm(norm, 2, feats, context=f" (features {feats})")
        if (
            norm is not None
            and norm != ""
            and isinstance(make_norm(norm, 2, feats[0]), nn.modules.batchnorm._BatchNorm)
        ):
            raise ValueError(
                f"norm must not be batch normalisation ({norm!r}): the slices of a 5D input are folded into "
                "the batch; use instance or group normalisation."
            )
        self.spatial_dims = 2
        self.in_channels = c_in
        self.out_channels = c_out
        self.spatial_features = n_spatial
        self.image_channels = c_in - n_spatial
        self.scales = scale_list
        self.features = feats
        self.dense_features = dense
        self.dropout = p
        #: side of the window of its own downsampled image one position of a stream's last map depends on.
        self.stream_receptive_field = _stream_receptive_field(len(feats))

        self.streams = nn.ModuleList([_Stream(self.image_channels, s, feats, act, norm) for s in scale_list])
        #: the largest distance (along each axis) between a pixel and an image pixel its logit depends on.
        self.receptive_radius = max(
            st.stride - 1 + (st.scale * self.stream_receptive_field) // 2 for st in self.streams
        )
        layers: list[nn.Module] = []
        c = len(scale_list) * feats[-1] + n_spatial
        for f in dense:
            layers += [nn.Conv2d(c, f, kernel_size=1), make_act(act)]
            if p > 0.0:
                layers.append(nn.Dropout(p))
            c = f
        self.dense = nn.Sequential(*layers)
        #: the output layer (1×1 convolution to out_channels), for two-phase training.
        self.output_layer = nn.Conv2d(c, c_out, kernel_size=1)

        for m in self.modules():  # He et al. (2015) initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward_2d(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_channels, H, W) to logits (N, out_channels, H, W).

        Raises:
            ValueError: if ``x`` does not have ``in_channels`` channels (image channels, then spatial features).
        """
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have in_channels = {self.in_channels} channels ({self.image_channels} image channels, "
                f"then {self.spatial_features} spatial features), got {x.shape[1]}."
            )
        image = x[:, : self.image_channels]
        maps = [stream(image) for stream in self.streams]
        if self.spatial_features > 0:
            maps.append(x[:, self.image_channels :])
        return self.output_layer(self.dense(torch.cat(maps, dim=1)))
