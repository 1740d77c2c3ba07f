"""Havaei et al.'s two-pathway 2D CNNs for brain tumour segmentation, made dense and same-size.

References:
    - Havaei, Davy, Warde-Farley, Biard, Courville, Bengio, Pal, Jodoin, Larochelle (2017), "Brain tumor
      segmentation with deep neural networks", Medical Image Analysis 35:18-31 (TwoPathCNN, InputCascadeCNN,
      two-phase training).
    - Goodfellow, Warde-Farley, Mirza, Courville, Bengio (2013), "Maxout networks", ICML.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_dropout, check_int, check_int_sequence, check_spatial_dims
from ._slicewise import SliceWise2D

__all__ = ["InputCascadeCNN", "TwoPathwayCNN"]

#: side of the patch one prediction depends on (the network's receptive field), as in the paper.
PATCH_SIZE = 33
_ACTIVATIONS = ("sigmoid", "softmax")


class _MaxoutConv(nn.Module):
    """Valid convolution to ``out_channels * pieces`` maps followed by a maxout over groups of ``pieces``
    consecutive maps (Goodfellow et al., 2013): output map ``i`` is the maximum of maps ``i*pieces ...
    i*pieces + pieces - 1``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pieces: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.pieces = pieces
        self.conv = nn.Conv2d(in_channels, out_channels * pieces, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.pieces == 1:
            return y
        return y.unflatten(1, (self.out_channels, self.pieces)).amax(dim=2)


def _validate(
    spatial_dims: object,
    in_channels: object,
    out_channels: object,
    local_features: object,
    global_features: object,
    maxout: object,
    dropout: object,
) -> tuple[int, int, tuple[int, int], int, int, float]:
    check_spatial_dims(spatial_dims, allowed=(2,))
    c_in = check_int("in_channels", in_channels)
    c_out = check_int("out_channels", out_channels)
    local = check_int_sequence("local_features", local_features, min_len=2)
    if len(local) != 2:
        raise ValueError(f"local_features must have exactly 2 entries (two local layers), got {local!r}.")
    glob = check_int("global_features", global_features)
    pieces = check_int("maxout", maxout)
    p = check_dropout(dropout)
    return c_in, c_out, (local[0], local[1]), glob, pieces, p


class TwoPathwayCNN(SliceWise2D):
    """TwoPathCNN of Havaei et al. (Medical Image Analysis 2017), evaluated densely at every pixel.

    The paper's network classifies the centre pixel of a 33×33 patch (all MRI sequences as channels):

    - local pathway: 7×7 convolution (``local_features[0]`` [64] maps, maxout over ``maxout`` [2] pieces)
      -> 4×4 max-pooling, stride 1 -> 3×3 convolution (``local_features[1]`` [64] maps, maxout)
      -> 2×2 max-pooling, stride 1: 33×33 -> 21×21;
    - global pathway: one 13×13 convolution (``global_features`` [160] maps, maxout): 33×33 -> 21×21;
    - the two concatenated (224 maps of 21×21), element-wise ``dropout``, then the output layer
      :attr:`output_layer`, a 21×21 convolution to ``out_channels`` (the paper's fully connected softmax
      layer): one prediction for the patch centre.

    All convolutions and poolings are valid and have stride 1, so the same network applied to a larger image
    is the patch classifier slid over every position. Here the input is zero-padded by 16 pixels on every
    side first: the output has the input's size and the logit at every pixel is exactly the patch-wise
    prediction for the 33×33 patch centred on it (zero outside the image). ``forward`` returns raw logits
    (the paper applies a softmax).

    Inputs: (B, in_channels, H, W), or (B, in_channels, H, W, D) processed slice by slice along the last
    axis (see :mod:`brainbundles.networks._slicewise`); any H, W >= 1.

    Args:
        spatial_dims: must be 2 (a 2D network; 3D volumes are processed slice by slice).
        in_channels: number of input channels (MRI sequences), >= 1. Default 4.
        out_channels: number of output channels, >= 1. Default 3 (the paper: 5 classes).
        local_features: maps of the two local-pathway layers (after maxout). Default (64, 64).
        global_features: maps of the global-pathway layer (after maxout). Default 160.
        maxout: pieces per maxout unit (1 disables maxout). Default 2.
        dropout: element-wise dropout probability in [0, 1) before the output layer. Default 0.

    Raises:
        ValueError: on an invalid argument; the message names the argument.
    """

    #: side of the square patch one prediction depends on (the receptive field).
    patch_size: int = PATCH_SIZE

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 4,
        out_channels: int = 3,
        local_features: Sequence[int] = (64, 64),
        global_features: int = 160,
        maxout: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c_in, c_out, local, glob, pieces, p = _validate(
            spatial_dims, in_channels, out_channels, local_features, global_features, maxout, dropout
        )
        self.spatial_dims = 2
        self.in_channels = c_in
        self.out_channels = c_out
        self.local_features = local
        self.global_features = glob
        self.maxout = pieces
        self.dropout = p

        self.local_conv1 = _MaxoutConv(c_in, local[0], 7, pieces)
        self.local_pool1 = nn.MaxPool2d(kernel_size=4, stride=1)
        self.local_conv2 = _MaxoutConv(local[0], local[1], 3, pieces)
        self.local_pool2 = nn.MaxPool2d(kernel_size=2, stride=1)
        self.global_conv = _MaxoutConv(c_in, glob, 13, pieces)
        self.output_dropout = nn.Dropout(p) if p > 0.0 else nn.Identity()
        #: the output layer (21×21 convolution to out_channels), for two-phase training.
        self.output_layer = nn.Conv2d(local[1] + glob, c_out, kernel_size=21)

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """The unpadded network: (N, C, H, W) -> (N, out_channels, H - 32, W - 32); a 33×33 patch gives the
        paper's patch-wise prediction for its centre pixel."""
        local = self.local_pool2(self.local_conv2(self.local_pool1(self.local_conv1(x))))
        features = torch.cat([local, self.global_conv(x)], dim=1)
        return self.output_layer(self.output_dropout(features))

    def forward_2d(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_channels, H, W) to logits (N, out_channels, H, W)."""
        half = self.patch_size // 2
        return self.forward_valid(F.pad(x, (half, half, half, half)))


class InputCascadeCNN(SliceWise2D):
    """InputCascadeCNN of Havaei et al. (Medical Image Analysis 2017), evaluated densely at every pixel.

    Two :class:`TwoPathwayCNN` with the same widths: :attr:`first` maps the ``in_channels`` input to
    ``out_channels`` logits at every pixel; its class probabilities (``first_activation`` of the logits) are
    concatenated to the input, and :attr:`second` maps the ``in_channels + out_channels`` channels to the
    output logits. In the paper the first network sees a 65×65 patch and produces a 33×33 probability map,
    concatenated to the centre 33×33 patch for the second network; densely, every output pixel is exactly that
    prediction for the 65×65 patch centred on it, where that patch lies inside the image (outside, the first
    network sees zero padding, and its probabilities are zero-padded for the second network).

    The paper trains the first network alone, then the cascade with the first network fixed; here the cascade
    is trained end to end unless the caller freezes :attr:`first` (e.g. ``first.requires_grad_(False)``).
    The output layer for two-phase training (:attr:`output_layer`) is the second network's.

    Inputs: (B, in_channels, H, W) or (B, in_channels, H, W, D) (slice by slice along the last axis).

    Args:
        spatial_dims: must be 2.
        in_channels: number of input channels (MRI sequences), >= 1. Default 4.
        out_channels: number of output channels, >= 1. Default 3.
        local_features, global_features, maxout, dropout: as for :class:`TwoPathwayCNN`, for both networks.
        first_activation: how the first network's logits become the probabilities passed on:
            ``"sigmoid"`` (default; per channel, for the tumour bundle's overlapping regions TC/WT/ET) or
            ``"softmax"`` (over the channels, for mutually exclusive classes as in the paper).

    Raises:
        ValueError: on an invalid argument; the message names the argument.
    """

    #: side of the square patch one prediction depends on (the cascade's receptive field).
    patch_size: int = 2 * PATCH_SIZE - 1

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 4,
        out_channels: int = 3,
        local_features: Sequence[int] = (64, 64),
        global_features: int = 160,
        maxout: int = 2,
        dropout: float = 0.0,
        first_activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        c_in, c_out, local, glob, pieces, p = _validate(
            spatial_dims, in_channels, out_channels, local_features, global_features, maxout, dropout
        )
        if first_activation not in _ACTIVATIONS:
            raise ValueError(f"first_activation must be one of {_ACTIVATIONS}, got {first_activation!r}.")
        self.spatial_dims = 2
        self.in_channels = c_in
        self.out_channels = c_out
        self.first_activation = first_activation
        self.first = TwoPathwayCNN(2, c_in, c_out, local, glob, pieces, p)
        self.second = TwoPathwayCNN(2, c_in + c_out, c_out, local, glob, pieces, p)

    @property
    def output_layer(self) -> nn.Module:
        """The second network's output layer, for two-phase training."""
        return self.second.output_layer

    def first_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The first network's class probabilities for (N, in_channels, H, W): (N, out_channels, H, W)."""
        logits = self.first.forward_2d(x)
        return torch.sigmoid(logits) if self.first_activation == "sigmoid" else torch.softmax(logits, dim=1)

    def forward_2d(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_channels, H, W) to logits (N, out_channels, H, W)."""
        return self.second.forward_2d(torch.cat([x, self.first_probabilities(x)], dim=1))
