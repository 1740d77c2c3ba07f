"""Per-case evaluation of label maps and JSON/CSV evaluation reports.

A *per-case* result maps ``case_id -> class_name -> metric -> value`` where the
metrics are :data:`METRICS`:

* ``dice``: Dice coefficient (both empty → 1, one empty → 0);
* ``hd95``: 95th-percentile Hausdorff distance in mm (both empty → 0,
  one empty → NaN; definition in :mod:`brainbundles.metrics.distance`);
* ``avd``: absolute volume difference in % of the reference volume
  (reference empty → 0 if the prediction is empty too, else NaN);
* ``vol_pred_ml`` / ``vol_ref_ml``: predicted / reference volume in mL.

A class is a named set of integer labels (``{"CSF": 1}``, or a union such as
``{"WT": [1, 2, 4]}``); its mask is ``isin(label_map, labels)``.

Summaries skip NaN values and report how many they skipped (``n_nan``).
In the JSON report NaN is written as ``null`` (strict JSON); in the CSV report
it is written as ``nan`` (``float("nan")`` parses it back).
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import ArrayLike

from brainbundles.fileio import write_text_atomic

from ._common import as_spacing
from .distance import HD95Method, hd95
from .overlap import avd, dice, volume_ml

__all__ = [
    "METRICS",
    "CaseMetrics",
    "LabelSpec",
    "Summary",
    "evaluate_case",
    "evaluate_files",
    "evaluate_folder",
    "summarize",
    "write_report",
]

METRICS: tuple[str, ...] = ("dice", "hd95", "avd", "vol_pred_ml", "vol_ref_ml")
"""Metric names produced for each class, in report column order."""

LabelSpec = Mapping[str, int | Sequence[int]]
"""Class name → one integer label or a list of labels whose union is the class."""

CaseMetrics = dict[str, dict[str, float]]
"""Class name → metric name → value, for one case."""

Summary = dict[str, dict[str, dict[str, float | int]]]
"""Class name → metric name → ``{"mean", "sd", "n", "n_nan"}``."""

_RESERVED_ROW_NAMES = ("mean", "sd")
_AFFINE_ATOL = 1e-4


def _normalise_labels(labels: LabelSpec) -> dict[str, tuple[int, ...]]:
    """Validate a label spec and return ``{class_name: (label, ...)}``."""
    if not isinstance(labels, Mapping) or not labels:
        raise ValueError(f"labels must be a non-empty mapping of class name to label(s), got {labels!r}")
    out: dict[str, tuple[int, ...]] = {}
    for name, value in labels.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"class names must be non-empty strings, got {name!r}")
        values = [value] if not isinstance(value, Sequence | np.ndarray) else list(value)
        if not values:
            raise ValueError(f"class {name!r} has no labels")
        try:
            if any(isinstance(v, bool | np.bool_) for v in values):
                raise TypeError
            out[name] = tuple(operator.index(v) for v in values)
        except TypeError:
            raise ValueError(f"class {name!r}: labels must be integers, got {value!r}") from None
    return out


def evaluate_case(
    pred: ArrayLike,
    ref: ArrayLike,
    spacing: float | Sequence[float] | np.ndarray,
    labels: LabelSpec,
    *,
    hd95_method: HD95Method = "max",
) -> CaseMetrics:
    """Evaluate one predicted label map against its reference.

    Args:
        pred: predicted integer label map.
        ref: reference integer label map, same shape as ``pred``.
        spacing: voxel size in mm, one value per axis.
        labels: class name → label or list of labels (a class is the union of
            its labels), e.g. ``{"CSF": 1, "GM": 2, "WM": 3}`` or
            ``{"WT": [1, 2, 4], "TC": [1, 4], "ET": 4}``.
        hd95_method: HD95 definition, see :func:`brainbundles.metrics.hd95`.

    Returns:
        ``{class_name: {metric: value}}`` with the metrics in :data:`METRICS`.
    """
    pred_arr = np.asarray(pred)
    ref_arr = np.asarray(ref)
    if pred_arr.shape != ref_arr.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred_arr.shape} and {ref_arr.shape}")
    spec = _normalise_labels(labels)
    sp = as_spacing(spacing, pred_arr.ndim)
    result: CaseMetrics = {}
    for name, class_labels in spec.items():
        p = np.isin(pred_arr, class_labels)
        r = np.isin(ref_arr, class_labels)
        result[name] = {
            "dice": dice(p, r),
            "hd95": hd95(p, r, sp, method=hd95_method),
            "avd": avd(p, r),
            "vol_pred_ml": volume_ml(p, sp),
            "vol_ref_ml": volume_ml(r, sp),
        }
    return result


def _load_label_map(img: Any, path: Path) -> np.ndarray:
    """Read the voxel data of a label image; reject non-integral values."""
    data = np.asanyarray(img.dataobj)
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise ValueError(f"{path}: expected an integer label map, found non-integer values")
    elif not (np.issubdtype(data.dtype, np.integer) or data.dtype == np.bool_):
        raise ValueError(f"{path}: expected an integer label map, got data type {data.dtype}")
    return data


def load_label_pair(pred_p: Path, ref_p: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Prediction and reference label maps and the voxel spacing (mm), after checking that both files
    exist and share shape and affine (errors name the files). A trailing axis of length 1 (a 3D map stored
    as 4D, as IBSR18's) is dropped."""
    for path, what in ((pred_p, "prediction"), (ref_p, "reference")):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {what} file not found")
    pred_img = nib.load(pred_p)
    ref_img = nib.load(ref_p)

    def spatial(shape: tuple[int, ...]) -> tuple[int, ...]:  # a 3D map stored 4D with a trailing axis of 1
        return tuple(shape[:3]) if len(shape) == 4 and shape[3] == 1 else tuple(shape)

    if spatial(pred_img.shape) != spatial(ref_img.shape):
        raise ValueError(
            f"shape mismatch between prediction {pred_p} {tuple(pred_img.shape)} "
            f"and reference {ref_p} {tuple(ref_img.shape)}"
        )
    pred_aff = np.asarray(pred_img.affine, dtype=np.float64)
    ref_aff = np.asarray(ref_img.affine, dtype=np.float64)
    if not np.allclose(pred_aff, ref_aff, rtol=0.0, atol=_AFFINE_ATOL):
        max_diff = float(np.max(np.abs(pred_aff - ref_aff)))
        raise ValueError(
            f"affine mismatch between prediction {pred_p} and reference {ref_p} "
            f"(max abs difference {max_diff:.3g} > {_AFFINE_ATOL:g}):\n"
            f"prediction affine:\n{pred_aff}\nreference affine:\n{ref_aff}"
        )
    pred = _load_label_map(pred_img, pred_p).reshape(spatial(pred_img.shape))
    ref = _load_label_map(ref_img, ref_p).reshape(spatial(ref_img.shape))
    spacing = tuple(float(z) for z in ref_img.header.get_zooms()[: pred.ndim])
    return pred, ref, spacing


def evaluate_files(
    pred_path: str | os.PathLike[str],
    ref_path: str | os.PathLike[str],
    labels: LabelSpec,
    *,
    hd95_method: HD95Method = "max",
) -> CaseMetrics:
    """Evaluate a predicted NIfTI label map against a reference NIfTI label map.

    The two images must have the same shape and the same affine
    (``numpy.allclose`` with ``atol=1e-4``, ``rtol=0``); otherwise a
    ``ValueError`` naming both files and the mismatch is raised. Voxel spacing
    is read from the header zooms (spatial axes only). Float-typed images are
    accepted if all values are integers.

    Args:
        pred_path: predicted label map (``.nii`` / ``.nii.gz``).
        ref_path: reference label map.
        labels: class name → label(s), as in :func:`evaluate_case`.
        hd95_method: HD95 definition, see :func:`brainbundles.metrics.hd95`.

    Returns:
        ``{class_name: {metric: value}}`` as :func:`evaluate_case`.
    """
    pred, ref, spacing = load_label_pair(Path(pred_path), Path(ref_path))
    return evaluate_case(pred, ref, spacing, labels, hd95_method=hd95_method)


def _check_consistent(per_case: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[tuple[str, str]]:
    """Return the ``(class, metric)`` columns; require every case to have the same ones."""
    columns: list[tuple[str, str]] | None = None
    first_case = None
    for case_id, classes in per_case.items():
        cols = [(c, m) for c, metrics in classes.items() for m in metrics]
        if columns is None:
            columns, first_case = cols, case_id
        elif set(cols) != set(columns):
            raise ValueError(
                f"case {case_id!r} has classes/metrics {sorted(cols)}, "
                f"but case {first_case!r} has {sorted(columns)}"
            )
    return columns or []


def summarize(per_case: Mapping[str, Mapping[str, Mapping[str, float]]]) -> Summary:
    """Summarise per-case metrics over cases, skipping NaN.

    Args:
        per_case: ``{case_id: {class_name: {metric: value}}}``; every case must
            have the same classes and metrics.

    Returns:
        ``{class_name: {metric: {"mean", "sd", "n", "n_nan"}}}`` where ``n`` is
        the number of non-NaN values used, ``n_nan`` the number of NaN values
        skipped, ``sd`` the sample standard deviation (``ddof=1``) when
        ``n > 1``, ``0.0`` when ``n == 1``; ``mean`` and ``sd`` are NaN when
        ``n == 0``.
    """
    columns = _check_consistent(per_case)
    summary: Summary = {}
    for class_name, metric in columns:
        values = np.array([float(per_case[c][class_name][metric]) for c in per_case], dtype=np.float64)
        nan_mask = np.isnan(values)
        finite = values[~nan_mask]
        n = int(finite.size)
        if n == 0:
            mean, sd = float("nan"), float("nan")
        else:
            mean = float(np.mean(finite))
            sd = float(np.std(finite, ddof=1)) if n > 1 else 0.0
        summary.setdefault(class_name, {})[metric] = {
            "mean": mean,
            "sd": sd,
            "n": n,
            "n_nan": int(nan_mask.sum()),
        }
    return summary


def _nan_to_none(obj: Any) -> Any:
    """Recursively replace non-finite floats with ``None`` for strict JSON."""
    if isinstance(obj, Mapping):
        return {str(k): _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _format_value(value: float) -> str:
    value = float(value)
    return "nan" if math.isnan(value) else repr(value)


def write_report(
    per_case: Mapping[str, Mapping[str, Mapping[str, float]]],
    out_dir: str | os.PathLike[str],
    prefix: str = "metrics",
) -> tuple[Path, Path]:
    """Write ``<prefix>.json`` and ``<prefix>.csv`` into ``out_dir`` (created if needed).

    * JSON: ``{"per_case": ..., "summary": ...}`` (summary from
      :func:`summarize`); NaN is written as ``null``.
    * CSV: header ``case,<class>_<metric>,...`` (classes in the order of the
      first case, metrics in their order there), one row per case, then rows
      ``mean`` and ``sd`` from the summary; NaN is written as ``nan``.

    Both files are written atomically (temporary file in ``out_dir`` then
    ``os.replace``). Case ids ``"mean"`` and ``"sd"`` are rejected because they
    would be ambiguous in the CSV.

    Returns:
        ``(json_path, csv_path)``.
    """
    for reserved in _RESERVED_ROW_NAMES:
        if reserved in per_case:
            raise ValueError(f"case id {reserved!r} is reserved for the summary rows of the CSV report")
    summary = summarize(per_case)
    columns = _check_consistent(per_case)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{prefix}.json"
    csv_path = out / f"{prefix}.csv"

    payload = {"per_case": _nan_to_none(per_case), "summary": _nan_to_none(summary)}
    write_text_atomic(json_path, json.dumps(payload, indent=2, allow_nan=False) + "\n")

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["case", *(f"{c}_{m}" for c, m in columns)])
    for case_id, classes in per_case.items():
        writer.writerow([case_id, *(_format_value(classes[c][m]) for c, m in columns)])
    for stat in _RESERVED_ROW_NAMES:
        writer.writerow([stat, *(_format_value(summary[c][m][stat]) for c, m in columns)])
    write_text_atomic(csv_path, buf.getvalue())
    return json_path, csv_path


def evaluate_folder(
    pairs: Sequence[tuple[str, str | os.PathLike[str], str | os.PathLike[str]]],
    labels: LabelSpec,
    out_dir: str | os.PathLike[str],
    *,
    prefix: str = "metrics",
    hd95_method: HD95Method = "max",
) -> dict[str, Any]:
    """Evaluate ``(case_id, pred_path, ref_path)`` pairs and write the report.

    Args:
        pairs: one ``(case_id, pred_path, ref_path)`` per case; case ids must
            be unique.
        labels: class name → label(s), as in :func:`evaluate_case`.
        out_dir: folder for ``<prefix>.json`` and ``<prefix>.csv``.
        prefix: report file name stem.
        hd95_method: HD95 definition, see :func:`brainbundles.metrics.hd95`.

    Returns:
        ``{"per_case": {case_id: CaseMetrics}, "summary": Summary}`` (NaN kept
        as ``float("nan")`` in memory).
    """
    counts = Counter(case_id for case_id, _, _ in pairs)
    duplicates = sorted(i for i, k in counts.items() if k > 1)
    if duplicates:
        raise ValueError(f"duplicate case ids: {duplicates}")
    _normalise_labels(labels)  # fail before loading any image
    per_case: dict[str, CaseMetrics] = {}
    for case_id, pred_path, ref_path in pairs:
        per_case[case_id] = evaluate_files(pred_path, ref_path, labels, hd95_method=hd95_method)
    write_report(per_case, out_dir, prefix=prefix)
    return {"per_case": per_case, "summary": summarize(per_case)}
