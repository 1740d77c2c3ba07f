"""Evaluating a bundle's written predictions against the labels of datalist items."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ._common import prediction_files
from .report import evaluate_folder

__all__ = ["evaluate_items"]


def evaluate_items(
    items: Sequence[Mapping],
    pred_dir: str | os.PathLike,
    label_names: Mapping[int | str, str],
    out_dir: str | os.PathLike,
    postfix: str = "seg",
) -> dict[str, Any]:
    """Score ``<pred_dir>/<case>_<postfix>.nii.gz`` against each item's ``label`` (both in the scan's
    native space) for every named non-background label, and write ``metrics.json``/``metrics.csv``
    into ``out_dir``. Items need ``case`` and ``label`` (as from :func:`brainbundles.data.load_fold`)."""
    classes = {name: int(k) for k, name in label_names.items() if int(k) != 0}
    pairs = [(case, pred, it["label"]) for case, pred, it in prediction_files(items, pred_dir, postfix)]
    return evaluate_folder(pairs, classes, out_dir)
