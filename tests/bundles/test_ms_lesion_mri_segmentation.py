"""What only the MS lesion bundle does: Brosch's network and loss, absent sequences filled in
preprocessing, and native-space output for any subset of sequences. Everything every bundle does
(configs and channels, metadata, the model zoo's commands, training, the tuned lesion threshold,
lesion-wise evaluation, bad input, the real MS scans) is in ``test_bundle_contract.py``."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainbundles.bundle.configs import parse_bundle
from brainbundles.data.phantom import make_phantom
from brainbundles.workflows import resolve_bundle, run_inference

BUNDLE = resolve_bundle("ms_lesion_mri_segmentation")
CHANNELS = ["FLAIR", "T1", "T2", "PD", "T1Gd"]


@pytest.fixture(scope="module")
def phantoms(bundle_phantoms) -> Path:
    return bundle_phantoms("ms")


@pytest.fixture(scope="module")
def trained(trained_bundle) -> Path:
    """A tiny bundle trained for two epochs, threshold tuned at the end (``conftest.py``)."""
    return trained_bundle("ms")


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
