"""Segmentation metrics (Dice, HD95, AVD, volumes) and evaluation reports.

See :mod:`brainbundles.metrics.distance` for the HD95 definition,
:mod:`brainbundles.metrics.report` for the report formats and the
empty-mask/NaN conventions, :mod:`brainbundles.metrics.brats` for the
BraTS region and BraTS 2023 lesion-wise metrics, and :mod:`brainbundles.metrics.lesions` for the
WMH challenge metrics and lesion-wise detection (LTPR/LPPV/F1).
"""

from .brats import (
    BRATS_CHALLENGE_PARAMETERS,
    BRATS_MAX_DISTANCE,
    BRATS_METRICS,
    BratsHD95Method,
    LesionScore,
    LesionWiseScores,
    brats_hd95,
    evaluate_brats_arrays,
    evaluate_brats_case,
    evaluate_brats_items,
    lesionwise_scores,
)
from .distance import HD95Method, hd95, surface_distances
from .items import evaluate_items
from .lesions import WMH_METRICS, evaluate_lesion_arrays, evaluate_lesion_items, lesion_detection, wmh_hd95
from .overlap import avd, dice, volume_ml
from .report import (
    METRICS,
    CaseMetrics,
    LabelSpec,
    Summary,
    evaluate_case,
    evaluate_files,
    evaluate_folder,
    summarize,
    write_report,
)

__all__ = [
    "BRATS_CHALLENGE_PARAMETERS",
    "BRATS_MAX_DISTANCE",
    "BRATS_METRICS",
    "METRICS",
    "WMH_METRICS",
    "BratsHD95Method",
    "CaseMetrics",
    "HD95Method",
    "LabelSpec",
    "LesionScore",
    "LesionWiseScores",
    "Summary",
    "avd",
    "brats_hd95",
    "dice",
    "evaluate_brats_arrays",
    "evaluate_brats_case",
    "evaluate_brats_items",
    "evaluate_case",
    "evaluate_files",
    "evaluate_folder",
    "evaluate_items",
    "evaluate_lesion_arrays",
    "evaluate_lesion_items",
    "hd95",
    "lesion_detection",
    "lesionwise_scores",
    "summarize",
    "surface_distances",
    "volume_ml",
    "wmh_hd95",
    "write_report",
]
