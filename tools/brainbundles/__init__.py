"""brainbundles: MONAI bundles for brain MRI segmentation and the shared code they use.

Importing the package imports its sub-packages, so a bundle config needs only ``$import brainbundles``.
"""

__version__ = "0.1.0"

from brainbundles import data, distributed, handlers, metrics, networks, postprocessing, transforms  # noqa: E402

__all__ = [
    "data",
    "distributed",
    "handlers",
    "metrics",
    "networks",
    "postprocessing",
    "transforms",
    "__version__",
]
