"""MRI sequence names: which bundle channel a file holds, from its usual names.

Data sets name the same sequence in many ways (BraTS 2019 ``_t1ce``, BraTS 2023 ``-t1c``, the shared
BraTS case's ``_t1post``, BIDS ``_T1w``, ...). :func:`match_sequence` reads the last name token of a file
(``sub-01_ses-1_FLAIR.nii.gz`` -> ``flair``) and maps it to a bundle channel through
:data:`SEQUENCE_SYNONYMS`; :func:`group_sequences` sorts a case's files into channels and refuses a
sequence given twice.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "SEQUENCE_SYNONYMS",
    "group_sequences",
    "match_files",
    "match_sequence",
    "normalise_channel",
    "split_named_input",
]

#: bundle channel -> the lower-case file-name tokens it is found under
SEQUENCE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "T1": ("t1", "t1n", "t1w", "t1native", "mprage"),
    "T1c": ("t1c", "t1ce", "t1post", "t1gd", "t1wgd", "t1wce", "t1contrast"),
    # the MS bundle's name for the contrast-enhanced T1 (MSSEG 2016 calls it GADO)
    "T1Gd": ("t1gd", "t1c", "t1ce", "t1post", "t1wgd", "t1wce", "t1contrast", "gado"),
    "T2": ("t2", "t2w"),
    "FLAIR": ("flair", "t2f", "t2flair"),
    "PD": ("pd", "pdw", "dp"),  # MSSEG 2016: DP (densité de protons)
}

#: tokens of files that are not images of a sequence (labels, masks): skipped without a warning
NON_IMAGE_TOKENS = ("seg", "label", "labels", "mask", "gt", "consensus")

_IMAGE_EXTS = (".nii.gz", ".nii", ".hdr", ".img", ".mha", ".nrrd")


def _stem(path: str | os.PathLike) -> str:
    name = Path(path).name
    for ext in _IMAGE_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _tokens(path: str | os.PathLike) -> list[str]:
    return [t for t in re.split(r"[_\-.\s]+", _stem(path).lower()) if t]


def split_named_input(text: str | os.PathLike) -> tuple[str | None, str]:
    """``("FLAIR", "a.nii.gz")`` for an input written ``FLAIR=a.nii.gz`` (a file named with its
    sequence), else ``(None, text)``; an existing file whose name holds ``=`` is taken as a path."""
    text = os.fspath(text)
    pair = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)=(.+)", text)
    if pair and not Path(text).expanduser().exists():
        return pair[1], pair[2]
    return None, text


def normalise_channel(name: str, channels: Sequence[str]) -> str:
    """The bundle channel ``name`` stands for (case-insensitive, synonyms allowed), else ValueError."""
    low = str(name).strip().lower()
    for ch in channels:
        if low == ch.lower() or low in SEQUENCE_SYNONYMS.get(ch, ()):
            return ch
    raise ValueError(f"sequence {name!r} is not one of the bundle's channels ({', '.join(channels)})")


def match_sequence(path: str | os.PathLike, channels: Sequence[str]) -> str | None:
    """The channel of ``channels`` a file holds, judged by its name tokens from the last one back
    (the first token naming a sequence wins); ``None`` when no token names one of ``channels``."""
    for token in reversed(_tokens(path)):
        for ch in channels:
            if token == ch.lower() or token in SEQUENCE_SYNONYMS.get(ch, ()):
                return ch
    return None


def is_non_image(path: str | os.PathLike) -> bool:
    """True for a file named like a label or mask (``*_seg``, ``*-mask``, ...)."""
    return bool(_tokens(path)) and _tokens(path)[-1] in NON_IMAGE_TOKENS


def match_files(
    files: Iterable[str | os.PathLike], channels: Sequence[str]
) -> tuple[list[tuple[str, Path]], list[Path]]:
    """``([(channel, path), ...] in channel order, [files naming no channel])``; label/mask files are
    left out of both. A channel may appear twice (two files naming it)."""
    matched: list[tuple[str, Path]] = []
    unknown: list[Path] = []
    for f in files:
        p = Path(f)
        if is_non_image(p):
            continue
        ch = match_sequence(p, channels)
        if ch is None:
            unknown.append(p)
        else:
            matched.append((ch, p))
    matched.sort(key=lambda m: list(channels).index(m[0]))
    return matched, unknown


def group_sequences(
    files: Iterable[str | os.PathLike], channels: Sequence[str], where: str = "case"
) -> dict[str, Path]:
    """Sort one case's files into channels by name: ``{channel: path}`` in ``channels`` order.

    Label/mask files are skipped; a file naming no channel is an error (say which sequence it is with
    ``NAME=path``), and so is a channel given by two files. ``where`` names the case in messages.
    """
    matched, unknown = match_files(files, channels)
    if unknown:
        raise ValueError(
            f"{unknown[0]}: cannot tell which sequence this file is from its name (the bundle takes "
            f"{', '.join(channels)}); name it like *_flair.nii.gz, or give it as NAME=path"
        )
    found: dict[str, list[Path]] = {}
    for ch, p in matched:
        found.setdefault(ch, []).append(p)
    for ch, ps in found.items():
        if len(ps) > 1:
            raise ValueError(
                f"{ps[0]}: sequence {ch} given twice in {where}: {', '.join(str(p) for p in ps)}"
            )
    if not found:
        raise ValueError(f"{where}: no image of any sequence ({', '.join(channels)}) found")
    return {ch: found[ch][0] for ch in channels if ch in found}
