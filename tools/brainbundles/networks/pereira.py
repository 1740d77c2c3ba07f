"""Pereira et al.'s deep 2D CNN with small kernels for brain tumour segmentation, made dense and same-size.

References:
    - Pereira, Pinto, Alves, Silva (2016), "Brain tumor segmentation using convolutional neural networks in
      MRI images", IEEE Transactions on Medical Imaging 35(5):1240-1251 (the HGG architecture).
    - Dense evaluation of a strided patch classifier by dilated ("à trous") convolutions: Giusti, Cireşan,
      Masci, Gambardella, Schmidhuber (2013), "Fast image scanning with deep max-pooling convolutional neural
      networks", ICIP; Li, Zhao, Wei, Wang (2014), "Highly efficient forward and backward propagation of
      convolutional neural networks for pixelwise classification", arXiv:1412.4526.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_act, check_dropout, check_int, check_int_sequence, check_spatial_dims
from ._common import ActType, make_act
from ._slicewise import SliceWise2D

__all__ = ["PereiraCNN"]


class PereiraCNN(SliceWise2D):
    """The HGG network of Pereira et al. (IEEE TMI 2016), evaluated densely at every pixel.

    The patch classifier (33×33 input patch, all MRI sequences as channels; widths in brackets):

    - three 3×3 convolutions with ``features[0]`` [64] maps -> 3×3 max-pooling, stride 2;
    - three 3×3 convolutions with ``features[1]`` [128] maps -> 3×3 max-pooling, stride 2;
    - fully connected layers of ``fc_features`` [256, 256] units, then a fully connected output layer
      (:attr:`output_layer`) with ``out_channels`` units: the prediction for the patch centre;
    - leaky ReLU (slope 0.333) after every convolution and hidden FC layer; element-wise ``dropout`` (the
      paper: 0.1) on the outputs of the hidden FC layers;
    - Xavier (Glorot) uniform initialisation of the weights, as in the paper, and zero biases.

    Dense evaluation: the input is zero-padded by 16 pixels on every side and every convolution is valid;
    the stride-2 poolings become stride-1 poolings and every layer after a pooling is dilated by the
    accumulated stride (dilation 2 after the first pooling, 4 after the second); the first FC layer becomes a
    3×3 convolution with dilation 4 and the others 1×1 convolutions. The output has the input's size and the
    logit at every pixel is exactly the strided patch classifier's prediction for the 33×33 patch centred on
    it (zero outside the image), at the cost of computing every layer at full resolution.

    Deviation from the paper: the paper's convolutions are zero-padded ('same': 33 -> 16 -> 7 after the
    poolings, a 7×7×128 = 6272-unit input to the first FC layer); zero padding inside the patch depends on
    the patch's position and cannot be evaluated densely, so the convolutions here are valid
    (33 -> 27 -> 13 -> 7 -> 3, a 3×3×128 = 1152-unit first FC input) and the receptive field is exactly the
    33×33 patch. ``forward`` returns raw logits (the paper applies a softmax).

    Inputs: (B, in_channels, H, W), or (B, in_channels, H, W, D) processed slice by slice along the last
    axis; any H, W >= 1.

    Args:
        spatial_dims: must be 2 (a 2D network; 3D volumes are processed slice by slice).
        in_channels: number of input channels (MRI sequences), >= 1. Default 4.
        out_channels: number of output channels, >= 1. Default 3 (the paper: 5 classes).
        features: maps of the three convolutions before and after the first pooling. Default (64, 128).
        fc_features: units of the hidden fully connected layers, at least one. Default (256, 256).
        dropout: element-wise dropout probability in [0, 1) of the hidden FC layers (the paper: 0.1).
            Default 0.
        act: activation, MONAI ``get_act_layer`` spec. Default ``("leakyrelu", {"negative_slope": 0.333})``.

    Raises:
        ValueError: on an invalid argument; the message names the argument.
    """

    #: side of the square patch one prediction depends on (the receptive field).
    patch_size: int = 33
    #: convolutions per block, as in the paper.
    convs_per_block: int = 3

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 4,
        out_channels: int = 3,
        features: Sequence[int] = (64, 128),
        fc_features: Sequence[int] = (256, 256),
        dropout: float = 0.0,
        act: ActType = ("leakyrelu", {"negative_slope": 0.333}),
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, allowed=(2,))
        c_in = check_int("in_channels", in_channels)
        c_out = check_int("out_channels", out_channels)
        feats = check_int_sequence("features", features, min_len=2)
        if len(feats) != 2:
            raise ValueError(f"features must have exactly 2 entries (one per pooling block), got {feats!r}.")
        fc_feats = check_int_sequence("fc_features", fc_features, min_len=1)
        p = check_dropout(dropout)
        check_act(act)
        self.spatial_dims = 2
        self.in_channels = c_in
        self.out_channels = c_out
        self.features = feats
        self.fc_features = fc_feats
        self.dropout = p

        layers: list[nn.Module] = []
        c = c_in
        for f, dilation in zip(feats, (1, 2), strict=True):  # dilation = the stride accumulated so far
            for _ in range(self.convs_per_block):
                layers += [nn.Conv2d(c, f, kernel_size=3, dilation=dilation), make_act(act)]
                c = f
            layers.append(nn.MaxPool2d(kernel_size=3, stride=1, dilation=dilation))
        self.features_2d = nn.Sequential(*layers)

        fc: list[nn.Module] = []
        for i, f in enumerate(fc_feats):
            conv = nn.Conv2d(c, f, kernel_size=3, dilation=4) if i == 0 else nn.Conv2d(c, f, kernel_size=1)
            fc += [conv, make_act(act)]
            if p > 0.0:
                fc.append(nn.Dropout(p))
            c = f
        self.fc = nn.Sequential(*fc)
        #: the output layer (1×1 convolution to out_channels, the last FC layer), for two-phase training.
        self.output_layer = nn.Conv2d(c, c_out, kernel_size=1)

        # Xavier's scheme (Glorot & Bengio, 2010), as in the paper; PyTorch's default (weight variance
        # 1 / (3 fan_in)) shrinks the signal at each of the nine layers.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_2d(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_channels, H, W) to logits (N, out_channels, H, W)."""
        half = self.patch_size // 2
        return self.output_layer(self.fc(self.features_2d(F.pad(x, (half, half, half, half)))))
