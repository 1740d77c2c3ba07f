"""Exporting, verifying and packaging a bundle that holds several models (fold models, ``train-cv``):
every member is exported (safetensors and ``torch.export`` program) and listed in the metadata's
``ensemble`` and in ``large_files.yml``; verification checks each member; a single-model bundle's
export is as before. The folds are random weights of a tiny network (no training)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from monai.bundle import ConfigParser

from brainbundles.bundle.configs import build_network
from brainbundles.bundle.export import ENSEMBLE_COMBINATION, export_bundle, file_checksums
from brainbundles.bundle.package import extract_archive, package_bundle
from brainbundles.bundle.verify import verify_bundle, verify_ensemble
from brainbundles.bundle.weights import load_weights, save_weights
from brainbundles.fileio import sha256_file, write_json_atomic
from brainbundles.paths import LARGE_FILES
from brainbundles.workflows import copy_bundle

NAME = "brain_tissue_mri_segmentation"
TINY = {"network_def#features": [4, 8, 16], "network_def#dropout": 0.0, "patch_size": [32, 32, 32]}
MEMBERS = ["models/fold_0/model.safetensors", "models/fold_1/model.safetensors"]
PROGRAMS = ["models/fold_0/model.pt2", "models/fold_1/model.pt2"]


def quiet(_: str) -> None:
    pass


def fold_bundle(dest: Path, folds: int = 2) -> Path:
    """A copy of the tissue bundle with ``folds`` fold models of random weights, as ``train-cv`` leaves
    them: ``models/fold_<k>/model.pt`` and a ``last.pt`` checkpoint."""
    root = copy_bundle("tissue", dest, TINY)
    for k in range(folds):
        torch.manual_seed(k)
        state = build_network(root, weights=False).state_dict()
        (root / "models" / f"fold_{k}").mkdir()
        torch.save(state, root / "models" / f"fold_{k}" / "model.pt")
        torch.save({"network": state, "epoch": torch.tensor(1)}, root / "models" / f"fold_{k}" / "last.pt")
    # the training data fingerprint that fold 0's training wrote (fold 1 has none)
    write_json_atomic(
        {"training_cases": 3, "channels": ["T1"]}, root / "models" / "fold_0" / "training_data.json"
    )
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, dict]:
    """An exported two-fold bundle and the metadata export returned."""
    root = fold_bundle(tmp_path_factory.mktemp("ensemble") / NAME)
    return root, export_bundle(root, changelog="two random folds")


@pytest.fixture()
def bundle(exported, tmp_path) -> Path:
    """A copy of the exported bundle that a test may change."""
    return Path(shutil.copytree(exported[0], tmp_path / NAME))


def large_files(root: Path) -> list[dict]:
    return yaml.safe_load((root / LARGE_FILES).read_text())["large_files"]


def test_export_lists_every_member_in_order(exported):
    root, meta = exported
    assert meta["ensemble"] == {"members": MEMBERS, "combination": ENSEMBLE_COMBINATION}
    # each member's training data fingerprint, in the members' order (None where training wrote none)
    assert meta["training_data"] == {"members": [{"training_cases": 3, "channels": ["T1"]}, None]}
    assert json.loads((root / "configs" / "metadata.json").read_text()) == meta
    info = meta["exported_model"]
    assert info["file"] == ["fold_0/model.pt2", "fold_1/model.pt2"]  # relative to models/, as model.pt2
    assert info["input_shape"] == ["batch", 1, 32, 32, 32] and info["max_relative_difference"] <= 1e-4
    for k, member in enumerate(MEMBERS):  # each member holds its fold's weights
        saved, trained = load_weights(root / member), load_weights(root / f"models/fold_{k}/model.pt")
        assert saved.keys() == trained.keys() and all(torch.equal(saved[n], trained[n]) for n in saved)
    first, second = (load_weights(root / m) for m in MEMBERS)
    assert any(not torch.equal(first[n], second[n]) for n in first)  # two different models
    assert (
        not (root / "models" / "model.safetensors").exists() and not (root / "models" / "model.pt2").exists()
    )
    assert not list(root.rglob(".*new*"))  # no staged program left


def test_large_files_lists_every_weights_file_and_program(exported):
    root, meta = exported
    entries = large_files(root)
    assert [e["path"] for e in entries] == [MEMBERS[0], PROGRAMS[0], MEMBERS[1], PROGRAMS[1]]
    for e in entries:
        assert e == {
            "path": e["path"],
            "url": "",
            "hash_val": sha256_file(root / e["path"]),
            "hash_type": "sha256",
        }
    assert ConfigParser.load_config_file(str(root / LARGE_FILES)) == {
        "large_files": entries
    }  # as MONAI reads it
    assert meta["files_sha256"][LARGE_FILES] == sha256_file(root / LARGE_FILES)


def test_ensemble_verifies_packages_without_pickles_and_verifies_unpacked(exported, tmp_path):
    root, meta = exported
    lines: list[str] = []
    report = verify_bundle(root, log=lines.append)
    assert report["ensemble"] == MEMBERS and report["exported_difference"] <= 1e-4
    assert any("exported programs of the 2 members agree" in line for line in lines)

    zip_path, _ = package_bundle(root, tmp_path / "ensemble.zip")
    with zipfile.ZipFile(zip_path) as z:
        names = {n.split("/", 1)[1] for n in z.namelist()}
    assert {*MEMBERS, *PROGRAMS, LARGE_FILES, "configs/metadata.json"} <= names
    assert not [n for n in names if n.endswith(".pt")]  # neither model.pt nor last.pt
    got = extract_archive(zip_path, tmp_path / "unpacked")
    report = verify_bundle(got, strict=True, run_exported=True, log=quiet)
    assert report["ensemble"] == MEMBERS and report["exported_difference"] <= 1e-4


def test_tampered_member_fails_verification_naming_it(bundle):
    save_weights(load_weights(bundle / MEMBERS[0]), bundle / MEMBERS[1])  # fits, but not what was exported
    with pytest.raises(ValueError, match="fold_1/model.safetensors: sha256 differs"):
        verify_bundle(bundle, log=quiet)


def test_member_program_that_disagrees_with_its_weights_fails_verification(bundle):
    shutil.copy(bundle / PROGRAMS[0], bundle / PROGRAMS[1])  # fold 0's program for fold 1, checksums redone
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    write_json_atomic({**meta, "files_sha256": file_checksums(bundle)}, bundle / "configs" / "metadata.json")
    with pytest.raises(ValueError, match="fold_1/model.pt2: differs from the eager network"):
        verify_bundle(bundle, log=quiet)


def test_metadata_members_must_match_the_fold_models(bundle):
    (bundle / "models" / "fold_2").mkdir()  # a fold added after export: inference would use it
    shutil.copy(bundle / MEMBERS[0], bundle / "models" / "fold_2" / "model.safetensors")
    with pytest.raises(
        ValueError, match="fold models that inference uses are.*fold_2.*export the bundle again"
    ):
        verify_bundle(bundle, log=quiet)
    shutil.rmtree(bundle / "models" / "fold_2")
    meta_path = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    write_json_atomic({**meta, "ensemble": {**meta["ensemble"], "members": MEMBERS[::-1]}}, meta_path)
    with pytest.raises(ValueError, match="the ensemble lists"):
        verify_ensemble(bundle)
    write_json_atomic(
        {**meta, "ensemble": {**meta["ensemble"], "members": [*MEMBERS, "models/fold_9/x"]}}, meta_path
    )
    with pytest.raises(ValueError, match="fold_9/x: listed in the metadata's ensemble but missing"):
        verify_ensemble(bundle)


def test_single_model_beside_fold_models_is_refused_before_writing(tmp_path):
    root = fold_bundle(tmp_path / NAME)
    save_weights(load_weights(root / "models" / "fold_0" / "model.pt"), root / "models" / "model.safetensors")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(
        ValueError, match=r"fold models \(fold_0, fold_1\) and a single model \(model.safetensors\)"
    ):
        export_bundle(root)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_single_model_export_is_unchanged_and_lists_one_model(tmp_path, untrained_export):
    root = untrained_export(tmp_path / NAME)
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    assert "ensemble" not in meta and meta["exported_model"]["file"] == "model.pt2"
    entries = large_files(root)
    assert [e["path"] for e in entries] == ["models/model.safetensors", "models/model.pt2"]
    assert all(e["hash_val"] == sha256_file(root / e["path"]) and e["url"] == "" for e in entries)
    assert "ensemble" not in verify_bundle(root, log=quiet)

    # the publisher fills in a download address; exporting again keeps it for a file that did not change
    text = (root / LARGE_FILES).read_text().replace('url: ""', 'url: "https://example.org/model"', 1)
    (root / LARGE_FILES).write_text(text)
    export_bundle(root, changelog="again")
    assert large_files(root)[0]["url"] == "https://example.org/model"
