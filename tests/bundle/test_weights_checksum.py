"""Weights whose sha256 differs from the one ``large_files.yml`` lists are refused, naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from brainbundles.bundle.export import large_files_text
from brainbundles.bundle.weights import check_listed_checksum, save_weights
from brainbundles.errors import ChecksumError
from brainbundles.handlers import LoadWeights
from brainbundles.workflows import run_inference


def _bundle(root: Path) -> Path:
    net = torch.nn.Conv3d(1, 2, 3)
    save_weights(net.state_dict(), root / "models" / "model.safetensors")
    (root / "large_files.yml").write_text(large_files_text(root, ["models/model.safetensors"]))
    return root / "models" / "model.safetensors"


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of the last weight
    path.write_bytes(bytes(data))


def test_listed_weights_pass_and_tampered_weights_are_refused(tmp_path):
    weights = _bundle(tmp_path)
    assert check_listed_checksum(weights) is True
    _tamper(weights)
    with pytest.raises(ChecksumError, match=r"model\.safetensors: sha256 [0-9a-f]{64} does not match"):
        check_listed_checksum(weights)
    net = torch.nn.Conv3d(1, 2, 3)
    with pytest.raises(ChecksumError, match="large_files.yml"):
        LoadWeights(tmp_path / "models", net)()


def test_weights_no_list_names_are_not_checked(tmp_path):
    weights = _bundle(tmp_path)
    other = tmp_path / "models" / "fold_0" / "model.safetensors"
    save_weights(torch.nn.Conv3d(1, 2, 3).state_dict(), other)
    assert check_listed_checksum(other) is False  # a local training run's weights: not listed
    (tmp_path / "large_files.yml").unlink()
    _tamper(weights)
    assert check_listed_checksum(weights) is False


def test_inference_stops_on_tampered_shipped_weights(tmp_path, untrained_export):
    root = untrained_export(tmp_path / "bundle")
    assert "models/model.safetensors" in (root / "large_files.yml").read_text()
    _tamper(root / "models" / "model.safetensors")
    with pytest.raises(ChecksumError, match=str(root / "models" / "model.safetensors")):
        run_inference(root, [str(tmp_path / "any.nii.gz")], output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _case(folder: Path, name: str, value: int) -> dict:
    import nibabel as nib
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    image, label = folder / f"{name}.nii.gz", folder / f"{name}_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), value, np.int16), np.eye(4)), str(image))
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)), str(label))
    return {"image": [str(image)], "label": str(label), "case": name}


def test_training_fingerprint_follows_content_not_location(tmp_path):
    from brainbundles.bundle.export import training_fingerprint

    a = [_case(tmp_path / "here", "c1", 5), _case(tmp_path / "here", "c2", 6)]
    b = [_case(tmp_path / "elsewhere" / "x", "c1", 5), _case(tmp_path / "elsewhere" / "y", "c2", 6)]
    fa, fb = training_fingerprint(a[:1], a[1:], ["T1"]), training_fingerprint(b[:1], b[1:], ["T1"])
    assert fa == fb  # the same data in another folder
    changed = training_fingerprint([_case(tmp_path / "changed", "c1", 7)], b[1:], ["T1"])
    assert changed["training_files_sha256"] != fa["training_files_sha256"]
    assert changed["validation_files_sha256"] == fa["validation_files_sha256"]
    assert changed["case_ids_sha256"] == fa["case_ids_sha256"]


def test_training_fingerprint_counts_validation_cases_it_trained_on(tmp_path):
    from brainbundles.bundle.export import training_fingerprint

    a = [_case(tmp_path, "c1", 5), _case(tmp_path, "c2", 6)]
    assert "validation_cases_trained_on" not in training_fingerprint(a[:1], a[1:], ["T1"])
    every = training_fingerprint(a, a[1:], ["T1"])  # trained on all, c2 validated
    assert every["validation_cases_trained_on"] == 1 and every["training_cases"] == 2
