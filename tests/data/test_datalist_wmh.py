"""MICCAI 2017 WMH challenge layout: <site>/<id>/pre/{FLAIR,T1}, <site>/<id>/wmh; channels FLAIR, T1."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbundles.data import check_case, make_datalist
from brainbundles.data.datalist import LAYOUTS
from brainbundles.data.labels import WMH_LABELS

SHAPE = (4, 4, 4)


def _save(path: Path, label: bool = False, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = (
        rng.integers(0, 3, SHAPE).astype(np.uint8) if label else rng.uniform(1, 10, SHAPE).astype(np.float32)
    )
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def _case(
    root: Path, rel: str, label: bool = True, ext: str = ".nii.gz", t1: bool = True, extras: bool = True
) -> Path:
    """A challenge case folder ``root/rel`` with pre/FLAIR, pre/T1, wmh and the files the layout ignores."""
    d = root / rel
    _save(d / "pre" / f"FLAIR{ext}", seed=1)
    if t1:
        _save(d / "pre" / f"T1{ext}", seed=2)
    if label:
        _save(d / f"wmh{ext}", label=True, seed=3)
    if extras:
        for name in ("FLAIR", "T1", "3DT1"):
            _save(d / "orig" / f"{name}{ext}", seed=4)
        _save(d / "pre" / f"3DT1{ext}", seed=5)
    return d


def test_wmh_multisite_labelled_and_unlabelled(tmp_path):
    for rel in ("Utrecht/0", "Utrecht/2", "Singapore/50", "GE3T/100", "GE3T/101"):
        _case(tmp_path, rel)
    _case(tmp_path, "Singapore/51", label=False)
    (tmp_path / "docs").mkdir()  # unrelated folders are ignored
    dl = make_datalist("wmh", tmp_path, folds=2)
    assert "wmh" in LAYOUTS
    assert dl["layout"] == "wmh" and dl["name"] == "WMH2017"
    assert dl["channels"] == ["FLAIR", "T1"]
    assert dl["labels"] == WMH_LABELS == {"0": "background", "1": "WMH", "2": "other pathology"}
    assert [e["case"] for e in dl["training"]] == [
        "GE3T_100",
        "GE3T_101",
        "Singapore_50",
        "Utrecht_0",
        "Utrecht_2",
    ]
    assert sorted(e["fold"] for e in dl["training"]) == [0, 0, 0, 1, 1]
    first = dl["training"][0]
    assert first["image"] == ["GE3T/100/pre/FLAIR.nii.gz", "GE3T/100/pre/T1.nii.gz"]
    assert first["label"] == "GE3T/100/wmh.nii.gz"
    assert dl["numTest"] == 1
    (test,) = dl["testing"]
    assert test == {
        "image": ["Singapore/51/pre/FLAIR.nii.gz", "Singapore/51/pre/T1.nii.gz"],
        "case": "Singapore_51",
    }
    for item in dl["training"] + dl["testing"]:
        check_case(item, dl["channels"], label_values={0, 1, 2}, base_dir=tmp_path)
        assert not any(Path(p).is_absolute() or "orig" in p or "3DT1" in p for p in item["image"])


def test_wmh_channels_option(tmp_path):
    _case(tmp_path, "Utrecht/0")
    assert make_datalist("wmh", tmp_path, folds=1, channels=["flair", "t1"])["channels"] == ["FLAIR", "T1"]
    for bad in (["T1", "FLAIR"], ["FLAIR"], ["FLAIR", "T1", "T2"]):
        with pytest.raises(ValueError, match=r"layout 'wmh' has channels \['FLAIR', 'T1'\]"):
            make_datalist("wmh", tmp_path, folds=1, channels=bad)


def test_wmh_test_release_nesting_and_plain_nii(tmp_path):
    _case(tmp_path, "Amsterdam/GE3T/100", ext=".nii")
    _case(tmp_path, "Amsterdam/Philips_VU/144")
    _case(tmp_path, "Utrecht/11", label=False, ext=".nii")
    dl = make_datalist("wmh", tmp_path, folds=2)
    assert [e["case"] for e in dl["training"]] == ["Amsterdam_GE3T_100", "Amsterdam_Philips_VU_144"]
    ge3t = dl["training"][0]
    assert ge3t["image"] == ["Amsterdam/GE3T/100/pre/FLAIR.nii", "Amsterdam/GE3T/100/pre/T1.nii"]
    assert ge3t["label"] == "Amsterdam/GE3T/100/wmh.nii"
    assert [e["case"] for e in dl["testing"]] == ["Utrecht_11"]
    assert dl["testing"][0]["image"][1] == "Utrecht/11/pre/T1.nii"


def test_wmh_missing_t1_names_the_folder(tmp_path):
    _case(tmp_path, "Utrecht/0")
    bad = _case(tmp_path, "Singapore/7", t1=False, extras=False)
    _save(bad / "orig" / "T1.nii.gz")  # orig/ does not stand in for pre/
    with pytest.raises(
        ValueError, match=rf"wmh layout: case folder {re.escape(str(bad))} has pre/FLAIR but no pre/T1"
    ):
        make_datalist("wmh", tmp_path, folds=1)


def test_wmh_orig_only_and_empty_roots_find_no_cases(tmp_path):
    only_orig = tmp_path / "orig_only"
    for name in ("FLAIR", "T1"):
        _save(only_orig / "Utrecht" / "0" / "orig" / f"{name}.nii.gz")
    _save(only_orig / "Utrecht" / "0" / "wmh.nii.gz", label=True)
    (tmp_path / "empty").mkdir()
    for root in (only_orig, tmp_path / "empty"):
        with pytest.raises(
            ValueError,
            match=rf"wmh layout: no cases found: searched .*pre/FLAIR.* under root {re.escape(str(root))}$",
        ):
            make_datalist("wmh", root, folds=1)


def test_folder_layout_two_channel_flair_t1_with_wmh_labels(tmp_path):
    ids = ["c01", "c02", "c03"]
    for i, cid in enumerate(ids):
        _save(tmp_path / "images" / f"{cid}_FLAIR.nii.gz", seed=i)
        _save(tmp_path / "images" / f"{cid}_T1.nii.gz", seed=i + 10)
        if cid != "c03":
            _save(tmp_path / "labels" / f"{cid}.nii.gz", label=True, seed=i)
    dl = make_datalist("folder", tmp_path, folds=2, channels=["FLAIR", "T1"], labels=WMH_LABELS)
    assert dl["channels"] == ["FLAIR", "T1"] and dl["labels"] == WMH_LABELS
    assert [e["case"] for e in dl["training"]] == ["c01", "c02"]
    assert dl["training"][0]["image"] == ["images/c01_FLAIR.nii.gz", "images/c01_T1.nii.gz"]
    assert dl["training"][0]["label"] == "labels/c01.nii.gz"
    assert [e["case"] for e in dl["testing"]] == ["c03"]
    for item in dl["training"]:
        check_case(item, dl["channels"], label_values={0, 1, 2}, require_label=True, base_dir=tmp_path)
