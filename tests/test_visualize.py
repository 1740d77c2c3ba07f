"""Tests of brainbundles.visualize: overlay previews shown in RAS whatever the storage order, written atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pytest
from matplotlib.figure import Figure

from brainbundles.visualize import save_overlay_png  # selects the Agg backend itself

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHAPE = (20, 24, 16)


def _ras_volumes() -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric head-like image and labels in one corner, in RAS voxel order."""
    x, y, z = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    img = (10.0 + 3.0 * x + 1.0 * y + 0.5 * z).astype(np.float32)
    img[:2] = 0.0  # some background
    lab = np.zeros(SHAPE, dtype=np.uint8)
    lab[3:8, 4:10, 2:7] = 1
    lab[5:9, 12:20, 9:14] = 2
    lab[14:18, 6:9, 3:5] = 3
    return img, lab


def _write_pair(folder: Path, orientation: str) -> tuple[Path, Path]:
    """The same physical volumes stored RAS, or LPS (first two voxel axes reversed, same world grid)."""
    img, lab = _ras_volumes()
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = [-10.0, -12.0, -8.0]
    if orientation == "LPS":
        img, lab = img[::-1, ::-1].copy(), lab[::-1, ::-1].copy()
        # voxel (0, 0, 0) now holds what was at RAS voxel (X-1, Y-1, 0)
        aff = aff @ np.array(
            [[-1, 0, 0, SHAPE[0] - 1], [0, -1, 0, SHAPE[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float
        )
        assert nib.aff2axcodes(aff) == ("L", "P", "S")
    folder.mkdir(parents=True)
    image_path, label_path = folder / "scan.nii.gz", folder / "scan_seg.nii.gz"
    nib.save(nib.Nifti1Image(img, aff), str(image_path))
    nib.save(nib.Nifti1Image(lab, aff), str(label_path))
    return image_path, label_path


def test_overlay_png_for_lps_image_is_written_atomically(tmp_path):
    image_path, label_path = _write_pair(tmp_path / "in", "LPS")
    out_dir = tmp_path / "out"
    out = save_overlay_png(image_path, label_path, out_dir / "scan_overlay.png")
    assert out == out_dir / "scan_overlay.png"
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(p.name for p in out_dir.iterdir()) == ["scan_overlay.png"]  # no stray temp file
    assert plt.get_fignums() == []  # the figure was closed

    pixels = mpimg.imread(str(out))
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4) and pixels.shape[1] > pixels.shape[0]
    rgb = pixels[..., :3]
    coloured = (np.abs(rgb[..., 0] - rgb[..., 1]) > 0.05) | (np.abs(rgb[..., 1] - rgb[..., 2]) > 0.05)
    assert coloured.sum() > 50  # the labels are overlaid in colour on the grey image


def test_overlay_shows_lps_and_ras_storage_identically(tmp_path):
    ras = save_overlay_png(*_write_pair(tmp_path / "ras", "RAS"), tmp_path / "ras" / "overlay.png")
    lps = save_overlay_png(*_write_pair(tmp_path / "lps", "LPS"), tmp_path / "lps" / "overlay.png")
    a, b = mpimg.imread(str(ras)), mpimg.imread(str(lps))
    assert a.shape == b.shape
    np.testing.assert_array_equal(a, b)
    # whereas the LPS voxel array shown without reorientation would look different
    img, lab = _ras_volumes()
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    nib.save(nib.Nifti1Image(img[::-1, ::-1].copy(), np.eye(4)), str(flipped / "scan.nii.gz"))
    nib.save(nib.Nifti1Image(lab[::-1, ::-1].copy(), np.eye(4)), str(flipped / "scan_seg.nii.gz"))
    c = mpimg.imread(
        str(save_overlay_png(flipped / "scan.nii.gz", flipped / "scan_seg.nii.gz", flipped / "o.png"))
    )
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_overlay_failed_write_leaves_nothing(tmp_path, monkeypatch):
    image_path, label_path = _write_pair(tmp_path / "in", "LPS")
    out_dir = tmp_path / "out"
    real_savefig = Figure.savefig

    def failing_savefig(self, fname, *args, **kwargs):
        real_savefig(self, fname, *args, **kwargs)  # the file is complete on disk ...
        raise OSError("interrupted")  # ... but the write did not finish

    monkeypatch.setattr(Figure, "savefig", failing_savefig)
    with pytest.raises(OSError, match="interrupted"):
        save_overlay_png(image_path, label_path, out_dir / "scan_overlay.png")
    assert sorted(p.name for p in out_dir.iterdir()) == []
    assert plt.get_fignums() == []


def _capture_figure(monkeypatch) -> list:
    """Keep the figure that save_overlay_png draws (it is closed after saving)."""
    seen = []
    real_savefig = Figure.savefig

    def keep(self, fname, *args, **kwargs):
        seen.append(self)
        real_savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return seen


def test_overlay_legend_names_each_class_with_its_volume(tmp_path, monkeypatch):
    seen = _capture_figure(monkeypatch)
    image_path, label_path = _write_pair(tmp_path / "in", "RAS")
    names = {1: "CSF", 2: "GM", 3: "WM"}
    volumes = {"CSF": 0.15, "GM": 0.16, "WM": 0.024, "total": 0.334}
    save_overlay_png(image_path, label_path, tmp_path / "o.png", label_names=names, volumes_ml=volumes)
    texts = [t.get_text() for t in seen[0].legends[0].get_texts()]
    assert texts == ["1 CSF: 0.1 mL", "2 GM: 0.2 mL", "3 WM: 0.0 mL", "total: 0.3 mL"]
    # without names, the legend still lists every label found
    save_overlay_png(image_path, label_path, tmp_path / "p.png")
    assert [t.get_text() for t in seen[1].legends[0].get_texts()] == ["label 1", "label 2", "label 3"]


def test_overlay_panels_keep_the_scans_true_proportions(tmp_path, monkeypatch):
    """The same head sampled at 1 mm, or with 2 mm between coronal slices (half the voxels along A-P),
    gives panels of the same shape; in voxel units the second would be squashed 2:1."""
    seen = _capture_figure(monkeypatch)
    shape = (24, 32, 20)
    for name, step in (("iso", 1), ("aniso", 2)):
        folder = tmp_path / name
        folder.mkdir()
        x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
        img = (10.0 + x + y + z).astype(np.float32)[:, ::step]
        lab = np.zeros(shape, np.uint8)
        lab[5:15, 8:24, 4:12] = 1
        aff = np.diag([1.0, float(step), 1.0, 1.0])
        nib.save(nib.Nifti1Image(img, aff), str(folder / "scan.nii.gz"))
        nib.save(nib.Nifti1Image(lab[:, ::step].copy(), aff), str(folder / "seg.nii.gz"))
        save_overlay_png(folder / "scan.nii.gz", folder / "seg.nii.gz", folder / "o.png")
    iso, aniso = ([ax.get_position().bounds for ax in fig.axes] for fig in seen)
    np.testing.assert_allclose(iso, aniso, atol=0.01)
    for fig in seen:  # each panel's data are drawn in mm: a sagittal panel spans 32 mm by 20 mm
        assert fig.axes[0].get_xlim() == (0.0, 32.0) and fig.axes[0].get_ylim() == (0.0, 20.0)
