"""Lesion post-processing and reporting of the WMH bundle: label 2 taken out of scoring, small lesions
removed by volume in mm³, lesion counts in the volumes JSON and CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from brainbundles.postprocessing import RemoveSmallLesionsd
from brainbundles.transforms.io import SaveSegmentationd, collect_volumes, label_lesion_counts
from brainbundles.transforms.labels import IgnoreLabeld

WMH_NAMES = {0: "background", 1: "WMH", 2: "other"}


def _lesions() -> np.ndarray:
    """(10, 10, 10) label map with known components: label 1 has a 2x2x2 cube (8 voxels), a 3-voxel bar,
    two voxels touching by a corner only (one 26-connected lesion) and a single voxel; label 2 one blob."""
    lab = np.zeros((10, 10, 10), dtype=np.uint8)
    lab[1:3, 1:3, 1:3] = 1  # 8 voxels
    lab[6, 1:4, 1] = 1  # 3 voxels
    lab[8, 8, 8] = lab[9, 9, 9] = 1  # 2 voxels, corner-connected
    lab[1, 8, 5] = 1  # 1 voxel
    lab[5:7, 5:7, 5] = 2  # 4 voxels of other pathology
    return lab


# ------------------------------------------------------------------------------------------ IgnoreLabeld


def test_ignore_label_clears_both_maps():
    label = torch.tensor([[[[0, 1, 2, 2, 1, 0]]]])
    pred = torch.tensor([[[[1, 1, 1, 0, 0, 0]]]])
    probs = torch.tensor([[[[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]]]])
    d = IgnoreLabeld(keys=["pred", "probs"], label_key="label")(
        {"pred": pred, "probs": probs, "label": label}
    )
    assert d["pred"].tolist() == [[[[1, 1, 0, 0, 0, 0]]]]
    assert d["label"].tolist() == [[[[0, 1, 0, 0, 1, 0]]]]
    torch.testing.assert_close(d["probs"], torch.tensor([[[[0.9, 0.8, 0.0, 0.0, 0.5, 0.4]]]]))
    assert d["pred"].dtype == pred.dtype and d["probs"].dtype == probs.dtype
    # the inputs are not modified in place
    assert pred.tolist() == [[[[1, 1, 1, 0, 0, 0]]]] and label.tolist() == [[[[0, 1, 2, 2, 1, 0]]]]


def test_ignore_label_other_value_and_shape_mismatch():
    label = torch.tensor([[[[0, 3, 2]]]])
    pred = torch.tensor([[[[3, 3, 2]]]])
    d = IgnoreLabeld(keys="pred", ignore_label=3)({"pred": pred, "label": label})
    assert d["pred"].tolist() == [[[[3, 0, 2]]]] and d["label"].tolist() == [[[[0, 0, 2]]]]
    with pytest.raises(ValueError, match="pred"):
        IgnoreLabeld(keys="pred")({"pred": torch.zeros((1, 1, 1, 4)), "label": label})


# ------------------------------------------------------------------------------------- RemoveSmallLesionsd


def _meta(lab: np.ndarray, zooms=(2.0, 2.0, 2.0)) -> MetaTensor:
    affine = torch.diag(torch.tensor([*zooms, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-10.0, 4.0, 2.5], dtype=torch.float64)
    mt = MetaTensor(torch.as_tensor(lab[None]), affine=affine, meta={"filename_or_obj": "/data/FLAIR.nii.gz"})
    mt.applied_operations = [{"class": "Orientation", "id": 1}]
    return mt


def test_remove_small_lesions_uses_the_voxel_volume_from_the_affine():
    lab = _lesions()
    # at 2 mm isotropic (8 mm³ a voxel) the cube is 64 mm³, the bar 24, the corner pair 16, the speck 8
    kept = RemoveSmallLesionsd("pred", min_lesion_mm3=50)({"pred": _meta(lab)})["pred"]
    expected = lab.copy()
    expected[6, 1:4, 1] = expected[8, 8, 8] = expected[9, 9, 9] = expected[1, 8, 5] = 0
    np.testing.assert_array_equal(kept.numpy()[0], expected)  # only the 64 mm³ cube (and label 2) left
    removed = RemoveSmallLesionsd("pred", min_lesion_mm3=70)({"pred": _meta(lab)})["pred"]
    expected[1:3, 1:3, 1:3] = 0
    np.testing.assert_array_equal(removed.numpy()[0], expected)  # label 2 is not touched (labels=(1,))
    # 12 mm³: the corner-touching pair is one 26-connected lesion of 16 mm³, kept; the 8 mm³ speck not
    out = RemoveSmallLesionsd("pred", min_lesion_mm3=12)({"pred": _meta(lab)})["pred"].numpy()[0]
    assert out[8, 8, 8] == out[9, 9, 9] == 1 and out[1, 8, 5] == 0 and out[6, 1:4, 1].tolist() == [1, 1, 1]


def test_remove_small_lesions_keeps_a_lesion_of_exactly_the_minimum():
    lab = _lesions()
    out = RemoveSmallLesionsd("pred", min_lesion_mm3=64)({"pred": _meta(lab)})["pred"].numpy()[0]
    assert out[1:3, 1:3, 1:3].all()  # 8 voxels of 8 mm³ = 64 mm³: not smaller than 64 mm³


def test_remove_small_lesions_keeps_meta_and_history():
    pred = _meta(_lesions())
    out = RemoveSmallLesionsd("pred", min_lesion_mm3=50)({"pred": pred})["pred"]
    assert isinstance(out, MetaTensor)
    torch.testing.assert_close(out.affine, pred.affine)
    assert out.meta["filename_or_obj"] == "/data/FLAIR.nii.gz"
    assert [op["class"] for op in out.applied_operations] == ["Orientation"]
    assert out.shape == pred.shape and out.dtype == pred.dtype
    assert pred.numpy()[0, 1, 8, 5] == 1  # input untouched


def test_remove_small_lesions_anisotropic_rotated_affine_and_plain_tensor():
    lab = _lesions()
    # a 0.5 x 1 x 4 mm voxel (2 mm³), axes permuted: only |det| counts, so the cube is 16 mm³
    affine = torch.tensor(
        [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -4.0, 0.0], [0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )
    pred = MetaTensor(torch.as_tensor(lab[None]), affine=affine)
    out = RemoveSmallLesionsd("pred", min_lesion_mm3=15)({"pred": pred})["pred"].numpy()[0]
    assert out[1:3, 1:3, 1:3].all() and not out[6, 1:4, 1].any()  # 16 mm³ kept, 6 mm³ removed
    # a plain tensor counts 1 mm³ a voxel
    out = RemoveSmallLesionsd("pred", min_lesion_mm3=3)({"pred": torch.as_tensor(lab[None])})["pred"]
    assert not isinstance(out, MetaTensor)
    out = out.numpy()[0]
    assert out[6, 1:4, 1].all() and out[1, 8, 5] == 0 and out[8, 8, 8] == 0  # 3 kept; 1 and 2 removed


def test_remove_small_lesions_several_labels_and_bad_threshold():
    lab = _lesions()
    out = RemoveSmallLesionsd("pred", min_lesion_mm3=5, labels=(1, 2))({"pred": torch.as_tensor(lab[None])})
    out = out["pred"].numpy()[0]
    assert not out[5:7, 5:7, 5].any() and out[1:3, 1:3, 1:3].all()  # label 2's 4 voxels removed too
    same = RemoveSmallLesionsd("pred", min_lesion_mm3=0)({"pred": torch.as_tensor(lab[None])})["pred"]
    np.testing.assert_array_equal(same.numpy()[0], lab)
    with pytest.raises(ValueError, match="min_lesion_mm3"):
        RemoveSmallLesionsd("pred", min_lesion_mm3=-1)


# -------------------------------------------------------------------------------------- lesion counts


def test_label_lesion_counts_26_connected():
    lab = _lesions()
    assert label_lesion_counts(lab, WMH_NAMES) == {"WMH": 4, "other": 1}
    assert label_lesion_counts(np.zeros((4, 4, 4), np.uint8), WMH_NAMES) == {"WMH": 0, "other": 0}
    # unnamed labels are not counted; names may come with string keys from a config
    assert label_lesion_counts(lab, {1: "WMH"}) == {"WMH": 4}
    assert label_lesion_counts(lab, {"0": "background", "2": "other"}) == {"other": 1}
    # two voxels sharing only an edge or a corner are one lesion; a gap makes two
    line = np.zeros((1, 1, 5), np.uint8)
    line[0, 0, [0, 2, 3]] = 1
    assert label_lesion_counts(line, {1: "x"}) == {"x": 2}


def _write_ref(path: Path, shape=(10, 10, 10), zooms=(2.0, 2.0, 2.0)) -> str:
    aff = np.diag([*zooms, 1.0])
    data = np.random.default_rng(0).uniform(1, 100, size=shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, aff), str(path))
    return str(path)


def test_save_segmentation_counts_lesions_and_collect_volumes(tmp_path):
    out_dir = tmp_path / "out"
    lab = _lesions()
    empty = np.zeros_like(lab)
    empty[0, 0, 0] = 1
    t = SaveSegmentationd(output_dir=out_dir, label_names=WMH_NAMES, write_png=False, count_lesions=True)
    for case, arr in (("c2", lab), ("c1", empty)):
        ref = _write_ref(tmp_path / "in" / f"{case}_FLAIR.nii.gz")
        t({"pred": torch.as_tensor(arr[None], dtype=torch.float32), "reference": ref, "case": case})
    record = json.loads((out_dir / "c2_volumes.json").read_text())
    assert record["lesions"] == {"WMH": 4, "other": 1}
    assert record["volumes_ml"]["WMH"] == pytest.approx(14 * 8e-3)
    assert record["volumes_ml"]["other"] == pytest.approx(4 * 8e-3)
    assert json.loads((out_dir / "c1_volumes.json").read_text())["lesions"] == {"WMH": 1, "other": 0}

    table = collect_volumes(out_dir)
    with open(table, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["case", "WMH_ml", "other_ml", "total_ml", "WMH_lesions", "other_lesions"]
    assert rows[1] == ["c1", "0.008", "0.000", "0.008", "1", "0"]
    assert rows[2] == ["c2", "0.112", "0.032", "0.144", "4", "1"]


def test_without_count_lesions_no_lesion_columns(tmp_path):
    out_dir = tmp_path / "out"
    ref = _write_ref(tmp_path / "in" / "c1_FLAIR.nii.gz")
    SaveSegmentationd(output_dir=out_dir, label_names=WMH_NAMES, write_png=False)(
        {"pred": torch.as_tensor(_lesions()[None]), "reference": ref, "case": "c1"}
    )
    assert "lesions" not in json.loads((out_dir / "c1_volumes.json").read_text())
    with open(collect_volumes(out_dir), newline="") as f:
        header = next(csv.reader(f))
    assert header == ["case", "WMH_ml", "other_ml", "total_ml"]
