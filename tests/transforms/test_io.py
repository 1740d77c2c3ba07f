"""Tests of brainbundles.transforms.io: results on the reference scan's grid, written whole or not at all."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.orientations import aff2axcodes, axcodes2ornt

from brainbundles.fileio import atomic_write, save_like
from brainbundles.transforms.io import SaveSegmentationd, collect_volumes, label_volumes_ml

SHAPE = (6, 7, 5)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = {0: "background", 1: "CSF", 2: "GM", 3: "WM"}


def oriented_affine(
    codes: tuple[str, str, str], zooms=(1.0, 1.0, 1.0), origin=(-20.0, 12.5, 7.0)
) -> np.ndarray:
    """An affine whose voxel axes point along ``codes`` (e.g. ("L", "P", "S")) with the given spacing."""
    ornt = axcodes2ornt(codes)
    aff = np.eye(4)
    aff[:3, :3] = 0.0
    for i, (world, flip) in enumerate(ornt):
        aff[int(world), i] = flip * zooms[i]
    aff[:3, 3] = origin
    assert aff2axcodes(aff) == tuple(codes)
    return aff


def labels(shape=SHAPE, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4, size=shape).astype(np.uint8)


def write_ref(path: Path, affine, shape=SHAPE, dtype=np.float32, codes=(1, 1), cls=nib.Nifti1Image) -> str:
    data = (np.random.default_rng(1).uniform(1, 100, size=shape)).astype(dtype)
    img = cls(data, affine)
    if hasattr(img, "set_qform"):
        img.set_qform(affine, code=codes[0])
        img.set_sform(affine, code=codes[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return str(path)


def listing(folder: Path) -> list[str]:
    """Every entry in ``folder`` (hidden temporary files included)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------------------ atomic_write


def test_atomic_write_writes_through_temp_with_same_suffixes(tmp_path):
    seen = []

    def write(tmp):
        seen.append(tmp)
        Path(tmp).write_bytes(b"hello")

    out = atomic_write(tmp_path / "sub" / "case.nii.gz", write)
    assert out == tmp_path / "sub" / "case.nii.gz"
    assert out.read_bytes() == b"hello"
    assert seen[0].endswith(".nii.gz") and Path(seen[0]).parent == out.parent and seen[0] != str(out)
    assert listing(out.parent) == ["case.nii.gz"]


def test_atomic_write_failing_midway_leaves_nothing(tmp_path):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial" * 100)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "case_seg.nii.gz", write)
    assert listing(tmp_path) == []


def test_atomic_write_failure_keeps_previous_file_intact(tmp_path):
    target = tmp_path / "volumes.csv"
    target.write_text("old,complete\n")

    def write(tmp):
        Path(tmp).write_text("new,half")
        raise KeyboardInterrupt  # even an interrupt (BaseException) cleans up

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    assert target.read_text() == "old,complete\n"
    assert listing(tmp_path) == ["volumes.csv"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_write_gives_the_usual_file_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        out = atomic_write(tmp_path / "case_volumes.json", lambda tmp: Path(tmp).write_text("{}"))
    finally:
        os.umask(old)
    assert os.stat(out).st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------------------------- save_like


def assert_same_grid(out: Path, ref_path: str, expected: np.ndarray) -> nib.Nifti1Image:
    ref = nib.load(ref_path)
    img = nib.load(str(out))
    assert isinstance(img, nib.Nifti1Image) and str(out).endswith(".nii.gz")
    assert img.shape == ref.shape[:3]
    np.testing.assert_allclose(img.affine, ref.affine, atol=1e-6)
    assert aff2axcodes(img.affine) == aff2axcodes(ref.affine)
    np.testing.assert_allclose(img.header.get_zooms()[:3], ref.header.get_zooms()[:3], atol=1e-6)
    if isinstance(ref, nib.Nifti1Image):
        for code in ("qform_code", "sform_code"):
            assert int(img.header[code]) == int(ref.header[code]), code
        np.testing.assert_allclose(img.get_qform(), ref.get_qform(), atol=1e-6)
        np.testing.assert_allclose(img.get_sform(), ref.get_sform(), atol=1e-6)
    else:
        assert int(img.header["sform_code"]) > 0 or int(img.header["qform_code"]) > 0
    data = np.asanyarray(img.dataobj)
    assert data.dtype == np.uint8
    np.testing.assert_array_equal(data, expected)
    return img


@pytest.mark.parametrize(
    "codes, zooms, dtype, xform_codes",
    [
        (("R", "A", "S"), (1.0, 1.0, 1.0), np.float32, (1, 1)),
        (("L", "P", "S"), (1.0, 1.0, 1.0), np.int16, (1, 2)),
        (("A", "S", "L"), (1.0, 1.0, 1.0), np.float32, (2, 4)),  # permuted voxel axes
        (("P", "I", "R"), (0.9, 1.2, 3.0), np.int16, (1, 0)),  # permuted, flipped, anisotropic, no sform
        (("R", "A", "S"), (2.0, 1.5, 1.0), np.float32, (0, 1)),  # anisotropic, no qform
    ],
)
def test_save_like_matches_reference_grid(tmp_path, codes, zooms, dtype, xform_codes):
    ref = write_ref(
        tmp_path / "in" / "scan.nii.gz", oriented_affine(codes, zooms), dtype=dtype, codes=xform_codes
    )
    lab = labels()
    out = save_like(lab, ref, tmp_path / "out" / "scan_seg.nii.gz")
    assert out == tmp_path / "out" / "scan_seg.nii.gz"
    img = assert_same_grid(out, ref, lab)
    assert img.header.get_slope_inter() in ((None, None), (1.0, 0.0))  # stored unscaled
    assert listing(tmp_path / "out") == ["scan_seg.nii.gz"]


def test_save_like_accepts_channel_first_singleton(tmp_path):
    ref = write_ref(tmp_path / "scan.nii.gz", oriented_affine(("L", "P", "S")))
    lab = labels()
    out = save_like(lab[None], ref, tmp_path / "out" / "seg.nii.gz")
    assert_same_grid(out, ref, lab)


def test_save_like_ignores_reference_scaling(tmp_path):
    """A scaled int16 reference (scl_slope/scl_inter set) must not rescale the written labels."""
    aff = oriented_affine(("L", "P", "S"), (1.0, 1.0, 2.5))
    data = np.random.default_rng(0).uniform(-3e5, 7e5, SHAPE)  # does not fit int16 unscaled
    img = nib.Nifti1Image(data, aff, dtype=np.int16)
    ref = tmp_path / "scaled.nii.gz"
    nib.save(img, str(ref))
    scaled = nib.load(str(ref)).dataobj  # nibabel moves scl_slope/scl_inter to the array proxy on load
    assert scaled.slope != 1.0 and scaled.inter != 0.0
    lab = labels()
    out = save_like(lab, ref, tmp_path / "out" / "seg.nii.gz")
    res = assert_same_grid(out, str(ref), lab)
    assert (res.dataobj.slope, res.dataobj.inter) == (1.0, 0.0)


def test_save_like_analyze_reference_gives_nifti_with_same_affine(tmp_path):
    aff = np.diag([-1.5, 2.0, 1.0, 1.0])  # Analyze: LAS with anisotropic zooms
    aff[:3, 3] = [10.0, -5.0, 3.0]
    ref = write_ref(tmp_path / "in" / "scan.hdr", aff, dtype=np.int16, cls=nib.AnalyzeImage)
    assert (tmp_path / "in" / "scan.img").is_file()
    ref_img = nib.load(ref)
    assert not isinstance(ref_img, nib.Nifti1Pair)  # really an Analyze 7.5 header
    lab = labels()
    out = save_like(lab, ref, tmp_path / "out" / "scan_seg.nii.gz")
    assert_same_grid(out, ref, lab)
    assert listing(tmp_path / "out") == ["scan_seg.nii.gz"]


def test_save_like_nifti_pair_reference_keeps_qform_and_sform(tmp_path):
    sform = oriented_affine(("L", "P", "S"), (1.0, 1.0, 2.0))
    qform = sform.copy()
    qform[:3, 3] += [1.0, -2.0, 0.5]  # a scanner qform that differs from the template sform
    img = nib.Nifti1Pair(np.random.default_rng(0).uniform(1, 9, SHAPE).astype(np.float32), sform)
    img.set_qform(qform, code=1)
    img.set_sform(sform, code=4)
    ref = tmp_path / "scan.hdr"
    nib.save(img, str(ref))
    lab = labels()
    out = save_like(lab, ref, tmp_path / "out" / "seg.nii.gz")
    res, r = nib.load(str(out)), nib.load(str(ref))
    assert (int(res.header["qform_code"]), int(res.header["sform_code"])) == (1, 4)
    np.testing.assert_allclose(res.get_qform(), r.get_qform(), atol=1e-6)
    np.testing.assert_allclose(res.get_sform(), r.get_sform(), atol=1e-6)


@pytest.mark.parametrize("bad_shape", [(6, 7, 4), (5, 7, 6), (2, 6, 7, 5)])
def test_save_like_wrong_shape_raises_and_writes_nothing(tmp_path, bad_shape):
    ref = write_ref(tmp_path / "in" / "scan_T1w.nii.gz", oriented_affine(("R", "A", "S")))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(ValueError) as info:
        save_like(np.zeros(bad_shape, dtype=np.uint8), ref, out_dir / "scan_seg.nii.gz")
    assert str(ref) in str(info.value)
    assert listing(out_dir) == []


def test_save_like_transposed_array_is_rejected(tmp_path):
    """Same number of voxels in another axis order (e.g. not inverted to native space): refused."""
    ref = write_ref(tmp_path / "scan.nii.gz", oriented_affine(("A", "S", "L")))
    out_dir = tmp_path / "out"
    with pytest.raises(ValueError, match="scan.nii.gz"):
        save_like(labels().transpose(2, 0, 1), ref, out_dir / "seg.nii.gz")
    assert listing(out_dir) == []


# -------------------------------------------------------------------------------------- label_volumes_ml


def test_label_volumes_ml_hand_computed_anisotropic_voxel():
    lab = np.zeros((10, 10, 10), dtype=np.uint8)
    lab.reshape(-1)[:10] = 1  # 10 voxels of CSF
    lab.reshape(-1)[100:125] = 2  # 25 voxels of GM
    lab.reshape(-1)[500:507] = 5  # an unnamed label: not counted
    # a 2 x 1.5 x 1 mm voxel (3 mm^3 = 0.003 mL), axes permuted and flipped: only |det| matters
    aff = oriented_affine(("P", "L", "S"), (2.0, 1.5, 1.0))
    vols = label_volumes_ml(lab, aff, NAMES)
    assert set(vols) == {"CSF", "GM", "WM", "total"}  # background (0) is not a volume
    assert vols["CSF"] == pytest.approx(10 * 0.003)
    assert vols["GM"] == pytest.approx(25 * 0.003)
    assert vols["WM"] == 0.0
    assert vols["total"] == pytest.approx(35 * 0.003)


# ------------------------------------------------------------------------------------- SaveSegmentationd


def _pred_and_ref(tmp_path: Path, name="c1", seed=0):
    aff = oriented_affine(("L", "P", "S"), (2.0, 1.5, 1.0))
    ref = write_ref(tmp_path / "in" / f"{name}_T1w.nii.gz", aff, dtype=np.int16)
    lab = labels(seed=seed)
    return torch.as_tensor(lab[None], dtype=torch.float32), ref, lab


def test_save_segmentationd_writes_seg_volumes_and_png(tmp_path):
    pred, ref, lab = _pred_and_ref(tmp_path)
    out_dir = tmp_path / "out"
    t = SaveSegmentationd(keys="pred", output_dir=out_dir, label_names={str(k): v for k, v in NAMES.items()})
    d = t({"pred": pred, "reference": ref, "case": "c1"})

    assert listing(out_dir) == ["c1_overlay.png", "c1_seg.nii.gz", "c1_volumes.json"]
    assert d["pred_path"] == str(out_dir / "c1_seg.nii.gz")
    assert d["pred"] is pred

    assert_same_grid(out_dir / "c1_seg.nii.gz", ref, lab)

    record = json.loads((out_dir / "c1_volumes.json").read_text())
    assert record["case"] == "c1" and record["image"] == ref
    assert record["segmentation"] == str(out_dir / "c1_seg.nii.gz")
    voxel_ml = 2.0 * 1.5 * 1.0 / 1000.0
    expected = {n: float(np.sum(lab == k)) * voxel_ml for k, n in NAMES.items() if k}
    assert set(record["volumes_ml"]) == set(expected) | {"total"}
    for n, v in expected.items():
        assert record["volumes_ml"][n] == pytest.approx(v)
    assert record["volumes_ml"]["total"] == pytest.approx(np.count_nonzero(lab) * voxel_ml)

    png = (out_dir / "c1_overlay.png").read_bytes()
    assert png[:8] == PNG_SIGNATURE and len(png) > 1000


def test_save_segmentationd_rounds_soft_values_and_skips_optional_outputs(tmp_path):
    pred, ref, lab = _pred_and_ref(tmp_path)
    out_dir = tmp_path / "out"
    noisy = pred + 0.3 * (torch.rand_like(pred) - 0.5)  # e.g. float labels after inversion
    SaveSegmentationd(output_dir=out_dir, label_names=NAMES, write_volumes=False, write_png=False)(
        {"pred": noisy, "reference": ref, "case": "c1"}
    )
    assert listing(out_dir) == ["c1_seg.nii.gz"]
    assert_same_grid(out_dir / "c1_seg.nii.gz", ref, lab)


def test_save_segmentationd_wrong_shape_writes_nothing(tmp_path):
    pred, ref, _ = _pred_and_ref(tmp_path)
    out_dir = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        SaveSegmentationd(output_dir=out_dir, label_names=NAMES)(
            {"pred": pred[:, :-1], "reference": ref, "case": "c1"}
        )
    assert str(ref) in str(info.value)
    assert listing(out_dir) == []


def test_save_segmentationd_failing_late_removes_what_it_wrote(tmp_path, monkeypatch):
    """The overlay fails after the label map was written: the case's files go, and the error names
    the scan; the record (written last) never appears, so a rerun computes the case again."""
    import brainbundles.transforms.io

    pred, ref, _ = _pred_and_ref(tmp_path)
    out_dir = tmp_path / "out"

    def broken(*args, **kwargs):
        raise RuntimeError("cannot draw")

    monkeypatch.setattr(brainbundles.transforms.io, "save_overlay_png", broken)
    with pytest.raises(RuntimeError, match="cannot draw") as info:
        SaveSegmentationd(output_dir=out_dir, label_names=NAMES)(
            {"pred": pred, "reference": ref, "case": "c1"}
        )
    assert any(str(ref) in note and "outputs were removed" in note for note in info.value.__notes__)
    assert listing(out_dir) == []


def test_save_segmentationd_default_label_names(tmp_path):
    pred, ref, lab = _pred_and_ref(tmp_path)
    out_dir = tmp_path / "out"
    SaveSegmentationd(output_dir=out_dir, write_png=False)({"pred": pred, "reference": ref, "case": "c1"})
    assert listing(out_dir) == ["c1_seg.nii.gz", "c1_volumes.json"]


# --------------------------------------------------------------------------------------- collect_volumes


def test_collect_volumes_one_row_per_case(tmp_path):
    out_dir = tmp_path / "out"
    t = SaveSegmentationd(output_dir=out_dir, label_names=NAMES, write_png=False)
    expected = {}
    for i, case in enumerate(["c2", "c1", "c3"]):
        pred, ref, lab = _pred_and_ref(tmp_path, name=case, seed=i)
        t({"pred": pred, "reference": ref, "case": case})
        voxel_ml = 0.003
        vols = [np.sum(lab == k) * voxel_ml for k in (1, 2, 3)]
        expected[case] = [f"{v:.3f}" for v in vols + [sum(vols)]]

    out = collect_volumes(out_dir)
    assert out == out_dir / "volumes.csv"
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["case", "CSF_ml", "GM_ml", "WM_ml", "total_ml"]
    assert [r[0] for r in rows[1:]] == ["c1", "c2", "c3"]
    for r in rows[1:]:
        assert r[1:] == expected[r[0]], r
    assert not [n for n in listing(out_dir) if n.startswith(".")]  # no temp file left behind


def test_collect_volumes_empty_folder_returns_none(tmp_path):
    assert collect_volumes(tmp_path) is None
    assert listing(tmp_path) == []


def test_save_segmentationd_writes_background_where_the_scan_is_zero(tmp_path):
    """Labels where the scan is zero (outside a skull-stripped brain) are written as background, and
    the volumes do not count them; the switch keeps them."""
    aff = oriented_affine(("R", "A", "S"), (1.0, 1.0, 1.0))
    ref_path = tmp_path / "in" / "c1.nii.gz"
    data = np.random.default_rng(1).uniform(1, 100, size=SHAPE).astype(np.float32)
    data[: SHAPE[0] // 2] = 0.0  # half the grid outside the brain
    ref_path.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(data, aff), str(ref_path))
    lab = np.full(SHAPE, 3, dtype=np.uint8)  # "WM" everywhere, also where the scan is zero
    pred = torch.as_tensor(lab[None], dtype=torch.float32)

    out = tmp_path / "out"
    SaveSegmentationd(output_dir=out, label_names=NAMES, write_png=False)(
        {"pred": pred, "reference": str(ref_path), "case": "c1"}
    )
    written = np.asarray(nib.load(str(out / "c1_seg.nii.gz")).dataobj)
    assert np.all(written[: SHAPE[0] // 2] == 0) and np.all(written[SHAPE[0] // 2 :] == 3)
    inside = np.count_nonzero(data) / 1000.0
    assert json.loads((out / "c1_volumes.json").read_text())["volumes_ml"]["WM"] == pytest.approx(inside)

    kept = tmp_path / "kept"
    SaveSegmentationd(output_dir=kept, label_names=NAMES, write_png=False, background_outside_input=False)(
        {"pred": pred, "reference": str(ref_path), "case": "c1"}
    )
    assert np.all(np.asarray(nib.load(str(kept / "c1_seg.nii.gz")).dataobj) == 3)


def test_save_like_keeps_a_trailing_axis_of_one(tmp_path):
    """IBSR18 stores its 3D scans as 4D with a trailing axis of 1: the label map keeps that exact shape."""
    aff = oriented_affine(("R", "A", "S"), (0.9375, 1.5, 0.9375))
    ref = write_ref(tmp_path / "c1.nii.gz", aff, shape=SHAPE + (1,), dtype=np.int16)
    lab = labels()
    out = save_like(lab[None], ref, tmp_path / "out" / "c1_seg.nii.gz")
    img = nib.load(str(out))
    assert img.shape == SHAPE + (1,)
    np.testing.assert_array_equal(img.affine, nib.load(ref).affine)
    np.testing.assert_array_equal(np.asarray(img.dataobj)[..., 0], lab)
