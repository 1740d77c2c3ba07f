"""Quick-look pictures: three orthogonal slices of a scan with its segmentation overlaid."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from brainbundles.fileio import atomic_write

__all__ = ["save_overlay_png"]


def _canonical(path: str | os.PathLike) -> np.ndarray:
    img = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asanyarray(img.dataobj)
    return data[..., 0] if data.ndim == 4 else data


def save_overlay_png(image: str | os.PathLike, labels: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Axial, coronal and sagittal slices (through the centre of the segmented region) of ``image``
    with ``labels`` overlaid, both shown in RAS orientation whatever their storage order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    img = _canonical(image).astype(np.float32)
    lab = _canonical(labels).astype(np.int16)
    fg = np.argwhere(lab > 0)
    centre = fg.mean(0).round().astype(int) if len(fg) else np.array(lab.shape) // 2
    hi = np.percentile(img[img != 0], 99.5) if np.any(img != 0) else 1.0
    n = max(int(lab.max()), 1)
    cmap = ListedColormap(plt.get_cmap("tab10").colors[:n])
    views = [
        ("sagittal", img[centre[0]].T, lab[centre[0]].T),
        ("coronal", img[:, centre[1]].T, lab[:, centre[1]].T),
        ("axial", img[:, :, centre[2]].T, lab[:, :, centre[2]].T),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, (name, im, lb) in zip(axes, views, strict=True):
        ax.imshow(im, cmap="gray", origin="lower", vmin=0, vmax=hi)
        ax.imshow(np.ma.masked_where(lb == 0, lb), cmap=cmap, vmin=1, vmax=n, alpha=0.4, origin="lower")
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(Path(str(image)).name)
    fig.tight_layout()
    try:
        return atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    finally:
        plt.close(fig)
