"""Brain tumour layouts: ``brats`` (BraTS 2018-2021), ``brats2023`` (BraTS 2023+) and ``msd_task01``
(Medical Segmentation Decathlon Task01_BrainTumour)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from brainbundles.data.datalist.registry import (
    Case,
    LayoutResult,
    _check_channels,
    _strip_ext,
    register_layout,
)
from brainbundles.data.labels import BRATS_CHANNELS, BRATS_LABELS, MSD_TASK01_CHANNELS
from brainbundles.data.sequences import normalise_channel

logger = logging.getLogger("brainbundles")


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
