"""Label conventions: how a data set numbers its labels, mapped to one internal numbering per task.

Brain tumour data sets number the same three sub-regions differently:

=============  ======================================  ==================================
convention     file values                             source
=============  ======================================  ==================================
``brats2019``  1 necrosis / non-enhancing core,        BraTS 2017-2021 (the 2018 bundle of
               2 edema, 4 enhancing                    the MONAI model zoo)
``brats2023``  1 NETC, 2 SNFH (edema), 3 ET            BraTS 2023+
``msd_task01`` 1 edema, 2 non-enhancing, 3 enhancing   Medical Segmentation Decathlon Task01
=============  ======================================  ==================================

The tumour bundle works in the **internal** numbering, which is the 2023 one: 0 background,
1 necrosis / non-enhancing core, 2 edema, 3 enhancing. A datalist item names its file convention in
``"label_convention"``; transforms map it to the internal numbering on loading, and the bundle writes its
output in the convention the user asks for.

The BraTS evaluation regions (Menze et al., IEEE TMI 2015; Bakas et al. 2018) in internal values:
whole tumour (WT) = 1, 2, 3; tumour core (TC) = 1, 3; enhancing tumour (ET) = 3.

Each task's label names (Decathlon form, ``{"value": "name"}``) and channels (in the bundles' order) are
here too, for the datalist layouts (:mod:`brainbundles.data.datalist`) and the phantoms
(:mod:`brainbundles.data.phantom`) alike: tissue (:data:`IBSR_CHANNELS`, :data:`IBSR_TISSUE_LABELS`,
:data:`PHANTOM_LABELS`), brain tumour (:data:`BRATS_CHANNELS`, :data:`MSD_TASK01_CHANNELS`,
:data:`BRATS_LABELS`), white-matter hyperintensities (:data:`WMH_CHANNELS`, :data:`WMH_LABELS`) and MS
lesions (:data:`MS_CHANNELS`, :data:`MS_REQUIRED_CHANNELS`, :data:`MS_LABELS`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "BRATS_CHANNELS",
    "BRATS_INTERNAL_LABELS",
    "BRATS_LABELS",
    "BRATS_REGIONS",
    "IBSR_CHANNELS",
    "IBSR_TISSUE_LABELS",
    "LABEL_CONVENTIONS",
    "MSD_TASK01_CHANNELS",
    "MS_CHANNELS",
    "MS_LABELS",
    "MS_REQUIRED_CHANNELS",
    "PHANTOM_LABELS",
    "WMH_CHANNELS",
    "WMH_LABELS",
    "convention_names",
    "convention_values",
    "from_internal",
    "to_internal",
]

#: file value -> internal value, per convention
LABEL_CONVENTIONS: dict[str, dict[int, int]] = {
    "brats2019": {0: 0, 1: 1, 2: 2, 4: 3},
    "brats2023": {0: 0, 1: 1, 2: 2, 3: 3},
    "msd_task01": {0: 0, 1: 2, 2: 1, 3: 3},
}

#: label names of each convention (Decathlon form, ``{"value": "name"}``)
_NAMES: dict[str, dict[str, str]] = {
    "brats2019": {"0": "background", "1": "necrosis / non-enhancing core", "2": "edema", "4": "enhancing"},
    "brats2023": {"0": "background", "1": "NETC", "2": "SNFH", "3": "ET"},
    "msd_task01": {"0": "background", "1": "edema", "2": "non-enhancing tumour", "3": "enhancing tumour"},
}

#: the tumour bundle's internal labels
BRATS_INTERNAL_LABELS: dict[str, str] = {
    "0": "background",
    "1": "necrosis / non-enhancing core",
    "2": "edema",
    "3": "enhancing tumour",
}

#: BraTS evaluation regions as sets of internal label values, in the bundle's output channel order
BRATS_REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


def _convention(name: str) -> Mapping[int, int]:
    if name not in LABEL_CONVENTIONS:
        raise ValueError(f"label_convention: unknown {name!r}; known: {', '.join(sorted(LABEL_CONVENTIONS))}")
    return LABEL_CONVENTIONS[name]


def convention_values(name: str) -> list[int]:
    """The label values a file in convention ``name`` may hold."""
    return sorted(_convention(name))


def convention_names(name: str) -> dict[str, str]:
    """``{"value": "name"}`` of the labels of convention ``name``."""
    _convention(name)
    return dict(_NAMES[name])


def _lookup(mapping: Mapping[int, int], label: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(label)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"label: non-integer values; the {what} has integer labels {sorted(mapping)}")
        arr = arr.astype(np.int64)
    values = np.unique(arr)
    bad = [v for v in values.tolist() if v not in mapping]
    if bad:
        raise ValueError(f"label: values {bad} are not in the {what} (allowed {sorted(mapping)})")
    table = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for k, v in mapping.items():
        table[k] = v
    return table[arr.astype(np.int64)]


def to_internal(label: np.ndarray, convention: str) -> np.ndarray:
    """Map a label array in ``convention`` to the internal numbering (uint8)."""
    return _lookup(_convention(convention), label, f"{convention} convention")


def from_internal(label: np.ndarray, convention: str) -> np.ndarray:
    """Map an internal label array to ``convention`` (uint8)."""
    inverse = {v: k for k, v in _convention(convention).items()}
    return _lookup(inverse, label, "internal numbering")


# ----------------------------------------------------------------------------------- task labels and channels

#: label values of the BraTS conventions (the datalist records which one a data set uses)
BRATS_LABELS = {name: convention_names(name) for name in ("brats2019", "brats2023", "msd_task01")}
#: BraTS channels in the bundles' order, and the file-name suffixes each is found under
BRATS_CHANNELS: dict[str, tuple[str, ...]] = {
    "T1": ("t1", "t1n"),
    "T1c": ("t1ce", "t1c", "t1post", "t1gd"),
    "T2": ("t2", "t2w"),
    "FLAIR": ("flair", "t2f"),
}
#: Decathlon Task01 channel order (its dataset.json "modality"), used when dataset.json is absent
MSD_TASK01_CHANNELS = ("FLAIR", "T1", "T1c", "T2")

#: the channel of the tissue (IBSR18) data: a T1-weighted scan
IBSR_CHANNELS = ("T1",)
#: labels of IBSR's 3-class ``_segTRI_ana`` files
IBSR_TISSUE_LABELS = {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}
#: the label values of the phantoms' tissue map (``brainbundles.data.phantom.Phantom.label``): IBSR's
PHANTOM_LABELS: dict[str, str] = dict(IBSR_TISSUE_LABELS)

#: labels of the MICCAI 2017 WMH segmentation challenge's ``wmh.nii.gz`` files (2 = other pathology, which
#: the challenge excludes from its evaluation)
WMH_LABELS = {"0": "background", "1": "WMH", "2": "other pathology"}
#: WMH channels in the bundle's order (FLAIR first: the challenge's reference grid)
WMH_CHANNELS = ("FLAIR", "T1")

#: labels of the MS lesion masks (ISBI 2015, MSSEG 2016, the open MS data of Lesjak et al.)
MS_LABELS = {"0": "background", "1": "lesion"}
#: MS channels in the bundle's order (FLAIR first); FLAIR and T1 must be in every case, the others may be
#: missing (a case then names the channels it has, in file order, in its item's ``"channels"``)
MS_CHANNELS = ("FLAIR", "T1", "T2", "PD", "T1Gd")
#: the MS channels every case must have
MS_REQUIRED_CHANNELS = ("FLAIR", "T1")
