"""White matter hyperintensity (WMH) challenge metrics and lesion-wise detection metrics.

The five metrics of the MICCAI 2017 WMH Segmentation Challenge (Kuijf et al., "Standardized
assessment of automatic segmentation of white matter hyperintensities and results of the WMH
segmentation challenge", IEEE TMI 38(11), 2019; evaluation script ``evaluation.py`` of the challenge):
Dice, HD95 (:func:`wmh_hd95`), AVD, lesion recall and lesion F1 (:func:`lesion_detection`).

Reference labels and the ignore region
--------------------------------------
WMH reference label maps hold 0 background, 1 WMH and 2 "other pathology". As the challenge's
``getImages``, the reference lesion mask is ``ref == lesion_label`` and prediction voxels where
``ref == ignore_label`` are set to background before any metric is computed, so a prediction inside
the ignore region is neither a false positive voxel nor a false positive lesion (and does not count in
``vol_pred_ml``). The prediction's lesion mask is ``pred == lesion_label``; the challenge script instead
counts every positive value of the prediction as lesion, which agrees for 0/1 predictions.

Metrics (:data:`WMH_METRICS`, in report order)
-----------------------------------------------
* ``dice``: :func:`brainbundles.metrics.dice` (both empty → 1, one empty → 0).
* ``hd95``: :func:`wmh_hd95` in mm, the challenge's definition (in-plane lesion edges, see there).
* ``avd``: :func:`brainbundles.metrics.avd`, ``|V_pred - V_ref| / V_ref · 100`` (reference empty:
  0 if the prediction is empty too, else NaN).
* ``lesion_recall`` / ``lesion_f1``: :func:`lesion_detection` with 26-connected ("fully connected",
  as ``sitk.ConnectedComponentImageFilter.SetFullyConnected(True)`` in the script) 3-D components.
* ``vol_pred_ml`` / ``vol_ref_ml``: :func:`brainbundles.metrics.volume_ml` of the (masked) prediction
  and of the reference lesion mask.
* ``lesions_pred`` / ``lesions_ref``: number of predicted / reference lesions (connected components).

:func:`evaluate_lesion_arrays` also returns ``lesion_precision`` (LPPV) after those.

Lesion-wise detection
---------------------
A reference lesion is detected when at least one predicted voxel overlaps it; a predicted lesion is
correct when at least one of its voxels overlaps the reference (the WMH challenge's rule). Recall is
also known as the lesion true positive rate (LTPR) and precision as the lesion positive predictive
value (LPPV) of the multiple-sclerosis lesion challenges (Commowick et al., "Objective evaluation of
multiple sclerosis lesion segmentation using a data management and processing infrastructure",
Scientific Reports 8, 2018 (MSSEG 2016); Carass et al., "Longitudinal multiple sclerosis lesion
segmentation: resource and challenge", NeuroImage 148, 2017 (ISBI 2015)); those papers' detection
rules differ in details (connectivity, minimum overlap or lesion size), which are not reproduced here.

Empty-mask conventions (differences from the challenge script)
---------------------------------------------------------------
* Detection: both masks empty → recall = precision = F1 = 1; reference empty, prediction not →
  recall NaN, precision 0, F1 0; prediction empty, reference not → recall 0, precision NaN, F1 0.
  The script returns 1 instead of NaN (recall of an empty reference, precision of an empty
  prediction); F1 is the same in every case.
* HD95: both empty → 0; exactly one empty → NaN, as :func:`brainbundles.metrics.hd95`.
* Dice: both empty → 1 (the script's ``1 - scipy.spatial.distance.dice`` is NaN there).

Report summaries (:func:`brainbundles.metrics.summarize`) skip NaN and count the skipped values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage
from scipy.spatial import cKDTree

from ._common import as_mask_pair, as_spacing, prediction_files
from .distance import _union_bbox
from .overlap import avd, dice, volume_ml
from .report import CaseMetrics, load_label_pair, summarize, write_report

__all__ = [
    "WMH_METRICS",
    "evaluate_lesion_arrays",
    "evaluate_lesion_items",
    "lesion_detection",
    "wmh_hd95",
]

WMH_METRICS: tuple[str, ...] = (
    "dice",
    "hd95",
    "avd",
    "lesion_recall",
    "lesion_f1",
    "vol_pred_ml",
    "vol_ref_ml",
    "lesions_pred",
    "lesions_ref",
)
"""Metric names of a WMH case, in report column order (the five challenge metrics, then volumes and
lesion counts). :func:`evaluate_lesion_arrays` appends ``lesion_precision``."""

_CONNECTIVITY_STRUCTURES: dict[int, np.ndarray] = {
    6: ndimage.generate_binary_structure(3, 1),
    26: ndimage.generate_binary_structure(3, 3),
}

# SimpleITK BinaryErode(image, (1, 1, 0)) with its default sitkBall kernel: an ITK ball of radius 1 is
# the full 3x3 square in 2-D (all 8 in-plane neighbours), and nothing along the third axis.
_INPLANE_EROSION = np.ones((3, 3, 1), dtype=bool)


def _check_3d(arr: np.ndarray, what: str) -> None:
    if arr.ndim != 3:
        raise ValueError(f"{what} needs 3-D masks, got shape {arr.shape}")


def _structure(connectivity: int) -> np.ndarray:
    if isinstance(connectivity, bool) or connectivity not in _CONNECTIVITY_STRUCTURES:
        raise ValueError(f"connectivity must be 6 or 26, got {connectivity!r}")
    return _CONNECTIVITY_STRUCTURES[int(connectivity)]


def lesion_detection(pred_mask: ArrayLike, ref_mask: ArrayLike, connectivity: int = 26) -> dict[str, Any]:
    """Lesion-wise detection counts, recall (LTPR), precision (LPPV) and F1 of two 3-D binary masks.

    Lesions are the 3-D connected components of each mask. A reference lesion is detected when the
    prediction overlaps it by at least one voxel; a predicted lesion is correct when it overlaps the
    reference by at least one voxel (Kuijf et al., IEEE TMI 2019, WMH challenge ``getLesionDetection``).
    Recall is the LTPR and precision the LPPV of Commowick et al. 2018 (MSSEG) / Carass et al. 2017
    (ISBI).

    Args:
        pred_mask: predicted binary 3-D mask (non-zero is lesion).
        ref_mask: reference binary 3-D mask, same shape.
        connectivity: 26 (default; face, edge and corner neighbours, SimpleITK's "fully connected"
            as in the WMH challenge) or 6 (face neighbours only).

    Returns:
        ``{"n_ref", "n_pred", "n_ref_detected", "n_pred_correct"}`` (ints) and ``"recall"``
        (``n_ref_detected / n_ref``), ``"precision"`` (``n_pred_correct / n_pred``), ``"f1"``
        (``2PR / (P + R)``, 0 when P and R are both 0) as floats. Both masks empty → recall =
        precision = F1 = 1; reference empty only → recall NaN, precision 0, F1 0; prediction empty
        only → recall 0, precision NaN, F1 0.

    Raises:
        ValueError: masks not 3-D or of different shapes, or ``connectivity`` not 6 or 26.
    """
    structure = _structure(connectivity)
    pred, ref = as_mask_pair(pred_mask, ref_mask)
    _check_3d(pred, "lesion_detection")
    ref_lab, n_ref = ndimage.label(ref, structure=structure)
    pred_lab, n_pred = ndimage.label(pred, structure=structure)
    n_ref_detected = int(np.unique(ref_lab[pred & ref]).size)
    n_pred_correct = int(np.unique(pred_lab[pred & ref]).size)
    nan = float("nan")
    if n_ref == 0 and n_pred == 0:
        recall = precision = f1 = 1.0
    elif n_ref == 0:
        recall, precision, f1 = nan, 0.0, 0.0
    elif n_pred == 0:
        recall, precision, f1 = 0.0, nan, 0.0
    else:
        recall = n_ref_detected / n_ref
        precision = n_pred_correct / n_pred
        f1 = 0.0 if recall + precision == 0 else 2.0 * precision * recall / (precision + recall)
    return {
        "n_ref": int(n_ref),
        "n_pred": int(n_pred),
        "n_ref_detected": n_ref_detected,
        "n_pred_correct": n_pred_correct,
        "recall": float(recall),
        "precision": float(precision),
        "f1": float(f1),
    }


def _inplane_edges(mask: np.ndarray) -> np.ndarray:
    """``mask`` minus its in-plane erosion (outside the array counts as foreground, as SimpleITK)."""
    eroded = ndimage.binary_erosion(mask, structure=_INPLANE_EROSION, border_value=1)
    return mask & ~eroded


def wmh_hd95(
    pred_mask: ArrayLike,
    ref_mask: ArrayLike,
    spacing: float | Sequence[float] | np.ndarray,
) -> float:
    """95th-percentile Hausdorff distance in mm as defined by the WMH Segmentation Challenge.

    The challenge's ``getHausdorff`` (Kuijf et al., IEEE TMI 2019):

    1. Lesion edges: the mask minus its erosion *in-plane*, ``sitk.BinaryErode(mask, (1, 1, 0))``:
       a 2-D erosion of every slice along the third array axis with SimpleITK's default ball kernel of
       radius 1, which is the full 3×3 square (a voxel is an edge when any of its 8 in-plane
       neighbours is background). As in SimpleITK (``boundaryToForeground=True``) the outside of the
       array counts as foreground, so a lesion has no edge along the array border.
    2. Edge voxel centres in mm (index × spacing; the challenge uses world coordinates, whose
       distances are the same for an orthonormal direction matrix).
    3. Nearest-neighbour Euclidean distances from each edge set to the other
       (``scipy.spatial.cKDTree``).
    4. The larger of the two directed 95th percentiles (``numpy.percentile``, linear interpolation).

    :func:`brainbundles.metrics.hd95` cannot express this: its surface is the 3-D face-connected
    erosion with the outside as background, so slices at the top and bottom of a lesion are whole
    surfaces there but only rings here.

    Args:
        pred_mask: predicted binary 3-D mask.
        ref_mask: reference binary 3-D mask, same shape.
        spacing: voxel size in mm per axis (a scalar means isotropic).

    Returns:
        The distance in mm. Both masks empty → ``0.0``; exactly one empty → ``nan``; also ``nan`` when
        a non-empty mask has no edge voxel (it fills every in-plane voxel of its slices, where the
        challenge's distance is undefined too).
    """
    pred, ref = as_mask_pair(pred_mask, ref_mask)
    _check_3d(pred, "wmh_hd95")
    sp = np.asarray(as_spacing(spacing, pred.ndim), dtype=np.float64)
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 0.0
    if has_pred != has_ref:
        return float("nan")
    # Cropping with a one-voxel margin is exact: the margin is background in both masks, and where the
    # box is clipped by the array the crop border is the array border.
    box = _union_bbox(pred | ref, 1)
    pts_pred = np.argwhere(_inplane_edges(pred[box])) * sp
    pts_ref = np.argwhere(_inplane_edges(ref[box])) * sp
    if pts_pred.shape[0] == 0 or pts_ref.shape[0] == 0:
        return float("nan")
    d_pred_to_ref = cKDTree(pts_ref).query(pts_pred, k=1)[0]
    d_ref_to_pred = cKDTree(pts_pred).query(pts_ref, k=1)[0]
    return float(max(np.percentile(d_pred_to_ref, 95), np.percentile(d_ref_to_pred, 95)))


def _check_label(value: Any, name: str) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def evaluate_lesion_arrays(
    pred: ArrayLike,
    ref: ArrayLike,
    spacing: float | Sequence[float] | np.ndarray,
    lesion_label: int = 1,
    ignore_label: int | None = 2,
    connectivity: int = 26,
) -> dict[str, float]:
    """WMH challenge metrics of one case given as 3-D integer label maps (Kuijf et al., IEEE TMI 2019).

    Args:
        pred: predicted label map (``lesion_label`` is lesion; a 0/1 mask works with the default).
        ref: reference label map, same shape.
        spacing: voxel size in mm per axis (a scalar means isotropic).
        lesion_label: label of lesion voxels in both maps.
        ignore_label: reference label whose voxels are removed from the prediction before scoring
            (the challenge's "other pathology", 2); ``None`` disables the masking.
        connectivity: 26 or 6, for the lesion counts and detection metrics (:func:`lesion_detection`).

    Returns:
        ``{metric: value}`` with the metrics of :data:`WMH_METRICS` in that order, then
        ``lesion_precision``; lesion counts are given as floats. Conventions in the module docstring.
    """
    lesion = _check_label(lesion_label, "lesion_label")
    ignore = None if ignore_label is None else _check_label(ignore_label, "ignore_label")
    if ignore == lesion:
        raise ValueError(f"ignore_label and lesion_label must differ, both are {lesion}")
    _structure(connectivity)
    pred_arr, ref_arr = np.asarray(pred), np.asarray(ref)
    if pred_arr.shape != ref_arr.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred_arr.shape} and {ref_arr.shape}")
    _check_3d(pred_arr, "evaluate_lesion_arrays")
    sp = as_spacing(spacing, pred_arr.ndim)
    r = ref_arr == lesion
    p = pred_arr == lesion
    if ignore is not None:
        p &= ref_arr != ignore
    det = lesion_detection(p, r, connectivity=connectivity)
    return {
        "dice": dice(p, r),
        "hd95": wmh_hd95(p, r, sp),
        "avd": avd(p, r),
        "lesion_recall": det["recall"],
        "lesion_f1": det["f1"],
        "vol_pred_ml": volume_ml(p, sp),
        "vol_ref_ml": volume_ml(r, sp),
        "lesions_pred": float(det["n_pred"]),
        "lesions_ref": float(det["n_ref"]),
        "lesion_precision": det["precision"],
    }


def evaluate_lesion_items(
    items: Sequence[Mapping],
    pred_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    postfix: str = "seg",
    lesion_label: int = 1,
    ignore_label: int | None = 2,
    class_name: str = "WMH",
    *,
    connectivity: int = 26,
    prefix: str = "metrics",
) -> dict[str, Any]:
    """Score ``<pred_dir>/<case>_<postfix>.nii.gz`` against each item's ``label`` with the WMH metrics.

    Items need ``case`` and ``label`` (as from :func:`brainbundles.data.load_fold`). Images are loaded
    with :func:`brainbundles.metrics.report.load_label_pair` (same shape and affine required, spacing
    from the reference header) and scored with :func:`evaluate_lesion_arrays`. Writes
    ``<prefix>.json`` and ``<prefix>.csv`` (per case, then ``mean`` and ``sd`` rows; columns
    ``<class_name>_<metric>``) into ``out_dir`` with :func:`brainbundles.metrics.write_report`.

    Args:
        items: datalist items with ``case`` and ``label``.
        pred_dir: folder of the predictions.
        out_dir: folder for the report (created if needed).
        postfix: prediction file name suffix.
        lesion_label, ignore_label, connectivity: see :func:`evaluate_lesion_arrays`.
        class_name: class key of the report.
        prefix: report file name stem.

    Returns:
        ``{"per_case": {case: {class_name: {metric: value}}}, "summary": {class_name: {metric:
        {"mean", "sd", "n", "n_nan"}}}}`` (NaN kept as ``float("nan")``), the shape
        :func:`brainbundles.metrics.evaluate_items` returns.

    Raises:
        FileNotFoundError: a prediction (or label) file is missing; the message names it.
        ValueError: duplicate case ids, mismatched images, or a non-3-D label map.
    """
    pairs = [(case, pred, Path(it["label"])) for case, pred, it in prediction_files(items, pred_dir, postfix)]
    per_case: dict[str, CaseMetrics] = {}
    for case, pred_path, label_path in pairs:
        pred, ref, spacing = load_label_pair(pred_path, label_path)
        if pred.ndim != 3:
            raise ValueError(f"{pred_path}: expected a 3-D label map, got shape {pred.shape}")
        per_case[case] = {
            class_name: evaluate_lesion_arrays(
                pred,
                ref,
                spacing,
                lesion_label=lesion_label,
                ignore_label=ignore_label,
                connectivity=connectivity,
            )
        }
    write_report(per_case, out_dir, prefix=prefix)
    return {"per_case": per_case, "summary": summarize(per_case)}
