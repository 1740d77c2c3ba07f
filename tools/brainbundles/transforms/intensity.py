"""Intensity standardisation: Nyúl & Udupa piecewise-linear histogram mapping.

Z-scoring inside the brain is MONAI's ``NormalizeIntensityd(nonzero=True, channel_wise=True)``;
this module adds the histogram standardisation of

    L. G. Nyúl, J. K. Udupa, "On standardizing the MR image intensity scale", Magn. Reson. Med. 42 (1999);
    L. G. Nyúl, J. K. Udupa, X. Zhang, "New variants of a method of MRI scale standardization",
    IEEE TMI 19(2) (2000).

Landmarks (intensity percentiles inside the brain) are learned from the training images, stored as
JSON in the bundle, and every image is then mapped piecewise-linearly onto that standard scale.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from brainbundles.fileio import write_json_atomic

__all__ = [
    "DEFAULT_PERCENTILES",
    "STANDARD_RANGE",
    "image_landmarks",
    "fit_nyul_landmarks",
    "save_landmarks",
    "load_landmarks",
    "ensure_nyul_landmarks",
    "NyulStandardize",
    "NyulStandardized",
]

logger = logging.getLogger("brainbundles")

#: cut-offs (1st, 99th percentile) and the deciles between them, as in Nyúl et al. (2000)
DEFAULT_PERCENTILES: tuple[float, ...] = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99)
#: the standard scale; it starts above 0 so that no brain voxel is mapped onto the background value 0
STANDARD_RANGE: tuple[float, float] = (1.0, 100.0)


def _foreground(values: np.ndarray) -> np.ndarray:
    """Voxels inside the brain: the non-zero voxels of a skull-stripped image."""
    fg = values[values != 0]
    if fg.size == 0:
        raise ValueError("image has no non-zero (brain) voxels")
    return fg


def image_landmarks(image: np.ndarray, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> np.ndarray:
    """Intensity percentiles of ``image`` inside the brain (non-zero voxels)."""
    return np.percentile(_foreground(np.asarray(image, dtype=np.float64)), percentiles)


def fit_nyul_landmarks(
    images: Sequence[np.ndarray | str | os.PathLike],
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    standard_range: tuple[float, float] = STANDARD_RANGE,
) -> dict:
    """Learn the standard scale: each image's landmarks are mapped linearly so that its first and last
    percentile land on ``standard_range``, and the mapped landmarks are averaged over the images.

    ``images`` are arrays or paths of single-channel images (NIfTI/Analyze).
    """
    if len(images) == 0:
        raise ValueError("images: need at least one training image to learn Nyúl landmarks")
    if list(percentiles) != sorted(percentiles) or len(percentiles) < 3:
        raise ValueError("percentiles: need at least three increasing percentiles")
    s1, s2 = standard_range
    mapped = []
    for img in images:
        arr = np.asanyarray(nib.load(str(img)).dataobj) if isinstance(img, (str, os.PathLike)) else img
        lm = image_landmarks(arr, percentiles)
        if lm[-1] <= lm[0]:
            raise ValueError(
                f"image {img if isinstance(img, (str, os.PathLike)) else ''}: constant intensities"
            )
        mapped.append(s1 + (lm - lm[0]) / (lm[-1] - lm[0]) * (s2 - s1))
    return {"percentiles": [float(p) for p in percentiles], "landmarks": np.mean(mapped, axis=0).tolist()}


def save_landmarks(landmarks: dict, path: str | os.PathLike) -> Path:
    """Write the landmarks JSON atomically."""
    return write_json_atomic(landmarks, path)


def load_landmarks(path: str | os.PathLike) -> dict:
    """Read and check a landmarks JSON written by :func:`save_landmarks`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Nyúl landmarks file not found (train with use_nyul to create it)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid Nyúl landmarks file ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a valid Nyúl landmarks file (not a JSON object)")
    p, lm = data.get("percentiles"), data.get("landmarks")
    if not p or not lm or len(p) != len(lm) or np.any(np.diff(lm) <= 0):
        raise ValueError(
            f"{path}: not a valid Nyúl landmarks file (percentiles/landmarks missing or not increasing)"
        )
    return data


def ensure_nyul_landmarks(
    path: str | os.PathLike, items: Sequence[Mapping], enabled: bool = True, channel: int = 0
) -> Path | None:
    """Learn landmarks from the training ``items`` (datalist items with absolute ``image`` paths) and
    store them at ``path``, unless disabled or already there (so a resumed training keeps its scale)."""
    if not enabled:
        return None
    path = Path(path)
    if path.is_file():
        load_landmarks(path)
        return path
    files = []
    for it in items:
        img = it["image"]
        files.append(img[channel] if isinstance(img, (list, tuple)) else img)
    logger.info("learning Nyúl landmarks from %d training images -> %s", len(files), path)
    return save_landmarks(fit_nyul_landmarks(files), path)


class NyulStandardize(Transform):
    """Map the brain (non-zero voxels) of a channel-first image onto the learned standard scale.

    Piecewise linear between landmarks, extended linearly beyond the first and last one (Nyúl et al.
    2000). Background stays 0. With ``enabled=False`` it returns the image unchanged and reads nothing.
    """

    def __init__(self, landmarks_file: str | os.PathLike | None, enabled: bool = True) -> None:
        self.landmarks_file = landmarks_file
        self.enabled = enabled
        self._standard: dict | None = None

    def _load(self) -> dict:
        if self._standard is None:
            if self.landmarks_file is None:
                raise ValueError("landmarks_file: required when Nyúl standardisation is enabled")
            self._standard = load_landmarks(self.landmarks_file)
        return self._standard

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        if not self.enabled:
            return img
        std = self._load()
        target = np.asarray(std["landmarks"], dtype=np.float64)
        if isinstance(img, torch.Tensor):
            out = img.clone() if img.is_floating_point() else img.float()
        else:
            out = np.array(img, dtype=img.dtype if np.issubdtype(img.dtype, np.floating) else np.float32)
        for c in range(out.shape[0]):
            chan = out[c]
            arr = chan.detach().cpu().numpy() if isinstance(chan, torch.Tensor) else chan
            mask = arr != 0
            if not mask.any():  # an absent sequence (filled with zeros) stays zero
                continue
            src = image_landmarks(arr, std["percentiles"])
            src = np.maximum.accumulate(src + np.arange(len(src)) * 1e-6)  # strictly increasing
            vals = arr[mask].astype(np.float64)
            mapped = np.interp(vals, src, target)
            overall = (target[-1] - target[0]) / max(src[-1] - src[0], 1e-12)
            span = 1e-3 * (src[-1] - src[0])  # a degenerate end segment extrapolates with the overall slope
            lo_slope = (target[1] - target[0]) / (src[1] - src[0]) if src[1] - src[0] > span else overall
            hi_slope = (
                (target[-1] - target[-2]) / (src[-1] - src[-2]) if src[-1] - src[-2] > span else overall
            )
            mapped = np.where(vals < src[0], target[0] + (vals - src[0]) * lo_slope, mapped)
            mapped = np.where(vals > src[-1], target[-1] + (vals - src[-1]) * hi_slope, mapped)
            res = np.zeros_like(arr, dtype=np.float32)
            mapped = mapped.astype(np.float32)
            mapped[mapped == 0] = 1e-6  # a brain voxel must not become background
            res[mask] = mapped
            if isinstance(out, torch.Tensor):
                out[c] = torch.as_tensor(res, dtype=out.dtype, device=out.device)
            else:
                out[c] = res.astype(out.dtype)
        return out


class NyulStandardized(MapTransform):
    """Dictionary version of :class:`NyulStandardize`."""

    def __init__(
        self,
        keys: KeysCollection,
        landmarks_file: str | os.PathLike | None,
        enabled: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = NyulStandardize(landmarks_file, enabled)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
