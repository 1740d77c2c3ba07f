"""Turning what a user points inference at (files, folders, a datalist) into datalist items."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from brainbundles.data.checks import check_case
from brainbundles.data.sequences import (
    group_sequences,
    match_files,
    match_sequence,
    normalise_channel,
    split_named_input,
)
from brainbundles.errors import InputError

__all__ = ["IMAGE_SUFFIXES", "case_id", "inference_items", "load_fold", "read_datalist"]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".hdr")

logger = logging.getLogger("brainbundles")


def case_id(path: str | os.PathLike) -> str:
    """The file name without its image suffix (``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``)."""
    name = Path(path).name
    for suf in IMAGE_SUFFIXES + (".img",):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def _expand(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for inp in inputs:
        p = Path(inp).expanduser()
        if p.is_dir():
            found = _image_files(p)
            if not found:
                raise InputError(f"{p}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        else:
            files.append(p)  # missing files are reported by the case checks, with the others
    return files


def _image_files(folder: Path) -> list[Path]:
    """The image files in a folder; a dangling link counts, so the case checks report it as missing."""
    return sorted(
        f
        for f in folder.iterdir()
        if (f.is_file() or f.is_symlink())
        and not f.name.startswith(".")
        and f.name.lower().endswith(IMAGE_SUFFIXES)
    )


def _case_item(files: dict[str, Path], case: str | None = None) -> dict:
    """A datalist item for one case's ``{channel: file}`` (bundle order): the files it has and, in
    ``channels``, which sequence each one is (missing sequences are simply absent)."""
    item = {"image": [str(p.absolute()) for p in files.values()], "channels": list(files)}
    if case is None:  # name it after its first file, less the sequence token (BraTS19_x_flair -> BraTS19_x)
        stem = case_id(next(iter(files.values())))
        case = re.sub(r"[_\-.][^_\-.]*$", "", stem) or stem
    item["case"] = case
    return item


def _folder_case(folder: Path, channels: Sequence[str]) -> dict:
    """One case from a folder of its files, matched to sequences by name. Problems of the case (a
    sequence twice, no sequence at all) are left in the item for the case checks to report, so a batch
    goes on with the other cases; files naming no sequence are skipped with a warning."""
    matched, unknown = match_files(_image_files(folder), channels)
    for f in unknown:
        logger.warning("%s: skipped: its name matches none of the sequences %s", f, ", ".join(channels))
    if not matched:
        return {"image": [str(folder.absolute())], "channels": [], "case": folder.name}
    return {
        "image": [str(p.absolute()) for _, p in matched],
        "channels": [ch for ch, _ in matched],
        "case": folder.name,
    }


def _multichannel_cases(inputs: Sequence[str | os.PathLike], channels: Sequence[str]) -> list[dict]:
    """Cases for a multi-channel bundle: a folder of one case's files (matched to sequences by name), a
    folder of such case folders, ``NAME=path`` pairs naming each file's sequence, or loose files
    (matched by name; together they make one case; a lone file naming no sequence is a 4D image)."""
    cases: list[dict] = []
    explicit: dict[str, Path] = {}
    loose: list[Path] = []
    for inp in inputs:
        name, text = split_named_input(inp)
        p = Path(text).expanduser()
        if name is not None:
            try:
                ch = normalise_channel(name, channels)
            except ValueError as e:
                raise InputError(f"{inp}: {e}") from None
            if ch in explicit:
                raise InputError(f"{text}: sequence {ch} given twice ({explicit[ch]}, {text})")
            explicit[ch] = p
        elif p.is_dir():
            if _image_files(p):
                cases.append(_folder_case(p, channels))
                continue
            subdirs = [d for d in sorted(p.iterdir()) if d.is_dir() and _image_files(d)]
            if not subdirs:
                raise InputError(f"{p}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            cases += [_folder_case(d, channels) for d in subdirs]
        else:
            loose.append(p)
    if len(loose) == 1 and not explicit and match_sequence(loose[0], channels) is None:
        cases.append({"image": [os.path.abspath(loose[0])], "case": case_id(loose[0])})  # one 4D file
    elif loose:
        for ch, f in group_sequences(loose, channels, where="the input files").items():
            if ch in explicit:
                raise InputError(f"{f}: sequence {ch} given twice ({explicit[ch]}, {f})")
            explicit[ch] = f
    if explicit:
        cases.append(_case_item({ch: explicit[ch] for ch in channels if ch in explicit}))
    return cases


def _with_ids(items: list[dict]) -> list[dict]:
    """Give every item a unique ``case`` id (prefixing parent folders where names collide) and a
    ``reference`` path: the first channel, whose grid the outputs take."""
    for it in items:
        first = it["image"][0] if isinstance(it["image"], (list, tuple)) else it["image"]
        it.setdefault("reference", str(first))
        it.setdefault("case", case_id(first))
    ids = [it["case"] for it in items]
    for it in items:
        if ids.count(it["case"]) > 1:
            it["case"] = f"{Path(it['reference']).parent.name}_{it['case']}"
    taken: set[str] = set()
    for it in items:  # still colliding (same parent names): number them, never onto a taken id
        base, n = it["case"], 0
        while it["case"] in taken:
            n += 1
            it["case"] = f"{base}_{n}"
        taken.add(it["case"])
    return items


def _item_problem(item: object) -> str | None:
    """What is wrong with a datalist item's shape (not its files), or None."""
    if not isinstance(item, Mapping):
        return f"is a {type(item).__name__}, not an object with an 'image' entry"
    image = item.get("image")
    if image is None:
        return "has no 'image' entry"
    paths = [image] if isinstance(image, str) else image
    if not isinstance(paths, list) or not paths or not all(isinstance(x, str) and x for x in paths):
        return "'image' must be a path or a non-empty list of paths"
    if "label" in item and not (isinstance(item["label"], str) and item["label"]):
        return "'label' must be a path"
    if "fold" in item and (isinstance(item["fold"], bool) or not isinstance(item["fold"], int)):
        return f"'fold' must be a whole number, not {item['fold']!r}"
    return None


def read_datalist(
    path: str | os.PathLike, section: str, base_dir: str | os.PathLike | None = None
) -> tuple[list[dict], Path]:
    """The items of a datalist's ``section`` and the folder relative paths start from (``base_dir``,
    else the datalist's folder). A missing file, bad JSON, a missing or empty section or an item without
    a usable ``image`` raises :class:`InputError` naming the datalist, and the item by number and case."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: datalist not found" if not path.exists() else f"{path}: datalist is not a file"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: datalist is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: datalist must be a JSON object with a '{section}' list")
    items = data.get(section)
    if not items:
        raise InputError(f"{path}: no '{section}' cases in the datalist")
    if not isinstance(items, list):
        raise InputError(f"{path}: '{section}' must be a list of cases")
    for i, item in enumerate(items):
        problem = _item_problem(item)
        if problem:
            name = f" ({item['case']})" if isinstance(item, Mapping) and item.get("case") else ""
            raise InputError(f"{path}: item {i} of '{section}'{name} {problem}")
    return items, Path(base_dir) if base_dir is not None else path.parent


def _resolve(item: Mapping, base: Path) -> dict:
    out = dict(item)
    for key in ("image", "label"):
        if key not in out:
            continue
        v = out[key]
        if isinstance(v, (list, tuple)):
            out[key] = [str(base / p) for p in v]
        else:
            out[key] = str(base / v)
    return out


def inference_items(
    inputs: Sequence[str | os.PathLike] | str | None,
    datalist: str | os.PathLike | None = None,
    base_dir: str | os.PathLike | None = None,
    channels: Sequence[str] = ("T1",),
    section: str = "testing",
) -> list[dict]:
    """Items to run inference on: the given ``inputs`` when there are any, else the datalist's
    ``section``. For a one-channel bundle each input file is a case and a folder stands for the image
    files in it. For a multi-channel bundle a folder is one case (its files matched to sequences by
    name: ``*_flair``, ``*_t1ce`` / ``*_t1post`` / ``*-t1c``, ...), a folder of case folders is many,
    ``NAME=path`` names a file's sequence, and loose files make one case; a case may lack sequences
    (its ``channels`` lists those it has). Paths come back absolute; every item has ``image``, ``case``
    and ``reference``."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if inputs:
        if len(channels) > 1:
            return _with_ids(_multichannel_cases(inputs, channels))
        # abspath, not resolve: a linked file keeps its name, and a link loop is reported by the checks
        return _with_ids([{"image": [os.path.abspath(f)]} for f in _expand(inputs)])
    if datalist is None:
        raise InputError("inputs: give input files or a datalist")
    items, base = read_datalist(datalist, section, base_dir)
    return _with_ids([_resolve(it, base.resolve()) for it in items])


def load_fold(
    datalist: str | os.PathLike,
    base_dir: str | os.PathLike | None,
    fold: int,
    split: str,
    channels: Sequence[str] | None = None,
    label_values: Collection[int] | None = None,
    same_grid: bool = True,
    allow_missing: bool = False,
) -> list[dict]:
    """Training items of a datalist for cross-validation fold ``fold``: ``split="train"`` gives the
    items of every other fold, ``"val"`` the items of this fold (items without ``fold`` train), and
    ``"all"`` every item, this fold's included: a final model trained on all labelled cases, whose
    validation on ``fold`` then measures how well it fits its own training data.

    With ``channels``, every item is checked first (:func:`brainbundles.data.checks.check_case`, label
    required, values in ``label_values``; ``same_grid`` and ``allow_missing``, a case that names the
    subset of ``channels`` it has, as there) and the first bad one raises ``InputError`` naming the file."""
    if split not in ("train", "val", "all"):
        raise ValueError(f"split: 'train', 'val' or 'all', got {split!r}")
    items, base = read_datalist(datalist, "training", base_dir)
    folds = sorted({it["fold"] for it in items if "fold" in it})
    if fold not in folds:
        raise ValueError(f"fold: {fold} is not among the datalist's folds {folds} ({datalist})")
    chosen = [
        _resolve(it, base.resolve())
        for it in items
        if split == "all" or (it.get("fold") == fold) == (split == "val")
    ]
    if channels is not None:
        for it in chosen:
            check_case(
                it,
                channels,
                label_values,
                require_label=True,
                same_grid=same_grid,
                allow_missing=allow_missing,
            )
    return _with_ids(chosen)
