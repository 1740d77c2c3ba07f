"""Network weights without pickle: ``models/model.safetensors``, or a plain state dict read with
``torch.load(weights_only=True)``, which refuses a pickle that would import or call anything other than
tensors (a pickled checkpoint can otherwise run code when it is loaded)."""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from brainbundles.errors import ChecksumError, UnsafeFileError
from brainbundles.fileio import atomic_write, sha256_file
from brainbundles.paths import LARGE_FILES, WEIGHT_FILES

logger = logging.getLogger("brainbundles")

__all__ = [
    "check_listed_checksum",
    "fold_weights",
    "load_bundle_weights",
    "find_weights",
    "load_weights",
    "save_weights",
]


def check_listed_checksum(path: str | os.PathLike, levels: int = 3) -> bool:
    """Check ``path`` against the sha256 that its bundle's ``large_files.yml`` lists for it.

    The list is looked for in the file's folder and up to ``levels`` folders above it (a bundle's
    ``models/model.safetensors`` or ``models/fold_<k>/model.safetensors``); its paths are relative to the
    folder that holds it. Returns True when the file is listed and matches, False when no list names it
    (weights of a local training run), and raises :class:`ChecksumError` naming the file when it is listed
    with another sha256 (a corrupted download or a tampered file), or ``ValueError`` when the list that
    names it cannot be read."""
    path = Path(path).absolute()
    for folder in list(path.parents)[: levels + 1]:
        listing = folder / LARGE_FILES
        if not listing.is_file():
            continue
        try:
            entries = (yaml.safe_load(listing.read_text()) or {}).get("large_files") or []
        except (OSError, yaml.YAMLError, AttributeError) as e:
            raise ValueError(f"{listing}: not a readable large-files list ({e})") from None
        for entry in entries:
            if not isinstance(entry, Mapping) or (folder / str(entry.get("path", ""))).absolute() != path:
                continue
            expected = str(entry.get("hash_val") or "").lower()
            kind = str(entry.get("hash_type") or "sha256").lower()
            if not expected:
                return False
            if kind != "sha256":
                raise ValueError(f"{listing}: {entry.get('path')}: hash_type {kind!r}, expected 'sha256'")
            actual = sha256_file(path)
            if actual != expected:
                raise ChecksumError(
                    f"{path}: sha256 {actual} does not match {expected} listed in {listing}; the weights "
                    "file is corrupted or was changed: download the bundle again, or, if you trained these "
                    "weights yourself, run `brainbundles export` on the bundle to list them"
                )
            return True
        return False
    return False


def fold_weights(ckpt_dir: str | os.PathLike) -> list[Path]:
    """The fold models of a cross-validated bundle (``brainbundles train-cv``): the weights file of each
    ``<ckpt_dir>/fold_<k>/``, sorted by fold number; folds without weights yet are left out; empty for a
    single-model bundle."""
    folds = [d for d in Path(ckpt_dir).glob("fold_*") if d.is_dir() and d.name[5:].isdigit()]
    members = []
    for d in sorted(folds, key=lambda d: int(d.name[5:])):
        try:
            members.append(find_weights(d))
        except FileNotFoundError:
            continue  # a fold still training
    return members


def find_weights(ckpt_dir: str | os.PathLike, folds: bool = False) -> Path:
    """The bundle's weights file in ``ckpt_dir``: ``model.safetensors``, else ``model.pt``; with
    ``folds``, a bundle that holds only fold models gives its first (:func:`fold_weights`)."""
    for name in WEIGHT_FILES:
        if (Path(ckpt_dir) / name).is_file():
            return Path(ckpt_dir) / name
    if folds and (members := fold_weights(ckpt_dir)):
        return members[0]
    raise FileNotFoundError(
        f"{Path(ckpt_dir) / WEIGHT_FILES[0]}: the bundle has no trained weights "
        f"(neither {' nor '.join(WEIGHT_FILES)}); train it first"
    )


def _refusal(error: Exception) -> str:
    """The part of torch's weights-only refusal that says what the pickle wanted (e.g. ``posix.system``)."""
    found = re.search(r"GLOBAL (\S+)", str(error))
    return f"it would import {found.group(1)}" if found else str(error).strip().splitlines()[0]


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from ``path``, on the CPU: safetensors, or a ``.pt`` pickle that holds only
    tensors (a plain state dict, or a ``last.pt``-style checkpoint, whose ``network`` entry is used).

    Raises ``FileNotFoundError``, :class:`UnsafeFileError` for a pickle that would import or call
    anything else (nothing of it runs), and ``ValueError`` for any other unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeFileError(
            f"{path}: refused to load: the pickle holds more than tensors ({_refusal(e)}); "
            "weights are loaded only from safetensors or plain tensor pickles, and nothing in it was run"
        ) from None
    except (RuntimeError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a PyTorch weights file ({str(e).splitlines()[0]})") from None
    if isinstance(state, Mapping) and isinstance(state.get("network"), Mapping):
        state = state["network"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return dict(state)


def save_weights(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write a state dict as safetensors, atomically (tensors copied to the CPU, made contiguous)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def load_bundle_weights(ckpt_dir: str | os.PathLike, network: torch.nn.Module) -> Path:
    """Load a bundle's trained weights into ``network`` (a ``DistributedDataParallel``'s module): the file
    :func:`find_weights` finds (a bundle holding only fold models loads the first), checked against its
    ``large_files.yml`` sha256 (:func:`check_listed_checksum`) and read without pickle (:func:`load_weights`).
    Returns the file."""
    path = find_weights(ckpt_dir, folds=True)
    check_listed_checksum(path)
    (network.module if hasattr(network, "module") else network).load_state_dict(load_weights(path))
    logger.info("loaded the weights in %s", path)
    return path
