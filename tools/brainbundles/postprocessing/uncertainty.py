"""Voxel-wise uncertainty: the entropy of the mean prediction, written beside the label map.

The bundles' predictor (:class:`brainbundles.inference.EnsembleInferer`) averages the probabilities of
every ensemble member and test-time view, so after the postprocessing's activation and ``Invertd`` the
probabilities are the mean prediction, on the scan's native grid. Its entropy, normalised to [0, 1]
(divided by its maximum), is 0 where every member and view agrees with certainty and 1 where the mean
is uniform. For multi-label outputs (the tumour bundle's nested regions, sigmoid) it is the mean of the
channels' binary entropies.

Per case, two summary numbers go into ``<case>_volumes.json`` and ``volumes.csv``:

- ``uncertain_ml``: the sum of the normalised entropy over the scan times the voxel volume (mL): the
  "volume the model is unsure of", which grows with every unsure region, so sorting cases by it gives
  the order in which to check them;
- ``mean_in_segmentation``: the mean normalised entropy over the voxels segmented as anything but
  background (probability of a non-background class at least 0.5), 0 when nothing is segmented.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from brainbundles.fileio import save_like

__all__ = ["UncertaintyMapd", "normalized_entropy", "uncertainty_summary"]


def normalized_entropy(prob: torch.Tensor | np.ndarray, multilabel: bool = False) -> np.ndarray:
    """Entropy of class probabilities ``prob`` (C x spatial) divided by its maximum: ``log C`` for
    probabilities that sum to 1 over the channels, or the mean over channels of the binary entropy
    divided by ``log 2`` with ``multilabel``. Returns a float32 array of the spatial shape, in [0, 1]."""
    p = torch.as_tensor(prob).detach().float().cpu().clamp(0.0, 1.0)
    if p.ndim < 2:
        raise ValueError(
            f"normalized_entropy: expected C x spatial probabilities, got shape {tuple(p.shape)}"
        )

    def plogp(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, x * torch.log(x.clamp_min(1e-12)), torch.zeros_like(x))

    if multilabel:
        h = -(plogp(p) + plogp(1 - p)).mean(0) / math.log(2)
    else:
        if p.shape[0] < 2:
            raise ValueError("normalized_entropy: softmax probabilities need at least 2 channels")
        h = -plogp(p).sum(0) / math.log(p.shape[0])
    return h.clamp(0.0, 1.0).numpy().astype(np.float32)


def uncertainty_summary(
    entropy: np.ndarray, prob: torch.Tensor | np.ndarray, voxel_ml: float, multilabel: bool = False
) -> dict[str, float]:
    """The per-case numbers of the module docstring from a normalised entropy map and the probabilities
    (C x spatial) it came from."""
    p = torch.as_tensor(prob).detach().float().cpu().numpy()
    segmented = (p >= 0.5).any(0) if multilabel else (1.0 - p[0]) >= 0.5
    return {
        "uncertain_ml": round(float(entropy.sum(dtype=np.float64)) * voxel_ml, 4),
        "mean_in_segmentation": round(float(entropy[segmented].mean()) if segmented.any() else 0.0, 4),
    }


class UncertaintyMapd(MapTransform):
    """Write ``<case>_uncertainty.nii.gz`` (float32, normalised entropy, on the grid of the scan at
    ``reference_key``) from the probabilities at ``keys`` (C x spatial, after ``Invertd``), and put the
    per-case summary in ``d["uncertainty"]`` (``SaveSegmentationd`` adds it to the case's record).
    Place it after ``Invertd`` and before the probabilities are turned into labels. ``enabled=False``
    does nothing."""

    def __init__(
        self,
        keys: KeysCollection = "pred",
        output_dir: str | os.PathLike = "./output",
        multilabel: bool = False,
        enabled: bool = True,
        reference_key: str = "reference",
        case_key: str = "case",
        output_postfix: str = "uncertainty",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir, self.multilabel, self.enabled = Path(output_dir), bool(multilabel), bool(enabled)
        self.reference_key, self.case_key, self.output_postfix = reference_key, case_key, output_postfix

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        if not self.enabled:
            return d

        reference, case = str(d[self.reference_key]), str(d[self.case_key])
        voxel_ml = float(abs(np.linalg.det(nib.load(reference).affine[:3, :3]))) / 1000.0
        for key in self.key_iterator(d):
            entropy = normalized_entropy(d[key], self.multilabel)
            path = save_like(
                entropy, reference, self.output_dir / f"{case}_{self.output_postfix}.nii.gz", np.float32
            )
            summary = uncertainty_summary(entropy, d[key], voxel_ml, self.multilabel)
            d["uncertainty"] = {"map": str(path), **summary}
        return d
