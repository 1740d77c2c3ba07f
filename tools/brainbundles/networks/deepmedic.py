"""DeepMedic: a dual-pathway (normal resolution + subsampled context) 3D CNN with residual connections.

References:
    - Kamnitsas, Ledig, Newcombe, Simpson, Kane, Menon, Rueckert, Glocker (2017), "Efficient multi-scale 3D
      CNN with fully connected CRF for accurate brain lesion segmentation", Medical Image Analysis 36:61-78.
    - Kamnitsas, Ferrante, Parisot, Ledig, Nori, Criminisi, Rueckert, Glocker (2016), "DeepMedic for brain
      tumor segmentation", BrainLes 2016 (the residual version used for BraTS 2016).
    - Reference implementation: https://github.com/deepmedic/deepmedic (Theano, later TensorFlow).
    - He, Zhang, Ren, Sun (2015), "Delving deep into rectifiers: surpassing human-level performance on
      ImageNet classification", ICCV (PReLU, initialisation).
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
from ._common import ActType, NormType, conv_layer, make_act, make_norm

__all__ = ["DeepMedic"]


class _PreActConv(nn.Sequential):
    """DeepMedic's layer: [norm -> act ->] [dropout ->] k×k(×k) convolution with 'same' padding."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        act: ActType | None,
        norm: NormType,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if act is not None:  # None: the first layer of a pathway, which sees the (normalised) image itself
            self.norm = make_norm(norm, spatial_dims, in_channels)
            self.act = make_act(act, channels=in_channels, prelu_per_channel=True)
        if dropout > 0.0:
            self.dropout = nn.Dropout(dropout)
        self.conv = conv_layer(spatial_dims, in_channels, out_channels, kernel_size)


def _add_residual(x: torch.Tensor, earlier: torch.Tensor) -> torch.Tensor:
    """``x + earlier``, ``earlier`` zero-padded (or truncated) along the channels to match ``x``."""
    cx, ce = x.shape[1], earlier.shape[1]
    if ce < cx:
        earlier = F.pad(earlier, [0, 0] * (x.dim() - 2) + [0, cx - ce])
    elif ce > cx:
        earlier = earlier[:, :cx]
    return x + earlier


class _Pathway(nn.Module):
    """A stack of 3×3(×3) layers; the output of layer k - 2 is added to that of layer k for k = 4, 6, 8, ...
    (1-based), i.e. the input of layer k - 1 skips two layers (DeepMedic's residual connections)."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        features: Sequence[int],
        act: ActType,
        norm: NormType,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for i, f in enumerate(features):
            c_in = in_channels if i == 0 else features[i - 1]
            self.layers.append(_PreActConv(spatial_dims, c_in, f, 3, None if i == 0 else act, norm))
        #: 0-based indices of the layers whose output receives a residual connection.
        self.residual_layers = tuple(i for i in range(3, len(features), 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.residual_layers:
                x = _add_residual(x, outputs[i - 2])
            outputs.append(x)
        return x


class DeepMedic(nn.Module):
    """DeepMedic (Kamnitsas et al., Medical Image Analysis 2017), residual version, dense and same-size.

    Architecture (defaults in brackets):

    - normal pathway: ``len(features)`` [8] 3×3×3 layers of widths ``features`` [30, 30, 40, 40, 40, 40, 50,
      50] on the full-resolution input;
    - context (subsampled) pathway: the input average-pooled by ``subsample_factor`` [3] along every axis,
      then ``len(subsampled_features)`` [8] 3×3×3 layers of widths ``subsampled_features`` [= features], then
      upsampled back by repetition (nearest neighbour) and concatenated to the normal pathway;
    - every layer but a pathway's first is pre-activated as in the reference implementation:
      norm [batch] -> act [per-channel PReLU] -> convolution; residual connections add the output of layer
      k - 2 to the output of layer k for k = 4, 6, 8 (1-based; the input of layer 3 skips layers 3-4, etc.),
      zero-padding the channels where the width grows;
    - ``len(fc_features)`` [2] "fully connected" layers, 1×1×1 convolutions of widths ``fc_features``
      [150, 150], then the 1×1×1 classification convolution :attr:`output_layer`, each pre-activated
      (norm -> act); element-wise ``dropout`` on the inputs of the second and later FC layers and of the
      classification layer (the reference configuration's placement: 0, p, p);
    - weights initialised as in He et al. (2015) (normal, variance 2 / fan-in), biases zero, as in the paper.
    ``forward`` returns raw logits; the fully connected CRF post-processing of the paper is not included.

    Deviations from the paper, for the bundles' patch training and sliding-window inference:

    - convolutions use 'same' (zero) padding, so the output has the input's spatial size (the paper uses
      valid convolutions: a 25³ input segment gives a 9³ output, receptive field 17³ normal / 51³ context);
      voxels within 8 (normal) or 24 (context) voxels of the input border therefore see zero padding;
    - any input size works: for the context pathway the input is padded internally to a multiple of
      ``subsample_factor`` (a pooling window overlapping the padding averages only the real voxels, see
      :meth:`subsample`) and the upsampled context features are cropped back to the input size.
      The paper aligns the pathways by centring the subsampled receptive field on the normal one; here the
      low-resolution grid starts at the first voxel of the input;
    - there is one context pathway (configurations of the reference implementation can add more).

    Batch normalisation in training mode needs more than one value per channel: with a batch of one, use
    inputs of at least ``subsample_factor + 1`` voxels along some axis.

    Args:
        spatial_dims: 3 (the paper), or 2 for a 2D version (3×3 kernels, same structure).
        in_channels: number of input channels (MRI sequences), >= 1. Default 4.
        out_channels: number of output channels, >= 1. Default 3.
        features: widths of the normal pathway's layers, at least one. Default (30, 30, 40, 40, 40, 40, 50, 50).
        subsampled_features: widths of the context pathway's layers; ``None`` (default) uses ``features``.
        fc_features: widths of the 1×1×1 hidden layers, possibly empty. Default (150, 150).
        subsample_factor: the context pathway's pooling factor along every axis, >= 2. Default 3.
        dropout: element-wise dropout probability in [0, 1) of the FC and classification layers (the
            reference configuration uses 0.5). Default 0.
        act: activation, MONAI ``get_act_layer`` spec; a PReLU without ``num_parameters`` learns one slope
            per channel, as in the paper. Default ``"prelu"``.
        norm: normalisation, MONAI ``get_norm_layer`` spec, or ``None``. Default ``"batch"`` (the paper).

    Raises:
        ValueError: on an invalid argument; the message names the argument.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = 3,
        features: Sequence[int] = (30, 30, 40, 40, 40, 40, 50, 50),
        subsampled_features: Sequence[int] | None = None,
        fc_features: Sequence[int] = (150, 150),
        subsample_factor: int = 3,
        dropout: float = 0.0,
        act: ActType = "prelu",
        norm: NormType = "batch",
    ) -> None:
        super().__init__()
        spatial_dims = check_spatial_dims(spatial_dims)
        in_channels = check_int("in_channels", in_channels)
        out_channels = check_int("out_channels", out_channels)
        feats = check_int_sequence("features", features)
        sub_feats = feats if subsampled_features is None else None
        if sub_feats is None:
            sub_feats = check_int_sequence("subsampled_features", subsampled_features)
        fc_feats = check_int_sequence("fc_features", fc_features, min_len=0)
        factor = check_int("subsample_factor", subsample_factor, minimum=2)
        p = check_dropout(dropout)
        check_act(act)
        check_norm(norm, spatial_dims, {*feats, *sub_feats, *fc_feats, feats[-1] + sub_feats[-1]})

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = feats
        self.subsampled_features = sub_feats
        self.fc_features = fc_feats
        self.subsample_factor = factor
        self.dropout = p

        self.normal_pathway = _Pathway(spatial_dims, in_channels, feats, act, norm)
        self.context_pathway = _Pathway(spatial_dims, in_channels, sub_feats, act, norm)
        self.fc_layers = nn.ModuleList()
        c = feats[-1] + sub_feats[-1]
        for i, f in enumerate(fc_feats):
            self.fc_layers.append(_PreActConv(spatial_dims, c, f, 1, act, norm, p if i > 0 else 0.0))
            c = f
        self.final_norm = make_norm(norm, spatial_dims, c)
        self.final_act = make_act(act, channels=c, prelu_per_channel=True)
        self.final_dropout = nn.Dropout(p) if p > 0.0 else nn.Identity()
        #: the classification layer (1×1×1 convolution to out_channels), for two-phase training.
        self.output_layer = conv_layer(spatial_dims, c, out_channels, kernel_size=1)

        for m in self.modules():  # He et al. (2015) initialisation, as in the paper
            if isinstance(m, nn.Conv3d | nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def subsample(self, x: torch.Tensor) -> torch.Tensor:
        """The context pathway's input: ``x`` average-pooled by ``subsample_factor`` (kernel = stride).

        ``x`` is zero-padded at the end of every axis to a multiple of the factor, and every window is divided
        by its number of real (non-padding) voxels, so a window overlapping the padding averages only the real
        voxels. The result has ``ceil(size / subsample_factor)`` voxels along every axis.
        """
        k = self.subsample_factor
        pad: list[int] = []
        for size in reversed(x.shape[2:]):
            pad += [0, (-size) % k]
        pool = F.avg_pool3d if self.spatial_dims == 3 else F.avg_pool2d
        real = F.pad(torch.ones_like(x[:1, :1]), pad)
        return pool(F.pad(x, pad), kernel_size=k, stride=k) / pool(real, kernel_size=k, stride=k)

    def upsample(self, context: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Upsample ``context`` by repetition (nearest neighbour) by ``subsample_factor`` along every axis and
        crop it to ``size``: voxel ``i`` of the result is voxel ``i // subsample_factor`` of ``context``."""
        for axis, n in enumerate(size, start=2):
            index = torch.arange(n, device=context.device) // self.subsample_factor
            context = context.index_select(axis, index)
        return context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` of shape (B, in_channels, *spatial) to logits of shape (B, out_channels, *spatial)."""
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"x must have shape (B, C, *spatial) with {self.spatial_dims} spatial dims, "
                f"got {x.dim()} dims in total."
            )
        normal = self.normal_pathway(x)
        context = self.context_pathway(self.subsample(x))
        context = self.upsample(context, x.shape[2:])
        h = torch.cat([normal, context], dim=1)
        for layer in self.fc_layers:
            h = layer(h)
        return self.output_layer(self.final_dropout(self.final_act(self.final_norm(h))))
