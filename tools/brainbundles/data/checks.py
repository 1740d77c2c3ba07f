"""Input checks: validate a case (image channels and optional label) before anything is computed or written.

A bundle's inference/evaluation run calls :class:`CaseList` on its datalist first: every case is checked
up front, the good ones are processed, each bad one is logged, and :meth:`CaseList.raise_if_invalid`
makes the run exit non-zero at the end, with one line per bad case.

Every problem raises :class:`InputError` whose message starts with the offending file path, followed by
``": "`` and a plain-language description of the problem, e.g.::

    /data/case1_T1.nii.gz: contains 3 NaN voxels (non-finite values are not allowed in an image)

What is checked (in this order, the first failure is reported):

* each image file (one per channel, or one 4D file holding all channels in its 4th axis) and the label
  exist (for an Analyze ``.hdr``/``.img`` pair, both halves) and can be loaded by nibabel;
* each file's header, before any voxel is read: the voxel count is at most :data:`MAX_VOXELS`, the
  voxel data the header describes fits in the file (for gzip, within deflate's largest ratio), the
  affine is finite and invertible, and the voxel sizes stored in the header are finite and positive;
* each image is 3D: a 2D image, a volume with a singleton spatial axis, or a 4D file where a single 3D
  channel is expected is rejected; trailing singleton axes (``(X, Y, Z, 1)``) are fine;
* the number of channels matches ``channels``, and no two channels are the same file (or
  byte-identical files);
* all channels have the same shape and the same affine (``np.allclose(rtol=0, atol=1e-3)``, in mm), or,
  with ``same_grid=False``, each covers most of the first channel's field of view in world space;
* image voxels are finite (no NaN / Inf), no channel is constant (all zero or one value), some voxels
  are positive (MRI magnitude images are not negative) and none exceeds :data:`MAX_ABS_INTENSITY`; the
  values are scanned in slabs, so the check holds no second copy of the image;
* the label has the image's shape and affine, integer values, and (when ``label_values`` is given) only
  the allowed values.
"""

from __future__ import annotations

import filecmp
import logging
import os
import struct
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import nibabel as nib
import numpy as np

from brainbundles.data.labels import convention_values
from brainbundles.data.sequences import normalise_channel
from brainbundles.errors import InputError

__all__ = [
    "AFFINE_ATOL_MM",
    "MAX_ABS_INTENSITY",
    "MAX_VOXELS",
    "CaseList",
    "InputError",
    "check_case",
    "resolve_item",
]

#: tolerance (mm, absolute, no relative term) when comparing affines of channels and label
AFFINE_ATOL_MM = 1e-3

#: the most voxels (all channels together) a file may hold: 2**28 is 1 GiB as float32, over twice a
#: 0.5 mm whole-head scan with four channels; larger claims are refused from the header alone
MAX_VOXELS = 2**28

#: the largest absolute intensity accepted in an image: MRI scanners store 12- to 16-bit magnitudes and
#: rescaled floats stay far below this; values like 1e30 are a broken conversion, not a scan
MAX_ABS_INTENSITY = 1e7

#: deflate cannot compress by more than 1032:1, so a gzip file of n bytes holds at most this many times n
_GZIP_MAX_RATIO = 1032

#: elements per slab when scanning voxel values (32 MiB as float64)
_SLAB_ELEMENTS = 1 << 22

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------------------------- paths


def _resolve_path(path: PathLike, base_dir: PathLike | None) -> str:
    """Absolute, normalised path; relative paths are taken relative to ``base_dir`` (else the cwd).

    Symlinks are kept (``abspath``, not ``realpath``) so that a linked dataset keeps its names.
    """
    p = os.path.expanduser(os.fspath(path))
    if not os.path.isabs(p) and base_dir is not None:
        p = os.path.join(os.path.expanduser(os.fspath(base_dir)), p)
    return os.path.abspath(p)


def _image_paths(item: Mapping[str, Any]) -> list[PathLike]:
    image = item.get("image") if isinstance(item, Mapping) else None
    if image is None:
        raise InputError(f"{_item_name(item)}: item has no 'image' entry")
    if isinstance(image, str | os.PathLike):
        return [image]
    paths = list(image)
    if not paths:
        raise InputError(f"{_item_name(item)}: item has an empty 'image' list")
    return paths


def _item_name(item: Any) -> str:
    if isinstance(item, Mapping):
        for key in ("case", "image", "label"):
            if item.get(key):
                value = item[key]
                return os.fspath(value) if isinstance(value, str | os.PathLike) else str(value)
    return repr(item)


def resolve_item(item: Mapping[str, Any], base_dir: PathLike | None = None) -> dict:
    """A copy of a datalist item with ``image`` and ``label`` paths made absolute (other keys kept).

    ``image`` stays a single path when it was one, and a list when it was a list.
    """
    out = dict(item)
    image = item.get("image")
    if isinstance(image, str | os.PathLike):
        out["image"] = _resolve_path(image, base_dir)
    elif image is not None:
        out["image"] = [_resolve_path(p, base_dir) for p in image]
    if item.get("label") is not None:
        out["label"] = _resolve_path(item["label"], base_dir)
    return out


# --------------------------------------------------------------------------------------------- loading

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


# -------------------------------------------------------------------------------------------- geometry


def _split_shape(path: str, shape: tuple[int, ...], what: str) -> tuple[tuple[int, int, int], int]:
    """(spatial shape, number of channels) of an image shape, or InputError when it is not a 3D volume.

    Trailing singleton axes beyond the third are dropped; a 4th axis holds channels; a 5D shape
    ``(X, Y, Z, 1, C)`` (NIfTI vector intent) is read as C channels.
    """
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) == 5 and dims[3] == 1:
        dims = dims[:3] + [dims[4]]
    if len(dims) < 3:
        raise InputError(f"{path}: {what} is {len(dims)}D (shape {tuple(shape)}), expected a 3D volume")
    if len(dims) > 4:
        raise InputError(f"{path}: {what} is {len(dims)}D (shape {tuple(shape)}), expected a 3D volume")
    spatial = (int(dims[0]), int(dims[1]), int(dims[2]))
    if 1 in spatial:
        raise InputError(
            f"{path}: {what} is not 3D: shape {tuple(shape)} has a singleton spatial axis (a 2D slice), "
            "expected a 3D volume"
        )
    return spatial, int(dims[3]) if len(dims) == 4 else 1


def _affine_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def _same_affine(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, rtol=0.0, atol=AFFINE_ATOL_MM))


def _fmt_affine(a: np.ndarray) -> str:
    return np.array2string(
        np.asarray(a, dtype=np.float64)[:3], precision=4, suppress_small=True, separator=", "
    ).replace("\n", "")


def _world_box(shape: Sequence[int], affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The world-space (mm) bounding box of a grid's voxels, as (lower corner, upper corner)."""
    corners = np.array(
        [[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)]
    )
    world = (np.asarray(affine, dtype=np.float64) @ corners.T)[:3]
    return world.min(axis=1), world.max(axis=1)


def _overlap_fraction(
    shape: Sequence[int], affine: np.ndarray, ref_shape: Sequence[int], ref_affine: np.ndarray
) -> float:
    """Fraction of the reference grid's world bounding box that the other grid's box covers."""
    lo, hi = _world_box(shape, affine)
    rlo, rhi = _world_box(ref_shape, ref_affine)
    inter = np.clip(np.minimum(hi, rhi) - np.maximum(lo, rlo), 0.0, None)
    return float(np.prod(inter) / max(np.prod(rhi - rlo), 1e-9))


#: least fraction of the first channel's field of view that a channel on another grid must cover
MIN_GRID_OVERLAP = 0.5


def _fmt_channels(channels: Sequence[str]) -> str:
    return ", ".join(str(c) for c in channels)


# ------------------------------------------------------------------------------------------- voxel data


def _slabs(channel: np.ndarray):
    """Views of a 3D array in slabs along its last axis, each about :data:`_SLAB_ELEMENTS` elements."""
    step = max(1, _SLAB_ELEMENTS // max(1, channel.shape[0] * channel.shape[1]))
    for z in range(0, channel.shape[2], step):
        yield channel[:, :, z : z + step]


def _check_image_values(path: str, data: np.ndarray, channel_names: Sequence[str]) -> None:
    """Finite, not constant, some positive and none huge, per channel; ``data`` is (X, Y, Z) or
    (X, Y, Z, C) after squeezing. One pass in slabs: no temporary is larger than a slab."""
    if data.dtype.kind == "c":
        raise InputError(f"{path}: image has complex values, expected a real-valued (magnitude) image")
    if data.ndim == 3:
        data = data[..., None]
    n_nan = n_inf = 0
    ranges = []
    for c in range(data.shape[3]):
        lo = hi = None
        for slab in _slabs(data[..., c]):
            if data.dtype.kind == "f":
                finite = np.isfinite(slab)
                if not finite.all():
                    nan = int(np.count_nonzero(np.isnan(slab)))
                    n_nan += nan
                    n_inf += int(slab.size - np.count_nonzero(finite)) - nan
                    continue
            s_lo, s_hi = slab.min(), slab.max()
            lo = s_lo if lo is None else min(lo, s_lo)
            hi = s_hi if hi is None else max(hi, s_hi)
        ranges.append((lo, hi))
    if n_nan or n_inf:
        parts = [f"{n} {what}" for n, what in ((n_nan, "NaN"), (n_inf, "Inf")) if n]
        raise InputError(
            f"{path}: contains {' and '.join(parts)} voxel{'s' if n_nan + n_inf > 1 else ''} "
            f"(non-finite values are not allowed in an image; {data.size} voxels in total)"
        )
    for c, (lo, hi) in enumerate(ranges):
        which = f"channel {c} ({channel_names[c]}) " if data.shape[3] > 1 else ""
        if lo == hi:
            if lo == 0:
                raise InputError(f"{path}: {which}image is all zero (an empty volume)")
            raise InputError(f"{path}: {which}image is constant (every voxel is {lo.item()!r})")
        if max(abs(float(lo)), abs(float(hi))) > MAX_ABS_INTENSITY:
            raise InputError(
                f"{path}: {which}image values range from {float(lo):.3g} to {float(hi):.3g}, beyond the "
                f"{MAX_ABS_INTENSITY:.0e} of any MRI intensity (a broken conversion or scaling?)"
            )
        if hi <= 0:
            raise InputError(
                f"{path}: {which}image has no positive voxel (values {float(lo):.3g} to {float(hi):.3g}); "
                "MRI magnitude images are not negative (an inverted, phase or difference image?)"
            )


def _label_values(path: str, data: np.ndarray) -> np.ndarray:
    """Sorted distinct integer values of a label volume; InputError for NaN/Inf or non-integer values."""
    if data.dtype.kind == "b":
        data = data.view(np.uint8)
    if data.dtype.kind in "fc":
        if data.dtype.kind == "c":
            raise InputError(f"{path}: label has complex values, expected integer labels")
        finite = np.isfinite(data)
        if not finite.all():
            n_bad = int(data.size - np.count_nonzero(finite))
            raise InputError(f"{path}: label contains {n_bad} NaN/Inf voxels, expected integer labels")
        frac = data != np.round(data)
        if frac.any():
            examples = np.unique(data[frac])[:5]
            raise InputError(
                f"{path}: label has {int(np.count_nonzero(frac))} non-integer voxel values "
                f"(e.g. {', '.join(f'{v:g}' for v in examples)}), expected integer labels"
            )
        lo, hi = float(data.min()), float(data.max())
        if lo < np.iinfo(np.int64).min or hi > np.iinfo(np.int64).max:
            raise InputError(f"{path}: label values out of integer range ({lo:g}..{hi:g})")
        data = data.astype(np.int64)
    if data.dtype.kind not in "iu":
        raise InputError(f"{path}: label has data type {data.dtype}, expected integer labels")
    lo, hi = int(data.min()), int(data.max())
    if hi - lo < 32:  # the normal case: a few comparisons are much faster than sorting or counting
        return np.asarray(
            [v for v in range(lo, hi + 1) if v in (lo, hi) or (data == v).any()], dtype=np.int64
        )
    if hi - lo < 1 << 20:  # counting is faster than sorting
        counts = np.bincount((data.ravel().astype(np.int64) - lo), minlength=hi - lo + 1)
        return np.flatnonzero(counts) + lo
    return np.unique(data)


# ---------------------------------------------------------------------------------------------- checks


def _item_channels(
    item: Mapping[str, Any], paths: Sequence[str], channels: Sequence[str], allow_missing: bool
) -> list[str]:
    """The channels the item's files hold, in file order: its ``"channels"`` (names checked against the
    bundle's, no repeats, none missing unless ``allow_missing``) or else the bundle's ``channels``."""
    given = item.get("channels")
    if given is None:
        return list(channels)
    if isinstance(given, str):
        given = [given]
    if not given:
        raise InputError(
            f"{paths[0]}: no sequence given for this case (the bundle takes {_fmt_channels(channels)})"
        )
    names = []
    for g in given:
        try:
            names.append(normalise_channel(g, channels))
        except ValueError as e:
            raise InputError(f"{paths[0]}: {e}") from None
    for ch in dict.fromkeys(names):
        at = [i for i, n in enumerate(names) if n == ch]
        if len(at) > 1:
            files = [paths[i] for i in at if i < len(paths)] if len(paths) == len(names) else paths
            raise InputError(f"{files[0]}: sequence {ch} given twice ({', '.join(files)})")
    missing = [c for c in channels if c not in names]
    if missing and not allow_missing:
        raise InputError(
            f"{paths[0]}: missing sequence{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(every one of {_fmt_channels(channels)} is required here)"
        )
    return names


def check_case(
    item: Mapping[str, Any],
    channels: Sequence[str],
    label_values: Collection[int] | None = None,
    require_label: bool = False,
    base_dir: PathLike | None = None,
    allow_missing: bool = False,
    same_grid: bool = True,
) -> None:
    """Validate one datalist item before anything is computed or written.

    Args:
        item: a MONAI datalist item. ``item["image"]`` is a list of paths, one per channel in
            ``channels`` order, or a single path / one-element list of a 4D file whose 4th axis holds the
            channels (a single path is also fine for a one-channel case). ``item["label"]`` (optional) is
            a label path.
        channels: channel names, e.g. ``["T1"]`` or ``["FLAIR", "T1", "T1c", "T2"]``.
        label_values: allowed label values (e.g. ``{0, 1, 2, 3}``); ``None`` skips that check (the
            label must still be integer-valued).
        require_label: a missing ``label`` is an error (evaluation); otherwise the label is optional.
        base_dir: relative paths are resolved against it (else against the current directory).
        allow_missing: the item may hold a subset of ``channels``, named (in file order) by its
            ``"channels"`` entry; otherwise every channel is required. An item's ``"channels"`` may
            also just give another order (e.g. a Decathlon 4D file).
        same_grid: every channel must be on the first channel's voxel grid (shape and affine). With
            ``False`` (a bundle that resamples its channels, e.g. a thick-slice FLAIR with a 1 mm T1) the
            other channels may be on other grids, but each must cover at least :data:`MIN_GRID_OVERLAP`
            of the first channel's field of view in world space; the label must still be on the first
            channel's grid.

    With ``item["label_convention"]`` (:mod:`brainbundles.data.labels`) the label's allowed values are
    that convention's instead of ``label_values``.

    Raises:
        InputError: message ``"<offending file path>: <problem>"``.
    """
    channels = [str(c) for c in channels]
    if not channels:
        raise ValueError("check_case: 'channels' must name at least one channel")
    paths = [_resolve_path(p, base_dir) for p in _image_paths(item)]
    channels = _item_channels(item, paths, channels, allow_missing)
    n_expected = len(channels)
    if label_values is not None and item.get("label_convention"):
        try:
            label_values = convention_values(str(item["label_convention"]))
        except ValueError as e:
            raise InputError(f"{item.get('label') or paths[0]}: {e}") from None

    if len(paths) > 1 and len(paths) != n_expected:
        raise InputError(
            f"{paths[0]}: wrong number of channels: expected {n_expected} ({_fmt_channels(channels)}), "
            f"found {len(paths)} image files ({', '.join(paths)})"
        )

    # ---- images: geometry first (headers only), then voxel data
    imgs = [_load(p) for p in paths]
    for i in range(1, len(paths)):
        for j in range(i):
            if _same_file(paths[j], paths[i]):
                raise InputError(
                    f"{paths[i]}: the same scan is given as {channels[j]} ({paths[j]}) and as {channels[i]}; "
                    "each sequence needs its own scan"
                )
    if len(paths) == 1:
        spatial, n_found = _split_shape(paths[0], tuple(imgs[0].shape), "image")
        if n_expected == 1 and n_found != 1:
            raise InputError(
                f"{paths[0]}: image is 4D (shape {tuple(imgs[0].shape)}, {n_found} volumes in the 4th axis), "
                f"expected a single 3D channel ({channels[0]})"
            )
        if n_found != n_expected:
            raise InputError(
                f"{paths[0]}: wrong number of channels: expected {n_expected} ({_fmt_channels(channels)}), "
                f"found {n_found} in {'its 4th axis' if n_found > 1 else 'a 3D image'}"
            )
        ref_shape, ref_affine, ref_path = spatial, imgs[0].affine, paths[0]
    else:
        ref_shape, ref_affine, ref_path = None, None, None
        for path, img, name in zip(paths, imgs, channels, strict=True):
            spatial, n_found = _split_shape(path, tuple(img.shape), f"channel {name}")
            if n_found != 1:
                raise InputError(
                    f"{path}: image is 4D (shape {tuple(img.shape)}, {n_found} volumes in the 4th axis), "
                    f"expected a single 3D channel ({name})"
                )
            if ref_shape is None:
                ref_shape, ref_affine, ref_path = spatial, img.affine, path
                continue
            if not same_grid:
                covered = _overlap_fraction(spatial, img.affine, ref_shape, ref_affine)
                if covered < MIN_GRID_OVERLAP:
                    raise InputError(
                        f"{path}: channel {name} covers only {covered:.0%} of the field of view of {ref_path} "
                        f"(channel {channels[0]}) in world coordinates; are they scans of the same head, "
                        "with correct headers?"
                    )
                continue
            if spatial != ref_shape:
                raise InputError(
                    f"{path}: shape {spatial} (channel {name}) differs from shape {ref_shape} of {ref_path} "
                    f"(channel {channels[0]}); all channels must be on the same voxel grid"
                )
            if not _same_affine(img.affine, ref_affine):
                raise InputError(
                    f"{path}: affine (channel {name}) differs from the affine of {ref_path} (channel "
                    f"{channels[0]}) by up to {_affine_diff(img.affine, ref_affine):.4g} mm "
                    f"(tolerance {AFFINE_ATOL_MM} mm): {_fmt_affine(img.affine)} vs {_fmt_affine(ref_affine)}"
                )

    # ---- label geometry (cheap) before reading any voxel data
    label = item.get("label")
    label_path = None
    label_img = None
    if label is None:
        if require_label:
            raise InputError(f"{paths[0]}: no label given for this case (a label is required here)")
    else:
        label_path = _resolve_path(label, base_dir)
        label_img = _load(label_path)
        label_spatial, label_channels = _split_shape(label_path, tuple(label_img.shape), "label")
        if label_channels != 1:
            raise InputError(
                f"{label_path}: label is 4D (shape {tuple(label_img.shape)}), expected a single 3D label volume"
            )
        if label_spatial != ref_shape:
            raise InputError(
                f"{label_path}: label shape {label_spatial} differs from image shape {ref_shape} of {ref_path}"
            )
        if not _same_affine(label_img.affine, ref_affine):
            raise InputError(
                f"{label_path}: label affine differs from the affine of image {ref_path} by up to "
                f"{_affine_diff(label_img.affine, ref_affine):.4g} mm (tolerance {AFFINE_ATOL_MM} mm): "
                f"{_fmt_affine(label_img.affine)} vs {_fmt_affine(ref_affine)}"
            )

    # ---- voxel data
    for path, img, c in zip(paths, imgs, range(len(paths)), strict=True):
        data = _read(path, img)
        spatial_ndim = 4 if len(paths) == 1 and n_expected > 1 else 3
        data = data.reshape(data.shape[:3] + (-1,)) if spatial_ndim == 4 else data.reshape(data.shape[:3])
        names = channels if spatial_ndim == 4 else [channels[c]]
        _check_image_values(path, data, names)
        del data

    if label_img is not None:
        assert label_path is not None
        values = _label_values(label_path, _read(label_path, label_img))
        if label_values is not None:
            allowed = {int(v) for v in label_values}
            unexpected = [int(v) for v in values if int(v) not in allowed]
            if unexpected:
                shown = ", ".join(str(v) for v in unexpected[:20]) + (" ..." if len(unexpected) > 20 else "")
                raise InputError(
                    f"{label_path}: unexpected label values {shown} "
                    f"(allowed: {', '.join(str(v) for v in sorted(allowed))})"
                )


# -------------------------------------------------------------------------------------------- CaseList


class CaseList:
    """Checks every case of an inference/evaluation run up front; keeps the valid ones, logs each bad one.

    Attributes:
        valid: the good items, in input order, with ``image``/``label`` paths resolved to absolute
            (all other keys kept).
        errors: ``(item, message)`` for each bad item, in input order (``item`` as given).

    Typical use::

        cases = CaseList(datalist["testing"], channels=["T1"], base_dir=dataset_dir)
        for item in cases.valid:
            ...  # run the model, write outputs
        cases.raise_if_invalid()  # non-zero exit after the good cases were processed
    """

    def __init__(
        self,
        items: Sequence[Mapping[str, Any]],
        channels: Sequence[str],
        label_values: Collection[int] | None = None,
        require_label: bool = False,
        base_dir: PathLike | None = None,
        logger_name: str = "brainbundles",
        allow_missing: bool = False,
        same_grid: bool = True,
    ) -> None:
        self.channels = [str(c) for c in channels]
        self.valid: list[dict] = []
        self.errors: list[tuple[dict, str]] = []
        logger = logging.getLogger(logger_name)
        items = list(items)
        for item in items:
            try:
                check_case(
                    item,
                    self.channels,
                    label_values,
                    require_label,
                    base_dir=base_dir,
                    allow_missing=allow_missing,
                    same_grid=same_grid,
                )
            except InputError as e:
                self.errors.append((item, str(e)))
                logger.error("skipping bad input case %s: %s", _item_name(item), e)
            else:
                self.valid.append(resolve_item(item, base_dir))
        self.total = len(items)
        if self.errors:
            logger.warning("%d of %d input cases failed the input checks", len(self.errors), self.total)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.valid)

    def __len__(self) -> int:
        return len(self.valid)

    def raise_if_invalid(self) -> None:
        """Raise :class:`InputError` listing every bad case (one ``path: problem`` line each), if any."""
        if not self.errors:
            return
        lines = [msg for _, msg in self.errors]
        lines.append(
            f"{len(self.errors)} of {self.total} input case{'s' if self.total != 1 else ''} failed the input "
            f"checks (listed above); {len(self.valid)} passed"
        )
        raise InputError("\n".join(lines))
