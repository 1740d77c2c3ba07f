"""Tests of brainbundles.transforms.grids: channels on different voxel grids (a thick-slice FLAIR with a
1 mm T1), each resampled once in world coordinates onto the working grid of the first channel."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, LoadImaged, Orientationd, Spacingd

from brainbundles.transforms.grids import DeferOtherGridsd, ResampleDeferredd

# the reference: a thick-slice FLAIR, 0.9 x 0.9 x 4.5 mm, in LPS voxel order
FLAIR_SHAPE = (60, 70, 12)
FLAIR_AFFINE = np.array(
    [
        [-0.9, 0.0, 0.0, 26.55],  # x from 26.55 down to -26.55 mm
        [0.0, -0.9, 0.0, 31.05],  # y from 31.05 down to -31.05 mm
        [0.0, 0.0, 4.5, -24.75],  # z from -24.75 up to 24.75 mm
        [0.0, 0.0, 0.0, 1.0],
    ]
)
# a 1 mm RAS T1 of another shape and field of view (it misses a few mm of the FLAIR's, left and back)
T1_SHAPE = (50, 64, 56)
T1_AFFINE = np.array(
    [
        [1.0, 0.0, 0.0, -24.0],  # x -24 .. 25
        [0.0, 1.0, 0.0, -30.0],  # y -30 .. 33
        [0.0, 0.0, 1.0, -26.0],  # z -26 .. 29
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def f_flair(x, y, z):
    return 50.0 + 10.0 * np.cos(x / 18.0) + 8.0 * np.sin(y / 16.0) + z / 4.0


def f_t1(x, y, z):
    return 100.0 + 20.0 * np.sin(x / 15.0) + 15.0 * np.cos(y / 20.0) + 10.0 * np.sin(z / 12.0 + 0.3)


def f_t2(x, y, z):
    return 300.0 - 12.0 * np.sin(x / 13.0 + 1.0) - 0.3 * y + 0.4 * z  # linear in z: the FLAIR grid slices it


def world(shape, affine) -> np.ndarray:
    """World (mm) coordinates of a grid's voxel centres, (3, *shape)."""
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")).astype(np.float64)
    return np.einsum("ab,b...->a...", affine[:3, :3], ijk) + affine[:3, 3].reshape(3, 1, 1, 1)


def write(path: Path, fn, shape, affine) -> str:
    data = fn(*world(shape, affine)).astype(np.float32)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return str(path)


def pipeline() -> Compose:
    return Compose(
        [
            DeferOtherGridsd(keys="image"),
            LoadImaged(keys="image", ensure_channel_first=True, image_only=True),
            Orientationd(keys="image", axcodes="RAS"),
            Spacingd(keys="image", pixdim=(1.0, 1.0, 1.0), mode="bilinear"),
            ResampleDeferredd(keys="image"),
        ]
    )


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    return {
        "flair": write(tmp_path / "c" / "FLAIR.nii.gz", f_flair, FLAIR_SHAPE, FLAIR_AFFINE),
        "t1": write(tmp_path / "c" / "T1.nii.gz", f_t1, T1_SHAPE, T1_AFFINE),
        "t2": write(tmp_path / "c" / "T2.nii.gz", f_t2, FLAIR_SHAPE, FLAIR_AFFINE),  # on the FLAIR's grid
    }


def _inside(points: np.ndarray, shape, affine, margin: float) -> np.ndarray:
    """Which world points lie inside the box of the grid's voxel centres, shrunk by ``margin`` voxels
    (grown when negative)."""
    ijk = np.einsum("ab,b...->a...", np.linalg.inv(affine)[:3, :3], points)
    ijk += np.linalg.inv(affine)[:3, 3].reshape(3, 1, 1, 1)
    return np.all([(ijk[a] >= margin) & (ijk[a] <= shape[a] - 1 - margin) for a in range(3)], axis=0)


def _check_channel(img: MetaTensor, c: int, fn, shape, affine, tol: float, partial: bool = True) -> None:
    """Channel ``c`` of ``img`` is ``fn`` of world coordinates where the grid ``shape``, ``affine`` covers
    the working grid, 0 where it does not (``partial``: the working grid reaches beyond it)."""
    pts = world(tuple(img.shape[1:]), img.affine.numpy().astype(np.float64))
    covered = _inside(pts, shape, affine, 0.01)
    outside = ~_inside(pts, shape, affine, -1.01)
    assert covered.mean() > 0.7 and outside.any() == partial
    got = img.as_tensor()[c].numpy()
    err = np.abs(got - fn(*pts))[covered]
    assert err.max() < tol, (c, err.max())
    assert np.all(got[outside] == 0), c  # zeros outside the channel's own field of view


# ---------------------------------------------------------------------------------------- two grids


def test_other_grid_channel_is_resampled_in_world_coordinates(files):
    d = pipeline()({"image": [files["flair"], files["t1"]], "case": "c"})
    assert set(d) == {"image", "case"}  # the deferred key is consumed
    img = d["image"]
    assert isinstance(img, MetaTensor) and img.shape[0] == 2 and img.dtype == torch.float32
    # the working grid: the FLAIR's field of view, 1 mm, RAS
    assert nib.aff2axcodes(img.affine.numpy()) == ("R", "A", "S")
    np.testing.assert_allclose(np.linalg.norm(img.affine.numpy()[:3, :3], axis=0), 1.0, atol=1e-6)
    # T1: straight from its 1 mm file (no detour through the FLAIR's 4.5 mm slices)
    _check_channel(img, 1, f_t1, T1_SHAPE, T1_AFFINE, tol=0.1)
    # FLAIR: interpolated from its thick slices (linear in z, so still accurate)
    _check_channel(img, 0, f_flair, FLAIR_SHAPE, FLAIR_AFFINE, tol=0.1, partial=False)


def test_keeps_the_reference_meta_and_history(files):
    d = pipeline()({"image": [files["flair"], files["t1"]]})
    img = d["image"]
    assert Path(img.meta["filename_or_obj"]) == Path(files["flair"])
    ops = [op["class"] for op in img.applied_operations]
    assert ops == ["Orientation", "SpatialResample"], ops  # Orientationd, Spacingd
    # the same history as the reference loaded alone
    alone = pipeline()({"image": [files["flair"]]})["image"]
    assert [op["class"] for op in alone.applied_operations] == ops
    assert torch.allclose(img.affine, alone.affine)
    assert torch.equal(img.as_tensor()[0], alone.as_tensor()[0])


def test_invertd_returns_a_prediction_to_the_flair_grid(files):
    transform = pipeline()
    d = transform({"image": [files["flair"], files["t1"]]})
    img = d["image"]
    # a "prediction" made from the image: two class channels, one of them the FLAIR channel itself
    d["pred"] = MetaTensor(torch.stack([img.as_tensor()[0], -img.as_tensor()[0]]))  # as decollated
    out = Invertd(keys="pred", transform=transform, orig_keys="image", nearest_interp=False)(d)["pred"]
    assert tuple(out.shape) == (2, *FLAIR_SHAPE)
    np.testing.assert_allclose(out.affine.numpy(), FLAIR_AFFINE, atol=1e-4)
    assert nib.aff2axcodes(out.affine.numpy()) == ("L", "P", "S")
    # and back on the native grid the FLAIR channel is the FLAIR (inside, away from the borders)
    native = f_flair(*world(FLAIR_SHAPE, FLAIR_AFFINE))
    inner = (slice(2, -2), slice(2, -2), slice(1, -1))
    np.testing.assert_allclose(out.as_tensor()[0].numpy()[inner], native[inner], atol=0.1)


@pytest.mark.parametrize("order", [("flair", "t1", "t2"), ("flair", "t2", "t1")])
def test_channel_order_is_kept_with_three_channels(files, order):
    """The deferred channel need not be the last: every channel ends up at its own index."""
    fns = {"flair": f_flair, "t1": f_t1, "t2": f_t2}
    grids = {
        "flair": (FLAIR_SHAPE, FLAIR_AFFINE),
        "t1": (T1_SHAPE, T1_AFFINE),
        "t2": (FLAIR_SHAPE, FLAIR_AFFINE),
    }
    deferred = DeferOtherGridsd(keys="image")({"image": [files[k] for k in order]})
    assert deferred["image"] == [files["flair"]]
    assert deferred["deferred_image"] == [(1, files[order[1]]), (2, files[order[2]])]
    img = pipeline()({"image": [files[k] for k in order]})["image"]
    assert img.shape[0] == 3
    for c, name in enumerate(order):
        _check_channel(img, c, fns[name], *grids[name], tol=0.1, partial=name == "t1")


# ---------------------------------------------------------------------------------------- one grid


def test_one_grid_passes_through_unchanged(files):
    item = {"image": [files["flair"], files["t2"]], "label": "seg.nii.gz"}
    out = DeferOtherGridsd(keys="image")(item)
    assert out == item and "deferred_image" not in out
    for single in (files["flair"], Path(files["flair"]), [files["flair"]]):
        out = DeferOtherGridsd(keys="image")({"image": single})
        assert out == {"image": single}
    # and then the bundle pipeline is LoadImaged as before: the two channels stacked
    img = pipeline()({"image": [files["flair"], files["t2"]]})["image"]
    plain = Compose(pipeline().transforms[1:4])({"image": [files["flair"], files["t2"]]})["image"]
    assert torch.equal(img.as_tensor(), plain.as_tensor())
    assert [op["class"] for op in img.applied_operations] == [op["class"] for op in plain.applied_operations]


def test_grid_difference_below_tolerance_is_the_same_grid(tmp_path, files):
    nudged = FLAIR_AFFINE.copy()
    nudged[0, 3] += 5e-4  # under the 1e-3 mm tolerance
    near = write(tmp_path / "near.nii.gz", f_t2, FLAIR_SHAPE, nudged)
    assert "deferred_image" not in DeferOtherGridsd()({"image": [files["flair"], near]})
    moved = FLAIR_AFFINE.copy()
    moved[0, 3] += 0.5  # same shape, shifted half a mm
    far = write(tmp_path / "far.nii.gz", f_t2, FLAIR_SHAPE, moved)
    d = DeferOtherGridsd(prefix="other_")({"image": [files["flair"], far]})
    assert d["image"] == [files["flair"]] and d["other_image"] == [(1, far)]


def test_deferred_key_is_not_taken_for_monai_metadata(files):
    """MONAI's Spacingd takes every ``image_*`` entry for a metadata dict of ``image`` (and calls ``.update``
    on it): the deferred channels must live under another name (regression: ``image_deferred`` crashed
    the documented pipeline with an AttributeError)."""
    d = DeferOtherGridsd()({"image": [files["flair"], files["t1"]], "case": "c"})
    assert d == {"image": [files["flair"]], "deferred_image": [(1, files["t1"])], "case": "c"}
    assert not any(str(k).startswith("image_") for k in d)


def test_resample_deferred_without_deferred_channels_is_a_no_op():
    img = MetaTensor(torch.rand(1, 4, 4, 4))
    d = ResampleDeferredd()({"image": img})
    assert d["image"] is img
    d = ResampleDeferredd()({"image": img, "deferred_image": []})
    assert d["image"] is img and "deferred_image" not in d


def test_resample_deferred_needs_a_metatensor(files):
    with pytest.raises(TypeError, match="MetaTensor"):
        ResampleDeferredd()({"image": torch.rand(1, 4, 4, 4), "deferred_image": [(1, files["t1"])]})
