"""The committed bundle configs are exactly what the generator writes from the one source."""

import json
import shutil

import pytest

from brainbundles.bundle.generate import generate_configs, merge, render_configs
from brainbundles.cli import main
from brainbundles.paths import BUNDLE_NAMES, bundles_dir


def test_committed_configs_are_the_generated_ones():
    assert generate_configs(check=True) == []


@pytest.mark.parametrize("name", sorted(BUNDLE_NAMES.values()))
def test_train_and_inference_hold_everything(name):
    """train.json and inference.json each hold their workflow's ids (no file merged first); the overrides
    are small."""
    files = render_configs(name)
    for f in ("train.json", "inference.json"):
        config = json.loads(files[f])
        assert {"imports", "network_def", "preprocessing", "postprocessing", "device"} <= set(config), f
    assert {"train", "validate", "training"} <= set(json.loads(files["train.json"]))
    assert {"inference", "evaluator", "dataset"} <= set(json.loads(files["inference.json"]))
    for f in ("evaluate.json", "multi_gpu_train.json"):
        assert len(files[f].splitlines()) < 60, f


def test_merge_merges_objects_and_replaces_the_rest():
    got = merge({"a": {"x": 1, "y": [1, 2]}, "b": 1}, {"a": {"y": [3], "z": 2}, "c": 3})
    assert got == {"a": {"x": 1, "y": [3], "z": 2}, "b": 1, "c": 3}


def test_a_drifted_file_is_found_and_rewritten(tmp_path, capsys):
    shutil.copytree(bundles_dir(), tmp_path / "bundles")
    edited = tmp_path / "bundles" / "wmh_mri_segmentation" / "configs" / "inference.json"
    edited.write_text(edited.read_text().replace('"overlap": 0.25', '"overlap": 0.5'))
    (tmp_path / "bundles" / "brain_tissue_mri_segmentation" / "configs" / "evaluate.json").unlink()
    with pytest.raises(SystemExit) as e:
        main(["generate-configs", "-o", str(tmp_path / "bundles"), "--check"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "2 config file(s) differ" in err and str(edited) in err
    main(["generate-configs", "-o", str(tmp_path / "bundles")])
    assert "wrote 2 config file(s)" in capsys.readouterr().out
    assert generate_configs(tmp_path / "bundles", check=True) == []


def test_copy_bundle_writes_each_override_where_its_id_lives(tmp_path):
    """An override goes into each self-contained config that has its id (the network into both, the epochs
    into train.json only); an id neither config has is refused rather than added unused."""
    from brainbundles.workflows import copy_bundle

    copy = copy_bundle("tissue", tmp_path / "b", {"epochs": 3, "network_def#features": [4, 8, 16, 32, 64]})
    train = json.loads((copy / "configs" / "train.json").read_text())
    inference = json.loads((copy / "configs" / "inference.json").read_text())
    assert train["epochs"] == 3 and "epochs" not in inference
    assert train["network_def"]["features"] == inference["network_def"]["features"] == [4, 8, 16, 32, 64]
    with pytest.raises(ValueError, match="override epochz: no such id"):
        copy_bundle("tissue", tmp_path / "c", {"epochz": 3})
