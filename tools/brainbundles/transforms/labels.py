"""Label conversions for region-based training: a file's label convention -> the internal numbering
-> overlapping region channels (whole tumour, tumour core, enhancing), and back to a label map in the
convention the user asks for. Conventions and regions are defined in :mod:`brainbundles.data.labels`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from brainbundles.data.labels import BRATS_REGIONS, from_internal, to_internal

__all__ = [
    "ConvertLabelConventiond",
    "IgnoreLabeld",
    "LabelArgmaxd",
    "LabelToRegionsd",
    "RegionsToLabeld",
    "label_argmax",
    "regions_to_label",
]


def _like(array: np.ndarray, ref: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """``array`` as the type of ``ref``, keeping a MetaTensor's metadata and applied operations."""
    if isinstance(ref, MetaTensor):
        return MetaTensor(
            torch.as_tensor(array, device=ref.device),
            meta=ref.meta,
            applied_operations=ref.applied_operations,
        )
    if isinstance(ref, torch.Tensor):
        return torch.as_tensor(array, device=ref.device)
    return array


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class IgnoreLabeld(MapTransform):
    """Take the voxels labelled ``ignore_label`` in ``label_key`` out of scoring: they become background in
    each of ``keys`` (label maps, e.g. the argmax prediction) and in the label itself. The WMH challenge
    scores this way: label 2, other pathology, is masked out of both maps (Kuijf et al., IEEE TMI 2019)."""

    def __init__(
        self,
        keys: KeysCollection = "pred",
        label_key: str = "label",
        ignore_label: int = 2,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_key, self.ignore_label = label_key, int(ignore_label)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        ignored = d[self.label_key] == self.ignore_label
        for key in [*self.key_iterator(d), self.label_key]:
            if tuple(d[key].shape) != tuple(ignored.shape):
                raise ValueError(
                    f"{key}: shape {tuple(d[key].shape)} differs from {self.label_key}'s {tuple(ignored.shape)}"
                )
            d[key] = torch.where(torch.as_tensor(ignored), torch.zeros_like(d[key]), d[key])
        return d


class ConvertLabelConventiond(MapTransform):
    """Map a label in the convention named by the data dict's ``convention_key`` (a datalist item's
    ``"label_convention"``; ``default`` when absent) to the internal numbering."""

    def __init__(
        self,
        keys: KeysCollection,
        convention_key: str = "label_convention",
        default: str = "brats2023",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.convention_key = convention_key
        self.default = default

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        convention = d.pop(self.convention_key, None) or self.default  # popped: mixed data sets batch
        for key in self.key_iterator(d):
            d[key] = _like(to_internal(_numpy(d[key]), str(convention)), d[key])
        return d


class LabelToRegionsd(MapTransform):
    """Internal label (1 x spatial) -> one binary channel per region of ``regions`` (default WT, TC, ET)."""

    def __init__(
        self,
        keys: KeysCollection,
        regions: Mapping[str, tuple[int, ...]] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.regions = dict(regions or BRATS_REGIONS)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            lab = d[key]
            if isinstance(lab, torch.Tensor):
                parts = [
                    torch.isin(lab[0], torch.as_tensor(v, device=lab.device)) for v in self.regions.values()
                ]
                d[key] = torch.stack(parts).to(torch.float32)
            else:
                d[key] = np.stack([np.isin(lab[0], v) for v in self.regions.values()]).astype(np.float32)
        return d


def regions_to_label(regions: np.ndarray) -> np.ndarray:
    """Binary (WT, TC, ET) channels -> internal label map: edema where WT, necrosis / non-enhancing where
    TC, enhancing where ET (each overriding the one before, so the regions nest by construction)."""
    regions = np.asarray(regions) > 0
    label = np.zeros(regions.shape[1:], dtype=np.uint8)
    label[regions[0]] = 2
    label[regions[1]] = 1
    label[regions[2]] = 3
    return label


class RegionsToLabeld(MapTransform):
    """Binary region channels (WT, TC, ET) -> a 1-channel label map in ``convention``."""

    def __init__(
        self, keys: KeysCollection, convention: str = "brats2023", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.convention = convention
        from_internal(np.zeros(1, np.uint8), convention)  # unknown conventions fail here, at config time

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            label = from_internal(regions_to_label(_numpy(d[key])), self.convention)[None]
            d[key] = _like(label, d[key])
        return d


def label_argmax(probs: torch.Tensor) -> torch.Tensor:
    """The label map (1 x spatial, uint8 for up to 256 classes) of channel-first class scores: the
    index of the largest channel, the first on ties, as ``torch.argmax(probs, 0)`` gives. One pass
    per channel of elementwise comparisons: on this project's 2-core CPU 0.20 s for 4 x 256 x 128 x 256
    where ``torch.argmax`` over the channel axis takes 1.24 s."""
    scores = probs.as_tensor() if isinstance(probs, MetaTensor) else torch.as_tensor(probs)
    dtype = torch.uint8 if scores.shape[0] <= 256 else torch.int64
    best = scores[0].clone()
    labels = torch.zeros(scores.shape[1:], dtype=dtype, device=scores.device)
    for c in range(1, scores.shape[0]):
        better = scores[c] > best  # strict: ties keep the lower index, NaN never wins
        labels[better] = c
        torch.maximum(best, scores[c], out=best)
    return labels[None]


class LabelArgmaxd(MapTransform):
    """:func:`label_argmax` of ``keys`` (channel-first class probabilities), keeping a MetaTensor's
    metadata: the label map that ``AsDiscreted(argmax=True)`` gives, as uint8, about 6x faster."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            labels = label_argmax(pred)
            if isinstance(pred, MetaTensor):
                labels = MetaTensor(labels, meta=pred.meta, applied_operations=pred.applied_operations)
            d[key] = labels
        return d
