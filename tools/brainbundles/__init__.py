"""brainbundles: MONAI bundles for brain MRI segmentation and the shared code they use.

Importing the package imports its sub-packages, so a bundle config needs only ``$import brainbundles``.
"""

__version__ = "0.1.0"

from brainbundles import (  # noqa: E402
    bundle,
    data,
    distributed,
    handlers,
    inference,
    losses,
    metrics,
    networks,
    postprocessing,
    transforms,
)

__all__ = [
    "bundle",
    "data",
    "distributed",
    "handlers",
    "inference",
    "losses",
    "metrics",
    "networks",
    "postprocessing",
    "transforms",
    "__version__",
]
