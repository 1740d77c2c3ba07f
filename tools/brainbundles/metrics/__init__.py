"""Segmentation metrics (Dice, HD95, AVD, volumes) and evaluation reports.

See :mod:`brainbundles.metrics.distance` for the HD95 definition and
:mod:`brainbundles.metrics.report` for the report formats and the
empty-mask/NaN conventions.
"""

from .distance import HD95Method, hd95, surface_distances
from .items import evaluate_items
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
    "METRICS",
    "CaseMetrics",
    "HD95Method",
    "LabelSpec",
    "Summary",
    "avd",
    "dice",
    "evaluate_case",
    "evaluate_files",
    "evaluate_folder",
    "evaluate_items",
    "hd95",
    "summarize",
    "surface_distances",
    "volume_ml",
    "write_report",
]
