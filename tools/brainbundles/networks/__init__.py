"""Segmentation networks for the brainbundles bundles.

All networks follow MONAI's signature convention (``spatial_dims, in_channels, out_channels, features, dropout,
act, norm, ...``), return raw logits of shape (B, out_channels, *spatial) and accept 2D or 3D inputs whose
spatial sizes are divisible by ``2 ** (len(features) - 1)``.

- :class:`UNetIN`: one-convolution-per-level U-Net with summation skips and instance normalisation
  (IBSR18 brain tissue study, Gómez, Vaca, Tascón, 2020).
- :class:`VNet`: V-Net (Milletari, Navab, Ahmadi, 2016).
- :class:`ResUNet`: NeuroNet-like residual U-Net (Rajchl et al., 2018).
"""

from .resunet import ResUNet
from .unet_in import UNetIN
from .vnet import VNet

__all__ = ["ResUNet", "UNetIN", "VNet"]
