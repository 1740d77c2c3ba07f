"""The brain tissue bundle end to end: configs, metadata, training (with resume), multi-process
training, evaluation, inference in native space, bad input, and a learning test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainbundles.bundle.configs import parse_bundle
from brainbundles.bundle.verify import verify_configs, verify_metadata, verify_net_in_out
from brainbundles.data.phantom import write_phantom_dataset
from brainbundles.errors import InputError, TrainingProcessError
from brainbundles.paths import config_files
from brainbundles.workflows import copy_bundle, resolve_bundle, run_inference, run_training

BUNDLE = resolve_bundle("brain_tissue_mri_segmentation")
TINY = {
    "network_def#features": [4, 8, 16],
    "network_def#dropout": 0.0,
    "patch_size": [32, 32, 32],
}
TRAIN_FAST = {"num_workers": 0, "num_samples": 1, "batch_size": 2, "val_interval": 1}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantoms")
    return write_phantom_dataset(
        "tissue", out, cases=4, test_cases=2, seed=3, shape=(40, 48, 40), spacing=(1.5, 1.5, 1.5), folds=2
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, phantoms) -> Path:
    """A tiny bundle trained for two epochs through the bundle runner."""
    bundle = copy_bundle(BUNDLE, tmp_path_factory.mktemp("bundle") / "bundle", TINY)
    run_training(bundle, phantoms, phantoms / "datalist.json", epochs=2, **TRAIN_FAST)
    return bundle


def test_configs_parse_and_references_resolve():
    refs = verify_configs(BUNDLE)
    assert "network_def" in refs["inference"] and "validate#evaluator" in refs["training"]


def test_metadata_schema_and_network_in_out():
    verify_metadata(BUNDLE)
    verify_net_in_out(BUNDLE, features=[4, 8, 16, 32, 64])


def test_bad_metadata_is_refused(tmp_path):
    bundle = copy_bundle(BUNDLE, tmp_path / "b")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="network_data_format"):
        verify_metadata(bundle)


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


@pytest.mark.parametrize("network", ["UNetIN", "VNet", "ResUNet"])
def test_network_selected_by_network_def(network):
    parser = parse_bundle(BUNDLE, "inference")
    parser["network_def#_target_"] = f"brainbundles.networks.{network}"
    parser["network_def#features"] = [4, 8, 16, 32]
    net = parser.get_parsed_content("network_def")
    assert type(net).__name__ == network
    assert net(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 4, 16, 16, 16)


def test_training_writes_checkpoints_and_resumes(trained, phantoms, tmp_path):
    models = trained / "models"
    assert (models / "model.pt").is_file() and (models / "last.pt").is_file()
    state = torch.load(models / "model.pt", weights_only=True)  # a plain state dict, no pickle
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    last = torch.load(models / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and "optimizer" in last and "lr_scheduler" in last
    assert (trained / "eval" / "logs").is_dir()  # TensorBoard

    # resume: one more epoch continues at epoch 3 with the optimiser/scheduler state
    copy = shutil.copytree(trained, tmp_path / "resumed")
    run_training(copy, phantoms, phantoms / "datalist.json", epochs=3, **TRAIN_FAST)
    resumed = torch.load(copy / "models" / "last.pt", weights_only=True)
    assert resumed["epoch"] == 3
    assert resumed["lr_scheduler"]["last_epoch"] == 3  # scheduler continued, not restarted


def test_training_killed_midrun_resumes(phantoms, tmp_path):
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", TINY)
    files = config_files(bundle, "training")
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", json.dumps(files),
        "--meta_file", str(bundle / "configs" / "metadata.json"),
        "--bundle_root", str(bundle),
        "--dataset_dir", str(phantoms),
        "--data_list_file_path", str(phantoms / "datalist.json"),
        "--epochs", "30", "--num_workers", "0", "--num_samples", "1", "--val_interval", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = bundle / "models" / "last.pt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists(), "training wrote no checkpoint before being killed"
    done = torch.load(last, weights_only=True)["epoch"]
    assert 1 <= done < 30
    log = subprocess.run(
        cmd[:-8] + ["--epochs", str(done + 1), "--num_workers", "0", "--num_samples", "1", "--val_interval", "1",
                    "--logging_file", str(bundle / "configs" / "logging.conf")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f"epoch {done} of {done + 1} done" in log.stdout + log.stderr
    assert torch.load(last, weights_only=True)["epoch"] == done + 1


def test_evaluate_writes_native_space_metrics(trained, phantoms, tmp_path):
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
    assert set(report["summary"]) == {"CSF", "GM", "WM"}
    for name in ("CSF", "GM", "WM"):
        assert {"dice", "hd95", "avd"} <= set(report["summary"][name])
    val_cases = [
        c for c in json.loads((phantoms / "datalist.json").read_text())["training"] if c["fold"] == 0
    ]
    assert len(report["per_case"]) == len(val_cases)
    assert (out / "metrics.csv").is_file()


def test_inference_native_space_any_orientation(trained, tmp_path):
    """Phantoms stored LPS, anisotropic and int16 come back on their own grid, voxel for voxel."""
    data = write_phantom_dataset(
        "tissue", tmp_path / "lps", cases=1, seed=9, shape=(36, 44, 30), spacing=(1.2, 1.0, 2.0),
        orientation="LPS", dtype="int16", folds=1,
    )  # fmt: skip
    image = next(data.glob("*/*_ana_strip.nii.gz"))
    out = run_inference(trained, [image], output_dir=tmp_path / "out")
    seg = nib.load(next(out.glob("*_seg.nii.gz")))
    ref = nib.load(image)
    assert seg.shape == ref.shape
    assert np.array_equal(seg.affine, ref.affine)
    assert nib.aff2axcodes(seg.affine) == ("L", "P", "S")
    assert set(np.unique(np.asanyarray(seg.dataobj))) <= {0, 1, 2, 3}
    vols = json.loads(next(out.glob("*_volumes.json")).read_text())["volumes_ml"]
    assert set(vols) == {"CSF", "GM", "WM", "total"}
    assert (out / "volumes.csv").is_file() and next(out.glob("*_overlay.png")).stat().st_size > 1000


def test_uncertainty_map_and_crf_in_native_space(trained, tmp_path, check_uncertainty_and_crf):
    """With ``uncertainty`` and ``crf`` switched on, an LPS anisotropic scan gets its label map and its
    uncertainty map on its own grid (the CRF runs before ``Invertd``)."""
    data = write_phantom_dataset(
        "tissue", tmp_path / "lps", cases=1, seed=9, shape=(36, 44, 30), spacing=(1.2, 1.0, 2.0),
        orientation="LPS", folds=1,
    )  # fmt: skip
    image = next(data.glob("*/*_ana_strip.nii.gz"))
    out = run_inference(trained, [image], output_dir=tmp_path / "out", uncertainty=True, crf=True)
    check_uncertainty_and_crf(out, image)


def _write(path: Path, data: np.ndarray, affine=None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def test_bad_inputs_are_reported_and_batch_goes_on(trained, phantoms, tmp_path):
    good = next(phantoms.glob("*/*_ana_strip.nii.gz"))
    bad = tmp_path / "bad"
    bad.mkdir()
    rng = np.random.default_rng(0)
    vol = rng.random((20, 20, 20)).astype(np.float32)
    cases = {
        "missing.nii.gz": None,
        "corrupt.nii.gz": b"not a nifti file",
        "flat.nii.gz": rng.random((20, 20)).astype(np.float32),
        "twochannels.nii.gz": rng.random((20, 20, 20, 2)).astype(np.float32),
        "nan.nii.gz": np.where(vol > 0.5, np.nan, vol).astype(np.float32),
        "inf.nii.gz": np.where(vol > 0.9, np.inf, vol).astype(np.float32),
        "zeros.nii.gz": np.zeros((20, 20, 20), np.float32),
    }
    inputs = [good]
    for name, content in cases.items():
        p = bad / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        elif content is not None:
            _write(p, content)
        inputs.append(p)
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        run_inference(trained, inputs, output_dir=out)
    msg = str(err.value)
    for name in cases:
        assert str(bad / name) in msg, f"{name} not reported"
    assert "7 of 8 input cases failed" in msg
    written = sorted(p.name for p in out.iterdir())
    assert [w for w in written if w.endswith("_seg.nii.gz")] == [good.name.replace(".nii.gz", "_seg.nii.gz")]
    assert not [w for w in written if w.startswith(".")], "temporary files left behind"

    # the command line reports the bad files and exits non-zero
    proc = subprocess.run(
        [sys.executable, "-m", "brainbundles.cli", "infer", str(trained), "-i", str(good), "-i", str(bad / "nan.nii.gz"),
         "--output", str(tmp_path / "cli")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "nan.nii.gz" in proc.stderr and "NaN" in proc.stderr


def test_training_refuses_label_outside_classes(phantoms, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(phantoms, data)
    dl = json.loads((data / "datalist.json").read_text())
    label = data / dl["training"][0]["label"]
    img = nib.load(label)
    arr = np.asanyarray(img.dataobj).copy()
    arr[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), label)
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", TINY)
    with pytest.raises(subprocess.CalledProcessError):
        run_training(bundle, data, data / "datalist.json", epochs=1, **TRAIN_FAST)
    assert not (bundle / "models" / "last.pt").exists()


def test_multi_process_training_gloo(phantoms, tmp_path, multi_process_training):
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", TINY)
    multi_process_training(bundle, phantoms, **TRAIN_FAST)
    assert (bundle / "models" / "last.pt").is_file() and (bundle / "models" / "model.pt").is_file()


def test_failed_multi_process_training_reports_each_process_error(phantoms, tmp_path):
    """Both processes fail (a datalist whose scan is missing: each one's input check refuses it)."""
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", TINY)
    datalist = tmp_path / "datalist.json"
    missing = tmp_path / "no_such_scan.nii.gz"
    items = [{"image": str(missing), "label": str(missing), "fold": f} for f in (0, 1)]
    datalist.write_text(json.dumps({"training": items}))
    with pytest.raises(TrainingProcessError) as err:
        run_training(bundle, phantoms, datalist, multi_gpu=True, nproc=2, epochs=1, **TRAIN_FAST)
    message = str(err.value)
    assert "returned non-zero exit status" in message
    assert message.count("(last ") == 2 * 2  # stdout and stderr of both processes
    assert message.count("brainbundles.data.load_fold") >= 2  # each process's failing step


REAL_T1 = [
    "tissue/voxelmorph_test_scan/t1_norm.nii.gz",
    "tissue/fast_pve_t1/bet.nii.gz",
    "tissue/mni152_2009a/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "ms/patient07/T1.nii.gz",
    "ms/patient19/T1.nii.gz",
    "brats/BraTS19_2013_10_1/BraTS19_2013_10_1_t1.nii.gz",
]


def test_real_t1_scans_keep_their_geometry(trained, tmp_path):
    root = os.environ.get("BRAINBUNDLES_DATA")
    if not root:
        pytest.skip("BRAINBUNDLES_DATA is not set: no real scans to read")
    inputs = [Path(root) / p for p in REAL_T1]
    out = run_inference(trained, inputs, output_dir=tmp_path / "real", **{"inferer#roi_size": [64, 64, 64]})
    for p in inputs:
        ref = nib.load(p)
        stem = p.name.replace(".nii.gz", "_seg.nii.gz")
        names = [stem, f"{p.parent.name}_{stem}"]  # same file names get their folder as prefix
        segs = [out / n for n in names if (out / n).is_file()]
        assert len(segs) == 1, p
        seg = nib.load(segs[0])
        assert seg.shape == ref.shape, p
        assert np.array_equal(seg.affine, ref.affine), p
        assert nib.aff2axcodes(seg.affine) == nib.aff2axcodes(ref.affine)


def test_nyul_landmarks_learned_in_training_and_used_at_inference(phantoms, tmp_path):
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", {**TINY, "use_nyul": True})
    run_training(bundle, phantoms, phantoms / "datalist.json", epochs=1, **TRAIN_FAST)
    landmarks = json.loads((bundle / "models" / "nyul_landmarks.json").read_text())
    assert len(landmarks["landmarks"]) == len(landmarks["percentiles"]) and np.all(
        np.diff(landmarks["landmarks"]) > 0
    )
    image = next(phantoms.glob("*/*_ana_strip.nii.gz"))
    out = run_inference(bundle, [image], output_dir=tmp_path / "out")
    assert nib.load(next(out.glob("*_seg.nii.gz"))).shape == nib.load(image).shape
    # inference needs the bundle's landmarks: without them it stops with an error naming the file
    (bundle / "models" / "nyul_landmarks.json").unlink()
    with pytest.raises(Exception, match="nyul_landmarks.json"):
        run_inference(bundle, [image], output_dir=tmp_path / "out2")
