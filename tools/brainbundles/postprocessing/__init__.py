"""Post-processing of segmentations: connected components, small-lesion removal, tumour clean-up, a
lesion probability threshold tuned on the validation fold, a dense 3D CRF on the probabilities, and
voxel-wise uncertainty maps."""

from brainbundles.postprocessing.components import (
    RemoveSmallLesionsd,
    TumourPostprocessd,
    remove_small_components,
    voxel_volume_mm3,
)
from brainbundles.postprocessing.crf import CRFd, dense_crf
from brainbundles.postprocessing.threshold import (
    DEFAULT_THRESHOLDS,
    LesionThresholdd,
    load_threshold,
    threshold_dice,
    tune_lesion_threshold,
)
from brainbundles.postprocessing.uncertainty import UncertaintyMapd, normalized_entropy, uncertainty_summary

__all__ = [
    "CRFd",
    "DEFAULT_THRESHOLDS",
    "LesionThresholdd",
    "RemoveSmallLesionsd",
    "TumourPostprocessd",
    "UncertaintyMapd",
    "dense_crf",
    "load_threshold",
    "normalized_entropy",
    "remove_small_components",
    "threshold_dice",
    "tune_lesion_threshold",
    "uncertainty_summary",
    "voxel_volume_mm3",
]
