"""Writing files whole or not at all: every file the package writes goes through here."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

__all__ = ["atomic_write", "json_text", "write_text_atomic", "write_json_atomic", "sha256_file", "save_like"]


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path`` (same suffixes, so format-by-name
    writers such as nibabel work), then rename it to ``path``. On any error the temporary file is
    removed and nothing appears at ``path`` (an existing file there is left as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name.split('.')[0]}.part-", suffix=suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make results unreadable to others
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


def json_text(obj: Any, **dump_kwargs: Any) -> str:
    """``obj`` as the project's one JSON style: 4-space indents, UTF-8 characters kept, a final newline."""
    return json.dumps(obj, indent=4, ensure_ascii=False, **dump_kwargs) + "\n"


def write_json_atomic(obj: Any, path: str | os.PathLike, **dump_kwargs: Any) -> Path:
    """Write ``obj`` as :func:`json_text` to ``path`` atomically."""
    return write_text_atomic(path, json_text(obj, **dump_kwargs))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_like(
    array: np.ndarray, reference: str | os.PathLike, path: str | os.PathLike, dtype=np.uint8
) -> Path:
    """Write ``array`` as NIfTI at ``path`` on the grid of ``reference`` (same shape, affine, qform/sform).

    Raises ``ValueError`` naming the reference when the array's shape is not the reference's.
    """
    ref = nib.load(str(reference))
    shape = tuple(ref.shape[:3])
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if tuple(array.shape) != shape:
        raise ValueError(
            f"{reference}: result shape {tuple(array.shape)} differs from the scan's shape {shape}"
        )
    data = np.ascontiguousarray(array.astype(dtype))
    # a 3D scan stored as 4D with a trailing axis of 1 (IBSR18): the output keeps that exact shape
    trailing_one = len(ref.shape) == 4 and ref.shape[3] == 1
    if trailing_one:
        data = data[..., None]
    if isinstance(ref, nib.Nifti1Pair) and (len(ref.shape) == 3 or trailing_one):  # NIfTI-1/2, file or pair
        cls = nib.Nifti2Image if isinstance(ref, nib.Nifti2Pair) else nib.Nifti1Image
        img = cls(data, ref.affine, header=ref.header.copy())
        img.set_qform(ref.get_qform(), code=int(ref.header["qform_code"]))
        img.set_sform(ref.get_sform(), code=int(ref.header["sform_code"]))
    else:  # Analyze, or a 4D multi-channel reference: keep the affine
        img = nib.Nifti1Image(data, ref.affine)
        img.set_qform(ref.affine, code=1)
        img.set_sform(ref.affine, code=1)
    img.set_data_dtype(dtype)
    img.header["scl_slope"], img.header["scl_inter"] = 1.0, 0.0
    img.header["cal_min"], img.header["cal_max"] = 0, 0
    return atomic_write(path, lambda tmp: nib.save(img, tmp))
