"""Reading an input file safely: it exists (an Analyze pair with both halves), nibabel loads it, and its
header (voxel count, the size the voxel data needs, affine, voxel sizes) is checked before any voxel is
read; reading the voxels turns nibabel's errors into an :class:`InputError` naming the file."""

from __future__ import annotations

import filecmp
import os
import struct
import zlib

import nibabel as nib
import numpy as np

from brainbundles.data.checks.grids import _fmt_affine
from brainbundles.errors import InputError

__all__ = ["MAX_VOXELS"]

#: the most voxels (all channels together) a file may hold: 2**28 is 1 GiB as float32, over twice a
#: 0.5 mm whole-head scan with four channels; larger claims are refused from the header alone
MAX_VOXELS = 2**28

#: deflate cannot compress by more than 1032:1, so a gzip file of n bytes holds at most this many times n
_GZIP_MAX_RATIO = 1032

_ANALYZE_PAIRS = {".hdr": ".img", ".img": ".hdr", ".hdr.gz": ".img.gz", ".img.gz": ".hdr.gz"}

# what a corrupt, truncated or non-image file raises inside nibabel (gzip.BadGzipFile is an OSError)
_LOAD_ERRORS = (
    nib.filebasedimages.ImageFileError,
    nib.spatialimages.HeaderDataError,
    OSError,
    EOFError,
    zlib.error,
    struct.error,
    ValueError,
    TypeError,
    IndexError,
    MemoryError,
)


def _check_exists(path: str) -> None:
    if not os.path.exists(path):
        if os.path.islink(path):
            raise InputError(f"{path}: file not found (a symbolic link to a missing target, or a link loop)")
        raise InputError(f"{path}: file not found")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not a regular file (a directory?)")
    lower = path.lower()
    for ext, other in _ANALYZE_PAIRS.items():
        if lower.endswith(ext):
            stem = path[: len(path) - len(ext)]
            candidates = [stem + other, stem + other.upper()]
            if not any(os.path.isfile(c) for c in candidates):
                raise InputError(
                    f"{path}: Analyze/NIfTI-pair file without its companion {os.path.basename(stem + other)} "
                    "(a .hdr header needs its .img data file and vice versa)"
                )
            break


def _load(path: str) -> nib.spatialimages.SpatialImage:
    """The image object (header and a proxy to its voxels, nothing read yet), its header checked."""
    _check_exists(path)
    try:
        # nibabel logs each header value it repairs (e.g. a zero voxel size set to 1); the raw header is
        # checked below and reported once, so its repairs are not printed
        nib_logger, disabled = nib.imageglobals.logger, nib.imageglobals.logger.disabled
        nib_logger.disabled = True
        try:
            img = nib.load(path)  # memory-maps uncompressed files
        finally:
            nib_logger.disabled = disabled
    except _LOAD_ERRORS as e:
        raise InputError(f"{path}: cannot be loaded by nibabel (corrupt or not an image: {_short(e)})") from e
    if not hasattr(img, "dataobj") or not hasattr(img, "affine") or img.affine is None:
        raise InputError(
            f"{path}: nibabel loaded it as {type(img).__name__}, which is not a volume with an affine"
        )
    _check_header(path, img)
    return img


def _same_file(a: str, b: str) -> bool:
    """The same file, or two files with the same bytes (compared only when their sizes are equal)."""
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # unreachable


def _raw_voxel_sizes(img: nib.spatialimages.SpatialImage) -> np.ndarray | None:
    """The voxel sizes as stored in an Analyze/NIfTI header file, before nibabel repairs zeros to 1."""
    if not isinstance(img.header, nib.analyze.AnalyzeHeader):
        return None
    holder = img.file_map.get("header") or img.file_map.get("image")
    if holder is None or holder.filename is None:
        return None
    try:
        with nib.openers.ImageOpener(holder.filename) as f:
            raw = type(img.header).from_fileobj(f, check=False)
    except _LOAD_ERRORS:
        return None
    return np.asarray(raw["pixdim"][1 : 1 + min(3, len(img.shape))], dtype=np.float64)


def _check_header(path: str, img: nib.spatialimages.SpatialImage) -> None:
    """Size, affine and voxel-size checks from the header alone; no voxel is read."""
    shape = tuple(int(n) for n in img.shape)
    voxels = int(np.prod(shape, dtype=np.float64)) if shape else 0
    if voxels > MAX_VOXELS:
        raise InputError(
            f"{path}: header describes {'x'.join(map(str, shape))} = {voxels:.3g} voxels, more than the "
            f"{MAX_VOXELS:.3g} this tool reads (a brain scan has well under 1e8; is the header corrupt?)"
        )
    proxy = img.dataobj
    image_file = img.file_map.get("image")
    if (
        isinstance(proxy, nib.arrayproxy.ArrayProxy)
        and image_file is not None
        and image_file.filename is not None
        and os.path.isfile(image_file.filename)
    ):
        needed = int(proxy.offset) + voxels * np.dtype(proxy.dtype).itemsize
        size = os.path.getsize(image_file.filename)
        if image_file.filename.lower().endswith(".gz"):
            if needed > size * _GZIP_MAX_RATIO:
                raise InputError(
                    f"{path}: header describes {'x'.join(map(str, shape))} voxels of {np.dtype(proxy.dtype)} "
                    f"({_fmt_bytes(needed)}), more than a {_fmt_bytes(size)} gzip file can hold "
                    "(corrupt header or truncated file)"
                )
        elif needed > size:
            raise InputError(
                f"{path}: header describes {'x'.join(map(str, shape))} voxels of {np.dtype(proxy.dtype)} "
                f"({_fmt_bytes(needed)} with the header), but the file has {_fmt_bytes(size)} "
                "(truncated file or corrupt header)"
            )
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise InputError(
            f"{path}: affine (sform/qform) contains NaN or Inf: {_fmt_affine(affine)}; the scan's position "
            "in space is unknown"
        )
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    det = abs(float(np.linalg.det(affine[:3, :3])))
    if not (spacing > 0).all() or det <= 1e-6 * float(np.prod(spacing)):
        raise InputError(
            f"{path}: affine (sform/qform) is singular (determinant {det:.3g}): {_fmt_affine(affine)}; "
            "its voxel axes do not span 3D space"
        )
    raw = _raw_voxel_sizes(img)
    if raw is not None:
        bad = [i for i, v in enumerate(raw) if not (np.isfinite(v) and v > 0)]
        if bad:
            raise InputError(
                f"{path}: voxel size {float(raw[bad[0]]):g} on axis {bad[0]} in the header (pixdim); "
                "voxel sizes must be positive numbers of mm"
            )


def _read(path: str, img: nib.spatialimages.SpatialImage) -> np.ndarray:
    """The scaled voxel data (``scl_slope``/``scl_inter`` applied), read once."""
    try:
        return np.asanyarray(img.dataobj)
    except _LOAD_ERRORS as e:
        raise InputError(
            f"{path}: voxel data cannot be read by nibabel (truncated or corrupt file: {_short(e)})"
        ) from e


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
