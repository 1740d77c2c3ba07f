"""What only the WMH bundle does: the spatial-feature channels and the network that uses them, and
inference on the FLAIR's grid for channels on other grids (thick-slice FLAIR with a 1 mm T1; a T1 of
another head is refused). Everything every bundle does (configs, metadata, the model zoo's commands,
training, the tuned lesion threshold, evaluation with the WMH challenge metrics, bad input, real MS
scans) is in ``test_bundle_contract.py``."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainbundles.bundle.configs import parse_bundle
from brainbundles.data.phantom import make_phantom
from brainbundles.errors import InputError
from brainbundles.transforms import SPATIAL_FEATURES
from brainbundles.workflows import resolve_bundle, run_inference

BUNDLE = resolve_bundle("wmh_mri_segmentation")
N_IN = 2 + len(SPATIAL_FEATURES)


@pytest.fixture(scope="module")
def phantoms(bundle_phantoms) -> Path:
    return bundle_phantoms("wmh")


@pytest.fixture(scope="module")
def trained(trained_bundle) -> Path:
    """A tiny bundle trained for two epochs (``conftest.py``)."""
    return trained_bundle("wmh")


def test_spatial_features_switch_sets_the_input_channels():
    parser = parse_bundle(BUNDLE, "inference")
    assert parser.get_parsed_content("in_channels") == N_IN
    parser = parse_bundle(BUNDLE, "inference")
    parser["use_spatial_features"] = False
    assert parser.get_parsed_content("in_channels") == 2
    net = parser.get_parsed_content("network_def")
    assert net(torch.zeros(1, 2, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


def test_location_sensitive_network_selected_by_network_def(phantoms):
    parser = parse_bundle(BUNDLE, "inference")
    parser["network_def"] = {
        "_target_": "brainbundles.networks.LocationSensitiveCNN",
        "spatial_dims": 2,
        "in_channels": "@in_channels",
        "out_channels": "@num_classes",
        "spatial_features": len(SPATIAL_FEATURES),
        "features": [4, 8, 8],
        "dense_features": [8, 8],
    }
    net = parser.get_parsed_content("network_def")
    assert type(net).__name__ == "LocationSensitiveCNN"
    assert net(torch.zeros(1, N_IN, 20, 24, 3)).shape == (1, 2, 20, 24, 3)


def test_preprocessing_appends_the_spatial_features(phantoms):
    parser = parse_bundle(BUNDLE, "inference")
    item = json.loads((phantoms / "datalist.json").read_text())["training"][0]
    item = {k: str(phantoms / v) if k in ("label",) else v for k, v in item.items()}
    item["image"] = [str(phantoms / p) for p in item["image"]]
    out = parser.get_parsed_content("preprocessing")(item)
    image = out["image"]
    assert image.shape[0] == N_IN and "features" not in out
    brain = image[0] != 0
    # the feature channels are 0 outside the brain and not all 0 inside it
    assert torch.all(image[2:, ~brain] == 0) and torch.all(image[2:, brain].abs().amax(dim=1) > 0)
    assert set(torch.unique(out["label"]).tolist()) <= {0, 1, 2}


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    img = nib.Nifti1Image(array.astype(np.float32), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)
    return path


def test_thick_slice_flair_with_1mm_t1_writes_on_the_flair_grid(trained, tmp_path):
    """A clinical pair: FLAIR with 5 mm slices in LPS, T1 at 1.5 mm in RAS on another grid (same head).
    The output takes the FLAIR's shape and affine exactly, and the WMH of the resampled scan are found
    where the FLAIR is: the prediction is not shifted or flipped."""
    fov_shape, fov_spacing = (40, 48, 40), (1.5, 1.5, 1.5)  # FOV 60 x 72 x 60 mm
    flair = make_phantom(11, (60, 72, 12), (1.0, 1.0, 5.0), "LPS", ("flair",), wmh=True)
    t1 = make_phantom(11, fov_shape, fov_spacing, "RAS", ("t1",), wmh=True)
    case = tmp_path / "case"
    case.mkdir()
    f = _save(flair.images["flair"], flair.affine, case / "sub_FLAIR.nii.gz")
    t = _save(t1.images["t1"], t1.affine, case / "sub_T1.nii.gz")
    assert nib.load(f).shape != nib.load(t).shape
    out = run_inference(trained, [f"FLAIR={f}", f"T1={t}"], output_dir=tmp_path / "out")
    seg = nib.load(next(out.glob("*_seg.nii.gz")))
    assert seg.shape == nib.load(f).shape
    assert np.array_equal(seg.affine, nib.load(f).affine)
    assert nib.aff2axcodes(seg.affine) == ("L", "P", "S")
    assert set(np.unique(np.asanyarray(seg.dataobj))) <= {0, 1}
    record = json.loads(next(out.glob("*_volumes.json")).read_text())
    assert record["image"] == str(f) and set(record["lesions"]) == {"WMH"}


def test_uncertainty_map_and_crf_on_the_flair_grid(trained, tmp_path, check_uncertainty_and_crf):
    """The CRF's appearance kernel takes the sequences, not the appended spatial features; the uncertainty
    map is written on the FLAIR's grid like the label map."""
    flair = make_phantom(11, (60, 72, 12), (1.0, 1.0, 5.0), "LPS", ("flair",), wmh=True)
    t1 = make_phantom(11, (40, 48, 40), (1.5, 1.5, 1.5), "RAS", ("t1",), wmh=True)
    f = _save(flair.images["flair"], flair.affine, tmp_path / "sub_FLAIR.nii.gz")
    t = _save(t1.images["t1"], t1.affine, tmp_path / "sub_T1.nii.gz")
    out = run_inference(
        trained, [f"FLAIR={f}", f"T1={t}"], output_dir=tmp_path / "out", uncertainty=True, crf=True
    )
    check_uncertainty_and_crf(out, f)


def test_t1_outside_the_flair_field_of_view_is_refused(trained, tmp_path):
    ph = make_phantom(5, (32, 40, 32), (1.5, 1.5, 1.5), "RAS", ("flair", "t1"), wmh=True)
    far = ph.affine.copy()
    far[:3, 3] += 200.0  # 20 cm away: not the same head
    f = _save(ph.images["flair"], ph.affine, tmp_path / "x_FLAIR.nii.gz")
    t = _save(ph.images["t1"], far, tmp_path / "x_T1.nii.gz")
    with pytest.raises(InputError, match="field of view"):
        run_inference(trained, [f"FLAIR={f}", f"T1={t}"], output_dir=tmp_path / "out")
    assert not list((tmp_path / "out").glob("*_seg.nii.gz")) if (tmp_path / "out").exists() else True
