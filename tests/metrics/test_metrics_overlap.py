"""Hand-computed checks of Dice, AVD and volume (brainbundles.metrics.overlap)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice
from scipy import ndimage

from brainbundles.metrics import avd, dice, volume_ml


def _cube(shape: tuple[int, ...], start: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))] = True
    return mask


def test_dice_of_two_overlapping_cubes() -> None:
    # 4^3 cubes offset by 2 along axis 0: overlap 2*4*4 = 32 voxels, |A| = |B| = 64.
    a = _cube((10, 10, 10), (0, 0, 0), (4, 4, 4))
    b = _cube((10, 10, 10), (2, 0, 0), (4, 4, 4))
    assert dice(a, b) == pytest.approx(2 * 32 / 128)


def test_dice_of_nested_cubes() -> None:
    # 2^3 cube inside a 4^3 cube: 2 * 8 / (8 + 64).
    inner = _cube((6, 6, 6), (1, 1, 1), (2, 2, 2))
    outer = _cube((6, 6, 6), (0, 0, 0), (4, 4, 4))
    assert dice(inner, outer) == pytest.approx(16 / 72)
    assert dice(outer, inner) == pytest.approx(16 / 72)


def test_identical_masks() -> None:
    a = _cube((8, 8, 8), (2, 1, 3), (3, 4, 2))
    assert dice(a, a) == 1.0
    assert avd(a, a) == 0.0


def test_disjoint_masks_have_zero_dice() -> None:
    a = _cube((8, 8, 8), (0, 0, 0), (2, 2, 2))
    b = _cube((8, 8, 8), (5, 5, 5), (2, 2, 2))
    assert dice(a, b) == 0.0


def test_dice_empty_conventions() -> None:
    empty = np.zeros((5, 5, 5), dtype=bool)
    full = _cube((5, 5, 5), (1, 1, 1), (2, 2, 2))
    assert dice(empty, empty) == 1.0
    assert dice(full, empty) == 0.0
    assert dice(empty, full) == 0.0


def test_non_boolean_input_is_binarised() -> None:
    a = np.zeros((4, 4), dtype=np.int16)
    a[:2] = 3
    b = np.zeros((4, 4), dtype=np.float32)
    b[:1] = 0.5
    # |A| = 8, |B| = 4, overlap 4
    assert dice(a, b) == pytest.approx(8 / 12)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="same shape"):
        dice(np.zeros((3, 3), bool), np.zeros((3, 4), bool))
    with pytest.raises(ValueError, match="same shape"):
        avd(np.zeros((3, 3), bool), np.zeros((3, 4), bool))


def test_avd_known_values() -> None:
    ref = np.zeros(200, dtype=bool)
    ref[:100] = True
    under = np.zeros(200, dtype=bool)
    under[:80] = True
    over = np.zeros(200, dtype=bool)
    over[50:180] = True  # 130 voxels, position does not matter
    assert avd(under, ref) == pytest.approx(20.0)
    assert avd(over, ref) == pytest.approx(30.0)
    assert avd(np.zeros(200, bool), ref) == pytest.approx(100.0)
    # not symmetric: the reference volume is the denominator
    assert avd(ref, under) == pytest.approx(25.0)


def test_avd_empty_reference_conventions() -> None:
    empty = np.zeros((4, 4, 4), dtype=bool)
    some = _cube((4, 4, 4), (0, 0, 0), (1, 1, 1))
    assert avd(empty, empty) == 0.0
    assert math.isnan(avd(some, empty))


def test_volume_ml() -> None:
    mask = _cube((12, 12, 12), (0, 0, 0), (10, 10, 10))  # 1000 voxels
    assert volume_ml(mask, (1.0, 1.0, 1.0)) == pytest.approx(1.0)
    assert volume_ml(mask, (2.0, 1.5, 1.0)) == pytest.approx(3.0)
    assert volume_ml(mask, 0.5) == pytest.approx(0.125)  # isotropic scalar
    assert volume_ml(np.zeros((3, 3, 3), bool), (1, 1, 1)) == 0.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -1.0, 1.0), (1.0, float("nan"), 1.0)])
def test_volume_ml_rejects_bad_spacing(spacing: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="spacing"):
        volume_ml(np.ones((2, 2, 2), bool), spacing)


def test_dice_matches_monai_on_random_case() -> None:
    rng = np.random.default_rng(7)
    shape = (24, 20, 16)
    labels = np.argmax(ndimage.gaussian_filter(rng.standard_normal((4, *shape)), (0, 2, 2, 2)), axis=0)
    pred = np.argmax(ndimage.gaussian_filter(rng.standard_normal((4, *shape)), (0, 2, 2, 2)), axis=0)
    pred = np.where(rng.random(shape) < 0.8, labels, pred)  # correlated with the reference
    one_hot_pred = torch.nn.functional.one_hot(torch.as_tensor(pred), 4).permute(3, 0, 1, 2)[None].float()
    one_hot_ref = torch.nn.functional.one_hot(torch.as_tensor(labels), 4).permute(3, 0, 1, 2)[None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = compute_dice(one_hot_pred, one_hot_ref, include_background=True)[0].numpy()
    ours = [dice(pred == c, labels == c) for c in range(4)]
    assert 0.3 < min(ours) < max(ours) < 1.0  # a non-trivial case
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
