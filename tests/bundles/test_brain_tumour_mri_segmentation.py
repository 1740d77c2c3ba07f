"""The brain tumour (BraTS) bundle end to end: configs and metadata, every network trained for one
epoch and run through the bundle runner, evaluation with the BraTS metrics, native-space inference
with all four sequences, with some missing, and in both label conventions, bad input, multi-process
training, and the real BraTS case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainbundles.bundle.verify import verify_configs, verify_metadata, verify_net_in_out
from brainbundles.data.phantom import write_phantom_dataset
from brainbundles.errors import InputError
from brainbundles.networks import output_layer_parameters
from brainbundles.paths import config_files
from brainbundles.workflows import copy_bundle, resolve_bundle, run_inference, run_training

BUNDLE = resolve_bundle("brain_tumour_mri_segmentation")
PATCH_3D = [32, 32, 32]
TINY = {
    "network_def#init_filters": 8,
    "network_def#dropout": 0.0,
    "patch_size": PATCH_3D,
    "spacing": [2.0, 2.0, 2.0],
}
TRAIN_FAST = {"num_workers": 0, "num_samples": 1, "batch_size": 2, "val_interval": 1}
SEQUENCES = ("t1", "t1ce", "t2", "flair")

#: tiny versions of every network the bundle can select (network_def replaced whole), run at 4.5 mm
NET_SPACING = [4.5, 4.5, 4.5]
NETWORKS = {
    "SegResNet": ({"init_filters": 8, "dropout": 0.0}, [24, 24, 24]),
    "DeepMedic": ({"features": [4, 4, 4, 4, 4, 4, 4, 4], "fc_features": [8, 8]}, [24, 24, 24]),
    "TwoPathwayCNN": ({"local_features": [4, 4], "global_features": 4}, [24, 24, 2]),
    "InputCascadeCNN": ({"local_features": [4, 4], "global_features": 4}, [24, 24, 2]),
    "PereiraCNN": ({"features": [4, 8], "fc_features": [8, 8]}, [24, 24, 2]),
    "HeMIS": ({"features": [4, 8], "backend_features": [8, 8]}, [24, 24, 24]),
}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantoms")
    return write_phantom_dataset(
        "brats", out, cases=4, test_cases=2, seed=5, shape=(40, 48, 40), spacing=(3.0, 3.0, 3.0), folds=2
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, phantoms) -> Path:
    """A tiny SegResNet bundle trained for one epoch through the bundle runner."""
    bundle = copy_bundle(BUNDLE, tmp_path_factory.mktemp("bundle") / "bundle", TINY)
    run_training(bundle, phantoms, phantoms / "datalist.json", epochs=1, **TRAIN_FAST)
    return bundle


def _case_dir(phantoms: Path, which: str = "testing") -> Path:
    item = json.loads((phantoms / "datalist.json").read_text())[which][0]
    return phantoms / Path(item["image"][0]).parent


def test_configs_parse_and_references_resolve():
    refs = verify_configs(BUNDLE)
    assert "network_def" in refs["inference"] and "validate#evaluator" in refs["training"]


def test_metadata_channels_and_network_in_out():
    verify_metadata(BUNDLE)
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    channel_def = meta["network_data_format"]["inputs"]["image"]["channel_def"]
    assert list(channel_def.values()) == ["T1", "T1c", "T2", "FLAIR"]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 3
    verify_net_in_out(BUNDLE, init_filters=8)


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


@pytest.mark.parametrize("network", list(NETWORKS))
def test_every_network_trains_and_infers_through_the_runner(network, phantoms, tmp_path):
    args, patch = NETWORKS[network]
    network_def = {
        "_target_": f"brainbundles.networks.{network}",
        "spatial_dims": 2 if len(patch) == 3 and patch[2] <= 2 else 3,
        "in_channels": "$len(@channels)",
        "out_channels": "$len(@regions)",
        **args,
    }
    bundle = copy_bundle(
        BUNDLE,
        tmp_path / "bundle",
        {"network_def": network_def, "patch_size": patch, "spacing": NET_SPACING},
    )
    run_training(bundle, phantoms, phantoms / "datalist.json", epochs=1, **TRAIN_FAST)
    assert (bundle / "models" / "model.pt").is_file()
    case = _case_dir(phantoms)
    out = run_inference(bundle, [case], output_dir=tmp_path / "out")
    seg = nib.load(out / f"{case.name}_seg.nii.gz")
    ref = nib.load(next(case.glob("*_t1.nii.gz")))
    assert seg.shape == ref.shape and np.array_equal(seg.affine, ref.affine)
    assert set(np.unique(np.asanyarray(seg.dataobj)).tolist()) <= {0, 1, 2, 3}


def test_two_phase_training_trains_only_the_output_layer(phantoms, tmp_path):
    """Havaei's second phase: only the output layer learns, on patches drawn without class balance."""
    args, _ = NETWORKS["InputCascadeCNN"]
    patch = [32, 32, 4]  # at 3 mm, so that uniformly drawn patches hold tumour and the output layer learns
    network_def = {"_target_": "brainbundles.networks.InputCascadeCNN", "spatial_dims": 2, "in_channels": 4,
                   "out_channels": 3, **args}  # fmt: skip
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", {"network_def": network_def, "patch_size": patch,
                                                       "spacing": [3.0, 3.0, 3.0]})  # fmt: skip
    run_training(bundle, phantoms, phantoms / "datalist.json", epochs=1, **TRAIN_FAST)
    phase1 = torch.load(bundle / "models" / "model.pt", weights_only=True)
    run_training(
        bundle,
        phantoms,
        phantoms / "datalist.json",
        phase2=True,
        epochs=1,
        **{**TRAIN_FAST, "num_samples": 2},
    )
    phase2 = torch.load(bundle / "models" / "last_phase2.pt", weights_only=True)["network"]
    from brainbundles.networks import InputCascadeCNN

    net = InputCascadeCNN(2, 4, 3, **args)
    out_names = {n for n, p in net.named_parameters() if any(p is q for q in output_layer_parameters(net))}
    assert out_names
    for name, value in phase1.items():
        same = torch.equal(value, phase2[name])
        assert same == (name not in out_names), name


def test_evaluate_reports_brats_metrics_in_native_space(trained, phantoms, tmp_path):
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
    assert set(report["summary"]) == {"WT", "TC", "ET"}
    for region in ("WT", "TC", "ET"):
        assert {"dice", "hd95", "lesion_dice", "lesion_hd95"} <= set(report["summary"][region])
    val = [c for c in json.loads((phantoms / "datalist.json").read_text())["training"] if c["fold"] == 0]
    assert sorted(report["per_case"]) == sorted(c["case"] for c in val)
    for case in val:  # the reference volumes are the 2019-convention labels read as regions, in mL
        seg = nib.load(phantoms / case["label"])
        voxel_ml = float(abs(np.linalg.det(seg.affine[:3, :3]))) / 1000
        lab = np.asanyarray(seg.dataobj)
        for region, values in (("WT", (1, 2, 4)), ("TC", (1, 4)), ("ET", (4,))):
            metrics = report["per_case"][case["case"]][region]
            assert metrics["vol_ref_ml"] == pytest.approx(np.isin(lab, values).sum() * voxel_ml)
            assert 0.0 <= metrics["dice"] <= 1.0 and 0.0 <= metrics["lesion_dice"] <= 1.0
    assert (out / "metrics.csv").is_file()


def test_inference_all_sequences_lps_int16_both_conventions(trained, tmp_path):
    data = write_phantom_dataset(
        "brats", tmp_path / "lps", cases=1, seed=11, shape=(36, 44, 30), spacing=(3.0, 2.5, 3.5),
        orientation="LPS", dtype="int16", folds=1,
    )  # fmt: skip
    case = _case_dir(data, "training")
    ref = nib.load(next(case.glob("*_t1.nii.gz")))
    written = {}
    for convention, allowed in (("brats2023", {0, 1, 2, 3}), ("brats2019", {0, 1, 2, 4})):
        out = run_inference(trained, [case], output_dir=tmp_path / convention, output_convention=convention)
        seg = nib.load(out / f"{case.name}_seg.nii.gz")
        assert seg.shape == ref.shape and np.array_equal(seg.affine, ref.affine)
        assert nib.aff2axcodes(seg.affine) == ("L", "P", "S")
        written[convention] = np.asanyarray(seg.dataobj)
        assert set(np.unique(written[convention]).tolist()) <= allowed
        vols = json.loads((out / f"{case.name}_volumes.json").read_text())["volumes_ml"]
        assert "total" in vols and len(vols) == 4
        assert (out / f"{case.name}_overlay.png").stat().st_size > 1000
    # the same segmentation in both conventions: enhancing is 3 in one and 4 in the other
    assert np.array_equal(written["brats2019"], np.where(written["brats2023"] == 3, 4, written["brats2023"]))


def test_uncertainty_map_and_crf_for_nested_regions(trained, tmp_path, check_uncertainty_and_crf):
    """The tumour bundle's sigmoid regions: the CRF and the uncertainty run per region (multi-label),
    and the map takes the LPS scan's grid."""
    data = write_phantom_dataset(
        "brats", tmp_path / "lps", cases=1, seed=11, shape=(36, 44, 30), spacing=(3.0, 2.5, 3.5),
        orientation="LPS", folds=1,
    )  # fmt: skip
    case = _case_dir(data, "training")
    out = run_inference(trained, [case], output_dir=tmp_path / "out", uncertainty=True, crf=True)
    check_uncertainty_and_crf(out, next(case.glob("*_t1.nii.gz")))


def test_inference_with_flair_and_t1c_only(trained, phantoms, tmp_path, capsys):
    case = _case_dir(phantoms)
    files = [f"FLAIR={next(case.glob('*_flair.nii.gz'))}", f"T1c={next(case.glob('*_t1ce.nii.gz'))}"]
    out = run_inference(trained, files, output_dir=tmp_path / "out")
    assert "no T1, T2; filled with zeros" in capsys.readouterr().out  # the bundle's log goes to stdout
    (seg_path,) = out.glob("*_seg.nii.gz")
    seg, ref = nib.load(seg_path), nib.load(next(case.glob("*_t1ce.nii.gz")))
    assert seg.shape == ref.shape and np.array_equal(seg.affine, ref.affine)

    # the command line, each named file after its own -i
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "brainbundles.cli",
            "infer",
            str(trained),
            *[a for f in files for a in ("-i", f)],
            "--output",
            str(tmp_path / "cli"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no T1, T2; filled with zeros" in proc.stdout + proc.stderr
    assert len(list((tmp_path / "cli").glob("*_seg.nii.gz"))) == 1


def _write(path: Path, data: np.ndarray, affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def test_bad_inputs_are_reported_and_batch_goes_on(trained, phantoms, tmp_path):
    """A folder of case folders: the good case is written, every bad one is named with its problem."""
    import shutil

    root = tmp_path / "cases"
    good = _case_dir(phantoms)
    shutil.copytree(good, root / "good")
    rng = np.random.default_rng(0)
    vol = rng.random((20, 20, 20)).astype(np.float32)
    bad = {  # case -> (file -> content), plus the text its error must contain
        "missing": ({"missing_flair.nii.gz": None}, "file not found"),
        "corrupt": ({"corrupt_flair.nii.gz": b"not a nifti"}, "cannot be loaded"),
        "flat": ({"flat_flair.nii.gz": rng.random((20, 20)).astype(np.float32)}, "3D"),
        "nan": ({"nan_flair.nii.gz": np.where(vol > 0.5, np.nan, vol).astype(np.float32)}, "NaN"),
        "inf": ({"inf_flair.nii.gz": np.where(vol > 0.9, np.inf, vol).astype(np.float32)}, "Inf"),
        "zeros": ({"zeros_flair.nii.gz": np.zeros((20, 20, 20), np.float32)}, "all zero"),
        "shape": ({"shape_flair.nii.gz": vol, "shape_t1.nii.gz": vol[:10]}, "differs from shape"),
        "twice": ({"twice_flair.nii.gz": vol, "twice_t2f.nii.gz": vol}, "given twice"),
        "noseq": ({"noseq_seg.nii.gz": np.zeros((20, 20, 20), np.uint8)}, "no sequence given"),
    }
    for case, (files, _) in bad.items():
        (root / case).mkdir(parents=True)
        for name, content in files.items():
            p = root / case / name
            if isinstance(content, bytes):
                p.write_bytes(content)
            elif content is not None:
                _write(p, content)
            else:  # a dangling link: listed in the folder, but no file behind it
                p.symlink_to(root / "does_not_exist.nii.gz")
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        run_inference(trained, [root], output_dir=out)
    msg = str(err.value)
    for case, (_, problem) in bad.items():
        line = next(
            (ln for ln in msg.splitlines() if f"/{case}/" in ln or ln.startswith(str(root / case))), ""
        )
        assert problem in line, f"{case}: {problem!r} not in {line!r}"
    assert f"{len(bad)} of {len(bad) + 1} input cases failed" in msg
    written = sorted(p.name for p in out.iterdir())
    assert [w for w in written if w.endswith("_seg.nii.gz")] == ["good_seg.nii.gz"]
    assert not [w for w in written if w.startswith(".")], "temporary files left behind"

    proc = subprocess.run(
        [sys.executable, "-m", "brainbundles.cli", "infer", str(trained), "--input", str(root / "twice"),
         "--output", str(tmp_path / "cli")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode != 0 and "given twice" in proc.stderr


def test_training_refuses_label_outside_the_convention(phantoms, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(phantoms, data)
    dl = json.loads((data / "datalist.json").read_text())
    label = data / dl["training"][0]["label"]
    img = nib.load(label)
    arr = np.asanyarray(img.dataobj).copy()
    arr[0, 0, 0] = 3  # not a BraTS 2019 value
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), label)
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", TINY)
    with pytest.raises(subprocess.CalledProcessError):
        run_training(bundle, data, data / "datalist.json", epochs=1, **TRAIN_FAST)
    assert not (bundle / "models" / "last.pt").exists()


def test_multi_process_training_gloo(phantoms, tmp_path, multi_process_training):
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", TINY)
    multi_process_training(bundle, phantoms, **TRAIN_FAST)
    assert (bundle / "models" / "last.pt").is_file() and (bundle / "models" / "model.pt").is_file()


def test_real_brats_case_all_sequences_and_flair_t1c_only(trained, tmp_path):
    root = os.environ.get("BRAINBUNDLES_DATA")
    if not root:
        pytest.skip("BRAINBUNDLES_DATA is not set: no real BraTS case to read")
    case = Path(root) / "brats" / "BraTS19_2013_10_1"
    ref = nib.load(case / "BraTS19_2013_10_1_t1.nii.gz")
    out = run_inference(trained, [case], output_dir=tmp_path / "all")
    seg = nib.load(out / "BraTS19_2013_10_1_seg.nii.gz")
    assert seg.shape == ref.shape == (240, 240, 155) and np.array_equal(seg.affine, ref.affine)
    assert nib.aff2axcodes(seg.affine) == ("L", "P", "S")
    two = [
        f"flair={case / 'BraTS19_2013_10_1_flair.nii.gz'}",
        f"t1c={case / 'BraTS19_2013_10_1_t1post.nii.gz'}",
    ]
    out = run_inference(trained, two, output_dir=tmp_path / "two")
    seg = nib.load(out / "BraTS19_2013_10_1_seg.nii.gz")
    assert seg.shape == ref.shape and np.array_equal(seg.affine, ref.affine)
