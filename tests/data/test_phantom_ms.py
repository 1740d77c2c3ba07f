"""Tests of the multiple-sclerosis lesion phantoms of brainbundles.data.phantom
(``make_phantom(..., ms=True)``, task "ms" in the MICCAI 2016 MSSEG layout)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from brainbundles.data import make_datalist
from brainbundles.data.labels import MS_CHANNELS, MS_LABELS
from brainbundles.data.phantom import PHANTOM_TASKS, Phantom, make_phantom, write_phantom_dataset

SHAPE, SPACING = (64, 76, 64), (1.5, 1.5, 1.5)
SEEDS = (0, 1, 2, 3)
CONTRASTS = ("flair", "t1", "t2", "pd")
SIX = ndi.generate_binary_structure(3, 1)
ALL26 = np.ones((3, 3, 3), dtype=bool)
CSF, GM, WM = 1, 2, 3


@pytest.fixture(scope="module")
def pairs() -> dict[int, tuple[Phantom, Phantom]]:
    """Per seed: the phantom with MS lesions and the same seed's without."""
    return {
        s: (
            make_phantom(s, SHAPE, SPACING, contrasts=CONTRASTS, ms=True),
            make_phantom(s, SHAPE, SPACING, contrasts=CONTRASTS),
        )
        for s in SEEDS
    }


@pytest.fixture(scope="module")
def label_only() -> dict[int, Phantom]:
    return {s: make_phantom(s, SHAPE, SPACING, contrasts=(), ms=True) for s in range(12)}


def _lesions(p: Phantom) -> tuple[np.ndarray, int]:
    """The lesions: 26-connected components of the mask."""
    assert p.ms is not None
    return ndi.label(p.ms > 0, ALL26)


def _ventricles(label: np.ndarray) -> np.ndarray:
    """CSF enclosed in the brain (not connected to the surface CSF): the ventricle system."""
    depth = ndi.distance_transform_edt(label > 0)
    comp, _ = ndi.label(label == CSF, SIX)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    sizes[np.unique(comp[(label == CSF) & (depth < 1.5)])] = 0
    return np.isin(comp, np.flatnonzero(sizes >= 0.2 * sizes.max()))


def _cortex(label: np.ndarray) -> np.ndarray:
    """The cortical ribbon: the largest 6-connected piece of grey matter (the deep nuclei are apart)."""
    comp, _ = ndi.label(label == GM, SIX)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    return comp == int(sizes.argmax())


# ------------------------------------------------------------------------------------------------ labels


def test_types_and_values(pairs):
    for seed, (p, healthy) in pairs.items():
        assert p.ms is not None and p.ms.dtype == np.uint8 and p.ms.shape == SHAPE
        assert set(np.unique(p.ms)) == {0, 1}, seed
        assert p.wmh is None and p.tumour is None
        assert healthy.ms is None
        np.testing.assert_array_equal(p.label, healthy.label)  # Phantom.label: the healthy anatomy
        np.testing.assert_array_equal(p.affine, healthy.affine)
        assert set(p.images) == set(CONTRASTS)


def test_deterministic_per_seed_and_orientation(pairs):
    p = pairs[1][0]
    again = make_phantom(1, SHAPE, SPACING, contrasts=CONTRASTS, ms=True)
    np.testing.assert_array_equal(again.ms, p.ms)
    for c in CONTRASTS:
        np.testing.assert_array_equal(again.images[c], p.images[c])
    assert not np.array_equal(pairs[2][0].ms, p.ms)  # another seed, other lesions
    lps = make_phantom(1, SHAPE, SPACING, "LPS", contrasts=(), ms=True)
    np.testing.assert_array_equal(lps.ms, p.ms[::-1, ::-1, :])


def test_lesion_count_per_case(label_only):
    counts = {s: _lesions(p)[1] for s, p in label_only.items()}
    assert all(5 <= n <= 20 for n in counts.values()), counts
    assert len(set(counts.values())) >= 4, counts  # drawn per case


def test_each_lesion_is_mostly_white_matter(label_only):
    for seed, p in label_only.items():
        comp, n = _lesions(p)
        white = np.asarray(ndi.mean(p.label == WM, comp, range(1, n + 1)))
        assert white.min() >= 0.75, (seed, white.round(2))
        assert not np.any((p.ms > 0) & ((p.label == CSF) | (p.label == 0))), seed  # never in CSF


def test_lesions_are_not_tiny_at_1mm():
    """At 1 mm on a real-sized FOV (160 x 192 x 160 mm) every lesion has at least ~30 voxels."""
    p = make_phantom(7, (160, 192, 160), (1.0, 1.0, 1.0), contrasts=(), ms=True)
    comp, n = _lesions(p)
    sizes = np.bincount(comp.ravel())[1:]
    assert 5 <= n <= 20 and sizes.min() >= 30, sizes


def test_periventricular_lesions_point_away_from_the_ventricles():
    """Dawson's fingers: the elongated lesions on a ventricle's wall have their long (principal) axis along
    the direction away from the ventricle."""
    p = make_phantom(0, (96, 112, 96), SPACING, contrasts=(), ms=True)
    dist, nearest = ndi.distance_transform_edt(~_ventricles(p.label), return_indices=True)
    comp, n = _lesions(p)
    aligned = []
    for i in range(1, n + 1):
        m = comp == i
        if dist[m].min() > 1.5:  # not on a ventricle's wall
            continue
        pts = np.argwhere(m).astype(float)
        centre = pts.mean(axis=0)
        values, vectors = np.linalg.eigh(np.cov((pts - centre).T))
        if values[-1] < 1.4**2 * values[-2]:  # not clearly elongated
            continue
        c = tuple(np.rint(centre).astype(int))
        radial = centre - np.array([nearest[a][c] for a in range(3)])
        aligned.append(abs(vectors[:, -1] @ radial) / np.linalg.norm(radial))
    assert len(aligned) >= 3, aligned
    assert max(aligned) > 0.95 and np.mean(np.array(aligned) > 0.8) >= 0.8, np.round(aligned, 2)


def test_juxtacortical_lesions_touch_the_cortex(label_only):
    """Every case has a lesion away from the ventricles that touches (reaches into) the cortex."""
    for seed in range(6):
        p = label_only[seed]
        far = ndi.distance_transform_edt(~_ventricles(p.label)) > 4.0
        cortex = ndi.binary_dilation(_cortex(p.label), SIX)
        comp, n = _lesions(p)
        touching = [i for i in range(1, n + 1) if (cortex & (comp == i)).any() and far[comp == i].all()]
        assert touching, seed


# --------------------------------------------------------------------------------------------- intensities


def _nawm(p: Phantom) -> np.ndarray:
    """Normal-appearing white matter: away from the lesions and the tissue borders."""
    return ndi.binary_erosion((p.label == WM) & ~ndi.binary_dilation(p.ms > 0, iterations=2), SIX)


def test_lesion_contrast(pairs):
    for seed, (p, _) in pairs.items():
        lesion, nawm = p.ms > 0, _nawm(p)
        gm = p.label == GM
        csf = ndi.binary_erosion(_ventricles(p.label), SIX)
        mean = {c: (p.images[c][lesion].mean(), p.images[c][nawm].mean()) for c in CONTRASTS}
        for c in ("flair", "t2", "pd"):  # hyper-intense
            assert mean[c][0] > 1.1 * mean[c][1], (seed, c, mean[c])
        assert mean["t1"][0] < 0.95 * mean["t1"][1], (seed, mean["t1"])  # hypo-intense ...
        assert mean["t1"][0] > p.images["t1"][gm].mean(), seed  # ... mildly: brighter than GM
        assert mean["flair"][0] > p.images["flair"][gm].mean(), seed
        assert p.images["flair"][csf].mean() < mean["flair"][1], seed  # FLAIR: CSF dark
        assert p.images["t2"][csf].mean() > mean["t2"][0], seed  # T2: CSF brightest


def test_lesion_intensity_varies_across_lesions():
    p = make_phantom(2, SHAPE, SPACING, contrasts=("flair",), noise="none", ms=True)
    comp, n = _lesions(p)
    per_lesion = np.asarray(ndi.mean(p.images["flair"], comp, range(1, n + 1)))
    assert per_lesion.min() > p.images["flair"][_nawm(p)].mean()
    assert per_lesion.max() > 1.1 * per_lesion.min(), per_lesion.round()


def test_images_identical_away_from_the_lesions(pairs):
    """The lesions draw from their own random streams: away from them (beyond the partial-volume blur)
    every voxel, noise included, is the same as without ``ms=True``."""
    for seed, (p, healthy) in pairs.items():
        near = ndi.binary_dilation(p.ms > 0, np.ones((9, 9, 9), bool))
        for c in CONTRASTS:
            np.testing.assert_array_equal(p.images[c][~near], healthy.images[c][~near], err_msg=f"{seed} {c}")
            assert not np.array_equal(p.images[c][near], healthy.images[c][near]), (seed, c)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ms": True, "tumour": True}, "ms"),
        ({"ms": True, "wmh": True}, "ms"),
        ({"ms": "yes"}, "ms"),
        ({"ms": 1}, "ms"),
    ],
)
def test_bad_ms_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_phantom(0, (16, 16, 16), contrasts=(), **kwargs)


# --------------------------------------------------------------------------------------------- data set


def test_write_ms_dataset_msseg_layout(tmp_path):
    assert "ms" in PHANTOM_TASKS
    kw = {"shape": (40, 46, 40), "spacing": (2.0, 2.0, 2.0)}
    out = write_phantom_dataset("ms", tmp_path / "d", cases=3, seed=4, test_cases=1, folds=2, **kw)
    for n in (1, 2, 3, 4):
        case = out / f"Phantom_{n:03d}"
        for name in ("FLAIR", "T1", "T2", "DP"):
            assert (case / "Preprocessed_Data" / f"{name}_preprocessed.nii.gz").is_file(), (n, name)
        assert (case / "Masks" / "Consensus.nii.gz").is_file()
    ref = make_phantom(4 * 100003 + 1, contrasts=CONTRASTS, ms=True, **kw)
    pre = out / "Phantom_002" / "Preprocessed_Data"
    for name, contrast in zip(("FLAIR", "T1", "T2", "DP"), CONTRASTS, strict=True):
        img = nib.load(pre / f"{name}_preprocessed.nii.gz")
        assert img.shape == kw["shape"] and img.get_data_dtype() == np.float32
        np.testing.assert_array_equal(np.asarray(img.dataobj), ref.images[contrast])
        np.testing.assert_allclose(img.affine, ref.affine)
    label = nib.load(out / "Phantom_002" / "Masks" / "Consensus.nii.gz")
    assert label.get_data_dtype() == np.uint8 and label.shape == kw["shape"]
    np.testing.assert_array_equal(np.asarray(label.dataobj), ref.ms)
    assert set(np.unique(np.asarray(label.dataobj))) == {0, 1}
    np.testing.assert_allclose(label.affine, ref.affine)

    manifest = json.loads((out / "phantom.json").read_text())
    assert manifest["task"] == "ms" and manifest["layout"] == "msseg2016"
    assert manifest["labels"] == {"0": "background", "1": "lesion"} == dict(MS_LABELS)
    assert manifest["channels"] == list(MS_CHANNELS)  # the layout's; the files hold FLAIR, T1, T2, PD

    mine = json.loads((out / "datalist.json").read_text())
    assert mine["channels"] == list(MS_CHANNELS) and mine["labels"] == dict(MS_LABELS)
    assert [e["case"] for e in mine["training"]] == ["Phantom_001", "Phantom_002", "Phantom_003"]
    assert [e["case"] for e in mine["testing"]] == ["Phantom_004"]
    assert mine["numTraining"] == 3 and mine["numTest"] == 1
    first = mine["training"][0]
    assert first["image"] == [
        f"Phantom_001/Preprocessed_Data/{s}_preprocessed.nii.gz" for s in ("FLAIR", "T1", "T2", "DP")
    ]
    assert first["label"] == "Phantom_001/Masks/Consensus.nii.gz"
    assert all(e["channels"] == ["FLAIR", "T1", "T2", "PD"] for e in mine["training"] + mine["testing"])
    assert sorted(e["fold"] for e in mine["training"]) == [0, 0, 1]
    assert "fold" not in mine["testing"][0]

    # the datalist layouts find the same cases, files, channels and folds
    keys = ("image", "label", "fold", "channels", "case")
    theirs = make_datalist("phantom", out, folds=2, seed=4)
    for section in ("training", "testing"):
        assert [{k: e.get(k) for k in keys} for e in mine[section]] == [
            {k: e.get(k) for k in keys} for e in theirs[section]
        ], section
    assert theirs["channels"] == mine["channels"] and theirs.get("labels") == mine["labels"]
    direct = make_datalist("msseg2016", out, folds=2, seed=4)
    cases = sorted(e["case"] for e in direct["training"] + direct["testing"])
    assert cases == [f"Phantom_{n:03d}" for n in (1, 2, 3, 4)]
    assert all(e["channels"] == ["FLAIR", "T1", "T2", "PD"] for e in direct["training"])


def test_write_ms_dataset_int16(tmp_path):
    kw = {"shape": (32, 36, 32), "spacing": (2.0, 2.0, 2.0)}
    out = write_phantom_dataset("ms", tmp_path / "d", cases=1, seed=1, folds=1, dtype="int16", **kw)
    img = nib.load(out / "Phantom_001" / "Preprocessed_Data" / "DP_preprocessed.nii.gz")
    assert img.get_data_dtype() == np.int16
    ref = make_phantom(1 * 100003, contrasts=("pd",), ms=True, **kw)
    np.testing.assert_array_equal(np.asarray(img.dataobj), np.rint(ref.images["pd"]).astype(np.int16))
