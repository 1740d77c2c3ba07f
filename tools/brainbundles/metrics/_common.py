"""Input checks shared by the metric modules (private)."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

__all__: list[str] = []


def prediction_files(
    items: Sequence[Mapping], pred_dir: str | os.PathLike, postfix: str = "seg"
) -> list[tuple[str, Path, Mapping]]:
    """``(case, <pred_dir>/<case>_<postfix>.nii.gz, item)`` for datalist items with ``case`` ids; a
    duplicate id raises ValueError and a missing prediction FileNotFoundError naming the file, before
    anything is computed."""
    counts = Counter(str(it["case"]) for it in items)
    duplicates = sorted(c for c, k in counts.items() if k > 1)
    if duplicates:
        raise ValueError(f"duplicate case ids: {duplicates}")
    found = []
    for it in items:
        pred = Path(pred_dir) / f"{it['case']}_{postfix}.nii.gz"
        if not pred.is_file():
            raise FileNotFoundError(f"{pred}: no prediction for case {it['case']}")
        found.append((str(it["case"]), pred, it))
    return found


def as_mask(mask: ArrayLike, name: str) -> np.ndarray:
    """Return ``mask`` as a boolean ndarray (non-zero is foreground)."""
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        arr = arr != 0
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension, got a scalar")
    return arr


def as_mask_pair(pred_mask: ArrayLike, ref_mask: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return both masks as boolean arrays and check that their shapes match."""
    pred = as_mask(pred_mask, "pred_mask")
    ref = as_mask(ref_mask, "ref_mask")
    if pred.shape != ref.shape:
        raise ValueError(f"pred_mask and ref_mask must have the same shape, got {pred.shape} and {ref.shape}")
    return pred, ref


def as_spacing(spacing: float | Sequence[float] | np.ndarray, ndim: int) -> tuple[float, ...]:
    """Return ``spacing`` as a tuple of ``ndim`` positive finite floats (a scalar means isotropic)."""
    values = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if values.ndim != 1:
        raise ValueError(f"spacing must be a scalar or a 1-D sequence, got shape {values.shape}")
    if values.size == 1 and ndim != 1:
        values = np.repeat(values, ndim)
    if values.size != ndim:
        raise ValueError(f"spacing has {values.size} values but the masks have {ndim} dimensions")
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise ValueError(f"spacing values must be positive and finite, got {out}")
    return out
