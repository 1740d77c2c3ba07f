"""Uncertainty maps: the normalised entropy of the mean prediction, by hand; the map on the scan's grid;
the per-case summary in the case's record and in volumes.csv."""

from __future__ import annotations

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch

from brainbundles.postprocessing.uncertainty import UncertaintyMapd, normalized_entropy, uncertainty_summary
from brainbundles.transforms.io import SaveSegmentationd, collect_volumes


def test_normalized_entropy_by_hand():
    p = torch.zeros(3, 2, 1, 1)
    p[:, 0, 0, 0] = 1 / 3  # uniform: entropy 1
    p[:, 1, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # certain: entropy 0
    h = normalized_entropy(p)
    assert h.shape == (2, 1, 1) and h.dtype == np.float32
    assert h[0, 0, 0] == pytest.approx(1.0) and h[1, 0, 0] == pytest.approx(0.0)
    two = torch.tensor([0.9, 0.1]).reshape(2, 1, 1, 1)
    expected = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    assert normalized_entropy(two)[0, 0, 0] == pytest.approx(expected, rel=1e-5)


def test_normalized_entropy_multilabel_is_the_mean_binary_entropy():
    p = torch.tensor([0.5, 1.0, 0.9]).reshape(3, 1, 1, 1)
    b = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    assert normalized_entropy(p, multilabel=True)[0, 0, 0] == pytest.approx((1.0 + 0.0 + b) / 3, rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 channels"):
        normalized_entropy(torch.ones(1, 2, 2, 2))
    with pytest.raises(ValueError, match="C x spatial"):
        normalized_entropy(torch.ones(4))


def test_uncertainty_summary_by_hand():
    prob = np.zeros((2, 4, 1, 1), np.float32)
    prob[1] = [[[0.9]], [[0.6]], [[0.2]], [[0.0]]]
    prob[0] = 1 - prob[1]
    h = normalized_entropy(prob)
    s = uncertainty_summary(h, prob, voxel_ml=0.002)
    assert s["uncertain_ml"] == pytest.approx(float(h.sum()) * 0.002, abs=1e-4)
    assert s["mean_in_segmentation"] == pytest.approx(float(h[:2].mean()), abs=1e-4)  # p >= 0.5: two voxels
    assert (
        uncertainty_summary(h, prob * 0 + np.array([1.0, 0.0]).reshape(2, 1, 1, 1), 1.0)[
            "mean_in_segmentation"
        ]
        == 0.0
    )


def _case(tmp_path, shape=(6, 5, 4)):
    affine = np.diag([-1.0, -1.2, 1.5, 1.0])  # LPS, anisotropic: the map must take this grid
    affine[:3, 3] = [10, -4, 2]
    ref = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), affine), ref)
    rng = np.random.default_rng(0)
    lesion = rng.uniform(0, 1, shape).astype(np.float32)
    prob = torch.from_numpy(np.stack([1 - lesion, lesion]))
    return ref, affine, prob


def test_uncertainty_map_is_written_on_the_scans_grid_and_reaches_the_record(tmp_path):
    ref, affine, prob = _case(tmp_path)
    out = tmp_path / "out"
    d = UncertaintyMapd(output_dir=out)({"pred": prob, "reference": str(ref), "case": "c1"})
    img = nib.load(out / "c1_uncertainty.nii.gz")
    assert img.shape == prob.shape[1:] and np.allclose(img.affine, affine)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.get_fdata(), normalized_entropy(prob), atol=1e-6)
    voxel_ml = 1 * 1.2 * 1.5 / 1000
    assert d["uncertainty"]["uncertain_ml"] == pytest.approx(img.get_fdata().sum() * voxel_ml, abs=1e-4)
    assert torch.equal(d["pred"], prob)  # the probabilities go on unchanged

    d["pred"] = (prob[1:] >= 0.5).float()
    SaveSegmentationd(output_dir=out, label_names={0: "background", 1: "lesion"}, write_png=False)(d)
    record = json.loads((out / "c1_volumes.json").read_text())
    assert record["uncertainty"]["uncertain_ml"] == d["uncertainty"]["uncertain_ml"]
    assert record["uncertainty"]["map"] == str(out / "c1_uncertainty.nii.gz")
    with open(collect_volumes(out), newline="") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["uncertain_ml"]) == d["uncertainty"]["uncertain_ml"]
    assert "mean_in_segmentation" in rows[0]


def test_uncertainty_map_disabled_writes_nothing(tmp_path):
    ref, _, prob = _case(tmp_path)
    d = UncertaintyMapd(output_dir=tmp_path / "out", enabled=False)(
        {"pred": prob, "reference": str(ref), "case": "c"}
    )
    assert "uncertainty" not in d and not (tmp_path / "out").exists()


def test_uncertainty_map_of_a_wrong_grid_names_the_scan(tmp_path):
    ref, _, prob = _case(tmp_path)
    with pytest.raises(ValueError, match="scan.nii.gz"):
        UncertaintyMapd(output_dir=tmp_path / "out")(
            {"pred": prob[:, :3], "reference": str(ref), "case": "c"}
        )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing half-written
