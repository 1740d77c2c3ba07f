"""Input checks for channels on different voxel grids (``same_grid=False``: a thick-slice FLAIR with a 1 mm
T1): each other channel must cover most of the first channel's field of view; the label stays on the
first channel's grid."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbundles.data.checks import MIN_GRID_OVERLAP, CaseList, check_case
from brainbundles.errors import InputError

# the reference FLAIR: 0.9 x 0.9 x 4.5 mm, LPS voxel order; voxel centres x 9..-9, y 10.8..-10.8, z -9..9 mm
FLAIR_SHAPE = (21, 25, 5)
FLAIR_AFFINE = np.array(
    [[-0.9, 0.0, 0.0, 9.0], [0.0, -0.9, 0.0, 10.8], [0.0, 0.0, 4.5, -9.0], [0.0, 0.0, 0.0, 1.0]]
)
# its field of view (the box of its voxel centres) is 18 x 21.6 x 18 mm


def t1_affine(x0=-10.0, y0=-12.0, z0=-10.0) -> np.ndarray:
    """A 1 mm RAS grid starting at (x0, y0, z0)."""
    aff = np.eye(4)
    aff[:3, 3] = [x0, y0, z0]
    return aff


T1_SHAPE = (21, 25, 21)  # from the default origin: x -10..10, y -12..12, z -10..10 mm: covers the FLAIR


def _vol(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1, 100, size=shape).astype(np.float32)


def save(path: Path, data: np.ndarray, affine: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def _label(shape) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[2:4, 2:4, 1:3] = 1
    lab[6, 6, 2] = 2
    return lab


@pytest.fixture
def case(tmp_path) -> dict[str, str]:
    return {
        "flair": save(tmp_path / "c" / "pre" / "FLAIR.nii.gz", _vol(FLAIR_SHAPE), FLAIR_AFFINE),
        "t1": save(tmp_path / "c" / "pre" / "T1.nii.gz", _vol(T1_SHAPE, 1), t1_affine()),
        "label": save(tmp_path / "c" / "wmh.nii.gz", _label(FLAIR_SHAPE), FLAIR_AFFINE),
    }


def raises(item, channels, path, *fragments, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        check_case(item, channels, **kwargs)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    for f in fragments:
        assert f.lower() in msg.lower(), f"{f!r} not in {msg!r}"
    return msg


# ------------------------------------------------------------------------------------------ other grids


def test_other_grid_fails_by_default_and_passes_with_same_grid_false(case):
    item = {"image": [case["flair"], case["t1"]], "label": case["label"]}
    raises(item, ["FLAIR", "T1"], case["t1"], "shape", "T1", case["flair"], "same voxel grid")
    check_case(item, ["FLAIR", "T1"], label_values={0, 1, 2}, require_label=True, same_grid=False)


def test_same_shape_other_affine(tmp_path, case):
    moved = FLAIR_AFFINE.copy()
    moved[:3, 3] += [0.5, -0.5, 1.0]  # same shape, shifted: most of the field of view still shared
    other = save(tmp_path / "T2.nii.gz", _vol(FLAIR_SHAPE, 2), moved)
    item = {"image": [case["flair"], other]}
    raises(item, ["FLAIR", "T2"], other, "affine", case["flair"])
    check_case(item, ["FLAIR", "T2"], same_grid=False)


def test_channel_covering_too_little_of_the_reference_fails(tmp_path, case):
    assert MIN_GRID_OVERLAP == 0.5
    # x 3.6..23.6 mm: covers (9 - 3.6) / 18 = 30% of the FLAIR's field of view (x -9..9 mm)
    far = save(tmp_path / "far_T1.nii.gz", _vol(T1_SHAPE, 3), t1_affine(x0=3.6))
    item = {"image": [case["flair"], far], "label": case["label"]}
    msg = raises(
        item, ["FLAIR", "T1"], far, "covers only 30%", case["flair"], "field of view", same_grid=False
    )
    assert "T1" in msg and "FLAIR" in msg
    # a scan of somewhere else entirely: 0%
    away = save(tmp_path / "away_T1.nii.gz", _vol(T1_SHAPE, 3), t1_affine(x0=200.0))
    raises({"image": [case["flair"], away]}, ["FLAIR", "T1"], away, "covers only 0%", same_grid=False)


@pytest.mark.parametrize("x0, ok", [(-2.0, True), (0.0, True), (0.1, False), (8.0, False)])
def test_overlap_threshold(tmp_path, case, x0, ok):
    """The T1 (x ``x0``..``x0`` + 20 mm) covers (9 - x0) / 18 of the FLAIR's x extent (-9..9 mm) and all of
    its y and z: 61%, 50% (enough), 49.4%, 5.6%."""
    t1 = save(tmp_path / f"T1_{x0}.nii.gz", _vol(T1_SHAPE, 4), t1_affine(x0=x0))
    item = {"image": [case["flair"], t1]}
    if ok:
        check_case(item, ["FLAIR", "T1"], same_grid=False)
    else:
        raises(item, ["FLAIR", "T1"], t1, f"covers only {(9 - x0) / 18:.0%}", same_grid=False)


def test_three_channels_each_checked_against_the_first(tmp_path, case):
    t2 = save(tmp_path / "T2.nii.gz", _vol(FLAIR_SHAPE, 5), FLAIR_AFFINE)  # on the FLAIR grid
    far = save(tmp_path / "far.nii.gz", _vol(T1_SHAPE, 6), t1_affine(y0=10.0))  # misses most of it
    check_case({"image": [case["flair"], case["t1"], t2]}, ["FLAIR", "T1", "T2"], same_grid=False)
    raises({"image": [case["flair"], t2, far]}, ["FLAIR", "T2", "T1"], far, "covers only", same_grid=False)


def test_voxel_checks_still_apply_to_other_grid_channels(tmp_path, case):
    flat = save(tmp_path / "flat_T1.nii.gz", np.zeros(T1_SHAPE, np.float32), t1_affine())
    raises({"image": [case["flair"], flat]}, ["FLAIR", "T1"], flat, "all zero", same_grid=False)
    bad = _vol(T1_SHAPE, 7)
    bad[3, 3, 3] = np.nan
    nan = save(tmp_path / "nan_T1.nii.gz", bad, t1_affine())
    raises({"image": [case["flair"], nan]}, ["FLAIR", "T1"], nan, "NaN", same_grid=False)
    four = save(tmp_path / "four_T1.nii.gz", _vol((*T1_SHAPE, 2)), t1_affine())
    raises({"image": [case["flair"], four]}, ["FLAIR", "T1"], four, "4D", same_grid=False)


# ------------------------------------------------------------------------------------------------ label


def test_label_must_be_on_the_first_channels_grid(tmp_path, case):
    on_t1 = save(tmp_path / "wmh_t1.nii.gz", _label(T1_SHAPE), t1_affine())
    item = {"image": [case["flair"], case["t1"]], "label": on_t1}
    raises(item, ["FLAIR", "T1"], on_t1, "label shape", case["flair"], same_grid=False)
    moved = FLAIR_AFFINE.copy()
    moved[0, 3] += 1.0
    shifted = save(tmp_path / "wmh_shifted.nii.gz", _label(FLAIR_SHAPE), moved)
    item = {"image": [case["flair"], case["t1"]], "label": shifted}
    raises(item, ["FLAIR", "T1"], shifted, "label affine", case["flair"], same_grid=False)
    # the reference is the first channel, whatever its name
    item = {"image": [case["t1"], case["flair"]], "label": case["label"]}
    raises(item, ["T1", "FLAIR"], case["label"], "label shape", case["t1"], same_grid=False)


# --------------------------------------------------------------------------------------------- CaseList


def test_case_list_same_grid_false(tmp_path, case, caplog):
    far = save(tmp_path / "far_T1.nii.gz", _vol(T1_SHAPE, 3), t1_affine(x0=3.6))
    items = [
        {"image": [case["flair"], case["t1"]], "label": case["label"], "case": "good"},
        {"image": [case["flair"], far], "case": "far"},
    ]
    with caplog.at_level(logging.ERROR, logger="brainbundles"):
        strict = CaseList(items, ["FLAIR", "T1"], label_values={0, 1, 2})
    assert strict.valid == [] and len(strict.errors) == 2
    cases = CaseList(items, ["FLAIR", "T1"], label_values={0, 1, 2}, same_grid=False)
    assert [it["case"] for it in cases] == ["good"]
    assert cases.valid[0]["image"] == [case["flair"], case["t1"]] and cases.valid[0]["label"] == case["label"]
    assert len(cases.errors) == 1 and cases.errors[0][1].startswith(f"{far}: ")
    with pytest.raises(InputError, match="1 of 2 input cases failed"):
        cases.raise_if_invalid()


def test_case_list_relative_paths_other_grids(tmp_path, case):
    base = tmp_path / "c"
    item = {"image": ["pre/FLAIR.nii.gz", "pre/T1.nii.gz"], "label": "wmh.nii.gz"}
    cases = CaseList([item], ["FLAIR", "T1"], base_dir=base, same_grid=False, require_label=True)
    assert len(cases) == 1 and cases.valid[0]["image"] == [case["flair"], case["t1"]]
    cases.raise_if_invalid()
