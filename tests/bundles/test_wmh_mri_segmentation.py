"""The WMH bundle end to end: configs, metadata, training (label 2 ignored), multi-process training,
evaluation with the WMH challenge metrics, inference on the FLAIR's grid for channels on other grids
(thick-slice FLAIR with a 1 mm T1), bad input, and real MS scans."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainbundles.bundle.configs import parse_bundle
from brainbundles.bundle.verify import verify_configs, verify_metadata, verify_net_in_out
from brainbundles.data.phantom import make_phantom, write_phantom_dataset
from brainbundles.errors import InputError
from brainbundles.paths import config_files
from brainbundles.transforms import SPATIAL_FEATURES
from brainbundles.workflows import copy_bundle, resolve_bundle, run_inference, run_training

BUNDLE = resolve_bundle("wmh_mri_segmentation")
TINY = {
    "network_def#features": [4, 8, 16],
    "network_def#dropout": 0.0,
    "patch_size": [32, 32, 32],
}
TRAIN_FAST = {"num_workers": 0, "num_samples": 1, "batch_size": 2, "val_interval": 1}
N_IN = 2 + len(SPATIAL_FEATURES)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantoms")
    return write_phantom_dataset(
        "wmh", out, cases=4, test_cases=2, seed=3, shape=(40, 48, 40), spacing=(1.5, 1.5, 1.5), folds=2
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, phantoms) -> Path:
    """A tiny bundle trained for two epochs through the bundle runner."""
    bundle = copy_bundle(BUNDLE, tmp_path_factory.mktemp("bundle") / "bundle", TINY)
    run_training(bundle, phantoms, phantoms / "datalist.json", epochs=2, **TRAIN_FAST)
    return bundle


def test_training_tunes_the_lesion_threshold_that_inference_uses(trained):
    stored = json.loads((trained / "models" / "threshold.json").read_text())
    assert 0 < stored["threshold"] < 1 and stored["cases"] == 2  # the two cases of validation fold 0
    assert (
        parse_bundle(trained, "inference").get_parsed_content("probability_threshold") == stored["threshold"]
    )
    assert parse_bundle(BUNDLE, "inference").get_parsed_content("probability_threshold") == 0.5  # untrained


def test_configs_parse_and_references_resolve():
    refs = verify_configs(BUNDLE)
    assert "network_def" in refs["inference"] and "validate#evaluator" in refs["training"]


def test_metadata_schema_and_network_in_out():
    verify_metadata(BUNDLE)
    verify_net_in_out(BUNDLE, features=[4, 8, 16, 32])
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == N_IN


@pytest.mark.parametrize("workflow,wtype", [("training", "train"), ("inference", "infer")])
def test_monai_workflow_properties(workflow, wtype, tmp_path, phantoms):
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(
        config_file=config_files(BUNDLE, workflow),
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        workflow_type=wtype,
        bundle_root=str(BUNDLE),
        dataset_dir=str(phantoms),
        data_list_file_path=str(phantoms / "datalist.json"),
        output_dir=str(tmp_path),
    )
    wf.initialize()
    assert wf.check_properties() in (None, [])


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


def test_training_writes_checkpoints_and_resumes(trained, phantoms, tmp_path):
    models = trained / "models"
    assert (models / "model.pt").is_file() and (models / "last.pt").is_file()
    state = torch.load(models / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    copy = shutil.copytree(trained, tmp_path / "resumed")
    run_training(copy, phantoms, phantoms / "datalist.json", epochs=3, **TRAIN_FAST)
    assert torch.load(copy / "models" / "last.pt", weights_only=True)["epoch"] == 3


def test_evaluate_writes_wmh_challenge_metrics(trained, phantoms, tmp_path):
    from monai.bundle import run

    out = tmp_path / "eval"
    run(
        run_id="evaluating",
        config_file=config_files(trained, "evaluate"),
        meta_file=str(trained / "configs" / "metadata.json"),
        bundle_root=str(trained),
        dataset_dir=str(phantoms),
        data_list_file_path=str(phantoms / "datalist.json"),
        output_dir=str(out),
    )
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["summary"]) == {"WMH"}
    assert {"dice", "hd95", "avd", "lesion_recall", "lesion_f1", "vol_pred_ml", "lesions_pred"} <= set(
        report["summary"]["WMH"]
    )
    val_cases = [
        c for c in json.loads((phantoms / "datalist.json").read_text())["training"] if c["fold"] == 0
    ]
    assert set(report["per_case"]) == {c["case"] for c in val_cases}
    csv_text = (out / "volumes.csv").read_text()
    assert csv_text.splitlines()[0] == "case,WMH_ml,total_ml,WMH_lesions"


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


def test_bad_inputs_are_reported_and_batch_goes_on(trained, phantoms, tmp_path, bad_input_cases):
    good = phantoms / "Phantom" / "001"
    bad = tmp_path / "bad"
    folders = bad_input_cases(bad)
    only_flair = bad / "noT1"
    only_flair.mkdir()
    _save(np.random.default_rng(0).random((20, 20, 20)), np.eye(4), only_flair / "noT1_FLAIR.nii.gz")
    folders.append(only_flair)
    case = tmp_path / "good"
    case.mkdir()
    shutil.copy(good / "pre" / "FLAIR.nii.gz", case / "good_FLAIR.nii.gz")
    shutil.copy(good / "pre" / "T1.nii.gz", case / "good_T1.nii.gz")
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        run_inference(trained, [case, *folders], output_dir=out)
    msg = str(err.value)
    for name in ("nan", "zeros", "flat", "fourd"):
        assert f"{name}_FLAIR.nii.gz" in msg, f"{name} not reported"
    assert "missing sequence T1" in msg and "corrupt_T1.nii.gz" in msg
    assert "6 of 7 input cases failed" in msg
    written = sorted(p.name for p in out.iterdir())
    assert [w for w in written if w.endswith("_seg.nii.gz")] == ["good_seg.nii.gz"]
    assert not [w for w in written if w.startswith(".")], "temporary files left behind"


def test_training_refuses_label_outside_classes(phantoms, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(phantoms, data)
    dl = json.loads((data / "datalist.json").read_text())
    label = data / dl["training"][0]["label"]
    img = nib.load(label)
    arr = np.asanyarray(img.dataobj).copy()
    arr[0, 0, 0] = 3
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), label)
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", TINY)
    with pytest.raises(subprocess.CalledProcessError):
        run_training(bundle, data, data / "datalist.json", epochs=1, **TRAIN_FAST)
    assert not (bundle / "models" / "last.pt").exists()


def test_multi_process_training_gloo(phantoms, tmp_path, multi_process_training):
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", TINY)
    multi_process_training(bundle, phantoms, **TRAIN_FAST)
    assert (bundle / "models" / "last.pt").is_file() and (bundle / "models" / "model.pt").is_file()


def test_real_ms_scans_keep_their_geometry(trained, tmp_path):
    root = os.environ.get("BRAINBUNDLES_DATA")
    if not root:
        pytest.skip("BRAINBUNDLES_DATA is not set: no real scans to read")
    patient = Path(root) / "ms" / "patient07"
    out = run_inference(
        trained,
        [f"FLAIR={patient / 'FLAIR.nii.gz'}", f"T1={patient / 'T1.nii.gz'}"],
        output_dir=tmp_path / "real",
        **{"inferer#roi_size": [64, 64, 64]},
    )
    ref = nib.load(patient / "FLAIR.nii.gz")
    seg = nib.load(next(out.glob("*_seg.nii.gz")))
    assert seg.shape == ref.shape and np.array_equal(seg.affine, ref.affine)
    assert nib.aff2axcodes(seg.affine) == ("L", "A", "S")
