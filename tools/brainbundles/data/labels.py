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
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "BRATS_INTERNAL_LABELS",
    "BRATS_REGIONS",
    "LABEL_CONVENTIONS",
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
