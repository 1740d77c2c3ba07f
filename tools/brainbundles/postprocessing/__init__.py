"""Post-processing of segmentations: connected components, small-lesion removal, tumour clean-up, and a
lesion probability threshold tuned on the validation fold."""

from brainbundles.postprocessing.components import (
    RemoveSmallLesionsd,
    TumourPostprocessd,
    remove_small_components,
    voxel_volume_mm3,
)
from brainbundles.postprocessing.threshold import (
    DEFAULT_THRESHOLDS,
    LesionThresholdd,
    load_threshold,
    threshold_dice,
    tune_lesion_threshold,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "LesionThresholdd",
    "RemoveSmallLesionsd",
    "TumourPostprocessd",
    "load_threshold",
    "remove_small_components",
    "threshold_dice",
    "tune_lesion_threshold",
    "voxel_volume_mm3",
]
