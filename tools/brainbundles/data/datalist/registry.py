"""The layout registry and what the layouts share.

A layout is a function ``fn(root: Path, channels: list[str] | None, **options) -> LayoutResult`` registered
under its name in :data:`LAYOUTS` with :func:`register_layout`; it finds a data set's cases (:class:`Case`)
on disk and only reads the data set. The helpers here (NIfTI/Analyze file names, channel checks, label
names, case folders at any depth) are used by the layouts of several tasks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LAYOUTS", "Case", "LayoutResult", "register_layout"]

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
