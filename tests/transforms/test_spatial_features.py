"""Tests of brainbundles.transforms.spatial: the location features of the WMH network (position in a
brain-centred frame, distance to the midline, the surface and the ventricles) and the transforms that add
them to the image."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage as ndi

from brainbundles.data.phantom import Phantom, make_phantom
from brainbundles.transforms.spatial import (
    SPATIAL_FEATURES,
    AppendChannelsd,
    SpatialFeaturesd,
    spatial_features,
    ventricle_mask,
)

SHAPE, SPACING = (48, 56, 48), (1.5, 1.5, 1.5)
X, Y, Z, MIDLINE, SURFACE, VENTRICLES = range(6)


@pytest.fixture(scope="module")
def phantoms() -> dict[int, Phantom]:
    return {s: make_phantom(s, SHAPE, SPACING, contrasts=("flair", "t1"), wmh=True) for s in (0, 1, 2)}


def _image(p: Phantom) -> np.ndarray:
    return np.stack([p.images["flair"], p.images["t1"]])


def _box_brain(shape=(20, 24, 16), lo=(3, 5, 2), hi=(15, 21, 12), value=50.0) -> np.ndarray:
    """(1, X, Y, Z) image whose brain is the box ``lo <= index < hi`` (constant intensity)."""
    img = np.zeros((1, *shape), dtype=np.float32)
    img[0, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = value
    return img


def _ellipsoid_brain(spacing_z: float) -> np.ndarray:
    """An analytic brain (ellipsoid, 20 x 24 x 18 mm half-axes) with a dark "ventricle" pair, sampled on a
    1 x 1 x ``spacing_z`` mm grid whose z voxel centres are at -24, -24 + spacing_z, ... mm (so the 2 mm
    grid's centres are every other one of the 1 mm grid's)."""
    x = np.arange(48) - 23.5
    y = np.arange(56) - 27.5
    z = np.arange(int(round(48 / spacing_z)) + 1) * spacing_z - 24.0
    px, py, pz = np.meshgrid(x, y, z, indexing="ij")
    inside = (px / 20) ** 2 + (py / 24) ** 2 + (pz / 18) ** 2 < 1
    img = np.where(inside, 100 + 5 * np.sin(px / 7) + 3 * np.cos(py / 5), 0).astype(np.float32)
    img[((np.abs(px) - 6) / 3) ** 2 + (py / 8) ** 2 + ((pz - 2) / 4) ** 2 < 1] = 10.0  # fluid: dark
    return img[None]


# ------------------------------------------------------------------------------------- spatial_features


def test_shape_dtype_and_zero_outside_the_brain(phantoms):
    img = _image(phantoms[0])
    f = spatial_features(img, SPACING)
    assert SPATIAL_FEATURES == ("x", "y", "z", "midline", "surface", "ventricles")
    assert f.shape == (6, *SHAPE) and f.dtype == np.float32
    brain = np.any(img != 0, axis=0)
    assert brain.any() and not brain.all()
    assert np.all(f[:, ~brain] == 0)
    assert np.all(np.isfinite(f))
    # inside the brain: the surface and ventricle distances are positive (away from the ventricles)
    assert np.all(f[SURFACE][brain] > 0)
    assert np.mean(f[VENTRICLES][brain] > 0) > 0.95


def test_position_is_centred_antisymmetric_and_normalised(phantoms):
    img = _image(phantoms[1])
    f = spatial_features(img, SPACING)
    brain = np.any(img != 0, axis=0)
    for a in (X, Y, Z):
        v = f[a][brain]
        assert abs(float(v.mean())) < 1e-3, a  # the centroid is the origin
        assert -1.05 < v.min() < -0.85 and 0.85 < v.max() < 1.05, (a, v.min(), v.max())
        assert abs(v.min() + v.max()) < 0.1, a  # about symmetric extremes
        # increasing along its own axis, constant along the others
        idx = np.argwhere(brain)
        order = np.argsort(idx[:, a])
        assert np.all(np.diff(f[a][tuple(idx[order].T)]) >= 0)
    assert np.array_equal(f[MIDLINE], np.abs(f[X]))


def test_position_and_surface_of_a_box_are_exact():
    lo, hi = (3, 5, 2), (15, 21, 12)
    spacing = (1.0, 2.0, 0.5)
    f = spatial_features(_box_brain(lo=lo, hi=hi), spacing)
    n = np.subtract(hi, lo)
    half = n * np.asarray(spacing) / 2
    for a in range(3):
        i = np.arange(lo[a], hi[a])
        expected = (i - (lo[a] + hi[a] - 1) / 2) / (n[a] / 2)  # spacing cancels out
        sl = [slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2])]
        got = np.moveaxis(f[a][tuple(sl)], a, 0)
        np.testing.assert_allclose(got, np.broadcast_to(expected.reshape(-1, 1, 1), got.shape), atol=1e-6)
    # distance to the outside of a box, in mm, over the brain radius (geometric mean half-extent)
    radius = float(np.prod(half) ** (1 / 3))
    ii, jj, kk = np.meshgrid(*(np.arange(lo[a], hi[a]) for a in range(3)), indexing="ij")
    depth = np.minimum.reduce(
        [np.minimum(g - lo[a] + 1, hi[a] - g) * spacing[a] for a, g in enumerate((ii, jj, kk))]
    )
    box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    np.testing.assert_allclose(f[SURFACE][box], depth / radius, rtol=1e-5)


def test_surface_distance_increases_inward(phantoms):
    img = _image(phantoms[0])
    f = spatial_features(img, SPACING)
    brain = np.any(img != 0, axis=0)
    # along rays from the brain centroid outwards the distance to the surface keeps falling near the edge
    c = np.round(np.mean(np.argwhere(brain), axis=0)).astype(int)
    for a in range(3):
        for sign in (1, -1):
            line = [c[0], c[1], c[2]]
            line[a] = slice(c[a], None) if sign > 0 else slice(c[a], None, -1)
            prof = f[SURFACE][tuple(line)]
            prof = prof[: np.argmax(prof == 0)]  # from the centroid to the edge of the brain
            assert len(prof) > 10 and prof[0] > 0.5
            assert np.all(np.diff(prof[-5:]) < 0), (a, sign, prof)
    # deeper voxels (by erosion) have larger values than the brain's outer shell
    shell = brain & ~ndi.binary_erosion(brain)
    core = ndi.binary_erosion(brain, iterations=6)
    assert f[SURFACE][shell].max() < f[SURFACE][core].min()


def test_anisotropic_spacing_is_honoured():
    """The same analytic brain at 1 mm and at 2 mm in z gives about the same features at the same world
    points; ignoring the spacing would not."""
    fine, coarse = _ellipsoid_brain(1.0), _ellipsoid_brain(2.0)
    f1 = spatial_features(fine, (1.0, 1.0, 1.0))[..., ::2]  # the coarse grid's voxel centres
    f2 = spatial_features(coarse, (1.0, 1.0, 2.0))
    wrong = spatial_features(coarse, (1.0, 1.0, 1.0))
    both = (fine[0, ..., ::2] != 0) & (coarse[0] != 0)
    assert both.sum() > 10000
    for c, mean_tol, max_tol in (
        (X, 1e-6, 1e-6),
        (Z, 0.02, 0.05),
        (SURFACE, 0.02, 0.1),
        (VENTRICLES, 0.03, 0.1),
    ):
        diff = np.abs(f1[c] - f2[c])[both]
        assert diff.mean() < mean_tol and diff.max() < max_tol, (SPATIAL_FEATURES[c], diff.mean(), diff.max())
    # the test has power: with the spacing ignored the distances are off
    for c in (SURFACE, VENTRICLES):
        assert np.abs(f1[c] - wrong[c])[both].mean() > 0.05, SPATIAL_FEATURES[c]


def test_ventricle_mask_on_a_wmh_phantom_is_the_ventricles(phantoms):
    for seed, p in phantoms.items():
        img = _image(p)
        brain = np.any(img != 0, axis=0)
        depth = ndi.distance_transform_edt(brain, sampling=SPACING)
        vent = ventricle_mask(img[0], brain, depth)  # on FLAIR: fluid is dark
        assert vent.dtype == bool and vent.shape == brain.shape
        assert vent.sum() > 50, seed
        assert np.mean(p.label[vent] == 1) > 0.9, seed  # phantom CSF
        assert np.all(depth[vent] > 0.3 * depth.max()), seed  # deep, not the surface CSF
        assert np.all(brain[vent])


def test_ventricle_distance_is_smaller_at_wmh_than_in_normal_white_matter(phantoms):
    for seed, p in phantoms.items():
        f = spatial_features(_image(p), SPACING, dark_channel=0)
        wmh = p.wmh == 1
        nawm = (p.label == 3) & (p.wmh == 0)
        assert wmh.sum() > 100 and nawm.sum() > 1000
        assert f[VENTRICLES][wmh].mean() < 0.6 * f[VENTRICLES][nawm].mean(), seed


def test_dark_channel_selects_the_contrast(phantoms):
    img = _image(phantoms[0])
    on_flair = spatial_features(img, SPACING, dark_channel=0)
    swapped = spatial_features(img[::-1].copy(), SPACING, dark_channel=1)
    np.testing.assert_array_equal(on_flair, swapped)


def test_no_ventricles_logs_a_warning_and_leaves_the_channel_zero(caplog):
    img = _box_brain()  # uniform brain: nothing darker than the rest
    with caplog.at_level(logging.WARNING, logger="brainbundles"):
        f = spatial_features(img)
    assert np.all(f[VENTRICLES] == 0)
    assert f[SURFACE].max() > 0  # the other features are there
    assert any(
        r.levelno == logging.WARNING and "ventricle" in r.getMessage().lower() for r in caplog.records
    ), caplog.text


def test_ventricle_mask_edge_cases():
    brain = np.zeros((6, 6, 6), bool)
    assert not ventricle_mask(np.zeros((6, 6, 6)), brain, np.zeros((6, 6, 6))).any()
    # a dark spot near the surface is not a ventricle; a deep one is, and a small one next to it is dropped
    img = _box_brain(shape=(24, 24, 24), lo=(0, 0, 0), hi=(24, 24, 24))[0]
    img += np.random.default_rng(0).uniform(-1, 1, img.shape).astype(np.float32)
    brain = img != 0
    img[1:3, 1:3, 1:3] = 1.0  # shallow
    img[9:14, 9:14, 9:14] = 1.0  # deep, 125 voxels
    img[16, 16, 16] = 1.0  # deep, 1 voxel (< 20% of the largest)
    depth = ndi.distance_transform_edt(brain)
    vent = ventricle_mask(img, brain, depth)
    expected = np.zeros_like(brain)
    expected[9:14, 9:14, 9:14] = True
    np.testing.assert_array_equal(vent, expected)


def test_empty_image_gives_zero_features():
    f = spatial_features(np.zeros((2, 8, 9, 10), np.float32))
    assert f.shape == (6, 8, 9, 10) and not f.any()


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.ones((8, 8, 8)),), "image"),
        ((np.ones((1, 1, 8, 8, 8)),), "image"),
        ((np.ones((2, 8, 8, 8)), (1.0, 1.0, 1.0), 2), "dark_channel"),
        ((np.ones((2, 8, 8, 8)), (1.0, 1.0, 1.0), -1), "dark_channel"),
        ((np.ones((1, 8, 8, 8)), (1.0, 1.0)), "spacing"),
        ((np.ones((1, 8, 8, 8)), (1.0, 0.0, 1.0)), "spacing"),
        ((np.ones((1, 8, 8, 8)), (1.0, -2.0, 1.0)), "spacing"),
    ],
)
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        spatial_features(*args)


# ------------------------------------------------------------------------------------- SpatialFeaturesd


def test_spatial_features_d_reads_the_spacing_from_the_metatensor():
    coarse = _ellipsoid_brain(2.0)
    affine = torch.diag(torch.tensor([1.0, 1.0, 2.0, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-23.5, -27.5, -24.0], dtype=torch.float64)
    img = MetaTensor(torch.from_numpy(coarse), affine=affine)
    d = SpatialFeaturesd(keys="image")({"image": img, "label": "keep me"})
    assert d["label"] == "keep me" and d["image"] is img
    feats = d["features"]
    assert isinstance(feats, torch.Tensor) and feats.dtype == torch.float32
    np.testing.assert_array_equal(feats.numpy(), spatial_features(coarse, (1.0, 1.0, 2.0)))
    assert not np.array_equal(feats.numpy(), spatial_features(coarse, (1.0, 1.0, 1.0)))
    # a plain tensor counts as 1 mm; output_key and dark_channel are honoured
    two = np.concatenate([np.where(coarse != 0, 200.0 - coarse, 0.0), coarse]).astype(np.float32)
    d = SpatialFeaturesd(output_key="loc", dark_channel=1)({"image": torch.from_numpy(two)})
    assert "features" not in d
    np.testing.assert_array_equal(d["loc"].numpy(), spatial_features(two, (1.0, 1.0, 1.0), dark_channel=1))


def test_spatial_features_d_disabled_gives_zero_channels():
    img = MetaTensor(torch.ones((2, 6, 7, 8)))
    d = SpatialFeaturesd(enabled=False)({"image": img})
    assert tuple(d["features"].shape) == (0, 6, 7, 8)
    out = AppendChannelsd()(d)
    assert tuple(out["image"].shape) == (2, 6, 7, 8) and "features" not in out
    assert torch.equal(out["image"].as_tensor(), img.as_tensor())


# ------------------------------------------------------------------------------------- AppendChannelsd


def test_append_channels_keeps_meta_and_history():
    affine = torch.diag(torch.tensor([0.9, 0.9, 3.0, 1.0], dtype=torch.float64))
    img = MetaTensor(
        torch.arange(2 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 4, 5, 6),
        affine=affine,
        meta={"filename_or_obj": "/data/flair.nii.gz"},
    )
    img.applied_operations = [{"class": "Orientationd", "id": 1}, {"class": "Spacingd", "id": 2}]
    extra = torch.full((3, 4, 5, 6), 7.0, dtype=torch.float64)
    d = AppendChannelsd(keys="image", source_key="features")({"image": img, "features": extra, "case": "c"})
    assert set(d) == {"image", "case"}
    out = d["image"]
    assert isinstance(out, MetaTensor) and out.shape == (5, 4, 5, 6) and out.dtype == torch.float32
    assert torch.equal(out.as_tensor()[:2], img.as_tensor())
    assert torch.all(out.as_tensor()[2:] == 7.0)
    assert out.meta["filename_or_obj"] == "/data/flair.nii.gz"
    assert torch.allclose(out.affine, affine)
    assert [op["class"] for op in out.applied_operations] == ["Orientationd", "Spacingd"]


def test_append_channels_plain_tensors_and_shape_mismatch():
    d = AppendChannelsd(keys=["a", "b"], source_key="f")(
        {"a": torch.zeros((1, 3, 3, 3)), "b": torch.ones((2, 3, 3, 3)), "f": torch.full((1, 3, 3, 3), 5.0)}
    )
    assert d["a"].shape == (2, 3, 3, 3) and d["b"].shape == (3, 3, 3, 3) and "f" not in d
    assert torch.all(d["a"][1] == 5) and torch.all(d["b"][2] == 5)
    with pytest.raises(ValueError, match="spatial shape"):
        AppendChannelsd(source_key="f")({"image": torch.zeros((1, 3, 3, 3)), "f": torch.zeros((1, 3, 3, 4))})
