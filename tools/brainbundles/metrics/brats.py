"""BraTS evaluation: region Dice/HD95 and the BraTS 2023 lesion-wise Dice/HD95 for WT, TC and ET.

Regions
-------
Label maps are first mapped to the internal numbering (0 background, 1 necrosis / NETC, 2 edema / SNFH,
3 enhancing; :mod:`brainbundles.data.labels`), then split into the BraTS regions of
:data:`brainbundles.data.labels.BRATS_REGIONS`: whole tumour WT = {1, 2, 3}, tumour core TC = {1, 3},
enhancing tumour ET = {3}.

Region ("legacy") metrics
-------------------------
* ``dice``: :func:`brainbundles.metrics.dice` (both empty → 1, one empty → 0), as the BraTS 2023
  script's ``full_dice``.
* ``hd95`` in mm: both empty → 0; exactly one empty → :data:`BRATS_MAX_DISTANCE`; otherwise the
  95th-percentile Hausdorff distance chosen by ``hd95_method`` (below).

Maximum distance
----------------
The BraTS 2023 script replaces every infinite HD95 (one mask empty, a missed lesion) and every false
positive lesion by **374** mm (``metric_df.replace(np.inf, 374)``, ``len(fp) * 374`` in
``get_LesionWiseResults``), so :data:`BRATS_MAX_DISTANCE` is ``374.0``. The often quoted 373.12866 mm
is the diagonal of a 240 × 240 × 155 1-mm BraTS volume, ``sqrt(240² + 240² + 155²)``, used in the
evaluation code of several BraTS papers, not by the 2023 script; pass ``max_distance=373.12866`` to
reproduce those.

HD95 definitions (``hd95_method``)
----------------------------------
* ``"surfel"`` (default): what the BraTS 2023 script computes, DeepMind ``surface-distance``
  ``compute_surface_distances`` + ``compute_robust_hausdorff(…, 95)``: surface elements on the voxel
  corner grid (2×2×2 neighbourhood codes), each weighted by its area in mm² for the given spacing; per
  direction the smallest distance whose cumulative area fraction reaches 95 % (no interpolation); the
  larger of the two directions. The area table comes from MONAI's port of the DeepMind tables
  (``monai.metrics.utils.get_code_to_measure_table``; MONAI is imported on first use). It reproduces
  ``surface_distance`` 0.1 (PyPI) exactly (``tests/metrics/test_metrics_brats.py``: stored values from
  ``crosscheck_lesionwise.py``, and live when ``surface_distance`` is installed).
* ``"max"`` / ``"pooled"``: :func:`brainbundles.metrics.hd95` with that method (voxel surfaces, no area
  weights, interpolated percentiles; ``"pooled"`` is MedPy's and panoptica's HD95). These differ from
  ``"surfel"`` by up to about one voxel (up to 1 mm on the 1-mm reference cases of the tests).

BraTS 2023 lesion-wise Dice and HD95 (:func:`lesionwise_scores`)
----------------------------------------------------------------
Source: the official BraTS 2023 metrics code, github.com/rachitsaluja/BraTS-2023-Metrics,
``eval.py`` (``get_LesionWiseScores``, ``get_GTseg_combinedByDilation``, ``get_LesionWiseResults``) and
its later refactoring ``brats_2023_metrics/surface_distance/brats_metrics.py`` (``get_lesion_wise_score``,
``get_lesion_wise_results``, ``get_challenge_parameters``), which compute the same thing. Per region:

1. Components: predicted and reference masks are split into 26-connected components (``cc3d``
   ``connectivity=26`` there; ``scipy.ndimage.label`` with a 3×3×3 structure here).
2. GT lesions merged by dilation: the whole reference mask is dilated ``dilation_factor`` times with
   ``generate_binary_structure(3, 2)`` (18-connectivity); the 26-connected components of that dilation
   define the lesions: each lesion is the set of reference voxels inside one dilated component, so
   reference components whose dilations touch or overlap become one lesion.
3. Matching: each lesion is dilated again (same structure, ``dilation_factor`` iterations); every
   predicted component that intersects the dilated lesion is matched to it (a component may be
   matched to several lesions). The lesion's prediction is the union of its matched components
   (whole components, including parts outside the dilated lesion).
4. Per lesion: Dice of (lesion, its prediction) (0 if nothing matched) and HD95 (``hd95_method``;
   nothing matched → :data:`BRATS_MAX_DISTANCE`), and the lesion volume ``n_voxels · prod(spacing)``
   in mm³.
5. False positives: predicted components matched to no lesion at all (a component matched only to an
   ignored small lesion is *not* a false positive).
6. Lesions with volume ``<= volume_threshold`` mm³ are ignored (neither counted as TP nor FN).
7. Lesion-wise Dice = ``sum(lesion Dice) / (n_lesions + n_fp)``; lesion-wise HD95 =
   ``(sum(lesion HD95) + n_fp · BRATS_MAX_DISTANCE) / (n_lesions + n_fp)``, sums over the counted
   lesions. When the denominator is 0 (no counted lesion and no false positive, e.g. both masks
   empty) the script's NaN is replaced by Dice 1 and HD95 0.

Parameters per BraTS 2023 sub-challenge (``get_challenge_parameters``), see
:data:`BRATS_CHALLENGE_PARAMETERS`: GLI, SSA, PED dilation 3 / threshold 50; MEN 1 / 50; MET 1 / 2.
The defaults here are the glioma ones (3, 50 mm³, i.e. 50 voxels at 1 mm).

Differences from the script, none of which changes a value on 1-mm data: volumes and thresholds use
float64 spacing (the script multiplies the header's float32 zooms); only 3-D masks are supported
(like the script).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from brainbundles.data.labels import BRATS_REGIONS, to_internal

from ._common import as_mask_pair, as_spacing, prediction_files
from .distance import HD95Method, hd95
from .overlap import dice, volume_ml
from .report import CaseMetrics, load_label_pair, summarize, write_report

__all__ = [
    "BRATS_CHALLENGE_PARAMETERS",
    "BRATS_MAX_DISTANCE",
    "BRATS_METRICS",
    "BratsHD95Method",
    "LesionScore",
    "LesionWiseScores",
    "brats_hd95",
    "evaluate_brats_arrays",
    "evaluate_brats_case",
    "evaluate_brats_items",
    "lesionwise_scores",
]

BRATS_MAX_DISTANCE: float = 374.0
"""HD95 (mm) of a missed lesion, a false positive or an empty-vs-non-empty region (BraTS 2023 code)."""

BRATS_CHALLENGE_PARAMETERS: dict[str, tuple[int, float]] = {
    "BraTS-GLI": (3, 50.0),
    "BraTS-SSA": (3, 50.0),
    "BraTS-MEN": (1, 50.0),
    "BraTS-PED": (3, 50.0),
    "BraTS-MET": (1, 2.0),
}
"""Sub-challenge → ``(dilation_factor, volume_threshold in mm³)`` of the BraTS 2023 lesion-wise metrics."""

BRATS_METRICS: tuple[str, ...] = ("dice", "hd95", "lesion_dice", "lesion_hd95", "vol_pred_ml", "vol_ref_ml")
"""Metric names produced for each BraTS region, in report column order."""

BratsHD95Method = HD95Method
"""``"surfel"`` (default here): DeepMind surface-distance as in the BraTS 2023 code; see :func:`~brainbundles.metrics.hd95`."""

_HD95_METHODS = ("surfel", "max", "pooled")
_CC_STRUCTURE = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity
_DILATION_STRUCTURE = ndimage.generate_binary_structure(3, 2)  # 18-connectivity, as the BraTS 2023 code


# --------------------------------------------------------------------------- HD95


def _check_method(method: str) -> None:
    if method not in _HD95_METHODS:
        raise ValueError(f"hd95_method must be one of {_HD95_METHODS}, got {method!r}")


def _hd95_or_max(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], method: str, max_distance: float
) -> float:
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 0.0
    if has_pred != has_ref:
        return float(max_distance)
    return hd95(pred, ref, spacing, method=method)  # type: ignore[arg-type]


def brats_hd95(
    pred_mask: ArrayLike,
    ref_mask: ArrayLike,
    spacing: float | Sequence[float] | np.ndarray,
    *,
    method: BratsHD95Method = "surfel",
    max_distance: float = BRATS_MAX_DISTANCE,
) -> float:
    """HD95 in mm with the BraTS empty-mask conventions.

    Args:
        pred_mask: predicted binary mask.
        ref_mask: reference binary mask, same shape.
        spacing: voxel size in mm per axis (a scalar means isotropic).
        method: ``"surfel"`` (BraTS 2023 code: DeepMind surface-distance, area-weighted), ``"max"`` or
            ``"pooled"`` (:func:`brainbundles.metrics.hd95`); see the module docstring.
        max_distance: value for exactly one empty mask.

    Returns:
        Both empty → ``0.0``; exactly one empty → ``max_distance``; else the HD95.
    """
    _check_method(method)
    pred, ref = as_mask_pair(pred_mask, ref_mask)
    sp = as_spacing(spacing, pred.ndim)
    return _hd95_or_max(pred, ref, sp, method, max_distance)


# --------------------------------------------------------------------------- lesion-wise


@dataclass(frozen=True)
class LesionScore:
    """One reference lesion (after merging by dilation) of :func:`lesionwise_scores`."""

    volume_mm3: float
    n_matched: int
    """Number of predicted components matched to the lesion (0: missed)."""
    dice: float
    hd95: float
    counted: bool
    """False when the lesion is at most ``volume_threshold`` mm³ and therefore ignored."""


@dataclass(frozen=True)
class LesionWiseScores:
    """BraTS 2023 lesion-wise result for one region of one case."""

    dice: float
    hd95: float
    n_tp: int
    """Counted lesions with at least one matched predicted component."""
    n_fn: int
    """Counted lesions with no matched predicted component."""
    n_fp: int
    """Predicted components matched to no lesion (ignored small lesions included)."""
    lesions: tuple[LesionScore, ...]


def _grow(box: tuple[slice, ...], margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape, strict=True)
    )


def _union_boxes(boxes: Sequence[tuple[slice, ...]]) -> tuple[slice, ...]:
    return tuple(
        slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(len(boxes[0]))
    )


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    if iterations == 0:
        return mask.copy()
    return ndimage.binary_dilation(mask, structure=_DILATION_STRUCTURE, iterations=iterations)


def lesionwise_scores(
    pred_mask: ArrayLike,
    ref_mask: ArrayLike,
    spacing: float | Sequence[float] | np.ndarray,
    *,
    dilation_factor: int = 3,
    volume_threshold: float = 50.0,
    hd95_method: BratsHD95Method = "surfel",
    max_distance: float = BRATS_MAX_DISTANCE,
) -> LesionWiseScores:
    """BraTS 2023 lesion-wise Dice and HD95 of one binary region (rules in the module docstring).

    Args:
        pred_mask: predicted binary 3-D mask.
        ref_mask: reference binary 3-D mask, same shape.
        spacing: voxel size in mm per axis (a scalar means isotropic).
        dilation_factor: dilation iterations for merging and matching lesions (BraTS-GLI: 3);
            0 disables the dilation (lesions are the plain components, matched by overlap).
        volume_threshold: lesions of at most this volume in mm³ are ignored (BraTS-GLI: 50).
        hd95_method: see :func:`brats_hd95`.
        max_distance: HD95 of a missed lesion and of a false positive.

    Returns:
        :class:`LesionWiseScores`; ``dice``/``hd95`` are the lesion-wise scores.
    """
    _check_method(hd95_method)
    pred, ref = as_mask_pair(pred_mask, ref_mask)
    if pred.ndim != 3:
        raise ValueError(f"lesion-wise metrics need 3-D masks, got {pred.ndim}-D")
    if (
        isinstance(dilation_factor, bool)
        or not isinstance(dilation_factor, int | np.integer)
        or dilation_factor < 0
    ):
        raise ValueError(f"dilation_factor must be a non-negative integer, got {dilation_factor!r}")
    sp = as_spacing(spacing, pred.ndim)
    voxel_mm3 = float(np.prod(sp))
    iterations = int(dilation_factor)

    pred_lab, n_pred = ndimage.label(pred, structure=_CC_STRUCTURE)
    dilated_lab, n_lesions = ndimage.label(_dilate(ref, iterations), structure=_CC_STRUCTURE)
    lesion_lab = np.where(ref, dilated_lab, 0)
    lesion_boxes = ndimage.find_objects(lesion_lab, max_label=n_lesions)
    pred_boxes = ndimage.find_objects(pred_lab, max_label=n_pred)

    matched_any: set[int] = set()
    lesions: list[LesionScore] = []
    for lesion_id, lesion_box in enumerate(lesion_boxes, start=1):
        if lesion_box is None:  # cannot happen: every dilated component contains reference voxels
            continue
        box = _grow(lesion_box, iterations, ref.shape)
        lesion_dilated = _dilate(lesion_lab[box] == lesion_id, iterations)
        matched = np.unique(pred_lab[box][lesion_dilated])
        matched = matched[matched != 0]
        matched_any.update(int(m) for m in matched)
        eval_box = _union_boxes([lesion_box, *(pred_boxes[int(m) - 1] for m in matched)])
        lesion = lesion_lab[eval_box] == lesion_id
        lesion_pred = np.isin(pred_lab[eval_box], matched)
        volume = int(np.count_nonzero(lesion)) * voxel_mm3
        lesions.append(
            LesionScore(
                volume_mm3=volume,
                n_matched=int(matched.size),
                dice=dice(lesion_pred, lesion),
                hd95=_hd95_or_max(lesion_pred, lesion, sp, hd95_method, max_distance),
                counted=volume > volume_threshold,
            )
        )

    n_fp = n_pred - len(matched_any)
    counted = [les for les in lesions if les.counted]
    denominator = len(counted) + n_fp
    if denominator == 0:
        lw_dice, lw_hd95 = 1.0, 0.0
    else:
        lw_dice = sum(les.dice for les in counted) / denominator
        lw_hd95 = (sum(les.hd95 for les in counted) + n_fp * float(max_distance)) / denominator
    n_tp = sum(1 for les in counted if les.n_matched > 0)
    return LesionWiseScores(
        dice=float(lw_dice),
        hd95=float(lw_hd95),
        n_tp=n_tp,
        n_fn=len(counted) - n_tp,
        n_fp=n_fp,
        lesions=tuple(lesions),
    )


# --------------------------------------------------------------------------- cases and reports


def evaluate_brats_arrays(
    pred: ArrayLike,
    ref: ArrayLike,
    spacing: float | Sequence[float] | np.ndarray,
    *,
    pred_convention: str = "brats2023",
    ref_convention: str = "brats2023",
    dilation_factor: int = 3,
    volume_threshold: float = 50.0,
    hd95_method: BratsHD95Method = "surfel",
    max_distance: float = BRATS_MAX_DISTANCE,
) -> CaseMetrics:
    """BraTS metrics of one case given as label arrays.

    Args:
        pred: predicted label map in ``pred_convention`` (see :mod:`brainbundles.data.labels`).
        ref: reference label map in ``ref_convention``, same shape.
        spacing: voxel size in mm per axis.
        pred_convention: label convention of ``pred`` (``"brats2019"``, ``"brats2023"``, ``"msd_task01"``).
        ref_convention: label convention of ``ref``.
        dilation_factor, volume_threshold, hd95_method, max_distance: see :func:`lesionwise_scores`.

    Returns:
        ``{"WT"|"TC"|"ET": {metric: value}}`` with the metrics of :data:`BRATS_METRICS`.
    """
    _check_method(hd95_method)
    pred_arr, ref_arr = np.asarray(pred), np.asarray(ref)
    if pred_arr.shape != ref_arr.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred_arr.shape} and {ref_arr.shape}")
    pred_int = to_internal(pred_arr, pred_convention)
    ref_int = to_internal(ref_arr, ref_convention)
    sp = as_spacing(spacing, pred_arr.ndim)
    result: CaseMetrics = {}
    for region, values in BRATS_REGIONS.items():
        p = np.isin(pred_int, values)
        r = np.isin(ref_int, values)
        lw = lesionwise_scores(
            p,
            r,
            sp,
            dilation_factor=dilation_factor,
            volume_threshold=volume_threshold,
            hd95_method=hd95_method,
            max_distance=max_distance,
        )
        result[region] = {
            "dice": dice(p, r),
            "hd95": _hd95_or_max(p, r, sp, hd95_method, max_distance),
            "lesion_dice": lw.dice,
            "lesion_hd95": lw.hd95,
            "vol_pred_ml": volume_ml(p, sp),
            "vol_ref_ml": volume_ml(r, sp),
        }
    return result


def _load_pair(pred_path: Path, ref_path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Load prediction and reference, check shape and affine as :func:`~brainbundles.metrics.evaluate_files`."""
    pred, ref, spacing = load_label_pair(pred_path, ref_path)
    if pred.ndim != 3:
        raise ValueError(f"{pred_path}: expected a 3-D label map, got shape {pred.shape}")
    return pred, ref, spacing


def _to_internal_checked(label: np.ndarray, convention: str, path: Path) -> np.ndarray:
    try:
        return to_internal(label, convention)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def evaluate_brats_case(
    pred_path: str | os.PathLike[str],
    ref_path: str | os.PathLike[str],
    pred_convention: str = "brats2023",
    ref_convention: str = "brats2019",
    *,
    dilation_factor: int = 3,
    volume_threshold: float = 50.0,
    hd95_method: BratsHD95Method = "surfel",
    max_distance: float = BRATS_MAX_DISTANCE,
) -> CaseMetrics:
    """BraTS metrics of a predicted NIfTI label map against a reference NIfTI label map.

    The images must have the same shape and affine (``atol=1e-4``, as
    :func:`~brainbundles.metrics.evaluate_files`), else ``ValueError`` naming both files; a label value
    outside a file's convention raises ``ValueError`` naming the file. The spacing is the reference
    header's zooms.

    Args:
        pred_path: predicted label map (``.nii``/``.nii.gz``) in ``pred_convention``.
        ref_path: reference label map in ``ref_convention``.
        pred_convention: label convention of the prediction (default ``"brats2023"``: 1/2/3).
        ref_convention: label convention of the reference (default ``"brats2019"``: 1/2/4).
        dilation_factor, volume_threshold, hd95_method, max_distance: see :func:`lesionwise_scores`.

    Returns:
        ``{"WT"|"TC"|"ET": {metric: value}}`` with the metrics of :data:`BRATS_METRICS`.
    """
    pred_p, ref_p = Path(pred_path), Path(ref_path)
    pred, ref, spacing = _load_pair(pred_p, ref_p)
    pred_int = _to_internal_checked(pred, pred_convention, pred_p)
    ref_int = _to_internal_checked(ref, ref_convention, ref_p)
    return evaluate_brats_arrays(
        pred_int,
        ref_int,
        spacing,
        pred_convention="brats2023",  # internal numbering == brats2023
        ref_convention="brats2023",
        dilation_factor=dilation_factor,
        volume_threshold=volume_threshold,
        hd95_method=hd95_method,
        max_distance=max_distance,
    )


def evaluate_brats_items(
    items: Sequence[Mapping],
    pred_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    pred_convention: str = "brats2023",
    postfix: str = "seg",
    *,
    prefix: str = "metrics",
    dilation_factor: int = 3,
    volume_threshold: float = 50.0,
    hd95_method: BratsHD95Method = "surfel",
    max_distance: float = BRATS_MAX_DISTANCE,
) -> dict[str, Any]:
    """Score ``<pred_dir>/<case>_<postfix>.nii.gz`` against each item's ``label`` on WT, TC and ET.

    Items need ``case`` and ``label`` (an absolute path), and may name ``label_convention`` (default
    ``"brats2019"``). Writes ``<prefix>.json`` and ``<prefix>.csv`` (per case, then ``mean`` and ``sd``
    rows) into ``out_dir`` with :func:`~brainbundles.metrics.write_report`.

    Returns:
        ``{"per_case": {case: {region: {metric: value}}}, "summary": {region: {metric: {"mean", "sd",
        "n", "n_nan"}}}}``, the shape :func:`~brainbundles.metrics.evaluate_items` returns.

    Raises:
        FileNotFoundError: a prediction (or label) file is missing; the message names it.
        ValueError: duplicate case ids, mismatched images, or labels outside a convention.
    """
    pairs = [
        (case, pred, Path(it["label"]), it.get("label_convention", "brats2019"))
        for case, pred, it in prediction_files(items, pred_dir, postfix)
    ]
    per_case: dict[str, CaseMetrics] = {}
    for case, pred, label, convention in pairs:
        per_case[case] = evaluate_brats_case(
            pred,
            label,
            pred_convention,
            convention,
            dilation_factor=dilation_factor,
            volume_threshold=volume_threshold,
            hd95_method=hd95_method,
            max_distance=max_distance,
        )
    write_report(per_case, out_dir, prefix=prefix)
    return {"per_case": per_case, "summary": summarize(per_case)}
