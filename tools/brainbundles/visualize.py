"""Quick-look pictures: three orthogonal slices of a scan with its segmentation overlaid, drawn in
millimetres (true aspect ratio) in RAS orientation, with a legend naming each class and its volume."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from nibabel.spatialimages import SpatialImage

from brainbundles.fileio import atomic_write
from brainbundles.postprocessing.components import bounding_box

__all__ = ["save_overlay_png"]

#: one colour per label value 1, 2, 3, ... (matplotlib's tab10), the same in every bundle
_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def _canonical(image: str | os.PathLike | SpatialImage) -> tuple[np.ndarray, np.ndarray]:
    """The first 3D volume of ``image`` in RAS voxel order (nibabel's closest canonical) and its voxel
    sizes in mm."""
    img = image if isinstance(image, SpatialImage) else nib.load(str(image))
    if len(img.shape) == 4:  # a 4D file: its first volume (a trailing axis of 1, or the first channel)
        img = img.slicer[..., 0]
    img = nib.as_closest_canonical(img)
    return np.asanyarray(img.dataobj), np.asarray(img.header.get_zooms()[:3], dtype=float)


def _centroid(mask: np.ndarray) -> np.ndarray:
    """The rounded centre of mass of a 3D boolean mask, from its projections (no coordinate list)."""
    total = mask.sum()
    axes = [(1, 2), (0, 2), (0, 1)]
    return np.array(
        [
            round(float((np.arange(mask.shape[i]) * mask.sum(axis=a)).sum() / total))
            for i, a in enumerate(axes)
        ]
    )


def save_overlay_png(
    image: str | os.PathLike | SpatialImage,
    labels: str | os.PathLike | SpatialImage,
    out: str | os.PathLike,
    label_names: Mapping[int, str] | None = None,
    volumes_ml: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Path:
    """Sagittal, coronal and axial slices through the centre of the segmented region of ``image``, with
    ``labels`` (same grid) overlaid.

    Both are shown in RAS orientation whatever their storage order (neurological convention: the
    patient's right on the right of the coronal and axial panels, anterior to the right of the sagittal
    one; letters mark each side), each panel in millimetres so that anisotropic voxels (IBSR's 1.5 mm
    between coronal slices) keep the scan's true proportions. A legend names each class with its colour
    and, from ``volumes_ml`` (``{name: mL}``, as :func:`brainbundles.transforms.io.label_volumes_ml`
    gives), its volume. Written atomically."""
    img, zoom = _canonical(image)
    img = img.astype(np.float32)
    full_shape = img.shape
    lab, _ = _canonical(labels)
    lab = np.rint(lab).astype(np.int16)
    if img.shape != lab.shape:
        raise ValueError(f"{out}: image shape {img.shape} and label shape {lab.shape} differ")
    fg = lab > 0
    centre = _centroid(fg) if fg.any() else np.array(lab.shape) // 2
    hi = float(np.percentile(img[img != 0], 99.5)) if np.any(img != 0) else 1.0
    names = {int(k): str(v) for k, v in (label_names or {}).items() if int(k) != 0}
    counts = np.bincount(np.clip(lab, 0, None).ravel())
    present = sorted(set(names) | {int(v) for v in np.flatnonzero(counts) if v > 0})
    n = max(present, default=1)
    cmap = ListedColormap([_COLOURS[(i - 1) % len(_COLOURS)] for i in range(1, n + 1)])
    # the panels show the head (non-zero voxels and labels) with a 5 mm margin, not the empty field of view
    inside = (img != 0) | fg
    margin = np.ceil(5.0 / zoom).astype(int)
    if inside.any():
        box = bounding_box(inside)
        lo = np.maximum([b.start for b in box] - margin, 0)
        hi_ = np.minimum([b.stop for b in box] + margin, img.shape)
    else:
        lo, hi_ = np.zeros(3, int), np.asarray(img.shape)
    img, lab = (
        img[tuple(slice(a, b) for a, b in zip(lo, hi_, strict=True))],
        lab[tuple(slice(a, b) for a, b in zip(lo, hi_, strict=True))],
    )
    centre = np.clip(centre - lo, 0, np.asarray(img.shape) - 1)
    nx, ny, nz = (np.asarray(img.shape) * zoom).tolist()  # extents in mm
    views = [
        # name, image slice (rows = vertical axis), label slice, extent (mm), side letters (left, right, bottom, top)
        ("sagittal", img[centre[0]].T, lab[centre[0]].T, (0, ny, 0, nz), ("P", "A", "I", "S")),
        ("coronal", img[:, centre[1]].T, lab[:, centre[1]].T, (0, nx, 0, nz), ("L", "R", "I", "S")),
        ("axial", img[:, :, centre[2]].T, lab[:, :, centre[2]].T, (0, nx, 0, ny), ("L", "R", "P", "A")),
    ]
    widths = [v[3][1] for v in views]
    height = max(v[3][3] for v in views)
    # a Figure without pyplot: no global state or GUI backend, safe in the prefetching thread
    fig = Figure(figsize=(12, 12 * height / sum(widths) + 1.4))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": widths})
    for ax, (name, im, lb, extent, sides) in zip(axes, views, strict=True):
        ax.imshow(im, cmap="gray", origin="lower", vmin=0, vmax=hi, extent=extent, interpolation="nearest")
        ax.imshow(
            np.ma.masked_where(lb == 0, lb),
            cmap=cmap,
            vmin=0.5,
            vmax=n + 0.5,
            alpha=0.45,
            origin="lower",
            extent=extent,
            interpolation="nearest",
        )
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
        kw = {"transform": ax.transAxes, "color": "yellow", "fontsize": 9, "fontweight": "bold"}
        ax.text(0.01, 0.5, sides[0], ha="left", va="center", **kw)
        ax.text(0.99, 0.5, sides[1], ha="right", va="center", **kw)
        ax.text(0.5, 0.01, sides[2], ha="center", va="bottom", **kw)
        ax.text(0.5, 0.99, sides[3], ha="center", va="top", **kw)
    handles = []
    for v in present:
        name = names.get(v)
        vol = (volumes_ml or {}).get(name) if name else None
        text = (f"{v} {name}" if name else f"label {v}") + (f": {vol:.1f} mL" if vol is not None else "")
        handles.append(Patch(facecolor=_COLOURS[(v - 1) % len(_COLOURS)], alpha=0.8, label=text))
    if volumes_ml and "total" in volumes_ml:
        handles.append(
            Patch(facecolor="none", edgecolor="none", label=f"total: {volumes_ml['total']:.1f} mL")
        )
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), frameon=False, fontsize=9)
    shape = "×".join(str(s) for s in full_shape)
    voxel = "×".join(f"{z:g}" for z in zoom)
    if title is None:
        title = "" if isinstance(image, SpatialImage) else Path(str(image)).name
    fig.suptitle(f"{title}  ({shape} voxels of {voxel} mm, RAS)".strip(), fontsize=10)
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 0.95))
    return atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
