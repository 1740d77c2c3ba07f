"""Checks of the surface distances and HD95 (brainbundles.metrics.distance)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from monai.metrics import compute_hausdorff_distance
from monai.metrics.utils import get_edge_surface_distance
from scipy import ndimage
from scipy.spatial.distance import cdist

from brainbundles.metrics import hd95, surface_distances


def _box(shape: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return mask


def _blobs(rng: np.random.Generator, shape: tuple[int, ...], sigma: float, threshold: float) -> np.ndarray:
    return ndimage.gaussian_filter(rng.standard_normal(shape), sigma) > threshold


def _reference_directed(
    a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Independent, uncropped computation on the full arrays (no bounding box)."""
    structure = ndimage.generate_binary_structure(a.ndim, 1)
    surf_a = a ^ ndimage.binary_erosion(a, structure=structure, border_value=0)
    surf_b = b ^ ndimage.binary_erosion(b, structure=structure, border_value=0)
    d_ab = ndimage.distance_transform_edt(~surf_b, sampling=spacing)[surf_a]
    d_ba = ndimage.distance_transform_edt(~surf_a, sampling=spacing)[surf_b]
    return d_ab, d_ba


def _brute_force_directed(
    a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """All-pairs distances between surface voxel centres in mm (small cases only)."""
    structure = ndimage.generate_binary_structure(a.ndim, 1)
    surf_a = a & ~ndimage.binary_erosion(a, structure=structure)
    surf_b = b & ~ndimage.binary_erosion(b, structure=structure)
    pa = np.argwhere(surf_a) * np.asarray(spacing)
    pb = np.argwhere(surf_b) * np.asarray(spacing)
    d = cdist(pa, pb)
    return d.min(axis=1), d.min(axis=0)


# ---------------------------------------------------------------- hand-computed cases


@pytest.mark.parametrize("method", ["max", "pooled"])
def test_cubes_shifted_along_anisotropic_axis(method: str) -> None:
    # 10^3 cubes shifted by 3 voxels along axis 0 with 2 mm spacing on that axis.
    # Every surface voxel has a surface voxel of the other cube within 3 voxels
    # along axis 0 (the shifted face, 6 mm) or coincident (side faces, 0 mm); the
    # two 10x10 faces at 6 mm are 100/488 > 5 % of each surface, so HD95 = 6 mm.
    spacing = (2.0, 1.0, 1.5)
    a = _box((24, 16, 16), (4, 3, 3), (14, 13, 13))
    b = _box((24, 16, 16), (7, 3, 3), (17, 13, 13))
    assert hd95(a, b, spacing, method=method) == pytest.approx(6.0)
    assert hd95(b, a, spacing, method=method) == pytest.approx(6.0)
    d_ab, d_ba = surface_distances(a, b, spacing)
    assert d_ab.size == d_ba.size == 10**3 - 8**3
    assert d_ab.max() == pytest.approx(6.0)
    assert np.count_nonzero(np.isclose(d_ab, 6.0)) >= 100


def test_cubes_shifted_along_other_axis_use_that_axis_spacing() -> None:
    spacing = (2.0, 1.0, 1.5)
    a = _box((16, 16, 24), (3, 3, 4), (13, 13, 14))
    b = _box((16, 16, 24), (3, 3, 7), (13, 13, 17))
    assert hd95(a, b, spacing) == pytest.approx(4.5)  # 3 voxels x 1.5 mm


def test_parallel_sheets_all_distances_known() -> None:
    # One-voxel-thick sheets are all surface; each voxel is 6 voxels (12 mm) from the other sheet.
    spacing = (2.0, 0.7, 1.3)
    a = _box((12, 12, 12), (2, 1, 1), (3, 11, 11))
    b = _box((12, 12, 12), (8, 1, 1), (9, 11, 11))
    d_ab, d_ba = surface_distances(a, b, spacing)
    np.testing.assert_allclose(d_ab, 12.0)
    np.testing.assert_allclose(d_ba, 12.0)
    assert hd95(a, b, spacing) == pytest.approx(12.0)
    assert hd95(a, b, spacing, method="pooled") == pytest.approx(12.0)


def test_max_and_pooled_definitions_differ_as_documented() -> None:
    # ref: 10x10 sheet (100 surface voxels). pred: the same sheet plus a 2x5 sheet
    # 6 voxels away along axis 0 (2 mm spacing -> 12 mm).
    # d(pred->ref) = 100 x 0 mm + 10 x 12 mm -> P95 = 12 (10/110 > 5 %)
    # d(ref->pred) = 100 x 0 mm                -> P95 = 0
    # max definition: 12 mm; pooled (200 zeros + 10 x 12): P95 = 0 mm.
    spacing = (2.0, 1.0, 1.0)
    ref = _box((12, 12, 12), (2, 1, 1), (3, 11, 11))
    pred = ref | _box((12, 12, 12), (8, 2, 3), (9, 4, 8))
    d_pr, d_rp = surface_distances(pred, ref, spacing)
    assert sorted(np.round(d_pr, 6).tolist()) == [0.0] * 100 + [12.0] * 10
    np.testing.assert_allclose(d_rp, 0.0)
    assert hd95(pred, ref, spacing) == pytest.approx(12.0)
    assert hd95(pred, ref, spacing, method="pooled") == pytest.approx(0.0)
    assert hd95(pred, ref, spacing, method="pooled", percentile=100) == pytest.approx(12.0)


def test_identical_masks_have_zero_hd95() -> None:
    a = _box((10, 10, 10), (2, 2, 2), (7, 8, 6))
    assert hd95(a, a, (1.0, 2.0, 3.0)) == 0.0
    assert hd95(a, a, (1.0, 2.0, 3.0), method="pooled") == 0.0


def test_empty_conventions() -> None:
    empty = np.zeros((6, 6, 6), dtype=bool)
    some = _box((6, 6, 6), (1, 1, 1), (3, 3, 3))
    assert hd95(empty, empty, (1, 1, 1)) == 0.0
    assert math.isnan(hd95(some, empty, (1, 1, 1)))
    assert math.isnan(hd95(empty, some, (1, 1, 1), method="pooled"))
    d1, d2 = surface_distances(some, empty, (1, 1, 1))
    assert d1.size == 0 and d2.size == 0


def test_single_voxels_distance() -> None:
    a = np.zeros((5, 5, 5), dtype=bool)
    b = np.zeros((5, 5, 5), dtype=bool)
    a[0, 0, 0] = True
    b[3, 4, 0] = True
    assert hd95(a, b, (1.0, 1.0, 7.0)) == pytest.approx(5.0)  # 3-4-5 triangle
    assert hd95(a, b, (2.0, 1.5, 7.0)) == pytest.approx(math.hypot(6.0, 6.0))


def test_invalid_arguments() -> None:
    a = np.ones((3, 3, 3), dtype=bool)
    with pytest.raises(ValueError, match="method"):
        hd95(a, a, (1, 1, 1), method="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="percentile"):
        hd95(a, a, (1, 1, 1), percentile=101)
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, a, (1, 1))
    with pytest.raises(ValueError, match="same shape"):
        hd95(a, np.ones((3, 3, 4), bool), (1, 1, 1))


# ---------------------------------------------------------------- cropping


@pytest.mark.parametrize("seed", range(6))
def test_cropping_does_not_change_the_result(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (18, 15, 12)
    # odd seeds anisotropic, even seeds isotropic (hd95 scales a unit-spacing EDT then)
    if seed % 2:
        spacing = tuple(float(s) for s in rng.uniform(0.5, 3.0, size=3))
    else:
        spacing = (float(rng.uniform(0.5, 3.0)),) * 3
    # sparse blobs that touch the array border somewhere
    a = _blobs(rng, shape, 1.5, 0.15)
    b = _blobs(rng, shape, 1.5, 0.15)
    assert a.any() and b.any()
    ref_ab, ref_ba = _reference_directed(a, b, spacing)
    d_ab, d_ba = surface_distances(a, b, spacing)
    np.testing.assert_allclose(d_ab, ref_ab, rtol=1e-12)
    np.testing.assert_allclose(d_ba, ref_ba, rtol=1e-12)
    expected_max = max(np.percentile(ref_ab, 95), np.percentile(ref_ba, 95))
    expected_pooled = np.percentile(np.concatenate([ref_ab, ref_ba]), 95)
    assert hd95(a, b, spacing) == pytest.approx(expected_max, rel=1e-12)
    assert hd95(a, b, spacing, method="pooled") == pytest.approx(expected_pooled, rel=1e-12)
    # and against all-pairs brute force
    bf_ab, bf_ba = _brute_force_directed(a, b, spacing)
    np.testing.assert_allclose(d_ab, bf_ab, rtol=1e-9)
    np.testing.assert_allclose(d_ba, bf_ba, rtol=1e-9)


def test_small_objects_far_from_the_border_and_at_the_border() -> None:
    spacing = (1.0, 2.0, 0.5)
    shape = (30, 30, 30)
    a = _box(shape, (10, 11, 12), (13, 15, 14))
    b = _box(shape, (12, 12, 15), (16, 14, 19))
    corner_a = _box(shape, (0, 0, 0), (3, 2, 4))
    corner_b = _box(shape, (27, 26, 0), (30, 30, 3))
    for p, r in [(a, b), (a | corner_a, b), (a, b | corner_b), (corner_a, corner_b)]:
        ref_pr, ref_rp = _reference_directed(p, r, spacing)
        expected = max(np.percentile(ref_pr, 95), np.percentile(ref_rp, 95))
        assert hd95(p, r, spacing) == pytest.approx(expected, rel=1e-12)
        # padding with background changes nothing: outside the array already counts as
        # background, so masks touching the border have the same surface either way
        assert hd95(np.pad(p, 5), np.pad(r, 5), spacing) == pytest.approx(expected, rel=1e-12)


def test_two_dimensional_masks() -> None:
    a = _box((20, 20), (2, 2), (8, 8))
    b = _box((20, 20), (2, 6), (8, 12))  # shifted by 4 along axis 1
    assert hd95(a, b, (1.0, 0.5)) == pytest.approx(2.0)


# ---------------------------------------------------------------- MONAI comparison


@pytest.mark.parametrize("seed", range(3))
def test_hd95_matches_monai(seed: int) -> None:
    """MONAI's compute_hausdorff_distance(percentile=95) is the "max" definition.

    Same surface (erosion XOR, face connectivity), same Euclidean distances with
    spacing, same linear-interpolation percentile; MONAI works in float32, hence
    the tolerance. The "pooled" definition is checked against the percentile of
    the concatenation of MONAI's two directed distance sets.
    """
    rng = np.random.default_rng(100 + seed)
    shape = (28, 24, 20)
    spacing = (1.2, 0.8, 2.5)
    ref = _blobs(rng, shape, 2.0, 0.05)
    noise = _blobs(rng, shape, 2.0, 0.05)
    pred = np.where(rng.random(shape) < 0.1, noise, ref)  # noisy copy of ref
    pred = ndimage.binary_opening(pred) | (noise & _blobs(rng, shape, 1.0, 0.6))
    assert pred.any() and ref.any()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monai_hd = compute_hausdorff_distance(
            torch.as_tensor(pred)[None, None].float(),
            torch.as_tensor(ref)[None, None].float(),
            include_background=True,
            percentile=95,
            spacing=spacing,
        ).item()
        _, (d_pr, d_rp), _ = get_edge_surface_distance(
            torch.as_tensor(pred), torch.as_tensor(ref), spacing=spacing, symmetric=True
        )
    ours = hd95(pred, ref, spacing)
    assert ours > 0
    assert ours == pytest.approx(monai_hd, rel=1e-5, abs=1e-5)
    pooled = np.percentile(np.concatenate([d_pr.numpy(), d_rp.numpy()]).astype(np.float64), 95)
    assert hd95(pred, ref, spacing, method="pooled") == pytest.approx(pooled, rel=1e-5, abs=1e-5)
    ours_pr, ours_rp = surface_distances(pred, ref, spacing)
    np.testing.assert_allclose(np.sort(ours_pr), np.sort(d_pr.numpy()), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.sort(ours_rp), np.sort(d_rp.numpy()), rtol=1e-5, atol=1e-5)
