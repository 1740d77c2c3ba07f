"""Tests of brainbundles.data.phantom: synthetic brain MRI phantoms."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from brainbundles.data.phantom import (
    CONTRASTS,
    PHANTOM_LABELS,
    PHANTOM_TASKS,
    Phantom,
    make_phantom,
    write_phantom_dataset,
)

SHAPE = (48, 56, 48)
SEEDS = (0, 1, 2)
SIX = ndi.generate_binary_structure(3, 1)


@pytest.fixture(scope="module")
def phantoms() -> dict[int, Phantom]:
    return {s: make_phantom(s, SHAPE) for s in SEEDS}


def _interior(label: np.ndarray, cls: int) -> np.ndarray:
    """Voxels of ``cls`` whose 6-neighbours are all ``cls`` too (away from partial volume)."""
    return ndi.binary_erosion(label == cls, SIX)


def _canonical(arr: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.Nifti1Image(arr, affine))
    return np.asarray(img.dataobj), img.affine


# ------------------------------------------------------------------------------------------------ basics


def test_types_shapes_and_contrasts(phantoms):
    p = phantoms[0]
    assert set(p.images) == set(CONTRASTS)
    assert p.label.dtype == np.uint8 and p.label.shape == SHAPE
    assert p.affine.shape == (4, 4) and p.affine.dtype == np.float64
    for im in p.images.values():
        assert im.dtype == np.float32 and im.shape == SHAPE
        assert np.isfinite(im).all()
    assert PHANTOM_LABELS == {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}


def test_deterministic_per_seed(phantoms):
    again = make_phantom(0, SHAPE)
    p = phantoms[0]
    assert np.array_equal(again.label, p.label)
    assert np.array_equal(again.affine, p.affine)
    for c in CONTRASTS:
        assert np.array_equal(again.images[c], p.images[c]), c
    other = phantoms[1]
    assert not np.array_equal(other.label, p.label)
    assert (other.label != p.label).mean() > 0.05
    assert not np.allclose(other.images["t1"], p.images["t1"])


def test_contrast_does_not_depend_on_the_others(phantoms):
    only = make_phantom(0, SHAPE, contrasts=("flair", "t2"))
    assert set(only.images) == {"flair", "t2"}
    assert np.array_equal(only.images["t2"], phantoms[0].images["t2"])
    assert np.array_equal(only.label, phantoms[0].label)
    assert make_phantom(0, SHAPE, contrasts=()).images == {}


def test_labels_classes_and_fractions(phantoms):
    for seed, p in phantoms.items():
        lab = p.label
        assert set(np.unique(lab)) == {0, 1, 2, 3}, seed
        brain = lab > 0
        assert 0.15 < brain.mean() < 0.45, seed  # an ellipsoid of ~0.42 FOV radii fills ~30%
        frac = {c: float((lab[brain] == c).mean()) for c in (1, 2, 3)}
        assert 0.08 <= frac[1] <= 0.25, (seed, frac)
        assert 0.30 <= frac[2] <= 0.55, (seed, frac)
        assert 0.28 <= frac[3] <= 0.55, (seed, frac)


def test_brain_is_one_centred_blob_inside_the_fov(phantoms):
    for p in phantoms.values():
        brain = p.label > 0
        _, n = ndi.label(brain)
        assert n == 1
        for ax in range(3):  # nothing on the array border
            assert not brain.take(0, axis=ax).any() and not brain.take(-1, axis=ax).any()
        centroid = np.array(ndi.center_of_mass(brain))
        world = p.affine @ [*centroid, 1.0]
        assert np.all(np.abs(world[:3]) < 6.0), world  # FOV centre is world 0; the brain is near it
        centre_world = p.affine @ [*((np.array(SHAPE) - 1) / 2), 1.0]
        assert np.allclose(centre_world[:3], 0.0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ anatomy


def test_grey_matter_ribbon_encloses_white_matter(phantoms):
    for seed, p in phantoms.items():
        lab = p.label
        wm, brain = lab == 3, lab > 0
        # WM never touches the outside of the brain
        assert not (ndi.binary_dilation(wm, SIX) & ~brain).any(), seed
        # the brain surface is CSF / GM, not WM
        boundary = brain & ~ndi.binary_erosion(brain, SIX)
        assert (lab[boundary] == 3).mean() == 0.0
        assert (lab[boundary] == 1).mean() > 0.5, seed  # thin CSF layer on the surface
        # WM voxels are surrounded by WM or GM (CSF next to WM only at the ventricles)
        nb_csf = ndi.binary_dilation(lab == 1, SIX)
        assert (nb_csf & wm).sum() / wm.sum() < 0.10, seed
        # the ribbon has a thickness: no WM within 2 voxels of the outside, and GM dominates just inside
        depth = ndi.distance_transform_edt(brain)
        assert depth[wm].min() >= 2.0, seed
        shell = (depth >= 2) & (depth < 3)
        assert (lab[shell] == 2).mean() > 0.6, seed


def test_cortex_is_folded(phantoms):
    for seed, p in phantoms.items():
        lab = p.label
        brain = lab > 0
        depth = ndi.distance_transform_edt(brain)
        # look at the lateral convexities only (away from the interhemispheric fissure and medial cortex)
        x = np.abs((p.affine @ np.c_[np.argwhere(brain), np.ones(brain.sum())].T)[0])
        lateral = np.zeros_like(brain)
        lateral[brain] = x > 0.35 * x.max()
        # sulcal CSF: CSF connected to the surface CSF layer that reaches deep into the brain
        comp, _ = ndi.label(lab == 1, SIX)
        outer_ids = np.unique(comp[(lab == 1) & (depth < 1.5)])
        outer = np.isin(comp, outer_ids[outer_ids > 0]) & lateral
        assert depth[outer].max() >= 5.0, seed
        sulcal = outer & (depth >= 3)
        assert sulcal.sum() > 0.002 * brain.sum(), seed
        # the GM/WM boundary is not a smooth shell: its depth below the surface varies a lot
        gm_wm = (lab == 3) & ndi.binary_dilation(lab == 2, SIX) & (depth < 12) & lateral
        d = depth[gm_wm]
        assert np.percentile(d, 90) - np.percentile(d, 10) >= 3.0, seed
        # sulci are narrow and lined with GM: most sulcal CSF voxels have GM on both sides along some axis
        gm = lab == 2
        both = np.zeros_like(sulcal)
        for ax in range(3):
            both |= (np.roll(gm, 1, ax) | np.roll(gm, 2, ax)) & (np.roll(gm, -1, ax) | np.roll(gm, -2, ax))
        assert (both[sulcal]).mean() > 0.6, seed


def test_ventricles_near_the_centre_on_both_sides(phantoms):
    for seed, p in phantoms.items():
        lab = p.label
        brain = lab > 0
        depth = ndi.distance_transform_edt(brain)
        # CSF near the centre of the brain
        centre = tuple(slice(int(n * 0.4), int(n * 0.6) + 1) for n in lab.shape)
        assert (lab[centre] == 1).sum() > 20, seed
        # ventricles: CSF enclosed in the brain (not connected to the surface CSF), deep, left and right
        comp, _ = ndi.label(lab == 1, SIX)
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        sizes[np.unique(comp[(lab == 1) & (depth < 1.5)])] = 0  # connected to the surface CSF
        big = np.flatnonzero(sizes >= 0.2 * sizes.max())  # the ventricle system (one or a few pieces)
        enclosed = np.isin(comp, big)
        assert 0.005 < enclosed.sum() / brain.sum() < 0.08, (seed, enclosed.sum() / brain.sum())
        assert np.median(depth[enclosed]) > 0.4 * depth.max(), seed
        x = (p.affine @ np.c_[np.argwhere(enclosed), np.ones(enclosed.sum())].T)[0]  # world x (R+)
        left, right = (x < -2).sum(), (x > 2).sum()
        assert left > 30 and right > 30, (seed, left, right)
        assert 0.5 < left / right < 2.0, (seed, left, right)


def test_same_anatomy_at_another_resolution():
    # same FOV (100 x 112 x 96 mm): voxel centres of the 2 mm grid lie 0.5 mm from 1 mm grid centres
    coarse = make_phantom(5, (50, 56, 48), (2.0, 2.0, 2.0), contrasts=()).label
    fine = make_phantom(5, (100, 112, 96), (1.0, 1.0, 1.0), contrasts=()).label[::2, ::2, ::2]
    assert ((coarse > 0) == (fine > 0)).mean() > 0.98
    for c in (2, 3):
        a, b = coarse == c, fine == c
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.8, c


# ------------------------------------------------------------------------------------------------ intensities


@pytest.mark.parametrize(
    "contrast, order",
    [
        ("t1", (3, 2, 1)),  # WM > GM > CSF
        ("t1c", (3, 2, 1)),
        ("t2", (1, 2, 3)),  # CSF > GM > WM
        ("flair", (2, 3, 1)),  # GM > WM > CSF
        ("pd", (1, 2, 3)),  # CSF >= GM > WM
    ],
)
def test_tissue_contrast_order(phantoms, contrast, order):
    for seed, p in phantoms.items():
        im = p.images[contrast]
        means = [float(np.median(im[_interior(p.label, c)])) for c in order]
        if contrast == "pd":  # low contrast: CSF >= GM (within noise), GM > WM
            assert means[0] > 0.97 * means[1] and means[1] > 1.02 * means[2], (seed, means)
        else:
            assert means[0] > 1.05 * means[1] > 1.05**2 * means[2], (seed, means)
    if contrast == "t1":
        wm = [float(np.median(p.images["t1"][_interior(p.label, 3)])) for p in phantoms.values()]
        assert all(200 < v < 1500 for v in wm), wm


def test_zero_outside_the_brain_positive_inside(phantoms):
    for p in phantoms.values():
        outside = p.label == 0
        for c, im in p.images.items():
            assert np.all(im[outside] == 0), c
            assert (im[~outside] > 0).mean() > 0.999, c


def test_noise_bias_and_partial_volume():
    noisy = make_phantom(4, SHAPE, contrasts=("t1",))
    clean = make_phantom(4, SHAPE, contrasts=("t1",), noise="none")
    gauss = make_phantom(4, SHAPE, contrasts=("t1",), noise="gaussian")
    lab = noisy.label
    wm = _interior(lab, 3) & np.roll(_interior(lab, 3), 1, axis=0)
    # noise: SNR roughly 15-30 relative to WM (differences of neighbouring voxels cancel the smooth parts)
    diff = noisy.images["t1"] - np.roll(noisy.images["t1"], 1, axis=0)
    sigma = diff[wm].std() / np.sqrt(2)
    snr = np.median(noisy.images["t1"][wm]) / sigma
    assert 10 < snr < 40, snr
    assert not np.array_equal(noisy.images["t1"], gauss.images["t1"])
    assert np.all(gauss.images["t1"] >= 0)
    # without noise: WM varies smoothly (bias field) by a few to ~20 percent, not per voxel
    c = clean.images["t1"]
    wm_vals = c[_interior(lab, 3)]
    spread = np.percentile(wm_vals, 98) / np.percentile(wm_vals, 2)
    assert 1.05 < spread < 1.8, spread
    dc = np.abs(c - np.roll(c, 1, axis=0))[wm] / c[wm]
    assert np.median(dc) < 0.01
    # partial volume: at GM/WM borders there are intermediate values
    gm_wm_edge = (lab == 3) & ndi.binary_dilation(lab == 2, SIX)
    gm_med, wm_med = np.median(c[_interior(lab, 2)]), np.median(wm_vals)
    edge = c[gm_wm_edge]
    assert np.median(edge) < wm_med * 0.97 and np.median(edge) > gm_med


def test_t1c_enhancement(phantoms):
    # enhancing voxels (vessels, choroid plexus) are labelled CSF but brighter than WM on T1c only
    for seed, p in phantoms.items():
        csf = p.label == 1
        counts = []
        for c in ("t1c", "t1"):
            wm_med = np.median(p.images[c][_interior(p.label, 3)])
            counts.append(int((p.images[c][csf] > wm_med).sum()))
        assert counts[0] > 0.005 * csf.sum(), (seed, counts)
        assert counts[1] < counts[0] / 10, (seed, counts)


# ------------------------------------------------------------------------------------------------ geometry


@pytest.mark.parametrize("spacing", [(1.5, 1.5, 1.5), (1.0, 1.5, 1.2)])
def test_orientation_equivalence(spacing):
    ras = make_phantom(7, (40, 48, 36), spacing, "RAS", contrasts=("t1", "flair"))
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    assert np.allclose(np.diag(ras.affine)[:3], spacing)
    for codes in ("LPS", "PIR"):
        other = make_phantom(7, (40, 48, 36), spacing, codes, contrasts=("t1", "flair"))
        assert nib.aff2axcodes(other.affine) == tuple(codes)
        lab_a, aff_a = _canonical(ras.label, ras.affine)
        lab_b, aff_b = _canonical(other.label, other.affine)
        assert np.array_equal(lab_a, lab_b), codes
        assert np.allclose(aff_a, aff_b, atol=1e-5), codes
        for c in ("t1", "flair"):
            assert np.array_equal(
                _canonical(ras.images[c], ras.affine)[0], _canonical(other.images[c], other.affine)[0]
            )
        # the FOV centre stays at world 0 and the voxel sizes follow the axes
        n = np.array(other.label.shape)
        assert np.allclose(other.affine @ [*((n - 1) / 2), 1.0], [0, 0, 0, 1], atol=1e-6)
        assert np.allclose(np.sort(np.linalg.norm(other.affine[:3, :3], axis=0)), np.sort(spacing))
    assert make_phantom(7, (40, 48, 36), spacing, "PIR", contrasts=()).label.shape == (48, 36, 40)


def test_anisotropic_spacing_keeps_the_world_shape():
    # with a larger voxel along x but the same FOV, the brain keeps its extent in mm
    a = make_phantom(3, (48, 56, 48), (1.5, 1.5, 1.5), contrasts=()).label > 0
    b = make_phantom(3, (24, 56, 48), (3.0, 1.5, 1.5), contrasts=()).label > 0
    extent_a = np.ptp(np.nonzero(a.any(axis=(1, 2)))[0]) * 1.5
    extent_b = np.ptp(np.nonzero(b.any(axis=(1, 2)))[0]) * 3.0
    assert abs(extent_a - extent_b) <= 3.0 + 1e-9
    assert abs(a.mean() - b.mean()) < 0.02


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"shape": (48, 56)}, "shape"),
        ({"shape": (48, 56, 4)}, "shape"),
        ({"shape": (48.0, 56, 48)}, "shape"),
        ({"spacing": (1.0, 0.0, 1.0)}, "spacing"),
        ({"spacing": (1.0, float("nan"), 1.0)}, "spacing"),
        ({"spacing": "abc"}, "spacing"),
        ({"orientation": "RAR"}, "orientation"),
        ({"orientation": "XYZ"}, "orientation"),
        ({"orientation": "RA"}, "orientation"),
        ({"contrasts": ("t1", "dwi")}, "contrasts"),
        ({"noise": "poisson"}, "noise"),
    ],
)
def test_make_phantom_bad_arguments(kwargs, name):
    args = {"seed": 0, "shape": (16, 16, 16), **kwargs}
    with pytest.raises(ValueError, match=name):
        make_phantom(**args)


def test_timing():
    make_phantom(0, (64, 76, 64))  # warm up
    t = time.perf_counter()
    make_phantom(1, (64, 76, 64))
    assert time.perf_counter() - t < 2.0  # < 1 s on a 2-core machine; slack for loaded CI machines


# ------------------------------------------------------------------------------------------------ data sets


def _load(path: Path) -> nib.Nifti1Image:
    assert path.is_file(), path
    return nib.load(str(path))


def test_write_phantom_dataset_ibsr18(tmp_path):
    out = tmp_path / "ibsr"
    got = write_phantom_dataset("tissue", str(out), cases=4, seed=3, shape=SHAPE, test_cases=2, folds=2)
    assert got == out and isinstance(got, Path)
    assert "tissue" in PHANTOM_TASKS
    ids = [f"IBSR_{i:02d}" for i in range(1, 7)]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ids
    assert not [p for p in out.rglob(".*")]  # no temporary files left behind

    manifest = json.loads((out / "phantom.json").read_text())
    for key, value in {
        "task": "tissue",
        "layout": "ibsr18",
        "cases": 4,
        "test_cases": 2,
        "seed": 3,
        "shape": list(SHAPE),
        "spacing": [1.5, 1.5, 1.5],
        "orientation": "RAS",
    }.items():
        assert manifest[key] == value, key

    dl = json.loads((out / "datalist.json").read_text())
    assert dl["channels"] == ["T1"]
    assert dl["labels"] == {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}
    assert [e["image"] for e in dl["training"]] == [[f"{c}/{c}_ana_strip.nii.gz"] for c in ids[:4]]
    assert [e["label"] for e in dl["training"]] == [f"{c}/{c}_seg_ana.nii.gz" for c in ids[:4]]
    assert [e["image"] for e in dl["testing"]] == [[f"{c}/{c}_ana_strip.nii.gz"] for c in ids[4:]]
    assert all("fold" not in e for e in dl["testing"])
    assert sorted(e["fold"] for e in dl["training"]) == [0, 0, 1, 1]
    for e in dl["training"] + dl["testing"]:
        assert not Path(e["label"]).is_absolute()
        assert (out / e["label"]).is_file() and all((out / p).is_file() for p in e["image"])

    for i, cid in enumerate(ids):
        img = _load(out / cid / f"{cid}_ana_strip.nii.gz")
        seg = _load(out / cid / f"{cid}_seg_ana.nii.gz")
        assert img.shape == SHAPE and seg.shape == SHAPE
        assert img.get_data_dtype() == np.float32 and seg.get_data_dtype() == np.uint8
        ref = make_phantom(3 * 100003 + i, SHAPE, contrasts=("t1",))
        assert np.allclose(img.affine, ref.affine, atol=1e-5) and np.allclose(
            seg.affine, ref.affine, atol=1e-5
        )
        assert np.array_equal(np.asarray(seg.dataobj), ref.label)
        assert np.array_equal(np.asarray(img.dataobj), ref.images["t1"])
    first = np.asarray(_load(out / ids[0] / f"{ids[0]}_seg_ana.nii.gz").dataobj)
    second = np.asarray(_load(out / ids[1] / f"{ids[1]}_seg_ana.nii.gz").dataobj)
    assert not np.array_equal(first, second)


def test_write_phantom_dataset_reproducible_folds_int16_orientation(tmp_path):
    kw = {"cases": 7, "seed": 11, "shape": (24, 28, 24), "spacing": (3.0, 3.0, 3.0), "folds": 3}
    a = write_phantom_dataset("tissue", tmp_path / "a", **kw)
    b = write_phantom_dataset("tissue", tmp_path / "b", **kw)
    dla, dlb = (json.loads((d / "datalist.json").read_text()) for d in (a, b))
    assert dla == dlb
    folds = [e["fold"] for e in dla["training"]]
    assert sorted(np.bincount(folds).tolist()) == [2, 2, 3]

    d = write_phantom_dataset(
        "tissue", tmp_path / "d", **{**kw, "cases": 1, "folds": 1}, dtype="int16", orientation="LPS"
    )
    img = _load(d / "IBSR_01" / "IBSR_01_ana_strip.nii.gz")
    assert img.get_data_dtype() == np.int16
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    ref = make_phantom(11 * 100003, (24, 28, 24), (3.0, 3.0, 3.0), "LPS", contrasts=("t1",)).images["t1"]
    assert np.array_equal(np.asarray(img.dataobj), np.rint(ref).astype(np.int16))


def test_datalist_matches_make_datalist(tmp_path):
    datalist = pytest.importorskip("brainbundles.data.datalist")
    out = write_phantom_dataset(
        "tissue", tmp_path, cases=5, seed=2, shape=(24, 28, 24), test_cases=1, folds=2
    )
    mine = json.loads((out / "datalist.json").read_text())
    theirs = datalist.make_datalist("phantom", out, folds=2, seed=2)
    strip = ("image", "label", "fold")
    for section in ("training", "testing"):
        assert [{k: e.get(k) for k in strip} for e in mine[section]] == [
            {k: e.get(k) for k in strip} for e in theirs[section]
        ], section
    assert theirs.get("labels") == mine["labels"] and theirs["channels"] == mine["channels"]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"task": "lymph"}, "task"),
        ({"cases": 0}, "cases"),
        ({"cases": 2.0}, "cases"),
        ({"test_cases": -1}, "test_cases"),
        ({"folds": 0}, "folds"),
        ({"cases": 2, "folds": 3}, "folds"),
        ({"dtype": "float64"}, "dtype"),
        ({"shape": (16, 16)}, "shape"),
        ({"spacing": (1.0, -1.0, 1.0)}, "spacing"),
        ({"orientation": "LLS"}, "orientation"),
        ({"seed": -3}, "seed"),
    ],
)
def test_write_phantom_dataset_bad_arguments(tmp_path, kwargs, name):
    args = {"task": "tissue", "out": tmp_path / "x", "cases": 2, "folds": 2, "shape": (16, 16, 16), **kwargs}
    with pytest.raises(ValueError, match=name):
        write_phantom_dataset(**args)
    assert not (tmp_path / "x" / "datalist.json").exists()
