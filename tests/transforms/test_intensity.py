"""Tests of brainbundles.transforms.intensity: Nyúl & Udupa histogram standardisation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from brainbundles.transforms import intensity
from brainbundles.transforms.intensity import (
    DEFAULT_PERCENTILES,
    STANDARD_RANGE,
    NyulStandardize,
    NyulStandardized,
    ensure_nyul_landmarks,
    fit_nyul_landmarks,
    image_landmarks,
    load_landmarks,
    save_landmarks,
)

SHAPE = (16, 16, 16)


def _mask() -> np.ndarray:
    m = np.zeros(SHAPE, dtype=bool)
    m[3:13, 2:14, 4:12] = True
    return m


def _brain(seed: int, kind: int = 0) -> np.ndarray:
    """A skull-stripped-looking image: positive intensities inside a box 'brain', exact zeros outside."""
    rng = np.random.default_rng(seed)
    if kind == 0:
        v = rng.gamma(3.0, 20.0, SHAPE) + 1.0
    elif kind == 1:
        v = np.exp(rng.normal(3.0, 0.5, SHAPE)) + 1.0
    else:  # three "tissue classes" with noise
        v = rng.choice([30.0, 80.0, 120.0], SHAPE) + rng.normal(0.0, 8.0, SHAPE) + 100.0
    return np.where(_mask(), v, 0.0).astype(np.float32)


def _save_nii(path: Path, data: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return str(path)


@pytest.fixture
def trained(tmp_path):
    """Three differently distributed training images (as NIfTI files), their learned landmarks on disk."""
    images = [_brain(seed, kind=seed) for seed in range(3)]
    files = [_save_nii(tmp_path / f"train{i}.nii.gz", im) for i, im in enumerate(images)]
    landmarks = fit_nyul_landmarks(files)
    path = save_landmarks(landmarks, tmp_path / "models" / "nyul_landmarks.json")
    return images, landmarks, path


# ------------------------------------------------------------------------------- learning the landmarks


def test_fit_landmarks_hand_computed_for_linear_ramps():
    # brain values 1..1001 (one each): np.percentile(p) = 1 + 10 p exactly, so the landmarks mapped onto
    # [s1, s2] are s1 + (p - 1) / 98 * (s2 - s1) whatever the scale; an image 3x + 5 gives the same
    ramp = np.concatenate([np.zeros(50), np.arange(1.0, 1002.0)])
    lm = fit_nyul_landmarks([ramp, 3.0 * np.where(ramp != 0, ramp, 0) + 5.0 * (ramp != 0)])
    p = np.asarray(DEFAULT_PERCENTILES, dtype=float)
    assert lm["percentiles"] == list(p)
    s1, s2 = STANDARD_RANGE
    np.testing.assert_allclose(lm["landmarks"], s1 + (p - 1.0) / 98.0 * (s2 - s1), atol=1e-9)
    np.testing.assert_allclose(image_landmarks(ramp), 1.0 + 10.0 * p, atol=1e-9)  # zeros ignored


def test_fit_landmarks_averages_mapped_landmarks(trained):
    images, landmarks, _ = trained
    mapped = []
    for im in images:
        lm = np.percentile(im[im != 0].astype(np.float64), DEFAULT_PERCENTILES)
        s1, s2 = STANDARD_RANGE
        mapped.append(s1 + (lm - lm[0]) / (lm[-1] - lm[0]) * (s2 - s1))
    np.testing.assert_allclose(landmarks["landmarks"], np.mean(mapped, axis=0), atol=1e-9)
    assert landmarks["landmarks"][0] == pytest.approx(STANDARD_RANGE[0])
    assert landmarks["landmarks"][-1] == pytest.approx(STANDARD_RANGE[1])


def test_save_load_roundtrip_leaves_no_temp_file(tmp_path, trained):
    _, landmarks, path = trained
    assert load_landmarks(path) == json.loads(json.dumps(landmarks))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


# ------------------------------------------------------------------------------------- standardisation


def test_standardised_training_images_land_on_learned_landmarks(trained):
    images, landmarks, path = trained
    t = NyulStandardize(path)
    for im in images:
        out = t(im[None])[0]
        np.testing.assert_allclose(image_landmarks(out), landmarks["landmarks"], atol=0.05)


def test_affine_intensity_change_maps_to_same_values(trained):
    _, _, path = trained
    x = _brain(11, kind=0)
    brain = x != 0
    y = np.where(brain, 2.5 * x - 7.0, 0.0).astype(np.float32)  # a*x + b inside the brain, zero outside
    assert np.all(y[brain] > 0)
    t = NyulStandardize(path)
    sx, sy = t(x[None]), t(y[None])
    assert not np.allclose(x, y)
    np.testing.assert_allclose(sx, sy, atol=1e-3)
    # and the result is really on the standard scale, not the input scale
    assert 0.0 < np.median(sx[0][brain]) < 100.0


def test_background_stays_exactly_zero_and_brain_nonzero(trained):
    _, _, path = trained
    x = _brain(5, kind=2)
    out = NyulStandardize(path)(x[None])[0]
    assert np.all(out[~_mask()] == 0.0)
    assert np.count_nonzero(out[_mask()]) == _mask().sum()


def test_output_is_monotonic_in_the_input_including_extrapolation(trained):
    _, landmarks, path = trained
    rng = np.random.default_rng(3)
    x = np.zeros(SHAPE, dtype=np.float64)
    # a heavy-tailed brain so that many voxels lie below the 1st and above the 99th percentile
    x[_mask()] = np.exp(rng.normal(4.0, 1.0, int(_mask().sum())))
    out = NyulStandardize(path)(x[None])[0]
    vals, mapped = x[_mask()], out[_mask()]
    order = np.argsort(vals, kind="stable")
    assert np.all(np.diff(mapped[order]) >= 0)
    # strictly increasing where the input strictly increases
    inc = np.diff(vals[order]) > 0
    assert np.all(np.diff(mapped[order])[inc] > 0)
    # the tails are extended beyond the standard range, not clipped to it
    lo, hi = landmarks["landmarks"][0], landmarks["landmarks"][-1]
    assert mapped.min() < lo and mapped.max() > hi


def test_tied_end_landmarks_do_not_blow_up_extrapolation(trained):
    _, landmarks, path = trained
    rng = np.random.default_rng(0)
    n = int(_mask().sum())
    # 15 % of the brain at exactly 20 (so the 1st and 10th percentiles are both 20), 0.5 % just below
    n_plateau, n_below = int(0.15 * n), int(0.005 * n)
    vals = np.concatenate(
        [np.full(n_plateau, 20.0), np.full(n_below, 19.0), rng.integers(21, 200, n - n_plateau - n_below)]
    )
    x = np.zeros(SHAPE, dtype=np.float32)
    x[_mask()] = rng.permutation(vals)
    lm = image_landmarks(x)
    assert lm[0] == lm[1] == 20.0
    out = NyulStandardize(path)(x[None])[0]
    below = out[x == 19.0]
    # one intensity unit below the first landmark should stay near the bottom of the standard scale
    lo, hi = landmarks["landmarks"][0], landmarks["landmarks"][-1]
    assert np.all(below < lo) and np.all(below > lo - 0.1 * (hi - lo)), below[:3]


def test_brain_voxels_at_first_landmark_stay_nonzero(trained):
    _, _, path = trained
    x = np.zeros(SHAPE, dtype=np.float32)  # integer values, as loaded from an int16 scan
    x[_mask()] = np.random.default_rng(1).integers(10, 60, int(_mask().sum()))
    p1 = image_landmarks(x)[0]
    assert p1 == np.rint(p1) and np.count_nonzero(x == p1) > 0
    out = NyulStandardize(path)(x[None])[0]
    assert np.count_nonzero(out[_mask()] == 0) == 0, "brain voxels turned into background"


@pytest.mark.parametrize("as_tensor", [False, True])
def test_integer_input_is_not_truncated(trained, as_tensor):
    _, _, path = trained
    x = np.rint(_brain(4)).astype(np.int16)[None]
    out = NyulStandardize(path)(torch.as_tensor(x) if as_tensor else x)
    out = out.numpy() if as_tensor else out
    np.testing.assert_allclose(out, NyulStandardize(path)(x.astype(np.float32)), atol=1e-4)


def test_numpy_and_torch_give_same_result_types_kept_input_untouched(trained):
    _, _, path = trained
    x = _brain(7)[None]
    x_copy = x.copy()
    t = NyulStandardize(path)
    out_np = t(x)
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32 and out_np.shape == x.shape
    xt = torch.as_tensor(x)
    out_t = t(xt)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32 and out_t.shape == xt.shape
    np.testing.assert_allclose(out_t.numpy(), out_np, atol=1e-6)
    np.testing.assert_array_equal(x, x_copy)  # not modified in place
    np.testing.assert_array_equal(xt.numpy(), x_copy)
    assert not np.allclose(out_np, x)


def test_two_channels_are_standardised_independently(trained):
    _, _, path = trained
    a, b = _brain(1, kind=0), _brain(2, kind=1)
    b[:, :, 4:6] = 0  # a different brain mask in channel 1
    t = NyulStandardize(path)
    both = t(np.stack([a, b]))
    assert both.shape == (2,) + SHAPE
    np.testing.assert_allclose(both[0], t(a[None])[0], atol=1e-6)
    np.testing.assert_allclose(both[1], t(b[None])[0], atol=1e-6)
    assert np.all(both[1][b == 0] == 0) and np.all(both[1][b != 0] != 0)
    # channel 1 an affine change of channel 0: both channels end up the same (each on its own landmarks)
    two = torch.as_tensor(np.stack([a, np.where(a != 0, 0.5 * a + 30.0, 0.0).astype(np.float32)]))
    out = t(two)
    torch.testing.assert_close(out[0], out[1], atol=1e-3, rtol=0)


def test_dictionary_version_keeps_metatensor_and_meta(trained):
    _, _, path = trained
    x = _brain(9)[None]
    affine = torch.diag(torch.tensor([2.0, 1.5, 1.0, 1.0], dtype=torch.float64))
    mt = MetaTensor(torch.as_tensor(x), affine=affine)
    d = NyulStandardized(keys="image", landmarks_file=path)({"image": mt, "other": 1})
    assert isinstance(d["image"], MetaTensor)
    torch.testing.assert_close(d["image"].affine, affine)
    np.testing.assert_allclose(d["image"].numpy(), NyulStandardize(path)(x), atol=1e-6)
    assert d["other"] == 1


# ------------------------------------------------------------------------------------------ disabled


def test_disabled_returns_input_unchanged_and_reads_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("landmarks must not be read when disabled")

    monkeypatch.setattr(intensity, "load_landmarks", boom)
    missing = tmp_path / "does_not_exist.json"
    x = _brain(0)[None]
    t = NyulStandardize(missing, enabled=False)
    assert t(x) is x
    xt = torch.as_tensor(x)
    assert t(xt) is xt
    d = NyulStandardized("image", missing, enabled=False)({"image": xt})
    assert d["image"] is xt
    assert NyulStandardize(None, enabled=False)(x) is x
    assert not missing.exists()


# --------------------------------------------------------------------------------------- bad files


def test_missing_landmarks_file_raises_file_not_found_naming_path(tmp_path):
    missing = tmp_path / "models" / "nyul_landmarks.json"
    with pytest.raises(FileNotFoundError, match="nyul_landmarks.json") as info:
        NyulStandardize(missing)(_brain(0)[None])
    assert str(missing) in str(info.value)
    with pytest.raises(FileNotFoundError) as info:
        load_landmarks(missing)
    assert str(missing) in str(info.value)


def test_no_landmarks_file_given_when_enabled_raises():
    with pytest.raises(ValueError, match="landmarks_file"):
        NyulStandardize(None)(_brain(0)[None])


@pytest.mark.parametrize(
    "content",
    [
        {"percentiles": [1, 50, 99], "landmarks": [0.0, 60.0, 50.0]},  # decreasing
        {"percentiles": [1, 50, 99], "landmarks": [0.0, 50.0, 50.0]},  # not strictly increasing
        {"percentiles": [1, 50, 99], "landmarks": [0.0, 100.0]},  # lengths differ
        {"percentiles": [1, 50, 99]},  # landmarks missing
    ],
)
def test_corrupt_landmarks_file_raises_value_error_naming_path(tmp_path, content):
    path = tmp_path / "nyul_landmarks.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError) as info:
        load_landmarks(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError) as info:
        NyulStandardize(path)(_brain(0)[None])
    assert str(path) in str(info.value)


def test_truncated_landmarks_file_raises_value_error_naming_path(tmp_path):
    path = tmp_path / "nyul_landmarks.json"
    path.write_text('{"percentiles": [1, 50, 99], "landmarks": [0.0, 5')  # an interrupted write
    with pytest.raises(ValueError) as info:
        load_landmarks(path)
    assert str(path) in str(info.value)


# -------------------------------------------------------------------------------- ensure_nyul_landmarks


def test_ensure_landmarks_creates_once_and_never_overwrites(tmp_path):
    files = [_save_nii(tmp_path / f"t1_{i}.nii.gz", _brain(i, kind=i)) for i in range(3)]
    items = [{"image": [f], "label": "unused"} for f in files]
    path = tmp_path / "models" / "nyul_landmarks.json"

    assert ensure_nyul_landmarks(path, items) == path
    assert path.is_file()
    first = path.read_text()
    assert json.loads(first) == json.loads(json.dumps(fit_nyul_landmarks(files)))

    # make any rewrite visible through the mtime as well as the inode and the content
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = os.stat(path)
    other = [{"image": [_save_nii(tmp_path / "other.nii.gz", _brain(42, kind=1) ** 2)]}]
    assert ensure_nyul_landmarks(path, other) == path
    # items that cannot be read at all: an existing file means they are not even looked at
    assert ensure_nyul_landmarks(path, [{"image": [str(tmp_path / "missing.nii.gz")]}]) == path
    after = os.stat(path)
    assert after.st_mtime_ns == before.st_mtime_ns == 1_000_000_000
    assert after.st_ino == before.st_ino
    assert path.read_text() == first
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left


def test_ensure_landmarks_disabled_writes_nothing(tmp_path):
    path = tmp_path / "models" / "nyul_landmarks.json"
    assert ensure_nyul_landmarks(path, [{"image": [str(tmp_path / "missing.nii.gz")]}], enabled=False) is None
    assert not path.exists()


def test_ensure_landmarks_uses_requested_channel_of_multichannel_items(tmp_path):
    items = []
    for i in range(2):
        t1 = _save_nii(tmp_path / f"c{i}_T1.nii.gz", _brain(i, kind=0))
        fl = _save_nii(tmp_path / f"c{i}_FLAIR.nii.gz", _brain(10 + i, kind=2))
        items.append({"image": [t1, fl]})
    path = ensure_nyul_landmarks(tmp_path / "lm.json", items, channel=1)
    expected = fit_nyul_landmarks([it["image"][1] for it in items])
    np.testing.assert_allclose(json.loads(path.read_text())["landmarks"], expected["landmarks"])
    wrong = fit_nyul_landmarks([it["image"][0] for it in items])
    assert not np.allclose(expected["landmarks"], wrong["landmarks"], atol=0.1)


def test_ensure_landmarks_rejects_existing_corrupt_file(tmp_path):
    path = tmp_path / "lm.json"
    path.write_text(json.dumps({"percentiles": [1, 50, 99], "landmarks": [3.0, 2.0, 1.0]}))
    with pytest.raises(ValueError) as info:
        ensure_nyul_landmarks(path, [{"image": [str(tmp_path / "missing.nii.gz")]}])
    assert str(path) in str(info.value)
