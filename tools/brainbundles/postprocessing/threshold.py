"""A lesion probability threshold: applied to the lesion probability once it is back in the scan's
space, and optionally tuned on the validation fold after training and stored in the bundle
(``models/threshold.json``), as Brosch et al. (IEEE TMI 2016) chose theirs on training data.

Rare lesions make a network's argmax (probability 0.5) a poor operating point: a model trained with a
loss that weighs sensitivity against specificity, or on patches that over-sample lesions, is calibrated
for neither. The tuned threshold is the one that maximises the mean Dice of the validation cases after
the same small-lesion removal as inference.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from monai.config import KeysCollection
from monai.transforms import MapTransform

from brainbundles.bundle.weights import load_bundle_weights
from brainbundles.fileio import write_json_atomic
from brainbundles.postprocessing.components import _array_and_voxel, _like, remove_small_components

__all__ = [
    "DEFAULT_THRESHOLDS",
    "LesionThresholdd",
    "load_threshold",
    "threshold_dice",
    "tune_lesion_threshold",
]

logger = logging.getLogger("brainbundles")

#: the probabilities :func:`tune_lesion_threshold` tries
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.05, 0.951, 0.05), 2))


def _check_threshold(value: object, what: str) -> float:
    t = float(value)  # type: ignore[arg-type]
    if not (0.0 < t < 1.0) or math.isnan(t):
        raise ValueError(f"{what}: expected a probability strictly between 0 and 1, got {value!r}")
    return t


class LesionThresholdd(MapTransform):
    """Turn class probabilities (C x spatial, e.g. softmax, after ``Invertd``) into a 0/1 label map
    (1 x spatial): lesion where the probability of channel ``lesion_channel`` is at least ``threshold``."""

    def __init__(
        self,
        keys: KeysCollection,
        threshold: float = 0.5,
        lesion_channel: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.threshold = _check_threshold(threshold, "threshold")
        self.lesion_channel = int(lesion_channel)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            prob = d[key]
            if prob.shape[0] <= self.lesion_channel:
                raise ValueError(
                    f"LesionThresholdd: {key!r} has {prob.shape[0]} channels, no lesion channel "
                    f"{self.lesion_channel}"
                )
            lesion = torch.as_tensor(prob[self.lesion_channel : self.lesion_channel + 1] >= self.threshold)
            d[key] = _like(lesion.to(torch.float32), prob)
        return d


def _read_threshold(path: Path, default: float) -> float:

    try:
        data = json.loads(path.read_text())
        return _check_threshold(data["threshold"], f"{path}: threshold")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a valid threshold file ({e!r}); delete it to use {default}") from e


def load_threshold(path: str | os.PathLike, default: float = 0.5) -> float:
    """The ``"threshold"`` stored at ``path`` by :func:`tune_lesion_threshold`; for a fold ensemble
    (``brainbundles train-cv``: no file at ``path`` but one in each ``fold_<k>/`` beside it) the mean of
    the folds' thresholds, as the ensemble averages the folds' probabilities; else ``default`` (an
    untuned bundle)."""
    path = Path(path)
    if path.is_file():
        return _read_threshold(path, default)
    folds = sorted(p for p in path.parent.glob(f"fold_*/{path.name}") if p.parent.name[5:].isdigit())
    if folds:
        return round(float(np.mean([_read_threshold(p, default) for p in folds])), 4)
    return _check_threshold(default, "default")


def _dice(p: np.ndarray, r: np.ndarray) -> float:
    total = int(p.sum()) + int(r.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(p, r).sum()) / total


def threshold_dice(
    probabilities: np.ndarray,
    reference: np.ndarray,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    min_voxels: float = 0.0,
) -> list[float]:
    """Dice of ``probability >= t`` (lesions under ``min_voxels`` voxels removed) against the 0/1
    ``reference``, for each ``t`` in ``thresholds``."""
    out = []
    for t in thresholds:
        mask = probabilities >= t
        if min_voxels > 0:
            mask = remove_small_components(mask, min_voxels)
        out.append(_dice(mask, reference))
    return out


def tune_lesion_threshold(
    network: torch.nn.Module,
    cases: Iterable[Mapping],
    inferer,
    ckpt_dir: str | os.PathLike,
    out_file: str | os.PathLike,
    device: torch.device | str = "cpu",
    min_lesion_mm3: float = 0.0,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    lesion_channel: int = 1,
    lesion_label: int = 1,
    ignore_label: int | None = None,
    enabled: bool = True,
) -> float | None:
    """Choose the lesion probability threshold that maximises the mean Dice over ``cases`` (a dataset
    of preprocessed validation cases: dicts with a C x spatial ``image`` and a 1 x spatial ``label``; the
    whole fold, also in a multi-process run), with the trained
    weights of ``ckpt_dir`` loaded into ``network`` and ``inferer`` (sliding window) applied as at
    inference; write it to ``out_file`` (JSON: ``threshold``, the mean Dice per threshold, the number of
    cases) and return it. Voxels labelled ``ignore_label`` (e.g. the WMH challenge's "other
    pathology") count neither way, as in evaluation. Ties go to the threshold closest to 0.5. Only the first process of a
    multi-process run does the work; ``enabled=False`` (or no validation case) does nothing."""
    if not enabled or (dist.is_initialized() and dist.get_rank() != 0):
        return None
    thresholds = [_check_threshold(t, "thresholds") for t in thresholds]
    net = network.module if hasattr(network, "module") else network
    load_bundle_weights(ckpt_dir, net)
    net.eval()
    scores: list[list[float]] = []
    with torch.no_grad():
        for case in cases:
            image, label = torch.as_tensor(case["image"]), case["label"]
            logits = inferer(image[None].to(device), net)
            prob = torch.softmax(logits.float(), dim=1)[0, lesion_channel].cpu().numpy()
            ref, voxel = _array_and_voxel(label)
            ref = ref[0]
            if ignore_label is not None:
                prob = np.where(ref == ignore_label, 0.0, prob)
            scores.append(threshold_dice(prob, ref == lesion_label, thresholds, min_lesion_mm3 / voxel))
    if not scores:
        logger.warning("tune_lesion_threshold: no validation case; the threshold is not tuned")
        return None
    mean = np.mean(np.asarray(scores), axis=0)
    order = sorted(range(len(thresholds)), key=lambda i: (-mean[i], abs(thresholds[i] - 0.5)))
    best = thresholds[order[0]]
    write_json_atomic(
        {
            "threshold": best,
            "mean_dice": {f"{t:g}": round(float(m), 6) for t, m in zip(thresholds, mean, strict=True)},
            "cases": len(scores),
        },
        out_file,
    )
    logger.info(
        "lesion probability threshold %.2f (validation mean Dice %.4f over %d cases; 0.5 gives %s) -> %s",
        best,
        mean[order[0]],
        len(scores),
        f"{mean[thresholds.index(0.5)]:.4f}" if 0.5 in thresholds else "n/a",
        out_file,
    )
    return best
