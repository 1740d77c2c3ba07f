"""Tests of the white-matter hyperintensity phantoms of brainbundles.data.phantom (``make_phantom(...,
wmh=True)``, task "wmh" in the MICCAI 2017 WMH challenge layout)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from brainbundles.data import make_datalist
from brainbundles.data.labels import WMH_LABELS
from brainbundles.data.phantom import PHANTOM_TASKS, Phantom, make_phantom, write_phantom_dataset

SHAPE, SPACING = (48, 56, 48), (1.5, 1.5, 1.5)
SEEDS = (0, 1, 2, 3)
CONTRASTS = ("flair", "t1")
SIX = ndi.generate_binary_structure(3, 1)
WMH, OTHER = 1, 2


@pytest.fixture(scope="module")
def pairs() -> dict[int, tuple[Phantom, Phantom]]:
    """Per seed: the phantom with white-matter lesions and the same seed's without."""
    return {
        s: (
            make_phantom(s, SHAPE, SPACING, contrasts=CONTRASTS, wmh=True),
            make_phantom(s, SHAPE, SPACING, contrasts=CONTRASTS),
        )
        for s in SEEDS
    }


@pytest.fixture(scope="module")
def label_only() -> dict[int, Phantom]:
    return {s: make_phantom(s, SHAPE, SPACING, contrasts=(), wmh=True) for s in range(20)}


def _ventricles(label: np.ndarray) -> np.ndarray:
    """CSF enclosed in the brain (not connected to the surface CSF): the ventricle system."""
    depth = ndi.distance_transform_edt(label > 0)
    comp, _ = ndi.label(label == 1, SIX)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    sizes[np.unique(comp[(label == 1) & (depth < 1.5)])] = 0
    return np.isin(comp, np.flatnonzero(sizes >= 0.2 * sizes.max()))


# ------------------------------------------------------------------------------------------------ labels


def test_types_and_values(pairs):
    for seed, (p, healthy) in pairs.items():
        assert p.wmh is not None and p.wmh.dtype == np.uint8 and p.wmh.shape == SHAPE
        assert set(np.unique(p.wmh)) <= {0, WMH, OTHER}
        assert (p.wmh == WMH).sum() > 100, seed
        assert healthy.wmh is None and healthy.tumour is None and p.tumour is None


def test_wmh_only_in_healthy_white_matter_and_healthy_anatomy_unchanged(pairs):
    for seed, (p, healthy) in pairs.items():
        np.testing.assert_array_equal(p.label, healthy.label)  # Phantom.label: the healthy anatomy
        np.testing.assert_array_equal(p.affine, healthy.affine)
        assert np.all(healthy.label[p.wmh == WMH] == 3), seed  # WM only
        assert np.all(healthy.label[p.wmh == OTHER] >= 2), seed  # the lacune: deep white or grey matter
        assert not np.any(_ventricles(healthy.label) & (p.wmh > 0)), seed


def test_images_identical_away_from_the_lesions(pairs):
    """The lesions draw from their own random streams: away from them (beyond the partial-volume blur)
    every voxel, noise included, is the same as without ``wmh=True``."""
    for seed, (p, healthy) in pairs.items():
        near = ndi.binary_dilation(p.wmh > 0, np.ones((9, 9, 9), bool))
        assert (~near & (healthy.label > 0)).sum() > 0.5 * (healthy.label > 0).sum()
        for c in CONTRASTS:
            np.testing.assert_array_equal(p.images[c][~near], healthy.images[c][~near], err_msg=f"{seed} {c}")
            assert not np.array_equal(p.images[c][near], healthy.images[c][near]), (seed, c)


def test_wmh_contrast(pairs):
    for seed, (p, _) in pairs.items():
        core = ndi.binary_erosion(p.wmh == WMH, SIX)  # away from the lesions' partial-volume border
        if core.sum() < 20:
            core = p.wmh == WMH
        nawm = ndi.binary_erosion((p.label == 3) & ~ndi.binary_dilation(p.wmh > 0, iterations=2), SIX)
        gm = p.label == 2
        flair, t1 = p.images["flair"], p.images["t1"]
        assert flair[core].mean() > 1.1 * flair[nawm].mean(), seed
        assert flair[core].mean() > flair[gm].mean(), seed
        assert t1[core].mean() < 0.97 * t1[nawm].mean(), seed
        assert t1[core].mean() > t1[gm].mean(), seed  # mildly dark: between GM and WM


def test_lacune_other_pathology_in_some_cases(label_only):
    with_lacune = [s for s, p in label_only.items() if (p.wmh == OTHER).any()]
    assert 0.15 <= len(with_lacune) / len(label_only) <= 0.75, with_lacune  # ~40% of the cases
    for s in with_lacune:
        other = label_only[s].wmh == OTHER
        assert ndi.label(other, np.ones((3, 3, 3)))[1] == 1, s  # one lacune, in one piece
        assert other.sum() < 0.2 * (label_only[s].wmh == WMH).sum(), s


def test_periventricular_and_deep_lesions(label_only):
    """Across a few seeds there are WMH touching the ventricles' wall and WMH well away from them."""
    periventricular = deep = 0
    for s in range(6):
        p = label_only[s]
        dist = ndi.distance_transform_edt(~_ventricles(p.label), sampling=SPACING)
        comp, n = ndi.label(p.wmh == WMH, np.ones((3, 3, 3)))
        nearest = np.asarray(ndi.minimum(dist, comp, range(1, n + 1)))
        periventricular += int(np.sum(nearest <= 2.0 * max(SPACING)))
        deep += int(np.sum(nearest >= 6.0))
    assert periventricular >= 6 and deep >= 6, (periventricular, deep)


def test_lesion_volume_does_not_depend_on_the_grid():
    """The same seed on two grids of one field of view (96 x 112 x 96 mm): about the same WMH volume."""
    for seed in (0, 5):
        coarse = make_phantom(seed, (48, 56, 48), (2.0, 2.0, 2.0), contrasts=(), wmh=True)
        fine = make_phantom(seed, (64, 75, 64), (1.5, 112 / 75, 1.5), contrasts=(), wmh=True)
        v_coarse = (coarse.wmh == WMH).sum() * 8.0
        v_fine = (fine.wmh == WMH).sum() * 1.5 * 1.5 * 112 / 75
        assert v_coarse > 500
        assert abs(v_coarse / v_fine - 1) < 0.15, (seed, v_coarse, v_fine)


def test_deterministic_and_orientation(pairs):
    p = pairs[1][0]
    again = make_phantom(1, SHAPE, SPACING, contrasts=CONTRASTS, wmh=True)
    np.testing.assert_array_equal(again.wmh, p.wmh)
    np.testing.assert_array_equal(again.images["flair"], p.images["flair"])
    lps = make_phantom(1, SHAPE, SPACING, "LPS", contrasts=(), wmh=True)
    np.testing.assert_array_equal(lps.wmh, p.wmh[::-1, ::-1, :])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"wmh": True, "tumour": True}, "wmh"), ({"wmh": "yes"}, "wmh"), ({"wmh": 1}, "wmh")],
)
def test_bad_wmh_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_phantom(0, (16, 16, 16), contrasts=(), **kwargs)


# --------------------------------------------------------------------------------------------- data set


def test_write_wmh_dataset_challenge_layout(tmp_path):
    assert "wmh" in PHANTOM_TASKS
    kw = {"shape": (32, 36, 32), "spacing": (2.0, 2.0, 2.0)}
    out = write_phantom_dataset("wmh", tmp_path / "d", cases=3, seed=4, test_cases=1, folds=2, **kw)
    for n in (1, 2, 3, 4):
        case = out / "Phantom" / f"{n:03d}"
        assert (case / "pre" / "FLAIR.nii.gz").is_file() and (case / "pre" / "T1.nii.gz").is_file()
        assert (case / "wmh.nii.gz").is_file()
    ref = make_phantom(4 * 100003 + 1, contrasts=CONTRASTS, wmh=True, **kw)
    flair = nib.load(out / "Phantom" / "002" / "pre" / "FLAIR.nii.gz")
    t1 = nib.load(out / "Phantom" / "002" / "pre" / "T1.nii.gz")
    label = nib.load(out / "Phantom" / "002" / "wmh.nii.gz")
    np.testing.assert_array_equal(np.asarray(flair.dataobj), ref.images["flair"])
    np.testing.assert_array_equal(np.asarray(t1.dataobj), ref.images["t1"])
    assert label.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(label.dataobj), ref.wmh)
    np.testing.assert_allclose(label.affine, ref.affine)

    mine = json.loads((out / "datalist.json").read_text())
    assert mine["channels"] == ["FLAIR", "T1"] and mine["labels"] == dict(WMH_LABELS)
    assert [e["case"] for e in mine["training"]] == ["Phantom_001", "Phantom_002", "Phantom_003"]
    assert [e["case"] for e in mine["testing"]] == ["Phantom_004"]
    assert mine["training"][0]["image"] == ["Phantom/001/pre/FLAIR.nii.gz", "Phantom/001/pre/T1.nii.gz"]
    assert mine["training"][0]["label"] == "Phantom/001/wmh.nii.gz"
    assert sorted(e["fold"] for e in mine["training"]) == [0, 0, 1]
    manifest = json.loads((out / "phantom.json").read_text())
    assert manifest["task"] == "wmh" and manifest["layout"] == "wmh"

    theirs = make_datalist("phantom", out, folds=2, seed=4)
    keys = ("image", "label", "fold")
    for section in ("training", "testing"):
        assert [{k: e.get(k) for k in keys} for e in mine[section]] == [
            {k: e.get(k) for k in keys} for e in theirs[section]
        ], section
    assert theirs["channels"] == mine["channels"] and theirs.get("labels") == mine["labels"]
