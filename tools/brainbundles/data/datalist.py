"""Dataset layouts -> MONAI (Decathlon-style) datalists with reproducible cross-validation folds.

:func:`make_datalist` finds the cases of a dataset laid out on disk in a known way (a *layout*), and returns
(and optionally writes) a datalist::

    {
      "name": "IBSR18", "layout": "ibsr18", "channels": ["T1"],
      "labels": {"0": "background", "1": "CSF", "2": "GM", "3": "WM"},     # when known
      "folds": 5, "seed": 0, "numTraining": 14, "numTest": 4,
      "training": [{"image": ["IBSR_01/IBSR_01_ana_strip.nii.gz"], "label": "IBSR_01/IBSR_01_segTRI_ana.nii.gz",
                    "fold": 3, "case": "IBSR_01"}, ...],
      "testing":  [{"image": [...], "case": "IBSR_17"}, ...]             # "label" too when the case has one
    }

All paths are relative to ``root`` (POSIX separators), so a bundle's ``dataset_dir`` can be set to ``root``.
``image`` is always a list with one path per channel, in ``channels`` order.

Splitting (all reproducible from ``seed``):

1. cases are sorted by case id;
2. cases without a label, and cases a layout forces into testing (``phantom``: the manifest's last
   ``test_cases``), go to ``"testing"``;
3. with ``test_fraction > 0``, ``round(test_fraction * n)`` (at least one) of the remaining labelled cases are
   drawn with ``numpy.random.default_rng(seed)`` and moved to ``"testing"`` (they keep their label);
4. cases a layout gives a fixed fold (``ibsr18`` MAIA split: the reference study's held-back IBSR_07 and
   IBSR_16 are fold 0) keep it; the remaining cases are shuffled with the same generator
   (``rng.permutation``) and dealt round-robin to the folds no fixed case uses (to all folds when every
   fold has one), so those folds' sizes differ by at most one (:func:`brainbundles.data.folds.assign_folds`,
   which deals the phantom data sets' folds too).

Layouts are functions registered in :data:`LAYOUTS` (see :func:`register_layout`): ``ibsr18``, ``folder``,
``brats``, ``brats2023``, ``msd_task01``, ``wmh``, the MS lesion layouts ``isbi2015``, ``msseg2016`` and
``ms_open``, and ``phantom``; adding one is one decorated function returning a :class:`LayoutResult`.
Layouts only read the data set: the ISBI 2015 raters' consensus masks (``rater="consensus"``) are written
beforehand, as a step of its own, by :func:`write_isbi_consensus` (``brainbundles isbi-consensus``).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from brainbundles.data.folds import assign_folds
from brainbundles.data.labels import (
    BRATS_CHANNELS,
    BRATS_LABELS,
    IBSR_CHANNELS,
    IBSR_TISSUE_LABELS,
    MS_CHANNELS,
    MS_LABELS,
    MS_REQUIRED_CHANNELS,
    MSD_TASK01_CHANNELS,
    WMH_CHANNELS,
    WMH_LABELS,
)
from brainbundles.data.sequences import normalise_channel
from brainbundles.fileio import atomic_write, write_json_atomic

__all__ = [
    "IBSR_REFERENCE_VALIDATION",
    "LAYOUTS",
    "Case",
    "LayoutResult",
    "make_datalist",
    "register_layout",
    "write_isbi_consensus",
]

logger = logging.getLogger("brainbundles")

NIFTI_EXTS = (".nii.gz", ".nii")


@dataclass
class Case:
    """One case found by a layout: absolute paths (one image per channel, in channel order)."""

    case: str
    image: list[Path]
    label: Path | None = None
    #: the channels the image file(s) hold, in file order, when not the datalist's channel order
    #: (e.g. a Decathlon 4D file)
    channels: list[str] | None = None


@dataclass
class LayoutResult:
    """What a layout function returns."""

    cases: list[Case]
    channels: list[str]
    name: str
    labels: dict[str, str] | None = None
    #: case ids that must go to "testing" whatever the split (e.g. a phantom's held-out cases)
    test_cases: list[str] = field(default_factory=list)
    #: how the label files number their classes (a key of brainbundles.data.labels.LABEL_CONVENTIONS)
    label_convention: str | None = None
    #: training cases with a fixed fold (e.g. a study's own validation cases); the others are dealt to the
    #: remaining folds
    fold_cases: dict[str, int] = field(default_factory=dict)


LayoutFn = Callable[..., LayoutResult]

#: registered layouts: ``name -> fn(root: Path, channels: list[str] | None, **options) -> LayoutResult``
LAYOUTS: dict[str, LayoutFn] = {}


def register_layout(name: str) -> Callable[[LayoutFn], LayoutFn]:
    """Decorator registering a layout function under ``name`` (see :data:`LAYOUTS`)."""

    def deco(fn: LayoutFn) -> LayoutFn:
        if name in LAYOUTS:
            raise ValueError(f"layout {name!r} is already registered")
        LAYOUTS[name] = fn
        return fn

    return deco


# ----------------------------------------------------------------------------------------------- helpers


def _strip_ext(name: str) -> tuple[str, str] | None:
    """(stem, extension) for a NIfTI file name, else None (case-insensitive extension match)."""
    lower = name.lower()
    for ext in NIFTI_EXTS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], name[-len(ext) :]
    return None


def _first_existing(candidates: Sequence[Path]) -> Path | None:
    for c in candidates:
        if c.is_file():
            return c
    return None


def _analyze_pair(stem: Path) -> Path | None:
    """``stem.hdr`` when both ``stem.hdr`` and ``stem.img`` exist (Analyze 7.5 / NIfTI pair)."""
    hdr, img = stem.with_name(stem.name + ".hdr"), stem.with_name(stem.name + ".img")
    if hdr.is_file() and img.is_file():
        return hdr
    if hdr.is_file() != img.is_file():
        present = hdr if hdr.is_file() else img
        raise ValueError(
            f"{present}: Analyze file without its companion {(img if present == hdr else hdr).name}"
        )
    return None


def _find_volume(stem: Path) -> Path | None:
    """``stem.nii.gz``, ``stem.nii`` or an Analyze pair ``stem.hdr``/``stem.img`` (listed as ``.hdr``)."""
    found = _first_existing([stem.with_name(stem.name + ext) for ext in NIFTI_EXTS])
    return found if found is not None else _analyze_pair(stem)


def _check_channels(channels: Sequence[str] | None, allowed: Sequence[str], layout: str) -> list[str]:
    if channels is None:
        return list(allowed)
    channels = [str(c) for c in channels]
    if [c.lower() for c in channels] != [c.lower() for c in allowed]:
        raise ValueError(f"layout {layout!r} has channels {list(allowed)}, got channels={channels}")
    return list(allowed)


def _normalise_labels(labels: Mapping[Any, Any] | None) -> dict[str, str] | None:
    """Decathlon form ``{"0": "background", ...}`` from either ``{value: name}`` or ``{name: value}``."""
    if not labels:
        return None
    items = list(labels.items())
    if all(re.fullmatch(r"-?\d+", str(k)) for k, _ in items):
        pairs = [(int(k), str(v)) for k, v in items]
    elif all(isinstance(v, int) or re.fullmatch(r"-?\d+", str(v)) for _, v in items):
        pairs = [(int(v), str(k)) for k, v in items]
    else:
        raise ValueError(
            f"labels must map integer values to names (or names to values), got {dict(labels)!r}"
        )
    return {str(v): name for v, name in sorted(pairs)}


# ------------------------------------------------------------------------------------------------ layouts

_IBSR_DIR = re.compile(r"IBSR_\d+")
_IBSR_LABEL_KINDS = ("segTRI", "segTRI_fill", "seg")


#: the MAIA split's folders: (folder, labelled cases go to "training" (True) or "testing" (False))
_IBSR_MAIA_SETS = (("Training_Set", True), ("Validation_Set", False), ("Test_Set", False))
#: the cases the IBSR18 reference study (Gómez, Vaca, Tascón 2020) held back from its training set for
#: model selection: fold 0 of a MAIA-layout datalist
IBSR_REFERENCE_VALIDATION = ("IBSR_07", "IBSR_16")


def _ibsr_maia_cases(root: Path) -> tuple[list[Case], list[str]]:
    """The MAIA layout: ``<root>/{Training_Set,Validation_Set,Test_Set}/IBSR_nn/IBSR_nn.nii.gz`` (+
    ``IBSR_nn_seg.nii.gz``). Returns the cases and the ids that must go to "testing" (every
    ``Validation_Set`` and ``Test_Set`` case: labelled or not, they are not for training)."""
    cases: list[Case] = []
    testing: list[str] = []
    for folder, trains in _IBSR_MAIA_SETS:
        base = root / folder
        if not base.is_dir():
            continue
        for d in sorted(p for p in base.iterdir() if p.is_dir() and _IBSR_DIR.fullmatch(p.name)):
            cid = d.name
            image = _find_volume(d / cid)
            if image is None:
                raise ValueError(
                    f"ibsr18 layout: case folder {d} has no image {cid}.nii.gz / .nii / .hdr+.img"
                )
            cases.append(Case(cid, [image], _find_volume(d / f"{cid}_seg")))
            if not trains:
                testing.append(cid)
    return cases, testing


@register_layout("ibsr18")
def _layout_ibsr18(root: Path, channels: Sequence[str] | None = None, label: str = "auto") -> LayoutResult:
    """IBSR 18 (Internet Brain Segmentation Repository), in either of the two layouts people have it.

    * **MAIA split** (the common distribution, and the split of the reference study): ``<root>/Training_Set``,
      ``<root>/Test_Set`` and (when present) ``<root>/Validation_Set``, each with ``IBSR_nn/IBSR_nn.nii.gz``
      (channel ``T1``) and, where labelled, ``IBSR_nn_seg.nii.gz`` (0 background, 1 CSF, 2 GM, 3 WM).
      ``Training_Set`` cases are training cases; ``Validation_Set`` (labelled) and ``Test_Set`` (unlabelled)
      cases go to "testing". The reference study's held-back scans :data:`IBSR_REFERENCE_VALIDATION`
      (IBSR_07, IBSR_16) are fold 0; the other training cases are dealt to the other folds.
    * **NITRC original**: ``<root>/IBSR_nn/IBSR_nn_ana_strip.{nii.gz,nii,hdr+img}`` is the image; the label
      is ``IBSR_nn_segTRI_ana`` (3 classes: 1 CSF, 2 GM, 3 WM) or ``IBSR_nn_seg_ana`` (the full structure
      labelling), same extensions. Analyze pairs are listed by their ``.hdr`` path.

    Option ``label`` (NITRC layout only): ``"auto"`` (default) takes ``_segTRI_ana`` when it exists and
    ``_seg_ana`` otherwise; ``"segTRI"``, ``"segTRI_fill"`` or ``"seg"`` ask for that file only (cases without
    it have no label). Under ``"auto"`` a dataset must not mix the two kinds (a ValueError names the cases),
    since 3-class and structure labels cannot be trained together. ``labels`` is the tissue set when
    ``_segTRI`` files are used, and unknown (absent) for ``_seg_ana`` files.
    """
    channels = _check_channels(channels, list(IBSR_CHANNELS), "ibsr18")
    if label != "auto" and label not in _IBSR_LABEL_KINDS:
        raise ValueError(
            f"ibsr18 layout: label={label!r}, expected 'auto' or one of {list(_IBSR_LABEL_KINDS)}"
        )
    if any((root / folder).is_dir() for folder, _ in _IBSR_MAIA_SETS):
        if label != "auto":
            raise ValueError(
                f"ibsr18 layout: label={label!r} applies to the NITRC layout (_segTRI_ana files); {root} is "
                "in the MAIA layout (IBSR_nn_seg.nii.gz tissue labels)"
            )
        cases, testing = _ibsr_maia_cases(root)
        if not cases:
            raise ValueError(
                f"ibsr18 layout: no cases found: searched for Training_Set/IBSR_<nn>/IBSR_<nn>.nii.gz (and "
                f"Validation_Set, Test_Set) under root {root}"
            )
        trained = {c.case for c in cases if c.label is not None and c.case not in testing}
        return LayoutResult(
            cases=cases,
            channels=channels,
            name="IBSR18",
            labels=IBSR_TISSUE_LABELS,
            test_cases=testing,
            fold_cases={c: 0 for c in IBSR_REFERENCE_VALIDATION if c in trained},
        )
    kinds = ("segTRI", "seg") if label == "auto" else (label,)
    cases = []
    kind_of: dict[str, str | None] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and _IBSR_DIR.fullmatch(p.name)):
        cid = d.name
        image = _find_volume(d / f"{cid}_ana_strip")
        if image is None:
            raise ValueError(
                f"ibsr18 layout: case folder {d} has no image {cid}_ana_strip.nii.gz / .nii / .hdr+.img"
            )
        lab, kind_of[cid] = None, None
        for kind in kinds:
            lab = _find_volume(d / f"{cid}_{kind}_ana")
            if lab is not None:
                kind_of[cid] = kind
                break
        cases.append(Case(cid, [image], lab))
    if not cases:
        raise ValueError(
            f"ibsr18 layout: no cases found: searched for folders IBSR_<nn>/IBSR_<nn>_ana_strip.nii.gz "
            f"(or .nii, .hdr/.img), or Training_Set/IBSR_<nn>/IBSR_<nn>.nii.gz, under root {root}"
        )
    used = {k for k in kind_of.values() if k is not None}
    if label == "auto" and len(used) > 1:
        seg_only = sorted(c for c, k in kind_of.items() if k == "seg")
        raise ValueError(
            "ibsr18 layout: some cases have a 3-class _segTRI_ana label and others only a _seg_ana label "
            f"({', '.join(seg_only)}); pass label='segTRI' or label='seg' to choose one kind"
        )
    labels = IBSR_TISSUE_LABELS if used and used <= {"segTRI", "segTRI_fill"} else None
    return LayoutResult(cases=cases, channels=channels, name="IBSR18", labels=labels)


_NNUNET_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<index>\d{4})$")


@register_layout("folder")
def _layout_folder(
    root: Path,
    channels: Sequence[str] | None = None,
    images_dir: str = "images",
    labels_dir: str = "labels",
    labels: Mapping[Any, Any] | None = None,
) -> LayoutResult:
    """Images and labels matched by name.

    ``<root>/<images_dir>/<case>[_<channel>].nii[.gz]`` and ``<root>/<labels_dir>/<case>.nii[.gz]``.

    * one channel (``channels`` None or one name): each image file is a case; a ``_<channel>`` suffix
      (case-insensitive) or an nnU-Net ``_0000`` suffix is dropped from the case id;
    * several channels: ``<case>_<channel>`` (case-insensitive) or nnU-Net ``<case>_<iiii>`` (``iiii`` =
      channel index) files are grouped per case; a missing channel, an unrecognised file or two files for
      the same channel raise ValueError.

    Labels are optional: a case without a label file goes to "testing". Option ``labels`` sets the
    datalist's label names (``{value: name}`` or ``{name: value}``).
    """
    names = [str(c) for c in channels] if channels else ["image"]
    img_root, lab_root = root / images_dir, root / labels_dir
    if not img_root.is_dir():
        raise ValueError(
            f"folder layout: no cases found: images folder {img_root} does not exist "
            f"(searched <root>/{images_dir}/*.nii.gz, *.nii under root {root})"
        )
    files = []
    for p in sorted(img_root.iterdir()):
        split = _strip_ext(p.name) if p.is_file() else None
        if split is not None:
            files.append((split[0], p))
    if not files:
        raise ValueError(
            f"folder layout: no cases found: no *.nii.gz / *.nii files in {img_root} (root {root})"
        )

    by_suffix = sorted(((f"_{n.lower()}", i) for i, n in enumerate(names)), key=lambda t: -len(t[0]))

    def channel_of(stem: str) -> tuple[str, int] | None:
        low = stem.lower()
        for suffix, i in by_suffix:
            if low.endswith(suffix) and len(stem) > len(suffix):
                return stem[: -len(suffix)], i
        m = _NNUNET_SUFFIX.match(stem)
        if m:
            return m["case"], int(m["index"])
        return None

    # one channel: strip "_0000" only when every file has it (nnU-Net), so "case_0001" stays a case id
    all_nnunet = all(stem.endswith("_0000") for stem, _ in files)
    grouped: dict[str, dict[int, Path]] = {}
    for stem, path in files:
        found = channel_of(stem)
        if len(names) == 1:
            nnunet_only = _NNUNET_SUFFIX.match(stem) is not None and not stem.lower().endswith(
                by_suffix[0][0]
            )
            if found is not None and found[1] == 0 and (all_nnunet or not nnunet_only):
                cid, idx = found
            else:
                cid, idx = stem, 0
        else:
            if found is None:
                raise ValueError(
                    f"folder layout: image {path} matches no channel: expected <case>_<channel> with channel one "
                    f"of {names} (case-insensitive) or an nnU-Net index <case>_0000..<case>_{len(names) - 1:04d}"
                )
            cid, idx = found
            if idx >= len(names):
                raise ValueError(
                    f"folder layout: image {path} has channel index {idx:04d} but only {len(names)} channels "
                    f"{names} were given"
                )
        slot = grouped.setdefault(cid, {})
        if idx in slot:
            hint = " (pass channels=[...] for multi-channel cases)" if len(names) == 1 else ""
            raise ValueError(
                f"folder layout: case {cid!r} channel {names[idx]!r} has two files: {slot[idx]} and {path}{hint}"
            )
        slot[idx] = path

    cases = []
    for cid in sorted(grouped):
        slot = grouped[cid]
        missing = [names[i] for i in range(len(names)) if i not in slot]
        if missing:
            raise ValueError(
                f"folder layout: case {cid!r} is missing channel{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)} (expected {img_root}/{cid}_<channel>.nii.gz for "
                f"channels {names}, or nnU-Net {cid}_<iiii>.nii.gz)"
            )
        label = (
            _first_existing([lab_root / f"{cid}{ext}" for ext in NIFTI_EXTS]) if lab_root.is_dir() else None
        )
        cases.append(Case(cid, [slot[i] for i in range(len(names))], label))

    if lab_root.is_dir():
        known = set(grouped)
        orphans = sorted(
            p.name
            for p in lab_root.iterdir()
            if (s := _strip_ext(p.name)) is not None and p.is_file() and s[0] not in known
        )
        if orphans:
            logger.warning("folder layout: label files with no matching image in %s: %s", img_root, orphans)
    return LayoutResult(
        cases=cases, channels=names, name=root.name or "folder", labels=_normalise_labels(labels)
    )


def _brats_cases(root: Path, layout: str, sep: str) -> list[Case]:
    """``<root>/<case>/<case><sep><suffix>.nii[.gz]``, one file per channel (any listed suffix), plus
    ``<case><sep>seg``. A case folder missing a channel, or holding two files for one, is an error."""
    cases: list[Case] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        cid = d.name
        files = {}
        for f in d.iterdir():
            s = _strip_ext(f.name)
            if f.is_file() and s is not None and s[0].lower().startswith(cid.lower() + sep):
                files[s[0][len(cid) + len(sep) :].lower()] = f
        if not files:
            continue
        image = []
        for channel, suffixes in BRATS_CHANNELS.items():
            found = [files[x] for x in suffixes if x in files]
            if not found:
                raise ValueError(
                    f"{layout} layout: case {cid} in {d} has no {channel} file "
                    f"({' / '.join(cid + sep + x + '.nii.gz' for x in suffixes)})"
                )
            if len(found) > 1:
                raise ValueError(
                    f"{layout} layout: case {cid} has {channel} twice: {[f.name for f in found]}"
                )
            image.append(found[0])
        cases.append(Case(cid, image, files.get("seg")))
    if not cases:
        raise ValueError(
            f"{layout} layout: no cases found: searched for <case>/<case>{sep}<sequence>.nii.gz under root {root}"
        )
    return cases


@register_layout("brats")
def _layout_brats(root: Path, channels: Sequence[str] | None = None) -> LayoutResult:
    """BraTS 2018-2021: ``<case>/<case>_{t1,t1ce,t2,flair,seg}.nii[.gz]`` (T1c also as ``_t1post``,
    ``_t1gd`` or ``_t1c``); labels 1 necrosis / non-enhancing core, 2 edema, 4 enhancing."""
    channels = _check_channels(channels, list(BRATS_CHANNELS), "brats")
    cases = _brats_cases(root, "brats", "_")
    return LayoutResult(
        cases=cases,
        channels=channels,
        name="BraTS",
        labels=BRATS_LABELS["brats2019"],
        label_convention="brats2019",
    )


@register_layout("brats2023")
def _layout_brats2023(root: Path, channels: Sequence[str] | None = None) -> LayoutResult:
    """BraTS 2023+: ``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``; labels 1 NETC, 2 SNFH, 3 ET."""
    channels = _check_channels(channels, list(BRATS_CHANNELS), "brats2023")
    cases = _brats_cases(root, "brats2023", "-")
    return LayoutResult(
        cases=cases,
        channels=channels,
        name="BraTS2023",
        labels=BRATS_LABELS["brats2023"],
        label_convention="brats2023",
    )


@register_layout("msd_task01")
def _layout_msd_task01(root: Path, channels: Sequence[str] | None = None) -> LayoutResult:
    """Medical Segmentation Decathlon Task01_BrainTumour: ``imagesTr/BRATS_001.nii.gz`` (4D: FLAIR, T1w,
    T1gd, T2w, as its ``dataset.json`` says), ``labelsTr/BRATS_001.nii.gz`` (1 edema, 2 non-enhancing,
    3 enhancing) and unlabelled ``imagesTs``. Items keep the 4D file and name its channel order; the
    bundle reorders the channels on loading."""
    channels = _check_channels(channels, list(BRATS_CHANNELS), "msd_task01")
    file_channels = list(MSD_TASK01_CHANNELS)
    meta = root / "dataset.json"
    if meta.is_file():
        try:
            modality = json.loads(meta.read_text(encoding="utf-8")).get("modality") or {}
            file_channels = [
                normalise_channel(modality[k], channels) for k in sorted(modality, key=lambda k: int(k))
            ]
        except (ValueError, KeyError, AttributeError) as e:
            raise ValueError(
                f"msd_task01 layout: {meta}: cannot read its 'modality' channel names ({e})"
            ) from e
    cases = []
    for sub, labelled in (("imagesTr", True), ("imagesTs", False)):
        folder = root / sub
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            stem = _strip_ext(f.name)
            if stem is None or f.name.startswith(".") or not f.is_file():
                continue  # the Decathlon tar holds macOS "._*" files
            label = root / "labelsTr" / f.name if labelled else None
            if label is not None and not label.is_file():
                logger.warning("msd_task01 layout: %s has no label %s; it goes to testing", f, label)
                label = None
            cases.append(Case(stem[0], [f], label, channels=file_channels))
    if not cases:
        raise ValueError(
            f"msd_task01 layout: no cases found: searched imagesTr/ and imagesTs/ under root {root}"
        )
    return LayoutResult(
        cases=cases,
        channels=channels,
        name="Task01_BrainTumour",
        labels=BRATS_LABELS["msd_task01"],
        label_convention="msd_task01",
    )


def _case_dirs(root: Path, is_case: Callable[[Path], bool]) -> list[Path]:
    """Folders at any depth under ``root`` (``root`` included) for which ``is_case`` holds, sorted; hidden
    folders are skipped, a case folder is not searched further, and symbolic links are followed once."""
    found: list[Path] = []
    seen: set[str] = set()
    for top, dirs, _files in os.walk(root, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link loop, or the same folder linked twice
            dirs[:] = []
            continue
        seen.add(real)
        here = Path(top)
        if is_case(here):
            found.append(here)
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(found)


def _path_id(folder: Path, root: Path) -> str:
    """A case id from a case folder's path under ``root``: its parts joined with ``_`` (``root``'s own
    name when the case folder is ``root``)."""
    rel = folder.relative_to(root).parts
    return "_".join(rel) if rel else root.name


def _wmh_case_dirs(root: Path) -> list[Path]:
    """Folders at any depth under ``root`` that hold ``pre/FLAIR.nii[.gz]`` (see :func:`_case_dirs`)."""
    return _case_dirs(
        root, lambda d: _first_existing([d / "pre" / f"FLAIR{ext}" for ext in NIFTI_EXTS]) is not None
    )


@register_layout("wmh")
def _layout_wmh(root: Path, channels: Sequence[str] | None = None) -> LayoutResult:
    """MICCAI 2017 WMH segmentation challenge (Kuijf et al., IEEE TMI 2019).

    ``<root>/<site>/<id>/pre/{FLAIR,T1}.nii[.gz]`` and ``<root>/<site>/<id>/wmh.nii[.gz]`` (sites
    ``Utrecht``, ``Singapore``, ``GE3T``, ...; the 2017 test release nests ``Amsterdam/GE3T/<id>``). Any
    folder, at any depth, holding ``pre/FLAIR`` is a case; its id is its path under ``root`` with ``/``
    replaced by ``_`` (``Utrecht_0``, ``Amsterdam_GE3T_100``). Channels ``FLAIR``, ``T1`` (FLAIR first:
    the challenge's reference grid). A case without ``wmh`` has no label (it goes to "testing"); a case
    without ``pre/T1`` is an error. The ``orig/`` folder and other ``pre/`` files (``3DT1``) are ignored.
    Labels: 1 WMH, 2 other pathology.
    """
    channels = _check_channels(channels, list(WMH_CHANNELS), "wmh")
    cases: list[Case] = []
    for d in _wmh_case_dirs(root):
        cid = _path_id(d, root)
        image = []
        for channel in WMH_CHANNELS:
            f = _first_existing([d / "pre" / f"{channel}{ext}" for ext in NIFTI_EXTS])
            if f is None:
                raise ValueError(
                    f"wmh layout: case folder {d} has pre/FLAIR but no pre/{channel}.nii.gz / .nii"
                )
            image.append(f)
        cases.append(Case(cid, image, _first_existing([d / f"wmh{ext}" for ext in NIFTI_EXTS])))
    if not cases:
        raise ValueError(
            "wmh layout: no cases found: searched for folders <site>/<id>/pre/FLAIR.nii.gz (or .nii), at any "
            f"depth, under root {root}"
        )
    return LayoutResult(cases=cases, channels=channels, name="WMH2017", labels=dict(WMH_LABELS))


def _ms_case(
    layout: str, cid: str, found: Mapping[str, Path], label: Path | None, folder: Path, expect: str
) -> Case:
    """A case from its ``{channel: file}``: FLAIR and T1 required (a ValueError names ``folder`` and the
    files ``expect``-ed), the files in :data:`MS_CHANNELS` order, and ``channels`` set when some are
    missing."""
    missing = [c for c in MS_REQUIRED_CHANNELS if c not in found]
    if missing:
        raise ValueError(
            f"{layout} layout: case {cid} in folder {folder} has no {' and no '.join(missing)} image "
            f"({expect}); FLAIR and T1 are required in every case"
        )
    names = [c for c in MS_CHANNELS if c in found]
    return Case(
        cid, [found[c] for c in names], label, channels=None if len(names) == len(MS_CHANNELS) else names
    )


#: ISBI 2015 file-name sequences -> channels
_ISBI_SEQUENCES = {"flair": "FLAIR", "mprage": "T1", "t2": "T2", "pd": "PD"}
_ISBI_FILE = re.compile(r"(?P<tp>.+)_(?P<seq>flair|mprage|t2|pd)_pp\.nii(?:\.gz)?", re.IGNORECASE)
_ISBI_RATERS = ("mask1", "mask2", "consensus")


def _isbi_images(folder: Path) -> dict[str, dict[str, Path]]:
    """``{time point: {channel: file}}`` of the ``<tp>_<seq>_pp.nii[.gz]`` files in ``folder``; one
    sequence in two files (``.nii`` and ``.nii.gz``) is an error."""
    out: dict[str, dict[str, Path]] = {}
    if not folder.is_dir():
        return out
    for f in sorted(folder.iterdir()):
        m = _ISBI_FILE.fullmatch(f.name)
        if m is None or not f.is_file():
            continue
        channel = _ISBI_SEQUENCES[m["seq"].lower()]
        slot = out.setdefault(m["tp"], {})
        if channel in slot:
            raise ValueError(
                f"isbi2015 layout: time point {m['tp']} has {channel} twice: {slot[channel]} and {f}"
            )
        slot[channel] = f
    return out


def _isbi_time_points(root: Path) -> Iterator[tuple[Path, str, dict[str, Path]]]:
    """``(subject folder, time point, {channel: file})`` of every ISBI time point under ``root``: subjects
    (folders whose ``preprocessed/`` holds ``<tp>_<seq>_pp`` files, at any depth) sorted, then time points."""
    for d in _case_dirs(root, lambda d: bool(_isbi_images(d / "preprocessed"))):
        for tp, found in sorted(_isbi_images(d / "preprocessed").items()):
            yield d, tp, found


def _isbi_masks(masks: Path, tp: str, wanted: Sequence[str], who: str) -> dict[str, Path] | None:
    """The ``wanted`` raters' masks ``<masks>/<tp>_<rater>.nii[.gz]`` of a time point, or None when it has
    neither rater's mask (a test time point); a ValueError starting with ``who`` names a wanted mask that is
    missing while the other rater's exists."""
    mask = {r: _first_existing([masks / f"{tp}_{r}{ext}" for ext in NIFTI_EXTS]) for r in ("mask1", "mask2")}
    if all(m is None for m in mask.values()):
        return None
    found = {}
    for r in wanted:
        m = mask[r]
        if m is None:
            other = mask["mask2" if r == "mask1" else "mask1"]
            raise ValueError(
                f"{who} needs {masks / f'{tp}_{r}.nii'}[.gz], which is missing (while {other} exists)"
            )
        found[r] = m
    return found


def _isbi_consensus(mask1: Path, mask2: Path, out: Path) -> Path:
    """Write ``out``: the voxels both raters marked (``mask1 > 0`` and ``mask2 > 0``), uint8 0/1, on
    ``mask1``'s grid and with its header. Written atomically (a temporary file in the same folder, then
    renamed)."""
    a, b = nib.load(str(mask1)), nib.load(str(mask2))
    if a.shape != b.shape or not np.allclose(a.affine, b.affine, atol=1e-3):
        raise ValueError(
            f"isbi2015 consensus: {mask1} and {mask2} are not on the same voxel grid (shapes {a.shape} and "
            f"{b.shape}); cannot make their consensus"
        )
    data = ((np.asanyarray(a.dataobj) > 0) & (np.asanyarray(b.dataobj) > 0)).astype(np.uint8)
    header = a.header.copy()
    header.set_data_dtype(np.uint8)
    header["cal_min"], header["cal_max"] = 0, 1
    img = nib.Nifti1Image(data, a.affine, header)
    try:
        atomic_write(out, lambda tmp: nib.save(img, tmp))
    except OSError as e:
        raise ValueError(f"isbi2015 consensus: cannot write the consensus mask {out}: {e}") from e
    return out


def write_isbi_consensus(root: str | Path) -> list[Path]:
    """Write the raters' consensus masks of the ISBI 2015 data set under ``root`` (the ``isbi2015`` layout).

    For every time point with both raters' masks, ``<subject>/masks/<tp>_consensus.nii.gz``: the voxels
    **both** raters marked (the intersection of ``mask1 > 0`` and ``mask2 > 0``, not the union), uint8 0/1,
    with mask1's affine and header; each written atomically (a temporary file in the same folder, then
    renamed), replacing an existing one. Time points with neither mask (the test release) are skipped.
    ``make_datalist("isbi2015", root, rater="consensus")`` lists these files and does not write them; the
    command line's ``brainbundles isbi-consensus -i ROOT`` calls this.

    Returns:
        the consensus masks written, in subject and time point order.

    Raises:
        ValueError: ``root`` is not a folder, no time point under it has the raters' masks, a time point
            has one rater's mask but not the other's (the missing file named; nothing is written then),
            the two masks are not on one voxel grid, or a mask cannot be written.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise ValueError(f"isbi2015 consensus: root {root} does not exist or is not a folder")
    todo = []
    for d, tp, _found in _isbi_time_points(root):
        mask = _isbi_masks(d / "masks", tp, ("mask1", "mask2"), f"isbi2015 consensus of time point {tp}")
        if mask is not None:
            todo.append((mask["mask1"], mask["mask2"], d / "masks" / f"{tp}_consensus.nii.gz"))
    if not todo:
        raise ValueError(
            "isbi2015 consensus: no time point with the raters' masks: searched for folders <subject>/"
            "preprocessed/<tp>_flair_pp.nii with <subject>/masks/<tp>_mask1.nii and <tp>_mask2.nii (.nii or "
            f".nii.gz), at any depth, under root {root}"
        )
    return [_isbi_consensus(mask1, mask2, out) for mask1, mask2, out in todo]


@register_layout("isbi2015")
def _layout_isbi2015(root: Path, channels: Sequence[str] | None = None, rater: str = "mask1") -> LayoutResult:
    """ISBI 2015 longitudinal MS lesion segmentation challenge (Carass et al., NeuroImage 2017).

    ``<root>/training0N/preprocessed/training0N_0M_{flair,mprage,t2,pd}_pp.nii[.gz]`` with the two raters'
    masks ``<root>/training0N/masks/training0N_0M_mask1.nii[.gz]`` and ``_mask2``; the test release has
    ``testNN/preprocessed/testNN_0M_*_pp.nii`` and no masks. Any folder, at any depth, whose
    ``preprocessed/`` holds such files is a subject; each time point is a case, its id the files' prefix
    (``training01_01``, ``test03_02``). ``mprage`` is channel T1; FLAIR and T1 are required, T2 and PD
    optional (ISBI has no T1Gd, so every item names its channels). The ``orig/`` folder is ignored.

    Option ``rater``: ``"mask1"`` (default) or ``"mask2"``, that rater's mask; or ``"consensus"``, the voxels
    **both** raters marked, ``masks/<tp>_consensus.nii[.gz]``, which :func:`write_isbi_consensus`
    (``brainbundles isbi-consensus -i ROOT``) writes beforehand: listing writes nothing, and a labelled time
    point without its consensus mask is an error naming the file and that command. A time point with
    neither rater's mask has no label (it goes to "testing"); one with only the other rater's mask is an
    error naming the missing file. Labels: 1 lesion.
    """
    channels = _check_channels(channels, list(MS_CHANNELS), "isbi2015")
    if rater not in _ISBI_RATERS:
        raise ValueError(f"isbi2015 layout: rater={rater!r}, expected one of {list(_ISBI_RATERS)}")
    wanted = ("mask1", "mask2") if rater == "consensus" else (rater,)
    cases: list[Case] = []
    for d, tp, found in _isbi_time_points(root):
        pre, masks = d / "preprocessed", d / "masks"
        case = _ms_case("isbi2015", tp, found, None, pre, f"{tp}_flair_pp.nii[.gz], {tp}_mprage_pp.nii[.gz]")
        mask = _isbi_masks(masks, tp, wanted, f"isbi2015 layout: rater={rater!r}")
        if mask is not None and rater == "consensus":
            case.label = _first_existing([masks / f"{tp}_consensus{ext}" for ext in NIFTI_EXTS])
            if case.label is None:
                raise ValueError(
                    f"isbi2015 layout: rater='consensus' needs {masks / f'{tp}_consensus.nii.gz'}, which is "
                    f"missing: write the consensus masks first with `brainbundles isbi-consensus -i {root}` "
                    "(brainbundles.data.write_isbi_consensus)"
                )
        elif mask is not None:
            case.label = mask[rater]
        cases.append(case)
    if not cases:
        raise ValueError(
            "isbi2015 layout: no cases found: searched for folders <subject>/preprocessed/<tp>_flair_pp.nii "
            f"(or _mprage_pp, _t2_pp, _pd_pp; .nii or .nii.gz), at any depth, under root {root}"
        )
    return LayoutResult(cases=cases, channels=channels, name="ISBI2015", labels=dict(MS_LABELS))


#: MSSEG 2016 file-name sequences (``<NAME>_preprocessed.nii.gz``) -> channels
_MSSEG_SEQUENCES = {"FLAIR": "FLAIR", "T1": "T1", "T2": "T2", "DP": "PD", "GADO": "T1Gd"}


def _msseg_images(folder: Path) -> dict[str, Path]:
    pre = folder / "Preprocessed_Data"
    found = {}
    for name, channel in _MSSEG_SEQUENCES.items():
        f = _first_existing([pre / f"{name}_preprocessed{ext}" for ext in NIFTI_EXTS])
        if f is not None:
            found[channel] = f
    return found


@register_layout("msseg2016")
def _layout_msseg2016(root: Path, channels: Sequence[str] | None = None) -> LayoutResult:
    """MICCAI 2016 MS lesion segmentation challenge, MSSEG (Commowick et al., Sci. Rep. 2018).

    ``<root>/<patient>/Preprocessed_Data/{FLAIR,T1,T2,DP,GADO}_preprocessed.nii[.gz]`` and the label
    ``<root>/<patient>/Masks/Consensus.nii[.gz]`` (the 7 raters' consensus). Any folder, at any depth, whose
    ``Preprocessed_Data/`` holds one of these files is a case; its id is its path under ``root`` joined with
    ``_`` (centres nest patients: ``Center_01/Patient_01`` -> ``Center_01_Patient_01``). ``DP`` is channel PD
    and ``GADO`` T1Gd; FLAIR and T1 are required, T2, PD and T1Gd optional. A case without
    ``Masks/Consensus`` goes to "testing"; the raters' own masks and ``Raw_Data/`` are ignored. Labels: 1
    lesion.
    """
    channels = _check_channels(channels, list(MS_CHANNELS), "msseg2016")
    cases = []
    for d in _case_dirs(root, lambda d: bool(_msseg_images(d))):
        cid = _path_id(d, root)
        label = _first_existing([d / "Masks" / f"Consensus{ext}" for ext in NIFTI_EXTS])
        expect = "FLAIR_preprocessed.nii.gz, T1_preprocessed.nii.gz"
        cases.append(_ms_case("msseg2016", cid, _msseg_images(d), label, d / "Preprocessed_Data", expect))
    if not cases:
        raise ValueError(
            "msseg2016 layout: no cases found: searched for folders <patient>/Preprocessed_Data/"
            f"FLAIR_preprocessed.nii.gz (or T1, T2, DP, GADO; .nii.gz or .nii), at any depth, under root {root}"
        )
    return LayoutResult(cases=cases, channels=channels, name="MSSEG2016", labels=dict(MS_LABELS))


#: open MS data file names -> channels
_OPEN_MS_SEQUENCES = {"FLAIR": "FLAIR", "T1": "T1", "T2": "T2", "PD": "PD", "T1POST": "T1Gd"}


def _open_ms_files(folder: Path) -> tuple[dict[str, Path], Path | None]:
    found = {}
    for name, channel in _OPEN_MS_SEQUENCES.items():
        f = _first_existing([folder / f"{name}{ext}" for ext in NIFTI_EXTS])
        if f is not None:
            found[channel] = f
    return found, _first_existing([folder / f"consensus_gt{ext}" for ext in NIFTI_EXTS])


def _open_ms_is_case(folder: Path) -> bool:
    """FLAIR and T1 both, or one of them with another sequence or the label (a case missing the other:
    an error later, rather than a silently skipped folder)."""
    found, label = _open_ms_files(folder)
    required = [c for c in MS_REQUIRED_CHANNELS if c in found]
    return len(required) == len(MS_REQUIRED_CHANNELS) or (
        bool(required) and (len(found) > 1 or label is not None)
    )


@register_layout("ms_open")
def _layout_ms_open(root: Path, channels: Sequence[str] | None = None) -> LayoutResult:
    """The open MS lesion data of Lesjak et al. (Neuroinformatics 2018), as shared:
    ``<root>/<patient>/{FLAIR,T1,T2,T1POST,PD}.nii[.gz]`` and the label ``<root>/<patient>/consensus_gt.nii[.gz]``
    (the raters' consensus).

    A folder, at any depth, holding ``FLAIR`` and ``T1`` is a case (so is one holding one of them and
    another of these files, which is then an error naming it); its id is its path under ``root`` joined with
    ``_`` (``patient07``). ``T1POST`` is channel T1Gd; FLAIR and T1 are required, T2, PD and T1Gd optional.
    A case without ``consensus_gt`` goes to "testing". Labels: 1 lesion.
    """
    channels = _check_channels(channels, list(MS_CHANNELS), "ms_open")
    cases = []
    for d in _case_dirs(root, _open_ms_is_case):
        found, label = _open_ms_files(d)
        cases.append(_ms_case("ms_open", _path_id(d, root), found, label, d, "FLAIR.nii.gz, T1.nii.gz"))
    if not cases:
        raise ValueError(
            "ms_open layout: no cases found: searched for folders <patient>/ holding FLAIR.nii.gz and T1.nii.gz "
            f"(or .nii), at any depth, under root {root}"
        )
    return LayoutResult(cases=cases, channels=channels, name="OpenMS", labels=dict(MS_LABELS))


@register_layout("phantom")
def _layout_phantom(root: Path, channels: Sequence[str] | None = None, **options: Any) -> LayoutResult:
    """A phantom data set: ``<root>/phantom.json`` names the layout its files follow.

    The manifest (written by the phantom generator) holds at least ``"layout"``; optional ``"task"``,
    ``"name"``, ``"cases"`` (number of cases, checked with a warning), ``"test_cases"`` (the last that many
    case ids, sorted, go to "testing"), ``"channels"``, ``"labels"`` (``{value: name}`` or
    ``{name: value}``; overrides the layout's) and ``"layout_options"`` (passed on to the layout, and
    overridden by ``options``).
    """
    manifest_path = root / "phantom.json"
    if not manifest_path.is_file():
        raise ValueError(f"phantom layout: no cases found: no manifest phantom.json under root {root}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"phantom layout: {manifest_path} is not valid JSON: {e}") from e
    inner = manifest.get("layout") if isinstance(manifest, dict) else None
    if not isinstance(inner, str) or inner not in LAYOUTS or inner == "phantom":
        known = sorted(k for k in LAYOUTS if k != "phantom")
        raise ValueError(f"phantom layout: {manifest_path} names layout {inner!r}; expected one of {known}")
    if channels is None and manifest.get("channels"):
        channels = manifest["channels"]
    inner_options = {**(manifest.get("layout_options") or {}), **options}
    result = LAYOUTS[inner](root, channels, **inner_options)

    ids = sorted(c.case for c in result.cases)
    expected = manifest.get("cases")
    n_test = int(manifest.get("test_cases") or 0)
    if isinstance(expected, int) and len(ids) not in (expected, expected + n_test):
        logger.warning(
            "phantom layout: %s says %d cases, found %d under %s", manifest_path, expected, len(ids), root
        )
    if n_test < 0 or n_test >= len(ids):
        raise ValueError(
            f"phantom layout: {manifest_path} asks for test_cases={n_test} but {len(ids)} cases were found "
            f"(at least one must stay for training)"
        )
    result.test_cases = ids[len(ids) - n_test :] if n_test else []
    result.labels = _normalise_labels(manifest.get("labels")) or result.labels
    result.label_convention = manifest.get("label_convention") or result.label_convention
    task = manifest.get("task")
    result.name = str(manifest.get("name") or (f"phantom-{task}" if task else f"phantom-{result.name}"))
    return result


# -------------------------------------------------------------------------------------------------- main


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def make_datalist(
    layout: str,
    root: str | Path,
    out: str | Path | None = None,
    folds: int = 5,
    seed: int = 0,
    test_fraction: float = 0.0,
    channels: Sequence[str] | None = None,
    **layout_options: Any,
) -> dict:
    """Build a Decathlon-style datalist for the data set under ``root`` laid out as ``layout``.

    Args:
        layout: a key of :data:`LAYOUTS` (``"ibsr18"``, ``"folder"``, ``"phantom"``, ...).
        root: the data set folder; all paths in the datalist are relative to it.
        out: when given, the datalist is also written there as JSON, atomically.
        folds: number of cross-validation folds (1 <= folds <= number of training cases).
        seed: seed of ``numpy.random.default_rng`` for the test draw and the fold shuffle.
        test_fraction: fraction (0 <= f < 1) of the labelled cases moved to "testing".
        channels: channel names (the layout's default when None).
        layout_options: passed to the layout function (e.g. ``images_dir=`` for ``"folder"``, ``rater=``
            for ``"isbi2015"``); an option the layout does not take is a ValueError.

    Returns:
        the datalist dict (see the module docstring).

    Raises:
        ValueError: unknown layout, missing root, no cases found, bad ``folds`` / ``test_fraction``,
            or a layout-specific problem (e.g. a case missing a channel).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known layouts: {', '.join(sorted(LAYOUTS))}")
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 1:
        raise ValueError(f"folds must be an integer >= 1, got folds={folds!r}")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got test_fraction={test_fraction!r}")
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise ValueError(f"layout {layout!r}: root {root} does not exist or is not a folder")

    fn = LAYOUTS[layout]
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        known = [
            n for n, p in params.items() if n not in ("root", "channels") and p.kind is not p.VAR_POSITIONAL
        ]
        unknown = sorted(set(layout_options) - set(known))
        if unknown:
            raise ValueError(
                f"layout {layout!r} has no option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                f"(its options: {', '.join(known) or 'none'})"
            )
    result = fn(root, list(channels) if channels is not None else None, **layout_options)
    if not result.cases:
        raise ValueError(f"layout {layout!r}: no cases found under root {root}")
    cases = sorted(result.cases, key=lambda c: c.case)
    ids = [c.case for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"layout {layout!r}: duplicate case ids under root {root}: {dupes}")

    forced = set(result.test_cases)
    unknown = forced - set(ids)
    if unknown:
        raise ValueError(f"layout {layout!r}: test cases {sorted(unknown)} are not among the cases found")
    pool = [c for c in cases if c.label is not None and c.case not in forced]
    testing = {c.case for c in cases if c.label is None or c.case in forced}

    rng = np.random.default_rng(seed)
    if test_fraction > 0 and pool:
        n_test = max(1, int(round(test_fraction * len(pool))))
        if n_test >= len(pool):
            raise ValueError(
                f"test_fraction={test_fraction} would move {n_test} of {len(pool)} labelled cases to testing, "
                "leaving none for training"
            )
        drawn = rng.choice(len(pool), size=n_test, replace=False)
        testing |= {pool[i].case for i in drawn}
        pool = [c for c in pool if c.case not in testing]

    fold_of: dict[str, int] = {}
    if pool:
        if folds > len(pool):
            raise ValueError(
                f"folds={folds} is more than the {len(pool)} training case{'s' if len(pool) != 1 else ''} "
                f"found by layout {layout!r} under root {root}"
            )
        fixed = {c: f for c, f in result.fold_cases.items() if any(p.case == c for p in pool)}
        bad = {c: f for c, f in fixed.items() if not 0 <= f < folds}
        if bad:
            raise ValueError(
                f"layout {layout!r}: fixed folds {bad} are outside 0..{folds - 1} (folds={folds})"
            )
        fold_of.update(fixed)
        free = [f for f in range(folds) if f not in fixed.values()] or list(range(folds))
        rest = [c for c in pool if c.case not in fixed]
        fold_of.update(zip((c.case for c in rest), assign_folds(len(rest), free, rng), strict=True))
    else:
        logger.warning(
            "layout %r: no labelled cases under %s, the datalist has testing cases only", layout, root
        )

    def entry(c: Case) -> dict:
        e: dict[str, Any] = {"image": [_rel(p, root) for p in c.image]}
        if c.label is not None:
            e["label"] = _rel(c.label, root)
        if c.channels is not None:
            e["channels"] = list(c.channels)
        if result.label_convention and c.label is not None:
            e["label_convention"] = result.label_convention
        if c.case in fold_of:
            e["fold"] = fold_of[c.case]
        e["case"] = c.case
        return e

    datalist: dict[str, Any] = {"name": result.name, "layout": layout, "channels": list(result.channels)}
    if result.labels:
        datalist["labels"] = dict(result.labels)
    if result.label_convention:
        datalist["label_convention"] = result.label_convention
    training = [entry(c) for c in cases if c.case in fold_of]
    test_entries = [entry(c) for c in cases if c.case in testing]
    datalist.update(
        folds=folds,
        seed=seed,
        numTraining=len(training),
        numTest=len(test_entries),
        training=training,
        testing=test_entries,
    )
    if out is not None:
        write_json_atomic(datalist, out)
    return datalist
