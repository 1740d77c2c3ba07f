"""What only the brain tumour (BraTS) bundle does: every network trained for one epoch and run through the
bundle runner, Havaei's second training phase, the evaluation's reference volumes as BraTS regions,
native-space inference in both label conventions and with some sequences missing. Everything every
bundle does (configs, metadata, the model zoo's commands, training, evaluation, the uncertainty map,
bad input, the real BraTS case) is in ``test_bundle_contract.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainbundles.data.phantom import write_phantom_dataset
from brainbundles.networks import output_layer_parameters
from brainbundles.workflows import copy_bundle, resolve_bundle, run_inference, run_training

BUNDLE = resolve_bundle("brain_tumour_mri_segmentation")

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
def phantoms(bundle_phantoms) -> Path:
    return bundle_phantoms("tumour")


@pytest.fixture(scope="module")
def trained(trained_bundle) -> Path:
    """A tiny SegResNet bundle trained for one epoch (``conftest.py``)."""
    return trained_bundle("tumour")


def _case_dir(phantoms: Path, which: str = "testing") -> Path:
    item = json.loads((phantoms / "datalist.json").read_text())[which][0]
    return phantoms / Path(item["image"][0]).parent


@pytest.mark.parametrize("network", list(NETWORKS))
def test_every_network_trains_and_infers_through_the_runner(network, phantoms, tmp_path, train_fast):
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
    run_training(bundle, phantoms, phantoms / "datalist.json", epochs=1, **train_fast)
    assert (bundle / "models" / "model.pt").is_file()
    case = _case_dir(phantoms)
    out = run_inference(bundle, [case], output_dir=tmp_path / "out")
    seg = nib.load(out / f"{case.name}_seg.nii.gz")
    ref = nib.load(next(case.glob("*_t1.nii.gz")))
    assert seg.shape == ref.shape and np.array_equal(seg.affine, ref.affine)
    assert set(np.unique(np.asanyarray(seg.dataobj)).tolist()) <= {0, 1, 2, 3}


def test_two_phase_training_trains_only_the_output_layer(phantoms, tmp_path, train_fast):
    """Havaei's second phase: only the output layer learns, on patches drawn without class balance."""
    args, _ = NETWORKS["InputCascadeCNN"]
    patch = [32, 32, 4]  # at 3 mm, so that uniformly drawn patches hold tumour and the output layer learns
    network_def = {"_target_": "brainbundles.networks.InputCascadeCNN", "spatial_dims": 2, "in_channels": 4,
                   "out_channels": 3, **args}  # fmt: skip
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", {"network_def": network_def, "patch_size": patch,
                                                       "spacing": [3.0, 3.0, 3.0]})  # fmt: skip
    run_training(bundle, phantoms, phantoms / "datalist.json", epochs=1, **train_fast)
    phase1 = torch.load(bundle / "models" / "model.pt", weights_only=True)
    run_training(
        bundle,
        phantoms,
        phantoms / "datalist.json",
        phase2=True,
        epochs=1,
        **{**train_fast, "num_samples": 2},
    )
    phase2 = torch.load(bundle / "models" / "last_phase2.pt", weights_only=True)["network"]
    from brainbundles.networks import InputCascadeCNN

    net = InputCascadeCNN(2, 4, 3, **args)
    out_names = {n for n, p in net.named_parameters() if any(p is q for q in output_layer_parameters(net))}
    assert out_names
    for name, value in phase1.items():
        same = torch.equal(value, phase2[name])
        assert same == (name not in out_names), name


def test_evaluation_reference_volumes_are_the_brats2019_labels_as_regions(bundle_evaluation, phantoms):
    """The evaluation (``conftest.py``; its regions and metrics are checked in ``test_bundle_contract.py``)
    reads the phantoms' 2019-convention labels as regions: the reference volumes in mL."""
    report = json.loads((bundle_evaluation("tumour") / "metrics.json").read_text())
    val = [c for c in json.loads((phantoms / "datalist.json").read_text())["training"] if c["fold"] == 0]
    assert sorted(report["per_case"]) == sorted(c["case"] for c in val)
    for case in val:
        seg = nib.load(phantoms / case["label"])
        voxel_ml = float(abs(np.linalg.det(seg.affine[:3, :3]))) / 1000
        lab = np.asanyarray(seg.dataobj)
        for region, values in (("WT", (1, 2, 4)), ("TC", (1, 4)), ("ET", (4,))):
            metrics = report["per_case"][case["case"]][region]
            assert metrics["vol_ref_ml"] == pytest.approx(np.isin(lab, values).sum() * voxel_ml)
            assert 0.0 <= metrics["dice"] <= 1.0 and 0.0 <= metrics["lesion_dice"] <= 1.0


def test_inference_all_sequences_lps_int16_both_conventions(trained, tmp_path):
    data = write_phantom_dataset(
        "tumour", tmp_path / "lps", cases=1, seed=11, shape=(36, 44, 30), spacing=(3.0, 2.5, 3.5),
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
