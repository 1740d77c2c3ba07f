"""Phantom data sets on disk: :func:`write_phantom_dataset`.

It writes a whole data set in the layout of a real one (``"tissue"``: IBSR18; ``"tumour"``: BraTS 2018-2021;
``"wmh"``: the MICCAI 2017 WMH challenge; ``"ms"``: the MICCAI 2016 MSSEG challenge), with a manifest and a
MONAI (Decathlon-style) datalist whose folds are dealt as :func:`brainbundles.data.datalist.make_datalist`
deals them (:func:`brainbundles.data.folds.assign_folds`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from brainbundles.data.folds import assign_folds
from brainbundles.data.labels import (
    BRATS_CHANNELS,
    BRATS_LABELS,
    IBSR_CHANNELS,
    MS_CHANNELS,
    MS_LABELS,
    PHANTOM_LABELS,
    WMH_CHANNELS,
    WMH_LABELS,
    from_internal,
)
from brainbundles.data.phantom.make import (
    _DEFAULT_SHAPE,
    _DEFAULT_SPACING,
    Phantom,
    _check_orientation,
    _check_seed,
    _check_shape,
    _check_spacing,
    make_phantom,
)
from brainbundles.fileio import atomic_write, write_json_atomic

logger = logging.getLogger("brainbundles")


@dataclass(frozen=True)
class _Layout:
    """How a data set lays out its cases on disk (file names relative to the data set folder)."""

    name: str
    channels: tuple[str, ...]  # datalist channel names, one file each
    case_id: Callable[[int, int], str]  # (1-based case number, number of cases) -> case id
    image_files: Callable[[str], tuple[str, ...]]  # case id -> one relative path per channel
    label_file: Callable[[str], str]  # case id -> relative path of the label
    #: the datalist layout's channels when the files hold only some of them (``channels``, in this order):
    #: the datalist then lists these and every item names its own (as ``make_datalist`` does)
    datalist_channels: tuple[str, ...] | None = None


def _ibsr_id(number: int, total: int) -> str:
    return f"IBSR_{number:0{max(2, len(str(total)))}d}"


def _brats_id(number: int, total: int) -> str:
    return f"BraTS_phantom_{number:0{max(3, len(str(total)))}d}"


def _wmh_id(number: int, total: int) -> str:
    return f"Phantom_{number:0{max(3, len(str(total)))}d}"


def _wmh_dir(cid: str) -> str:
    """The WMH challenge folder ``<site>/<id>`` of a case id ``<site>_<id>``."""
    return cid.replace("_", "/", 1)


_LAYOUTS: dict[str, _Layout] = {
    "ibsr18": _Layout(
        name="ibsr18",
        channels=IBSR_CHANNELS,
        case_id=_ibsr_id,
        image_files=lambda cid: (f"{cid}/{cid}_ana_strip.nii.gz",),
        label_file=lambda cid: f"{cid}/{cid}_seg_ana.nii.gz",
    ),
    "brats": _Layout(  # BraTS 2018-2021
        name="brats",
        channels=tuple(BRATS_CHANNELS),
        case_id=_brats_id,
        image_files=lambda cid: tuple(f"{cid}/{cid}_{s}.nii.gz" for s in ("t1", "t1ce", "t2", "flair")),
        label_file=lambda cid: f"{cid}/{cid}_seg.nii.gz",
    ),
    "wmh": _Layout(  # MICCAI 2017 WMH challenge: <site>/<id>/pre/{FLAIR,T1}.nii.gz, <site>/<id>/wmh.nii.gz
        name="wmh",
        channels=WMH_CHANNELS,
        case_id=_wmh_id,
        image_files=lambda cid: tuple(f"{_wmh_dir(cid)}/pre/{s}.nii.gz" for s in ("FLAIR", "T1")),
        label_file=lambda cid: f"{_wmh_dir(cid)}/wmh.nii.gz",
    ),
    "msseg2016": _Layout(  # MICCAI 2016 MSSEG: <case>/Preprocessed_Data/<SEQ>_preprocessed, <case>/Masks/
        name="msseg2016",
        channels=("FLAIR", "T1", "T2", "PD"),
        case_id=_wmh_id,  # Phantom_001, ...
        image_files=lambda cid: tuple(
            f"{cid}/Preprocessed_Data/{s}_preprocessed.nii.gz" for s in ("FLAIR", "T1", "T2", "DP")
        ),
        label_file=lambda cid: f"{cid}/Masks/Consensus.nii.gz",
        datalist_channels=tuple(MS_CHANNELS),  # no GADO (T1Gd) file
    ),
}


@dataclass(frozen=True)
class _Task:
    """A phantom data set kind: its layout, the contrast written for each channel and the labels.

    ``make_label`` turns a rendered :class:`Phantom` into the task's label map (in the file convention);
    ``tumour`` renders the phantoms with a tumour; ``label_convention`` (a key of
    ``brainbundles.data.labels.LABEL_CONVENTIONS``), when set, is recorded in the manifest, the datalist
    and every datalist item.
    """

    name: str
    layout: str
    contrasts: tuple[str, ...]  # one per layout channel
    labels: dict[str, str]
    make_label: Callable[[Phantom], np.ndarray] = lambda p: p.label
    tumour: bool = False
    wmh: bool = False
    ms: bool = False
    label_convention: str | None = None


def _brats2019_label(p: Phantom) -> np.ndarray:
    assert p.tumour is not None
    return from_internal(p.tumour, "brats2019")


def _wmh_label(p: Phantom) -> np.ndarray:
    assert p.wmh is not None
    return p.wmh


def _ms_label(p: Phantom) -> np.ndarray:
    assert p.ms is not None
    return p.ms


_TASKS: dict[str, _Task] = {
    "tissue": _Task(name="tissue", layout="ibsr18", contrasts=("t1",), labels=PHANTOM_LABELS),
    "tumour": _Task(
        name="tumour",
        layout="brats",
        contrasts=("t1", "t1c", "t2", "flair"),
        labels=BRATS_LABELS["brats2019"],
        make_label=_brats2019_label,
        tumour=True,
        label_convention="brats2019",
    ),
    "wmh": _Task(
        name="wmh",
        layout="wmh",
        contrasts=("flair", "t1"),
        labels=WMH_LABELS,
        make_label=_wmh_label,
        wmh=True,
    ),
    "ms": _Task(
        name="ms",
        layout="msseg2016",
        contrasts=("flair", "t1", "t2", "pd"),
        labels=MS_LABELS,
        make_label=_ms_label,
        ms=True,
    ),
}

#: the tasks :func:`write_phantom_dataset` can write
PHANTOM_TASKS: tuple[str, ...] = tuple(_TASKS)


def _case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` (0-based) of the data set ``seed``."""
    return seed * 100003 + index


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_data_dtype(array.dtype)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    atomic_write(path, lambda tmp: nib.save(img, tmp))


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def write_phantom_dataset(
    task: str,
    out: str | os.PathLike,
    cases: int = 10,
    seed: int = 0,
    shape: Sequence[int] = _DEFAULT_SHAPE,
    spacing: Sequence[float] = _DEFAULT_SPACING,
    orientation: str = "RAS",
    test_cases: int = 0,
    folds: int = 5,
    dtype: str = "float32",
) -> Path:
    """Write a synthetic data set laid out like the real one for ``task``.

    ``"tissue"`` writes the IBSR18 layout: ``out/IBSR_01/IBSR_01_ana_strip.nii.gz`` (T1) and
    ``out/IBSR_01/IBSR_01_seg_ana.nii.gz`` (uint8 labels 0 background, 1 CSF, 2 GM, 3 WM), numbered
    ``01, 02, ...`` for ``cases + test_cases`` cases, the last ``test_cases`` being the held-out test set.
    ``"tumour"`` writes the BraTS 2018-2021 layout of tumour phantoms (``tumour=True``):
    ``out/BraTS_phantom_001/BraTS_phantom_001_{t1,t1ce,t2,flair}.nii.gz`` (channels T1, T1c, T2, FLAIR
    rendered from the contrasts t1, t1c, t2, flair) and ``..._seg.nii.gz`` (uint8 labels in the BraTS 2019
    convention: 1 necrosis / non-enhancing core, 2 edema, 4 enhancing); the manifest, the datalist and
    every datalist item carry ``"label_convention": "brats2019"``.
    ``"wmh"`` writes the WMH challenge layout of phantoms with white-matter lesions (``wmh=True``):
    ``out/Phantom/001/pre/{FLAIR,T1}.nii.gz`` and ``out/Phantom/001/wmh.nii.gz`` (uint8: 1 WMH, 2 other
    pathology), case ids ``Phantom_001, ...`` (as the ``"wmh"`` datalist layout names them).
    ``"ms"`` writes the MICCAI 2016 MSSEG layout of phantoms with multiple-sclerosis lesions (``ms=True``):
    ``out/Phantom_001/Preprocessed_Data/{FLAIR,T1,T2,DP}_preprocessed.nii.gz`` (the contrasts flair, t1,
    t2, pd; DP is MSSEG's name for PD) and ``out/Phantom_001/Masks/Consensus.nii.gz`` (uint8: 1 lesion),
    case ids ``Phantom_001, ...``; there is no GADO (T1Gd) file, so the datalist lists the ``"msseg2016"``
    layout's channels FLAIR, T1, T2, PD, T1Gd (so does the manifest) and every item its own
    (``"channels": ["FLAIR", "T1", "T2", "PD"]``), as ``make_datalist`` does for such cases.
    Case ``i`` (0-based) is :func:`make_phantom` of seed ``seed * 100003 + i``. Also written:
    ``out/phantom.json`` (manifest) and ``out/datalist.json``, a Decathlon-style datalist with paths
    relative to ``out``; the training cases get ``fold = rank % folds`` where ``rank`` is their position in
    ``numpy.random.default_rng(seed).permutation(cases)`` (:func:`brainbundles.data.folds.assign_folds`, as
    ``brainbundles.data.datalist.make_datalist`` deals folds). Every file is written atomically (temporary
    file in the same folder, then ``os.replace``); existing files of the same names are replaced, others are
    left alone.

    Args:
        task: one of :data:`PHANTOM_TASKS`.
        out: the data set folder (created if needed).
        cases: number of training cases (>= 1).
        seed: data set seed (non-negative integer).
        shape, spacing, orientation: as for :func:`make_phantom`.
        test_cases: number of extra held-out cases (>= 0).
        folds: number of cross-validation folds (1 <= folds <= cases).
        dtype: image file data type, ``"float32"`` or ``"int16"`` (rounded and clipped).

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: an unknown ``task`` or ``dtype``, or a bad ``cases``, ``test_cases``, ``folds``,
            ``seed``, ``shape``, ``spacing`` or ``orientation``.
    """
    if task not in _TASKS:
        raise ValueError(f"task: unknown task {task!r}; known tasks are {list(PHANTOM_TASKS)}")
    spec = _TASKS[task]
    layout = _LAYOUTS[spec.layout]
    cases = _check_count("cases", cases, 1)
    test_cases = _check_count("test_cases", test_cases, 0)
    folds = _check_count("folds", folds, 1)
    if folds > cases:
        raise ValueError(f"folds: {folds} folds need at least as many training cases, got cases={cases}")
    if dtype not in ("float32", "int16"):
        raise ValueError(f"dtype: expected 'float32' or 'int16', got {dtype!r}")
    seed = _check_seed(seed)
    shape = _check_shape(shape)
    spacing = _check_spacing(spacing)
    orientation = _check_orientation(orientation)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    channels = list(layout.datalist_channels or layout.channels)
    total = cases + test_cases
    entries: list[dict[str, Any]] = []
    for i in range(total):
        cid = layout.case_id(i + 1, total)
        ph = make_phantom(
            _case_seed(seed, i),
            shape,
            spacing,
            orientation,
            spec.contrasts,
            tumour=spec.tumour,
            wmh=spec.wmh,
            ms=spec.ms,
        )
        images = layout.image_files(cid)
        for rel, contrast in zip(images, spec.contrasts, strict=True):
            data = ph.images[contrast]
            if dtype == "int16":
                data = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            _save_nifti(data, ph.affine, out / rel)
        label_rel = layout.label_file(cid)
        (out / label_rel).parent.mkdir(parents=True, exist_ok=True)
        _save_nifti(spec.make_label(ph).astype(np.uint8), ph.affine, out / label_rel)
        entry: dict[str, Any] = {"image": list(images), "label": label_rel, "case": cid}
        if channels != list(layout.channels):
            entry["channels"] = list(layout.channels)
        if spec.label_convention is not None:
            entry["label_convention"] = spec.label_convention
        entries.append(entry)
        logger.info("phantom %d of %d written: %s", i + 1, total, cid)

    fold_of = assign_folds(cases, range(folds), np.random.default_rng(seed))
    training = [{**e, "fold": fold_of[i]} for i, e in enumerate(entries[:cases])]
    name = f"phantom-{task}"
    datalist = {
        "name": name,
        "layout": "phantom",  # make_datalist("phantom", out, folds, seed) rebuilds this same datalist
        "channels": channels,
        "labels": dict(spec.labels),
        "folds": folds,
        "seed": seed,
        "numTraining": len(training),
        "numTest": test_cases,
        "training": training,
        "testing": entries[cases:],
    }
    manifest = {
        "task": task,
        "name": name,
        "layout": layout.name,
        "cases": cases,
        "test_cases": test_cases,
        "seed": seed,
        "shape": list(shape),
        "spacing": list(spacing),
        "orientation": orientation,
        "folds": folds,
        "dtype": dtype,
        "channels": channels,
        "labels": dict(spec.labels),
        "generator": "brainbundles.data.phantom",
    }
    if spec.label_convention is not None:
        datalist["label_convention"] = manifest["label_convention"] = spec.label_convention
    write_json_atomic(manifest, out / "phantom.json")
    write_json_atomic(datalist, out / "datalist.json")
    return out
