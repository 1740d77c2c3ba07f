"""Checking a case: a datalist item's paths and channels, :func:`check_case` (the checks of the files,
their grids and their values, in order) and :class:`CaseList` (every case of a run checked up front)."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from brainbundles.data.checks.files import _load, _read, _same_file
from brainbundles.data.checks.grids import (
    AFFINE_ATOL_MM,
    MIN_GRID_OVERLAP,
    _affine_diff,
    _fmt_affine,
    _overlap_fraction,
    _same_affine,
    _split_shape,
)
from brainbundles.data.checks.values import _check_image_values, _label_values
from brainbundles.data.labels import convention_values
from brainbundles.data.sequences import normalise_channel
from brainbundles.errors import InputError

__all__ = ["CaseList", "check_case", "resolve_item"]

PathLike = str | os.PathLike


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


def _fmt_channels(channels: Sequence[str]) -> str:
    return ", ".join(str(c) for c in channels)


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
