"""Tests of brainbundles.data.cases: what inference and training are pointed at, turned into items."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbundles.data.cases import case_id, inference_items, load_fold
from brainbundles.errors import InputError

SHAPE = (6, 6, 6)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def save_nii(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def image(seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1, 100, SHAPE).astype(np.float32)


def label(values=(0, 1, 2, 3)) -> np.ndarray:
    lab = np.zeros(SHAPE, dtype=np.uint8)
    lab.reshape(-1)[: 5 * len(values)] = np.repeat(np.asarray(values, dtype=np.uint8), 5)
    return lab


def write_datalist(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# ----------------------------------------------------------------------------------------------- case_id


@pytest.mark.parametrize(
    "path, expected",
    [
        ("sub-01_T1w.nii.gz", "sub-01_T1w"),
        ("/data/sub-01/anat/sub-01_T1w.nii", "sub-01_T1w"),
        ("scan.hdr", "scan"),
        ("scan.img", "scan"),
        ("SCAN.NII.GZ", "SCAN"),  # suffixes matched case-insensitively, the name's case kept
        ("sub-01.v2.nii.gz", "sub-01.v2"),  # only the image suffix goes
        (Path("a/b/case_3.nii.gz"), "case_3"),
        ("notes.txt", "notes.txt"),
    ],
)
def test_case_id_strips_image_suffixes(path, expected):
    assert case_id(path) == expected


# --------------------------------------------------------------------------------------- inference_items


def test_inference_items_from_files(tmp_path):
    a = touch(tmp_path / "in" / "sub-02_T1w.nii.gz")
    b = touch(tmp_path / "in" / "sub-01_T1w.nii")
    items = inference_items([str(a), b])
    root = (tmp_path / "in").resolve()
    assert items == [
        {
            "image": [str(root / "sub-02_T1w.nii.gz")],
            "reference": str(root / "sub-02_T1w.nii.gz"),
            "case": "sub-02_T1w",
        },
        {
            "image": [str(root / "sub-01_T1w.nii")],
            "reference": str(root / "sub-01_T1w.nii"),
            "case": "sub-01_T1w",
        },
    ]
    # a single path (not a list) is one input
    assert inference_items(str(a)) == items[:1]


def test_inference_items_relative_paths_become_absolute(tmp_path, monkeypatch):
    touch(tmp_path / "scans" / "x.nii.gz")
    monkeypatch.chdir(tmp_path)
    (item,) = inference_items(["scans/x.nii.gz"])
    assert Path(item["image"][0]).is_absolute()
    assert item["image"][0] == str((tmp_path / "scans" / "x.nii.gz").resolve())


def test_inference_items_from_folder_picks_image_files_sorted(tmp_path):
    folder = tmp_path / "scans"
    for name in [
        "c.nii.gz",
        "a.nii",
        "b.hdr",
        "b.img",
        "notes.txt",
        "dataset.json",
        "d.nii.gz.md5",
        "E.NII.GZ",
    ]:
        touch(folder / name)
    touch(folder / "sub" / "nested.nii.gz")  # not recursive
    (folder / "dir.nii.gz").mkdir()  # a folder with an image-like name is not a file
    items = inference_items([folder])
    root = folder.resolve()
    assert [it["image"] for it in items] == [
        [str(root / n)] for n in ["E.NII.GZ", "a.nii", "b.hdr", "c.nii.gz"]
    ]
    assert [it["case"] for it in items] == ["E", "a", "b", "c"]
    assert all(it["reference"] == it["image"][0] for it in items)


def test_inference_items_folder_without_images_raises(tmp_path):
    touch(tmp_path / "empty" / "readme.txt")
    with pytest.raises(ValueError, match="no image files"):
        inference_items([tmp_path / "empty"])


def test_inference_items_colliding_names_get_parent_prefix(tmp_path):
    a = touch(tmp_path / "siteA" / "T1.nii.gz")
    b = touch(tmp_path / "siteB" / "T1.nii")
    c = touch(tmp_path / "siteB" / "other.nii.gz")
    items = inference_items([a, b, c])
    assert [it["case"] for it in items] == ["siteA_T1", "siteB_T1", "other"]
    assert [it["reference"] for it in items] == [str(p.resolve()) for p in (a, b, c)]


def test_inference_items_colliding_parents_too_are_numbered_unique(tmp_path):
    files = [touch(tmp_path / site / "anat" / "T1.nii.gz") for site in ("x", "y", "z")]
    items = inference_items(files)
    ids = [it["case"] for it in items]
    assert len(set(ids)) == 3
    assert ids == ["anat_T1", "anat_T1_1", "anat_T1_2"]


def test_inference_items_ids_unique_even_when_numbered_id_exists(tmp_path):
    files = [
        touch(tmp_path / "x" / "anat" / "T1.nii.gz"),
        touch(tmp_path / "y" / "anat" / "T1.nii.gz"),
        touch(tmp_path / "z" / "anat_T1_1.nii.gz"),
    ]
    ids = [it["case"] for it in inference_items(files)]
    assert len(set(ids)) == len(ids), ids


def test_inference_items_needs_inputs_or_datalist():
    with pytest.raises(ValueError, match="datalist"):
        inference_items(None)
    with pytest.raises(ValueError, match="datalist"):
        inference_items([])


def test_inference_items_from_datalist_resolved_against_base_dir(tmp_path):
    dl = write_datalist(
        tmp_path / "lists" / "datalist.json",
        {
            "training": [{"image": ["train/t.nii.gz"], "label": "train/t_seg.nii.gz", "fold": 0}],
            "testing": [
                {"image": ["imgs/s1_T1.nii.gz", "imgs/s1_FLAIR.nii.gz"], "label": "labels/s1.nii.gz"},
                {"image": "imgs/s2_T1.nii.gz", "case": "subject-2", "site": "B"},
            ],
        },
    )
    base = tmp_path / "dataset"
    items = inference_items(None, datalist=dl, base_dir=base, channels=("T1", "FLAIR"))
    b = base.resolve()
    assert items == [
        {
            "image": [str(b / "imgs/s1_T1.nii.gz"), str(b / "imgs/s1_FLAIR.nii.gz")],
            "label": str(b / "labels/s1.nii.gz"),
            "reference": str(b / "imgs/s1_T1.nii.gz"),
            "case": "s1_T1",
        },
        {
            "image": str(b / "imgs/s2_T1.nii.gz"),
            "case": "subject-2",
            "site": "B",
            "reference": str(b / "imgs/s2_T1.nii.gz"),
        },
    ]
    # the inputs win over the datalist when both are given
    f = touch(tmp_path / "x.nii.gz")
    assert [it["case"] for it in inference_items([f], datalist=dl, base_dir=base)] == ["x"]


def test_inference_items_datalist_default_base_is_its_folder(tmp_path):
    dl = write_datalist(tmp_path / "lists" / "datalist.json", {"testing": [{"image": ["imgs/a.nii.gz"]}]})
    (item,) = inference_items([], datalist=dl)
    assert item["image"] == [str((tmp_path / "lists" / "imgs" / "a.nii.gz").resolve())]
    assert item["case"] == "a"


def test_inference_items_datalist_section_missing_or_empty(tmp_path):
    dl = write_datalist(tmp_path / "datalist.json", {"training": [{"image": ["a.nii.gz"]}], "testing": []})
    with pytest.raises(ValueError, match="testing"):
        inference_items(None, datalist=dl)
    assert [it["case"] for it in inference_items(None, datalist=dl, section="training")] == ["a"]
    with pytest.raises(InputError, match="missing.json: datalist not found"):
        inference_items(None, datalist=tmp_path / "missing.json")


# --------------------------------------------------------------------------------------------- load_fold


@pytest.fixture
def folds_datalist(tmp_path):
    items = [
        {"image": [f"imgs/c{i}.nii.gz"], "label": f"labels/c{i}.nii.gz", "fold": i % 3} for i in range(6)
    ] + [{"image": ["imgs/extra.nii.gz"], "label": "labels/extra.nii.gz"}]  # no fold: always trains
    return write_datalist(tmp_path / "datalist.json", {"training": items, "testing": []})


def test_load_fold_train_val_split(tmp_path, folds_datalist):
    base = tmp_path / "data"
    val = load_fold(folds_datalist, base, fold=1, split="val")
    train = load_fold(folds_datalist, base, fold=1, split="train")
    assert [it["case"] for it in val] == ["c1", "c4"]
    assert [it["case"] for it in train] == ["c0", "c2", "c3", "c5", "extra"]
    assert all(it["fold"] == 1 for it in val)
    assert val[0]["image"] == [str(base.resolve() / "imgs" / "c1.nii.gz")]
    assert val[0]["label"] == str(base.resolve() / "labels" / "c1.nii.gz")
    assert val[0]["reference"] == val[0]["image"][0]
    # every case exactly once across the split, for every fold
    for fold in range(3):
        v = load_fold(folds_datalist, base, fold=fold, split="val")
        t = load_fold(folds_datalist, base, fold=fold, split="train")
        assert sorted(it["case"] for it in v + t) == ["c0", "c1", "c2", "c3", "c4", "c5", "extra"]
        assert not {it["case"] for it in v} & {it["case"] for it in t}


def test_load_fold_all_trains_on_every_case(tmp_path, folds_datalist):
    base = tmp_path / "data"
    every = load_fold(folds_datalist, base, fold=1, split="all")
    assert [it["case"] for it in every] == ["c0", "c1", "c2", "c3", "c4", "c5", "extra"]
    validated = load_fold(folds_datalist, base, fold=1, split="val")
    assert {it["case"] for it in validated} <= {it["case"] for it in every}
    with pytest.raises(ValueError, match="7"):  # the fold must still exist: it names the validation cases
        load_fold(folds_datalist, base, fold=7, split="all")


def test_load_fold_default_base_is_datalist_folder(tmp_path, folds_datalist):
    (first,) = load_fold(folds_datalist, None, fold=0, split="val")[:1]
    assert first["image"] == [str(tmp_path.resolve() / "imgs" / "c0.nii.gz")]


def test_load_fold_unknown_fold_or_split_raises(tmp_path, folds_datalist):
    with pytest.raises(ValueError, match="7") as info:
        load_fold(folds_datalist, tmp_path, fold=7, split="val")
    assert "[0, 1, 2]" in str(info.value)
    with pytest.raises(ValueError, match="split"):
        load_fold(folds_datalist, tmp_path, fold=0, split="test")
    empty = write_datalist(tmp_path / "empty.json", {"training": []})
    with pytest.raises(ValueError, match="training"):
        load_fold(empty, tmp_path, fold=0, split="train")


def _checked_datalist(tmp_path: Path, bad_label_values=(0, 1, 5)) -> Path:
    for i in range(3):
        save_nii(tmp_path / "imgs" / f"c{i}.nii.gz", image(i))
        values = bad_label_values if i == 2 else (0, 1, 2, 3)
        save_nii(tmp_path / "labels" / f"c{i}.nii.gz", label(values))
    items = [{"image": [f"imgs/c{i}.nii.gz"], "label": f"labels/c{i}.nii.gz", "fold": i} for i in range(3)]
    return write_datalist(tmp_path / "datalist.json", {"training": items})


def test_load_fold_checks_cases_and_names_bad_label(tmp_path):
    dl = _checked_datalist(tmp_path)
    bad = str(tmp_path.resolve() / "labels" / "c2.nii.gz")
    with pytest.raises(InputError) as info:
        load_fold(dl, tmp_path, fold=0, split="train", channels=["T1"], label_values={0, 1, 2, 3})
    msg = str(info.value)
    assert msg.startswith(f"{bad}: "), msg
    assert "5" in msg
    # the bad case is checked only in the split it belongs to
    ok = load_fold(dl, tmp_path, fold=2, split="train", channels=["T1"], label_values={0, 1, 2, 3})
    assert [it["case"] for it in ok] == ["c0", "c1"]
    # and without channels nothing is checked
    assert len(load_fold(dl, tmp_path, fold=0, split="train")) == 2


def test_load_fold_with_valid_labels_passes_checks(tmp_path):
    dl = _checked_datalist(tmp_path, bad_label_values=(0, 2, 3))
    train = load_fold(dl, tmp_path, fold=0, split="train", channels=["T1"], label_values={0, 1, 2, 3})
    assert [it["case"] for it in train] == ["c1", "c2"]
