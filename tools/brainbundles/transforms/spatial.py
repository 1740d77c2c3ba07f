"""Where a voxel sits in the brain, as extra input channels: the spatial features of the
location-sensitive WMH network (Ghafoorian et al., "Location sensitive deep convolutional neural
networks for segmentation of white matter hyperintensities", Scientific Reports 7:5110, 2017).

White-matter hyperintensities are mostly periventricular or deep, rarely cortical; the same bright
FLAIR spot means something else next to a ventricle than under the cortex. The features are computed
from the scan itself (no atlas, no registration) on a skull-stripped image in RAS orientation (after the
bundles' ``Orientationd``), one channel each, all 0 outside the brain:

====================  ==========================================================================
``x``, ``y``, ``z``   position in a brain-centred frame: (voxel - brain centroid) / brain half-extent
                      along each axis (about -1..1 inside the brain)
``midline``           distance to the midsagittal plane (the plane x = brain centroid), in half-extents
``surface``           distance to the brain surface (outside of the brain mask), in units of the
                      brain radius (geometric mean of the half-extents)
``ventricles``        distance to the lateral ventricles, in units of the brain radius
====================  ==========================================================================

The brain is the non-zero voxels of any channel. The ventricles are found on the FLAIR (fluid is dark
there and the brain's intensities are tight; on T1 the same rule misses them on most phantoms): voxels darker than ``median - 1.5 x IQR`` of the brain's intensities that lie
deeper than 30% of the brain's largest depth, keeping the largest connected component and any other at
least 20% of its size. Distances are Euclidean in mm (the voxel spacing is honoured).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from scipy import ndimage

__all__ = ["SPATIAL_FEATURES", "AppendChannelsd", "SpatialFeaturesd", "spatial_features", "ventricle_mask"]

logger = logging.getLogger("brainbundles")

#: the feature channels of :func:`spatial_features`, in order
SPATIAL_FEATURES: tuple[str, ...] = ("x", "y", "z", "midline", "surface", "ventricles")

_DARK_IQR = 1.5
_DEEP_FRACTION = 0.3
_KEEP_FRACTION = 0.2


def ventricle_mask(dark_image: np.ndarray, brain: np.ndarray, depth_mm: np.ndarray) -> np.ndarray:
    """The lateral ventricles: deep, dark, large connected voxels of ``dark_image`` (a contrast in which
    fluid is dark) inside ``brain``; ``depth_mm`` is the distance to the brain surface. Empty when
    nothing qualifies."""
    values = dark_image[brain]
    if values.size == 0:
        return np.zeros(brain.shape, dtype=bool)
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    dark = brain & (dark_image < q50 - _DARK_IQR * (q75 - q25))
    dark &= depth_mm > _DEEP_FRACTION * float(depth_mm.max())
    labels, n = ndimage.label(dark, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return dark
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    keep = sizes >= _KEEP_FRACTION * sizes.max()
    keep[0] = False
    return keep[labels]


def spatial_features(
    image: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0), dark_channel: int = 0
) -> np.ndarray:
    """The :data:`SPATIAL_FEATURES` of a (C, X, Y, Z) RAS image as a (6, X, Y, Z) float32 array (see the
    module docstring); ``dark_channel`` is the channel in which the ventricles are found."""
    image = np.asarray(image)
    if image.ndim != 4:
        raise ValueError(f"image: expected (channels, x, y, z), got shape {image.shape}")
    if not 0 <= dark_channel < image.shape[0]:
        raise ValueError(f"dark_channel: {dark_channel} is not a channel of an image with {image.shape[0]}")
    sp = np.asarray(spacing, dtype=np.float64)
    if sp.shape != (3,) or np.any(sp <= 0):
        raise ValueError(f"spacing: expected three positive voxel sizes, got {spacing!r}")
    brain = np.any(image != 0, axis=0)
    out = np.zeros((len(SPATIAL_FEATURES), *brain.shape), dtype=np.float32)
    if not brain.any():
        return out
    coords = np.nonzero(brain)
    centre = np.array([c.mean() for c in coords])
    half = np.array([(c.max() - c.min() + 1) * s / 2.0 for c, s in zip(coords, sp, strict=True)])
    radius = float(np.exp(np.log(half).mean()))
    for a in range(3):
        shape = [1, 1, 1]
        shape[a] = brain.shape[a]
        pos = ((np.arange(brain.shape[a]) - centre[a]) * sp[a] / half[a]).reshape(shape)
        out[a] = np.where(brain, pos, 0.0)
    out[3] = np.abs(out[0])
    depth = ndimage.distance_transform_edt(brain, sampling=sp)
    out[4] = depth / radius
    vent = ventricle_mask(image[dark_channel], brain, depth)
    if vent.any():
        out[5] = np.where(brain, ndimage.distance_transform_edt(~vent, sampling=sp) / radius, 0.0)
    else:
        logger.warning("no ventricles found: the distance-to-ventricles feature is left at 0")
    return out


class SpatialFeaturesd(MapTransform):
    """Compute :func:`spatial_features` of ``keys`` (a RAS MetaTensor; its ``pixdim`` gives the spacing)
    into ``output_key`` (same spatial shape, :data:`SPATIAL_FEATURES` channels; 0 channels when
    ``enabled`` is False, so a network without them uses the same pipeline). The features go in their own
    key so that intensity augmentation leaves them alone; :class:`AppendChannelsd` adds them to the
    image last."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        output_key: str = "features",
        dark_channel: int = 0,
        enabled: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key, self.dark_channel, self.enabled = output_key, int(dark_channel), bool(enabled)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if not self.enabled:
                d[self.output_key] = torch.zeros((0, *img.shape[1:]), dtype=torch.float32)
                continue
            spacing = img.pixdim.tolist() if isinstance(img, MetaTensor) else (1.0, 1.0, 1.0)
            arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
            d[self.output_key] = torch.from_numpy(spatial_features(arr, spacing[:3], self.dark_channel))
        return d


class AppendChannelsd(MapTransform):
    """Append the channels of ``source_key`` to each of ``keys`` (same spatial shape) and remove
    ``source_key``; a MetaTensor keeps its metadata and transform history (so ``Invertd`` still works)."""

    def __init__(self, keys: KeysCollection = "image", source_key: str = "features") -> None:
        super().__init__(keys)
        self.source_key = source_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        extra = d.pop(self.source_key)
        for key in self.key_iterator(d):
            img = d[key]
            if tuple(extra.shape[1:]) != tuple(img.shape[1:]):
                raise ValueError(
                    f"{self.source_key}: spatial shape {tuple(extra.shape[1:])} differs from {key}'s "
                    f"{tuple(img.shape[1:])}"
                )
            plain = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
            more = extra.as_tensor() if isinstance(extra, MetaTensor) else torch.as_tensor(extra)
            joined = torch.cat([plain, more.to(dtype=plain.dtype, device=plain.device)])
            if isinstance(img, MetaTensor):
                joined = MetaTensor(joined, meta=img.meta, applied_operations=img.applied_operations)
            d[key] = joined
        return d
