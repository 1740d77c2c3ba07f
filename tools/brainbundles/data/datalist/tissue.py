"""Tissue layouts: ``ibsr18`` (IBSR 18, MAIA split or NITRC original) and ``folder`` (images and labels
matched by name, nnU-Net names too)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from brainbundles.data.datalist.registry import (
    NIFTI_EXTS,
    Case,
    LayoutResult,
    _check_channels,
    _find_volume,
    _first_existing,
    _normalise_labels,
    _strip_ext,
    register_layout,
)
from brainbundles.data.labels import IBSR_CHANNELS, IBSR_TISSUE_LABELS

__all__ = ["IBSR_REFERENCE_VALIDATION"]

logger = logging.getLogger("brainbundles")

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
