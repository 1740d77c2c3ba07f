"""MS lesion bundle: configs, any subset of sequences, the tuned lesion threshold, lesion-wise
evaluation, native-space output, bad input, multi-process training and the real MS scans."""

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
from brainbundles.postprocessing import load_threshold
from brainbundles.workflows import copy_bundle, resolve_bundle, run_inference, run_training

BUNDLE = resolve_bundle("ms_lesion_mri_segmentation")
TINY = {
    "network_def#features": [4, 8, 16],
    "network_def#dropout": 0.0,
    "patch_size": [32, 32, 32],
}
TRAIN_FAST = {"num_workers": 0, "num_samples": 1, "batch_size": 2, "val_interval": 1}
CHANNELS = ["FLAIR", "T1", "T2", "PD", "T1Gd"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantoms")
    return write_phantom_dataset(
        "ms", out, cases=4, test_cases=2, seed=5, shape=(40, 48, 40), spacing=(1.5, 1.5, 1.5), folds=2
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, phantoms) -> Path:
    """A tiny bundle trained for two epochs through the bundle runner (threshold tuned at the end)."""
    bundle = copy_bundle(BUNDLE, tmp_path_factory.mktemp("bundle") / "bundle", TINY)
    run_training(bundle, phantoms, phantoms / "datalist.json", epochs=2, **TRAIN_FAST)
    return bundle


def test_configs_parse_and_references_resolve():
    refs = verify_configs(BUNDLE)
    assert "network_def" in refs["inference"] and "validate#evaluator" in refs["training"]
    parser = parse_bundle(BUNDLE, "inference")
    assert parser["channels"] == CHANNELS


def test_metadata_schema_and_network_in_out():
    verify_metadata(BUNDLE)
    verify_net_in_out(BUNDLE, features=[4, 8, 16, 32])
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == len(CHANNELS)


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


def test_brosch_network_and_loss_selected_in_the_config():
    parser = parse_bundle(BUNDLE, "training")
    parser["network_def"] = {
        "_target_": "brainbundles.networks.BroschCEN",
        "spatial_dims": 3,
        "in_channels": "$len(@channels)",
        "out_channels": "@num_classes",
        "features": [4, 4],
    }
    parser["loss"] = {"_target_": "brainbundles.losses.SensitivitySpecificityLoss", "r": 0.05}
    net = parser.get_parsed_content("network_def")
    loss = parser.get_parsed_content("loss")
    assert type(net).__name__ == "BroschCEN" and type(loss).__name__ == "SensitivitySpecificityLoss"
    out = net(torch.zeros(1, len(CHANNELS), 20, 22, 18))
    assert out.shape == (1, 2, 20, 22, 18)
    assert torch.isfinite(loss(out, torch.zeros(1, 1, 20, 22, 18)))


def test_preprocessing_fills_absent_sequences(phantoms):
    parser = parse_bundle(BUNDLE, "inference")
    item = json.loads((phantoms / "datalist.json").read_text())["training"][0]
    assert item["channels"] == ["FLAIR", "T1", "T2", "PD"]  # the phantoms have no T1-Gd
    item = {
        **item,
        "image": [str(phantoms / p) for p in item["image"]],
        "label": str(phantoms / item["label"]),
    }
    out = parser.get_parsed_content("preprocessing")(item)
    image = out["image"]
    assert image.shape[0] == len(CHANNELS) and out["missing_channels"] == "T1Gd"
    assert float(image[4].abs().sum()) == 0 and all(float(image[c].abs().sum()) > 0 for c in range(4))
    assert set(torch.unique(out["label"]).tolist()) <= {0, 1}


def test_training_tunes_and_stores_the_threshold_and_resumes(trained, phantoms, tmp_path):
    models = trained / "models"
    assert (models / "model.pt").is_file() and (models / "last.pt").is_file()
    stored = json.loads((models / "threshold.json").read_text())
    assert 0 < stored["threshold"] < 1 and stored["cases"] == 2  # the two cases of validation fold 0
    assert len(stored["mean_dice"]) > 10
    parser = parse_bundle(trained, "inference")
    assert parser.get_parsed_content("probability_threshold") == stored["threshold"]
    copy = shutil.copytree(trained, tmp_path / "resumed")
    run_training(copy, phantoms, phantoms / "datalist.json", epochs=3, tune_threshold=False, **TRAIN_FAST)
    assert torch.load(copy / "models" / "last.pt", weights_only=True)["epoch"] == 3
    assert load_threshold(copy / "models" / "threshold.json") == stored["threshold"]


def test_evaluate_writes_lesion_metrics(trained, phantoms, tmp_path):
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
    assert set(report["summary"]) == {"lesion"}
    expected = {
        "dice",
        "lesion_recall",
        "lesion_precision",
        "lesion_f1",
        "avd",
        "vol_pred_ml",
        "lesions_pred",
    }
    assert expected <= set(report["summary"]["lesion"])
    val_cases = [
        c for c in json.loads((phantoms / "datalist.json").read_text())["training"] if c["fold"] == 0
    ]
    assert set(report["per_case"]) == {c["case"] for c in val_cases}
    assert (out / "volumes.csv").read_text().splitlines()[0] == "case,lesion_ml,total_ml,lesion_lesions"


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    img = nib.Nifti1Image(array.astype(np.float32), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)
    return path


@pytest.mark.parametrize("sequences", [("FLAIR", "T1"), ("FLAIR", "T1", "T2", "PD"), ("T2",)])
def test_any_subset_of_sequences_writes_the_input_geometry(trained, tmp_path, sequences):
    """An LPS scan at 1.2 x 1.2 x 2 mm: the label map takes its shape and affine exactly."""
    contrasts = {"FLAIR": "flair", "T1": "t1", "T2": "t2", "PD": "pd"}
    ph = make_phantom(9, (40, 48, 20), (1.2, 1.2, 2.0), "LPS", tuple(contrasts.values()), ms=True)
    files = [
        f"{s}={_save(ph.images[contrasts[s]], ph.affine, tmp_path / f'case_{s}.nii.gz')}" for s in sequences
    ]
    out = run_inference(trained, files, output_dir=tmp_path / "out")
    seg = nib.load(next(out.glob("*_seg.nii.gz")))
    assert seg.shape == (40, 48, 20) and np.allclose(seg.affine, ph.affine, atol=1e-5)
    assert nib.aff2axcodes(seg.affine) == ("L", "P", "S")
    assert set(np.unique(np.asanyarray(seg.dataobj)).tolist()) <= {0, 1}
    record = json.loads(next(out.glob("*_volumes.json")).read_text())
    assert set(record["lesions"]) == {"lesion"}


def test_bad_inputs_are_reported_and_batch_goes_on(trained, phantoms, tmp_path, bad_input_cases):
    good = next(p for p in sorted(phantoms.iterdir()) if (p / "Preprocessed_Data").is_dir())
    bad = tmp_path / "bad"
    folders = bad_input_cases(bad)
    grids = bad / "grids"
    grids.mkdir()
    vol = np.random.default_rng(0).random((20, 20, 20))
    _save(vol, np.eye(4), grids / "grids_FLAIR.nii.gz")
    _save(vol[:18], np.eye(4), grids / "grids_T1.nii.gz")
    folders.append(grids)
    case = tmp_path / "good"
    case.mkdir()
    for seq in ("FLAIR", "T1"):
        shutil.copy(good / "Preprocessed_Data" / f"{seq}_preprocessed.nii.gz", case / f"good_{seq}.nii.gz")
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        run_inference(trained, [case, *folders], output_dir=out)
    msg = str(err.value)
    for name in ("nan", "zeros", "flat", "fourd"):
        assert f"{name}_FLAIR.nii.gz" in msg, f"{name} not reported"
    assert "corrupt_T1.nii.gz" in msg and "grids_T1.nii.gz" in msg
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
    arr[0, 0, 0] = 2
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), label)
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", TINY)
    with pytest.raises(subprocess.CalledProcessError):
        run_training(bundle, data, data / "datalist.json", epochs=1, **TRAIN_FAST)
    assert not (bundle / "models" / "last.pt").exists()


def test_multi_process_training_gloo(phantoms, tmp_path, multi_process_training):
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", TINY)
    multi_process_training(bundle, phantoms, **TRAIN_FAST)
    models = bundle / "models"
    assert (models / "last.pt").is_file() and (models / "model.pt").is_file()
    assert load_threshold(models / "threshold.json") > 0


@pytest.mark.parametrize("sequences", [("FLAIR", "T1"), ("FLAIR", "T1", "T2", "T1POST")])
def test_real_ms_scans_keep_their_geometry(trained, tmp_path, sequences):
    root = os.environ.get("BRAINBUNDLES_DATA")
    if not root:
        pytest.skip("BRAINBUNDLES_DATA is not set: no real scans to read")
    patient = Path(root) / "ms" / "patient07"
    names = {"T1POST": "T1Gd"}
    out = run_inference(
        trained,
        [f"{names.get(s, s)}={patient / f'{s}.nii.gz'}" for s in sequences],
        output_dir=tmp_path / "real",
        **{"inferer#roi_size": [64, 64, 64]},
    )
    ref = nib.load(patient / "FLAIR.nii.gz")
    seg = nib.load(next(out.glob("*_seg.nii.gz")))
    assert seg.shape == ref.shape and np.array_equal(seg.affine, ref.affine)
    assert nib.aff2axcodes(seg.affine) == ("L", "A", "S")
