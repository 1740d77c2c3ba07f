"""Sequences matched by file name, multi-channel inference items, missing and repeated sequences,
the Decathlon Task01 layout and the label conventions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbundles.data import check_case, inference_items, make_datalist
from brainbundles.data.labels import LABEL_CONVENTIONS, convention_values, from_internal, to_internal
from brainbundles.data.sequences import group_sequences, match_sequence, normalise_channel
from brainbundles.errors import InputError

BRATS = ["T1", "T1c", "T2", "FLAIR"]


def _nii(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def _img(seed: int, shape=(6, 6, 6)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1, 100, shape).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "channel"),
    [
        ("BraTS19_2013_10_1_t1post.nii.gz", "T1c"),
        ("BraTS20_001_t1ce.nii.gz", "T1c"),
        ("BraTS-GLI-00000-000-t1c.nii.gz", "T1c"),
        ("BraTS-GLI-00000-000-t1n.nii.gz", "T1"),
        ("BraTS-GLI-00000-000-t2f.nii.gz", "FLAIR"),
        ("BraTS-GLI-00000-000-t2w.nii.gz", "T2"),
        ("sub-01_ses-1_FLAIR.nii.gz", "FLAIR"),
        ("sub-01_T1w.nii", "T1"),
        ("T1Gd.nii.gz", "T1c"),
        ("case_t2.nii.gz", "T2"),
        ("case_seg.nii.gz", None),
        ("notes.nii.gz", None),
    ],
)
def test_match_sequence(name, channel):
    assert match_sequence(name, BRATS) == channel


def test_normalise_channel():
    assert normalise_channel("flair", BRATS) == "FLAIR"
    assert normalise_channel("t1ce", BRATS) == "T1c"
    with pytest.raises(ValueError, match="PD"):
        normalise_channel("PD", BRATS)


def test_group_sequences_refuses_a_sequence_twice_and_unknown_files(tmp_path):
    files = [tmp_path / "a_t1ce.nii.gz", tmp_path / "a_t1post.nii.gz", tmp_path / "a_flair.nii.gz"]
    with pytest.raises(ValueError, match=r"a_t1ce.nii.gz: sequence T1c given twice"):
        group_sequences(files, BRATS)
    with pytest.raises(ValueError, match="cannot tell which sequence"):
        group_sequences([tmp_path / "scan.nii.gz"], BRATS)
    with pytest.raises(ValueError, match="no image of any sequence"):
        group_sequences([tmp_path / "a_seg.nii.gz"], BRATS)
    got = group_sequences(
        [tmp_path / "a_flair.nii.gz", tmp_path / "a_seg.nii.gz", tmp_path / "a_t1.nii.gz"], BRATS
    )
    assert list(got) == ["T1", "FLAIR"]  # bundle order, seg skipped


def _brats_case(folder: Path, cid: str, suffixes=("t1", "t1ce", "t2", "flair")) -> Path:
    for i, s in enumerate(suffixes):
        _nii(folder / cid / f"{cid}_{s}.nii.gz", _img(i))
    _nii(folder / cid / f"{cid}_seg.nii.gz", np.zeros((6, 6, 6), np.uint8))
    return folder / cid


def test_inference_items_case_folder_and_folder_of_cases(tmp_path):
    a = _brats_case(tmp_path, "A")
    _brats_case(tmp_path, "B", ("flair", "t1ce"))
    (item,) = inference_items([a], channels=BRATS)
    assert item["case"] == "A" and item["channels"] == BRATS
    assert [Path(p).name for p in item["image"]] == [
        "A_t1.nii.gz",
        "A_t1ce.nii.gz",
        "A_t2.nii.gz",
        "A_flair.nii.gz",
    ]
    items = inference_items([tmp_path], channels=BRATS)
    assert [it["case"] for it in items] == ["A", "B"]
    assert items[1]["channels"] == ["T1c", "FLAIR"]
    assert items[1]["reference"].endswith("B_t1ce.nii.gz")
    for it in items:
        check_case(it, BRATS, allow_missing=True)
    with pytest.raises(InputError, match="missing sequences T1, T2"):
        check_case(items[1], BRATS)


def test_inference_items_explicit_and_loose_files(tmp_path):
    a = _brats_case(tmp_path, "A")
    (item,) = inference_items([f"flair={a / 'A_flair.nii.gz'}", f"T1C={a / 'A_t1ce.nii.gz'}"], channels=BRATS)
    assert item["channels"] == ["T1c", "FLAIR"] and item["case"] == "A"
    (item,) = inference_items([a / "A_t2.nii.gz", a / "A_t1.nii.gz"], channels=BRATS)
    assert item["channels"] == ["T1", "T2"]
    with pytest.raises(ValueError, match="sequence FLAIR given twice"):
        inference_items([f"flair={a / 'A_t1.nii.gz'}", a / "A_flair.nii.gz"], channels=BRATS)
    with pytest.raises(ValueError, match="sequence FLAIR given twice"):
        inference_items([f"flair={a / 'A_t1.nii.gz'}", f"t2f={a / 'A_flair.nii.gz'}"], channels=BRATS)
    with pytest.raises(ValueError, match="not one of the bundle's channels"):
        inference_items([f"dwi={a / 'A_t1.nii.gz'}"], channels=BRATS)
    (item,) = inference_items([a / "A_flair.nii.gz"], channels=BRATS)  # FLAIR only
    assert item["channels"] == ["FLAIR"]


def test_inference_items_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        inference_items([tmp_path / "empty"], channels=BRATS)


def test_check_case_channels_entry(tmp_path):
    f1, f2 = _nii(tmp_path / "x.nii.gz", _img(0)), _nii(tmp_path / "y.nii.gz", _img(1))
    with pytest.raises(InputError, match=r"x.nii.gz: sequence FLAIR given twice"):
        check_case({"image": [f1, f2], "channels": ["FLAIR", "t2f"]}, BRATS, allow_missing=True)
    with pytest.raises(InputError, match="no sequence given"):
        check_case({"image": [f1], "channels": []}, BRATS, allow_missing=True)
    with pytest.raises(InputError, match="not one of the bundle's channels"):
        check_case({"image": [f1], "channels": ["DWI"]}, BRATS, allow_missing=True)
    with pytest.raises(InputError, match="wrong number of channels"):
        check_case({"image": [f1, f2], "channels": ["FLAIR"]}, BRATS, allow_missing=True)
    check_case({"image": [f1, f2], "channels": ["FLAIR", "T1c"]}, BRATS, allow_missing=True)


def test_check_case_label_convention(tmp_path):
    img = _nii(tmp_path / "img.nii.gz", np.stack([_img(i) for i in range(4)], -1))
    lab = np.zeros((6, 6, 6), np.uint8)
    lab.flat[:4] = [0, 1, 2, 4]
    seg = _nii(tmp_path / "seg.nii.gz", lab)
    item = {"image": [img], "label": seg, "label_convention": "brats2019"}
    check_case(item, BRATS, label_values=[0, 1, 2, 3])
    with pytest.raises(InputError, match="unexpected label values 4"):
        check_case({**item, "label_convention": "brats2023"}, BRATS, label_values=[0, 1, 2, 3])
    with pytest.raises(InputError, match="unknown 'brats1999'"):
        check_case({**item, "label_convention": "brats1999"}, BRATS, label_values=[0, 1, 2, 3])


def test_label_conventions_round_trip():
    internal = np.array([0, 1, 2, 3], np.uint8)
    assert from_internal(internal, "brats2019").tolist() == [0, 1, 2, 4]
    assert from_internal(internal, "msd_task01").tolist() == [0, 2, 1, 3]
    for name in LABEL_CONVENTIONS:
        vals = np.array(convention_values(name))
        assert (
            to_internal(from_internal(to_internal(vals, name), name), name).tolist()
            == to_internal(vals, name).tolist()
        )
    with pytest.raises(ValueError, match=r"values \[3\] are not in the brats2019"):
        to_internal(np.array([3]), "brats2019")


def test_msd_task01_layout(tmp_path):
    rng = np.random.default_rng(0)
    for i in (1, 2, 3):
        _nii(
            tmp_path / "imagesTr" / f"BRATS_00{i}.nii.gz", rng.uniform(1, 9, (6, 6, 6, 4)).astype(np.float32)
        )
        lab = np.zeros((6, 6, 6), np.uint8)
        lab.flat[:4] = [0, 1, 2, 3]
        _nii(tmp_path / "labelsTr" / f"BRATS_00{i}.nii.gz", lab)
    _nii(tmp_path / "imagesTs" / "BRATS_485.nii.gz", rng.uniform(1, 9, (6, 6, 6, 4)).astype(np.float32))
    (tmp_path / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"mac junk")
    (tmp_path / "dataset.json").write_text(
        json.dumps({"modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}})
    )
    dl = make_datalist("msd_task01", tmp_path, folds=3)
    assert dl["channels"] == BRATS and dl["label_convention"] == "msd_task01"
    assert len(dl["training"]) == 3 and [t["case"] for t in dl["testing"]] == ["BRATS_485"]
    first = dl["training"][0]
    assert first["channels"] == ["FLAIR", "T1", "T1c", "T2"] and first["label_convention"] == "msd_task01"
    assert "label_convention" not in dl["testing"][0]
    check_case(first, BRATS, label_values=[0, 1, 2, 3], require_label=True, base_dir=tmp_path)


def test_brats_layouts_record_their_convention(tmp_path):
    _brats_case(tmp_path, "BraTS_001")
    dl = make_datalist("brats", tmp_path, folds=1)
    assert dl["label_convention"] == "brats2019"
    assert dl["training"][0]["label_convention"] == "brats2019"


def test_folder_cases_keep_their_problems_for_the_checks(tmp_path, caplog):
    """A case folder with a sequence twice, or with no sequence, becomes an item the checks refuse,
    so a batch of case folders goes on with the good ones."""
    _brats_case(tmp_path, "good")
    twice = _brats_case(tmp_path, "twice", ("t1", "t1ce", "t1post", "flair"))
    none = tmp_path / "none"
    _nii(none / "none_seg.nii.gz", np.zeros((6, 6, 6), np.uint8))
    _nii(twice / "twice_brainmask_extra.nii.gz", _img(9))  # names no sequence: skipped with a warning
    with caplog.at_level(logging.WARNING, logger="brainbundles"):
        items = {it["case"]: it for it in inference_items([tmp_path], channels=BRATS)}
    assert "twice_brainmask_extra.nii.gz: skipped" in caplog.text
    assert set(items) == {"good", "twice", "none"}
    check_case(items["good"], BRATS, allow_missing=True)
    with pytest.raises(InputError, match=r"twice_t1ce.nii.gz: sequence T1c given twice"):
        check_case(items["twice"], BRATS, allow_missing=True)
    with pytest.raises(InputError, match=r"none: no sequence given for this case"):
        check_case(items["none"], BRATS, allow_missing=True)


def test_split_named_input(tmp_path):
    from brainbundles.data.sequences import split_named_input

    assert split_named_input("FLAIR=/data/a.nii.gz") == ("FLAIR", "/data/a.nii.gz")
    assert split_named_input("t1c=rel/b.nii.gz") == ("t1c", "rel/b.nii.gz")
    assert split_named_input("/data/a.nii.gz") == (None, "/data/a.nii.gz")
    odd = _nii(tmp_path / "T1=odd.nii.gz", _img(0))  # an existing file whose name holds '=' is a path
    assert split_named_input(str(odd)) == (None, str(odd))
    assert split_named_input("1=x") == (None, "1=x")
