"""Transforms shared by every bundle: intensity standardisation, channel arrangement and sequence
dropout, label conventions and regions, and native-space writing."""

import torch

from brainbundles.transforms.channels import ArrangeChannelsd, RandDropChannelsd
from brainbundles.transforms.grids import DeferOtherGridsd, ResampleDeferredd
from brainbundles.transforms.intensity import (
    DEFAULT_PERCENTILES,
    NyulStandardize,
    NyulStandardized,
    ensure_nyul_landmarks,
    fit_nyul_landmarks,
    image_landmarks,
    load_landmarks,
    save_landmarks,
)
from brainbundles.transforms.io import (
    SaveSegmentationd,
    case_complete,
    collect_volumes,
    label_lesion_counts,
    label_volumes_ml,
    pending_cases,
)
from brainbundles.transforms.labels import (
    ConvertLabelConventiond,
    IgnoreLabeld,
    LabelArgmaxd,
    LabelToRegionsd,
    RegionsToLabeld,
    label_argmax,
    regions_to_label,
)
from brainbundles.transforms.spatial import (
    SPATIAL_FEATURES,
    AppendChannelsd,
    SpatialFeaturesd,
    spatial_features,
    ventricle_mask,
)


def nonzero(x):
    """Foreground selector for ``CropForegroundd``: the non-zero voxels of a skull-stripped scan (a
    z-scored brain has negative voxels too, so MONAI's default ``x > 0`` would cut into it)."""
    return x != 0


def _everything(x):
    return torch.ones_like(x, dtype=torch.bool)


def brain_selector(crop_to_brain: bool = True):
    """``select_fn`` for ``CropForegroundd``: :func:`nonzero` (crop to the brain, the fast path), or with
    ``crop_to_brain=False`` the whole volume (no crop: the plain path the benchmarks compare against)."""
    return nonzero if crop_to_brain else _everything


__all__ = [
    "AppendChannelsd",
    "ArrangeChannelsd",
    "DeferOtherGridsd",
    "IgnoreLabeld",
    "LabelArgmaxd",
    "ResampleDeferredd",
    "SPATIAL_FEATURES",
    "SpatialFeaturesd",
    "spatial_features",
    "ventricle_mask",
    "brain_selector",
    "ConvertLabelConventiond",
    "LabelToRegionsd",
    "RandDropChannelsd",
    "RegionsToLabeld",
    "label_argmax",
    "regions_to_label",
    "DEFAULT_PERCENTILES",
    "NyulStandardize",
    "NyulStandardized",
    "SaveSegmentationd",
    "case_complete",
    "collect_volumes",
    "pending_cases",
    "ensure_nyul_landmarks",
    "fit_nyul_landmarks",
    "image_landmarks",
    "label_lesion_counts",
    "label_volumes_ml",
    "load_landmarks",
    "nonzero",
    "save_landmarks",
]
