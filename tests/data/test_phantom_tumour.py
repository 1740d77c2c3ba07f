"""Tests of the tumour phantoms of brainbundles.data.phantom (``make_phantom(..., tumour=True)``, task "tumour")."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from brainbundles.data import make_datalist
from brainbundles.data.labels import BRATS_LABELS, from_internal
from brainbundles.data.phantom import PHANTOM_TASKS, Phantom, make_phantom, write_phantom_dataset

# the real brain's field of view (160 x 192 x 160 mm) at 2 mm
SHAPE, SPACING = (80, 96, 80), (2.0, 2.0, 2.0)
ML = 8e-3  # mL per voxel
SEEDS = tuple(range(10))
SIX = ndi.generate_binary_structure(3, 1)
NEC, EDEMA, ENH = 1, 2, 3


@pytest.fixture(scope="module")
def labels() -> dict[int, Phantom]:
    return {s: make_phantom(s, SHAPE, SPACING, contrasts=(), tumour=True) for s in SEEDS}


@pytest.fixture(scope="module")
def rendered() -> dict[int, Phantom]:
    return {s: make_phantom(s, SHAPE, SPACING, tumour=True) for s in (0, 1, 7)}


def _canonical(arr: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return np.asarray(nib.as_closest_canonical(nib.Nifti1Image(arr, affine)).dataobj)


def _world(p: Phantom, mask: np.ndarray) -> np.ndarray:
    """World (mm) coordinates of the voxels of ``mask``, (3, n)."""
    ijk = np.argwhere(mask)
    return (p.affine @ np.c_[ijk, np.ones(len(ijk))].T)[:3]


def _ventricles(label: np.ndarray) -> np.ndarray:
    """CSF enclosed in the brain (not connected to the surface CSF): the ventricle system."""
    depth = ndi.distance_transform_edt(label > 0)
    comp, _ = ndi.label(label == 1, SIX)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    sizes[np.unique(comp[(label == 1) & (depth < 1.5)])] = 0
    return np.isin(comp, np.flatnonzero(sizes >= 0.2 * sizes.max()))


# ------------------------------------------------------------------------------------------------ tissue


# "checksums" of tissue phantoms taken with the phantom module before the tumour option existed: the
# voxel count per label and the sum of each image (tolerances absorb last-bit differences of float32
# maths between CPUs; any change of the anatomy or of a random stream moves them far more)
_BEFORE = {
    (0, (32, 40, 32), (1.5, 1.5, 1.5), "RAS"): (
        [29176, 2110, 4982, 4692],
        {"t1": 7029428.9, "t1c": 10055923.2, "t2": 4186141.4, "flair": 6862656.2, "pd": 10211120.1},
    ),
    (3, (24, 28, 20), (3.0, 2.5, 3.5), "LPS"): (
        [9751, 645, 1512, 1532],
        {"t1": 2208826.0, "t1c": 998111.5, "t2": 1708339.9, "flair": 1399302.8, "pd": 1207497.8},
    ),
}


@pytest.mark.parametrize("args", list(_BEFORE))
def test_tissue_phantom_unchanged(args):
    counts, sums = _BEFORE[args]
    p = make_phantom(*args)
    q = make_phantom(*args, tumour=False)
    assert p.tumour is None and q.tumour is None
    assert np.array_equal(p.label, q.label)
    assert all(np.array_equal(p.images[c], q.images[c]) for c in p.images)
    got = np.bincount(p.label.ravel(), minlength=4).tolist()
    assert np.abs(np.subtract(got, counts)).max() <= 3, got
    for c, s in sums.items():
        assert float(p.images[c].astype(np.float64).sum()) == pytest.approx(s, rel=2e-5), c


def test_tumour_keeps_the_healthy_anatomy_and_intensities():
    plain = make_phantom(4, (48, 56, 48), contrasts=("t1c", "flair"))
    tum = make_phantom(4, (48, 56, 48), contrasts=("t1c", "flair"), tumour=True)
    assert np.array_equal(plain.label, tum.label)  # label: the healthy tissue, also under the tumour
    assert np.array_equal(plain.affine, tum.affine)
    # away from the tumour (beyond the partial-volume blur) the images are the same, noise included
    far = ndi.distance_transform_edt(tum.tumour == 0) > 4  # Gaussian of <= 0.7 voxel, truncated at 4 sigma
    for c in ("t1c", "flair"):
        assert np.array_equal(plain.images[c][far], tum.images[c][far]), c
        assert not np.array_equal(plain.images[c], tum.images[c]), c


# ------------------------------------------------------------------------------------------------ basics


def test_types_and_determinism(labels):
    p = make_phantom(0, SHAPE, SPACING, contrasts=("t1", "t2"), tumour=True)
    again = make_phantom(0, SHAPE, SPACING, contrasts=("t1", "t2"), tumour=True)
    assert p.tumour is not None and p.tumour.dtype == np.uint8 and p.tumour.shape == SHAPE
    assert set(np.unique(p.tumour)) <= {0, NEC, EDEMA, ENH}
    assert np.array_equal(p.tumour, labels[0].tumour)  # the contrasts do not change the tumour
    assert np.array_equal(again.tumour, p.tumour)
    for c in ("t1", "t2"):
        assert again.images[c].dtype == np.float32 and np.array_equal(again.images[c], p.images[c])
    assert not np.array_equal(labels[1].tumour, labels[0].tumour)


def test_bad_tumour_argument():
    with pytest.raises(ValueError, match="tumour"):
        make_phantom(0, (16, 16, 16), tumour="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ anatomy


def test_nesting(labels):
    necrotic = 0
    for seed, p in labels.items():
        t = p.tumour
        core = (t == NEC) | (t == ENH)
        assert (t == ENH).any(), seed
        # the whole tumour is one piece
        assert ndi.label(t > 0, SIX)[1] == 1, seed
        # enhancing tumour surrounds the necrosis, at least 2 voxels (4 mm) thick nearly everywhere
        nec = t == NEC
        if nec.any():
            necrotic += 1
            ring1 = ndi.binary_dilation(nec, SIX) & ~nec
            ring2 = ndi.binary_dilation(nec, SIX, iterations=2) & ~nec
            assert np.all(t[ring1] == ENH), seed
            assert (t[ring2] == ENH).mean() > 0.97, seed
        # edema surrounds the core: most of the core's outer neighbours are edema, none is outside the brain
        shell = ndi.binary_dilation(core, SIX) & ~core
        assert (t[shell] == EDEMA).mean() > 0.5, seed
        assert np.all(p.label[shell] > 0), seed
    assert 5 <= necrotic < len(labels)  # ~80% have a necrotic core (seed 7 has none)


def test_volumes(labels):
    for seed, p in labels.items():
        t = p.tumour
        wt, tc, et = (t > 0).sum() * ML, np.isin(t, (NEC, ENH)).sum() * ML, (t == ENH).sum() * ML
        assert 15 <= wt <= 90, (seed, wt)
        assert 0.1 * wt <= tc <= 0.7 * wt, (seed, wt, tc)
        assert 2 <= et <= tc, (seed, tc, et)
    wts = [(p.tumour > 0).sum() * ML for p in labels.values()]
    assert max(wts) > 1.5 * min(wts)  # sizes vary


def test_location(labels):
    for seed, p in labels.items():
        t, lab = p.tumour, p.label
        brain = lab > 0
        tumour = t > 0
        # inside the brain, off its surface, never in the ventricles
        assert np.all(brain[tumour]), seed
        assert ndi.distance_transform_edt(brain)[tumour].min() >= 3, seed  # >= 6 mm
        assert not (tumour & _ventricles(lab)).any(), seed
        # edema only in white matter and deep grey matter (labelled GM), mostly white matter
        edema = t == EDEMA
        assert set(np.unique(lab[edema])) <= {2, 3}, seed
        assert (lab[edema] == 3).mean() > 0.7, seed
        # the core in one hemisphere
        x = _world(p, (t == NEC) | (t == ENH))[0]
        assert (x > 0).all() or (x < 0).all(), seed
    sides = {bool(_world(p, p.tumour == ENH)[0].mean() > 0) for p in labels.values()}
    assert sides == {True, False}


# ------------------------------------------------------------------------------------------------ intensities


def _median(p: Phantom, contrast: str, mask: np.ndarray) -> float:
    return float(np.median(p.images[contrast][mask]))


def test_intensities(rendered):
    for seed, p in rendered.items():
        t = p.tumour
        healthy = np.where(t > 0, 0, p.label)
        near = ndi.distance_transform_edt(t == 0) < 12  # healthy tissue near the tumour (same bias field)
        wm = ndi.binary_erosion(healthy == 3, SIX) & near
        gm = ndi.binary_erosion(healthy == 2, SIX) & near
        edema = ndi.binary_erosion(t == EDEMA, SIX)
        enh = t == ENH
        nec = ndi.binary_erosion(t == NEC, SIX)

        def m(c: str, mask: np.ndarray, p: Phantom = p) -> float:
            return _median(p, c, mask)

        assert m("t1c", enh) > 1.3 * m("t1c", wm), seed
        assert m("t1", enh) < 0.85 * m("t1", wm), seed  # enhancing on T1c only
        assert m("flair", edema) > 1.1 * m("flair", gm), seed
        assert m("t2", edema) > 1.3 * m("t2", wm), seed
        assert m("t1", edema) < 0.95 * m("t1", wm), seed
        assert m("pd", edema) > 1.05 * m("pd", wm), seed
        if nec.any():
            assert m("t1c", nec) < 0.5 * m("t1c", enh), seed
            assert m("t1", nec) < 0.85 * m("t1", gm), seed
            assert m("t2", nec) > 1.03 * m("t2", edema), seed
            assert m("flair", nec) < 0.6 * m("flair", edema), seed
        for c, im in p.images.items():  # still skull-stripped and positive in the brain
            assert np.all(im[p.label == 0] == 0) and (im[p.label > 0] > 0).mean() > 0.999, c


def test_timing():
    contrasts = ("t1", "t1c", "t2", "flair")
    make_phantom(0, (72, 88, 72), contrasts=contrasts, tumour=True)  # warm up
    t = time.perf_counter()
    make_phantom(1, (72, 88, 72), contrasts=contrasts, tumour=True)
    assert time.perf_counter() - t < 3.0  # ~0.15 s on a 2-core machine


# ------------------------------------------------------------------------------------------------ geometry


@pytest.mark.parametrize("spacing", [(4.0, 4.0, 4.0), (3.0, 4.0, 5.0)])
def test_orientation_equivalence(spacing):
    shape = tuple(int(round(f / s)) for f, s in zip((160, 192, 160), spacing, strict=True))
    ras = make_phantom(2, shape, spacing, "RAS", contrasts=("t1c",), tumour=True)
    assert (ras.tumour == ENH).any()
    for codes in ("LPS", "PIR"):
        other = make_phantom(2, shape, spacing, codes, contrasts=("t1c",), tumour=True)
        assert nib.aff2axcodes(other.affine) == tuple(codes)
        assert np.array_equal(_canonical(ras.tumour, ras.affine), _canonical(other.tumour, other.affine)), (
            codes
        )
        assert np.array_equal(
            _canonical(ras.images["t1c"], ras.affine), _canonical(other.images["t1c"], other.affine)
        ), codes


def test_same_tumour_at_another_resolution(labels):
    # same FOV at 4 mm along x (anisotropic) and at 1 mm: the tumour keeps its place and size in mm
    fine = labels[3]
    aniso = make_phantom(3, (40, 96, 80), (4.0, 2.0, 2.0), contrasts=(), tumour=True)
    iso = make_phantom(3, (160, 192, 160), (1.0, 1.0, 1.0), contrasts=(), tumour=True)
    ref_vol = {k: np.isin(fine.tumour, v).sum() * ML for k, v in {"wt": (1, 2, 3), "tc": (1, 3)}.items()}
    ref_c = _world(fine, fine.tumour > 0).mean(axis=1)
    for p, vox in ((aniso, 16e-3), (iso, 1e-3)):
        for k, v in {"wt": (1, 2, 3), "tc": (1, 3)}.items():
            vol = np.isin(p.tumour, v).sum() * vox
            assert vol == pytest.approx(ref_vol[k], rel=0.05), (k, vol, ref_vol[k])
        assert np.linalg.norm(_world(p, p.tumour > 0).mean(axis=1) - ref_c) < 1.0
    # voxel by voxel: 2 mm centres of the 1 mm grid
    sub = iso.tumour[::2, ::2, ::2]
    for v in ((1, 2, 3), (1, 3)):
        a, b = np.isin(sub, v), np.isin(fine.tumour, v)
        # the 1 mm samples sit 0.5 mm off the 2 mm centres
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9, v


# ------------------------------------------------------------------------------------------------ data set


def test_write_phantom_dataset_tumour(tmp_path):
    assert "tumour" in PHANTOM_TASKS
    shape, spacing = (40, 48, 40), (4.0, 4.0, 4.0)
    out = write_phantom_dataset(
        "tumour", tmp_path / "b", cases=4, seed=2, shape=shape, spacing=spacing, test_cases=1, folds=2
    )
    ids = [f"BraTS_phantom_{i:03d}" for i in range(1, 6)]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ids
    assert not [p for p in out.rglob(".*")]
    suffixes = ("t1", "t1ce", "t2", "flair")
    seen: set[int] = set()
    for i, cid in enumerate(ids):
        names = sorted(p.name for p in (out / cid).iterdir())
        assert names == sorted(f"{cid}_{s}.nii.gz" for s in (*suffixes, "seg")), names
        seg = nib.load(out / cid / f"{cid}_seg.nii.gz")
        assert seg.get_data_dtype() == np.uint8
        values = np.asarray(seg.dataobj)
        assert set(np.unique(values)) <= {0, 1, 2, 4}
        seen |= set(np.unique(values).tolist())
        ref = make_phantom(
            2 * 100003 + i, shape, spacing, contrasts=("t1", "t1c", "t2", "flair"), tumour=True
        )
        assert np.array_equal(values, from_internal(ref.tumour, "brats2019"))
        assert np.allclose(seg.affine, ref.affine, atol=1e-5)
        for s, c in zip(suffixes, ("t1", "t1c", "t2", "flair"), strict=True):
            img = nib.load(out / cid / f"{cid}_{s}.nii.gz")
            assert img.get_data_dtype() == np.float32
            assert np.array_equal(np.asarray(img.dataobj), ref.images[c]), (cid, s)
    assert seen >= {0, 2, 4}

    manifest = json.loads((out / "phantom.json").read_text())
    assert manifest["task"] == "tumour" and manifest["layout"] == "brats"
    assert manifest["channels"] == ["T1", "T1c", "T2", "FLAIR"]
    assert manifest["labels"] == BRATS_LABELS["brats2019"]
    assert manifest["label_convention"] == "brats2019"
    dl = json.loads((out / "datalist.json").read_text())
    assert dl["label_convention"] == "brats2019" and dl["labels"] == BRATS_LABELS["brats2019"]
    assert dl["channels"] == ["T1", "T1c", "T2", "FLAIR"]
    assert [e["case"] for e in dl["training"]] == ids[:4] and [e["case"] for e in dl["testing"]] == ids[4:]
    for e in dl["training"] + dl["testing"]:
        assert e["label_convention"] == "brats2019"
        assert e["image"] == [f"{e['case']}/{e['case']}_{s}.nii.gz" for s in suffixes]
        assert e["label"] == f"{e['case']}/{e['case']}_seg.nii.gz"

    # the datalist layouts find the same cases
    strip = ("image", "label")
    brats = make_datalist("brats", out, folds=2, seed=2)
    phantom = make_datalist("phantom", out, folds=2, seed=2)
    mine = [{k: e[k] for k in strip} for e in dl["training"] + dl["testing"]]
    assert sorted(e["case"] for e in brats["training"] + brats["testing"]) == ids
    assert [
        {k: e[k] for k in strip}
        for e in sorted(brats["training"] + brats["testing"], key=lambda e: e["case"])
    ] == mine
    for section in ("training", "testing"):
        assert [{k: e.get(k) for k in (*strip, "fold")} for e in phantom[section]] == [
            {k: e.get(k) for k in (*strip, "fold")} for e in dl[section]
        ], section
    assert phantom["labels"] == brats["labels"] == BRATS_LABELS["brats2019"]


def test_tissue_dataset_has_no_label_convention(tmp_path):
    out = write_phantom_dataset("tissue", tmp_path, cases=2, folds=1, shape=(16, 16, 16))
    dl = json.loads((Path(out) / "datalist.json").read_text())
    manifest = json.loads((Path(out) / "phantom.json").read_text())
    assert "label_convention" not in dl and "label_convention" not in manifest
    assert all("label_convention" not in e for e in dl["training"] + dl["testing"])
