"""Segmentation networks for the brainbundles bundles.

All networks follow MONAI's signature convention (``spatial_dims, in_channels, out_channels, ...``, with
``dropout`` for any dropout probability and MONAI ``act``/``norm`` specs where they apply) and return raw
logits of shape (B, out_channels, *spatial) with the input's spatial size.

U-Nets, for 2D or 3D inputs whose spatial sizes are divisible by ``divisor``:

- :class:`UNetIN`: one-convolution-per-level U-Net with summation skips and instance normalisation
  (IBSR18 brain tissue study, Gómez, Vaca, Tascón, 2020).
- :class:`VNet`: V-Net (Milletari, Navab, Ahmadi, 2016).
- :class:`ResUNet`: NeuroNet-like residual U-Net (Rajchl et al., 2018).
- :class:`SegResNet`: MONAI's SegResNet (Myronenko, BrainLes 2018), the brain tumour bundle's default.

Brain tumour (BraTS) networks from the literature, for any input size:

- :class:`DeepMedic`: dual-pathway 3D CNN with a subsampled context pathway and residual connections
  (Kamnitsas et al., Medical Image Analysis 2017), with 'same' padding.
- :class:`TwoPathwayCNN` and :class:`InputCascadeCNN`: Havaei et al.'s 2D two-pathway CNN and its input
  cascade (Medical Image Analysis 2017), evaluated densely.
- :class:`PereiraCNN`: Pereira et al.'s deep 2D CNN with 3×3 kernels (IEEE TMI 2016), evaluated densely.
- :class:`HeMIS`: hetero-modal segmentation, robust to missing sequences (Havaei et al., MICCAI 2016).

White-matter hyperintensity networks from the literature, for any input size:

- :class:`LocationSensitiveCNN`: Ghafoorian et al.'s multi-scale 2D CNN with explicit spatial (location)
  features as extra input channels (Scientific Reports 2017), evaluated densely.

Multiple sclerosis lesion networks from the literature, for any input size:

- :class:`BroschCEN`: Brosch et al.'s 3D convolutional encoder network with a shortcut from the first
  convolution to the last deconvolution layer (IEEE TMI 2016), with 'same' padding; trained in the paper
  with :class:`brainbundles.losses.SensitivitySpecificityLoss`.

The 2D networks (:class:`TwoPathwayCNN`, :class:`InputCascadeCNN`, :class:`PereiraCNN`,
:class:`LocationSensitiveCNN`) also take 5D input (B, C, H, W, D), processed slice by slice along the last
axis, so they run inside the 3D bundle pipelines. :class:`SegResNet` and the networks of the last three
groups expose their final layer as ``output_layer``;
:func:`output_layer_parameters` returns its parameters for two-phase training (Havaei et al., 2017).
"""

from ._output_layer import output_layer_parameters
from .brosch import BroschCEN
from .deepmedic import DeepMedic
from .havaei import InputCascadeCNN, TwoPathwayCNN
from .hemis import HeMIS
from .location_sensitive import LocationSensitiveCNN
from .pereira import PereiraCNN
from .resunet import ResUNet
from .segresnet import SegResNet
from .unet_in import UNetIN
from .vnet import VNet

__all__ = [
    "BroschCEN",
    "DeepMedic",
    "HeMIS",
    "InputCascadeCNN",
    "LocationSensitiveCNN",
    "PereiraCNN",
    "ResUNet",
    "SegResNet",
    "TwoPathwayCNN",
    "UNetIN",
    "VNet",
    "output_layer_parameters",
]
