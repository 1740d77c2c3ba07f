"""Tests of brainbundles.data.datalist: layouts, relative paths, reproducible balanced folds, errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImaged

from brainbundles.data.checks import check_case
from brainbundles.data.datalist import LAYOUTS, make_datalist

SHAPE = (8, 8, 8)


def _write(path: Path, kind: str = "image", seed: int = 0, fmt: str = "nii.gz") -> Path:
    """Write a tiny volume; ``fmt`` is ``nii.gz``, ``nii`` or ``hdr`` (an Analyze 7.5 .hdr/.img pair)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if kind == "image":
        data = rng.uniform(1, 100, SHAPE).astype(np.float32)
    else:
        data = rng.integers(0, 4, SHAPE).astype(np.uint8)
    target = path.with_name(f"{path.name}.{fmt}")
    cls = nib.AnalyzeImage if fmt == "hdr" else nib.Nifti1Image
    nib.save(cls(data, np.eye(4)), str(target))
    return target


def make_ibsr(root: Path, n: int, fmt: str = "nii.gz", label: str | None = "segTRI") -> list[str]:
    ids = [f"IBSR_{i:02d}" for i in range(1, n + 1)]
    for i, cid in enumerate(ids):
        _write(root / cid / f"{cid}_ana_strip", "image", i, fmt)
        if label:
            _write(root / cid / f"{cid}_{label}_ana", "label", i, fmt)
    return ids


def assert_paths_resolve(datalist: dict, root: Path) -> None:
    for key in ("training", "testing"):
        for item in datalist[key]:
            for p in item["image"] + ([item["label"]] if "label" in item else []):
                assert not Path(p).is_absolute(), p
                assert (root / p).is_file(), p


# ---------------------------------------------------------------------------------------------- ibsr18


def test_ibsr18_nifti(tmp_path):
    ids = make_ibsr(tmp_path, 6)
    (tmp_path / "notes").mkdir()  # unrelated folders are ignored
    dl = make_datalist("ibsr18", tmp_path, folds=3)
    assert dl["layout"] == "ibsr18" and dl["channels"] == ["T1"] and dl["name"] == "IBSR18"
    assert dl["labels"] == {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}
    assert [e["case"] for e in dl["training"]] == ids and dl["testing"] == []
    first = dl["training"][0]
    assert first["image"] == ["IBSR_01/IBSR_01_ana_strip.nii.gz"]
    assert first["label"] == "IBSR_01/IBSR_01_segTRI_ana.nii.gz"
    assert_paths_resolve(dl, tmp_path)
    for item in dl["training"]:
        check_case(item, dl["channels"], label_values={0, 1, 2, 3}, require_label=True, base_dir=tmp_path)


def make_ibsr_maia(root: Path, train: list[int], test: list[int], val: list[int] = ()) -> None:
    """The MAIA split as distributed: 4D images with a trailing axis of 1, 1.5 mm between coronal slices."""
    affine = np.diag([0.9375, 1.5, 0.9375, 1.0])
    rng = np.random.default_rng(0)
    for folder, ids, labelled in (
        ("Training_Set", train, True),
        ("Test_Set", test, False),
        ("Validation_Set", val, True),
    ):
        for i in ids:
            cid = f"IBSR_{i:02d}"
            (root / folder / cid).mkdir(parents=True)
            image = rng.integers(0, 100, SHAPE + (1,)).astype(np.int16)
            nib.save(nib.Nifti1Image(image, affine), str(root / folder / cid / f"{cid}.nii.gz"))
            if labelled:
                seg = rng.integers(0, 4, SHAPE + (1,)).astype(np.int16)
                nib.save(nib.Nifti1Image(seg, affine), str(root / folder / cid / f"{cid}_seg.nii.gz"))


MAIA_TRAIN = [1, 3, 4, 5, 6, 7, 8, 9, 16, 18]


def test_ibsr18_maia_split(tmp_path):
    make_ibsr_maia(tmp_path, MAIA_TRAIN, [2, 10, 15], [11, 12, 13, 14, 17])
    dl = make_datalist("ibsr18", tmp_path, folds=5)
    assert dl["labels"] == {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}
    assert [e["case"] for e in dl["training"]] == [f"IBSR_{i:02d}" for i in MAIA_TRAIN]
    assert dl["training"][0]["image"] == ["Training_Set/IBSR_01/IBSR_01.nii.gz"]
    assert dl["training"][0]["label"] == "Training_Set/IBSR_01/IBSR_01_seg.nii.gz"
    # the reference study's held-back scans are fold 0, the others share the remaining folds evenly
    folds = {e["case"]: e["fold"] for e in dl["training"]}
    assert [c for c, f in folds.items() if f == 0] == ["IBSR_07", "IBSR_16"]
    assert sorted(Counter(f for f in folds.values() if f != 0).values()) == [2, 2, 2, 2]
    testing = {e["case"]: e for e in dl["testing"]}
    assert sorted(testing) == [
        "IBSR_02",
        "IBSR_10",
        "IBSR_11",
        "IBSR_12",
        "IBSR_13",
        "IBSR_14",
        "IBSR_15",
        "IBSR_17",
    ]
    assert "label" not in testing["IBSR_02"] and testing["IBSR_11"]["label"].startswith("Validation_Set/")
    assert all("fold" not in e for e in dl["testing"])
    assert_paths_resolve(dl, tmp_path)
    for item in dl["training"]:  # the 4D files pass the input checks
        check_case(item, dl["channels"], label_values={0, 1, 2, 3}, require_label=True, base_dir=tmp_path)


def test_ibsr18_maia_without_reference_cases_and_bad_options(tmp_path):
    make_ibsr_maia(tmp_path, [1, 3, 4], [2])
    dl = make_datalist("ibsr18", tmp_path, folds=3)
    assert sorted(e["fold"] for e in dl["training"]) == [0, 1, 2]  # no fixed fold: dealt as usual
    with pytest.raises(ValueError, match="MAIA layout"):
        make_datalist("ibsr18", tmp_path, folds=3, label="seg")
    (tmp_path / "Training_Set" / "IBSR_05").mkdir()
    with pytest.raises(ValueError, match=r"IBSR_05 has no image IBSR_05\.nii\.gz"):
        make_datalist("ibsr18", tmp_path, folds=3)


def test_ibsr18_maia_real_folder():
    import os

    root = os.environ.get("BRAINBUNDLES_DATA")
    if not root or not (Path(root) / "ibsr18").is_dir():
        pytest.skip("BRAINBUNDLES_DATA is not set (or has no ibsr18/): the real IBSR18 folder is unavailable")
    dl = make_datalist("ibsr18", Path(root) / "ibsr18")
    assert dl["numTraining"] == 10 and dl["numTest"] == 3
    assert sorted(e["case"] for e in dl["training"] if e["fold"] == 0) == ["IBSR_07", "IBSR_16"]
    assert all("label" not in e for e in dl["testing"])


def test_ibsr18_prefers_segtri_over_seg(tmp_path):
    ids = make_ibsr(tmp_path, 3, label="segTRI")
    for i, cid in enumerate(ids):
        _write(tmp_path / cid / f"{cid}_seg_ana", "label", i + 10)
    dl = make_datalist("ibsr18", tmp_path, folds=3)
    assert all(e["label"].endswith("_segTRI_ana.nii.gz") for e in dl["training"])
    dl_seg = make_datalist("ibsr18", tmp_path, folds=3, label="seg")
    assert all(e["label"].endswith("_seg_ana.nii.gz") for e in dl_seg["training"])
    assert "labels" not in dl_seg  # structure labels: names unknown


def test_ibsr18_seg_only_and_mixed_kinds(tmp_path):
    ids = make_ibsr(tmp_path, 3, label="seg")
    dl = make_datalist("ibsr18", tmp_path, folds=2)
    assert [e["label"] for e in dl["training"]] == [f"{c}/{c}_seg_ana.nii.gz" for c in ids]
    _write(tmp_path / ids[0] / f"{ids[0]}_segTRI_ana", "label")
    with pytest.raises(ValueError, match="IBSR_02, IBSR_03"):
        make_datalist("ibsr18", tmp_path, folds=2)


def test_ibsr18_plain_nii_and_unlabelled_case(tmp_path):
    make_ibsr(tmp_path, 3, fmt="nii")
    _write(tmp_path / "IBSR_04" / "IBSR_04_ana_strip", "image", 4, "nii")
    dl = make_datalist("ibsr18", tmp_path, folds=3)
    assert dl["training"][0]["image"] == ["IBSR_01/IBSR_01_ana_strip.nii"]
    assert [e["case"] for e in dl["testing"]] == ["IBSR_04"] and "label" not in dl["testing"][0]
    assert "fold" not in dl["testing"][0]


def test_ibsr18_analyze_pairs_load_with_monai(tmp_path):
    make_ibsr(tmp_path, 3, fmt="hdr")
    out = tmp_path / "lists" / "datalist.json"
    dl = make_datalist("ibsr18", tmp_path, out=out, folds=3)
    item = dl["training"][0]
    assert item["image"] == ["IBSR_01/IBSR_01_ana_strip.hdr"]
    assert item["label"] == "IBSR_01/IBSR_01_segTRI_ana.hdr"
    assert_paths_resolve(dl, tmp_path)
    # what a bundle does: MONAI's loader with base_dir=root, then LoadImaged with the nibabel reader
    items = load_decathlon_datalist(str(out), data_list_key="training", base_dir=str(tmp_path))
    assert Path(items[0]["image"][0]) == tmp_path / "IBSR_01" / "IBSR_01_ana_strip.hdr"
    loaded = LoadImaged(keys=["image", "label"], reader="NibabelReader", ensure_channel_first=True)(items[0])
    assert tuple(loaded["image"].shape) == (1, *SHAPE) and tuple(loaded["label"].shape) == (1, *SHAPE)
    expected = np.asanyarray(nib.load(str(tmp_path / item["image"][0])).dataobj)
    np.testing.assert_allclose(loaded["image"][0].numpy(), expected)
    check_case(item, ["T1"], label_values={0, 1, 2, 3}, require_label=True, base_dir=tmp_path)


def test_ibsr18_wrong_channels_and_missing_image(tmp_path):
    make_ibsr(tmp_path, 3)
    with pytest.raises(ValueError, match="ibsr18"):
        make_datalist("ibsr18", tmp_path, folds=2, channels=["T1", "T2"])
    (tmp_path / "IBSR_09").mkdir()
    with pytest.raises(ValueError, match="IBSR_09_ana_strip"):
        make_datalist("ibsr18", tmp_path, folds=2)


# ---------------------------------------------------------------------------------------------- folder


def test_folder_single_channel(tmp_path):
    for i, c in enumerate(["b", "a", "c", "d"]):
        _write(tmp_path / "images" / c, "image", i)
        if c != "d":
            _write(tmp_path / "labels" / c, "label", i)
    dl = make_datalist("folder", tmp_path, folds=3, channels=["T1"])
    assert dl["channels"] == ["T1"]
    assert [e["case"] for e in dl["training"]] == ["a", "b", "c"]
    assert dl["training"][0] == {"image": ["images/a.nii.gz"], "label": "labels/a.nii.gz", "fold": dl["training"][0]["fold"], "case": "a"}  # fmt: skip
    assert dl["testing"] == [{"image": ["images/d.nii.gz"], "case": "d"}]
    assert_paths_resolve(dl, tmp_path)


def test_folder_multichannel_case_insensitive(tmp_path):
    for i, c in enumerate(["p1", "p2", "p3"]):
        _write(tmp_path / "img" / f"{c}_t1", "image", i)
        _write(tmp_path / "img" / f"{c}_{'FLAIR' if i else 'Flair'}", "image", i + 5, "nii")
        _write(tmp_path / "seg" / c, "label", i)
    dl = make_datalist(
        "folder", tmp_path, folds=3, channels=["T1", "FLAIR"], images_dir="img", labels_dir="seg"
    )
    assert dl["channels"] == ["T1", "FLAIR"]
    assert dl["training"][0]["image"] == ["img/p1_t1.nii.gz", "img/p1_Flair.nii"]
    assert dl["training"][1]["label"] == "seg/p2.nii.gz"
    assert_paths_resolve(dl, tmp_path)
    for item in dl["training"]:
        check_case(item, dl["channels"], base_dir=tmp_path)


def test_folder_missing_channel(tmp_path):
    for c in ["p1", "p2"]:
        _write(tmp_path / "images" / f"{c}_T1")
    _write(tmp_path / "images" / "p1_FLAIR")
    with pytest.raises(ValueError, match=r"case 'p2' is missing channel 'FLAIR'"):
        make_datalist("folder", tmp_path, folds=1, channels=["T1", "FLAIR"])


def test_folder_unmatched_file_and_duplicate_channel(tmp_path):
    _write(tmp_path / "images" / "p1_T1")
    _write(tmp_path / "images" / "p1_FLAIR")
    _write(tmp_path / "images" / "p1_T2")
    with pytest.raises(ValueError, match="p1_T2.nii.gz matches no channel"):
        make_datalist("folder", tmp_path, folds=1, channels=["T1", "FLAIR"])
    (tmp_path / "images" / "p1_T2.nii.gz").unlink()
    _write(tmp_path / "images" / "p1_T1", fmt="nii")
    with pytest.raises(ValueError, match="'T1' has two files"):
        make_datalist("folder", tmp_path, folds=1, channels=["T1", "FLAIR"])


def test_folder_nnunet_indices(tmp_path):
    for i, c in enumerate(["BRATS_001", "BRATS_002"]):
        for k in range(3):
            _write(tmp_path / "imagesTr" / f"{c}_{k:04d}", "image", 10 * i + k)
        _write(tmp_path / "labelsTr" / c, "label", i)
    dl = make_datalist(
        "folder",
        tmp_path,
        folds=2,
        channels=["FLAIR", "T1", "T2"],
        images_dir="imagesTr",
        labels_dir="labelsTr",
    )
    assert [e["case"] for e in dl["training"]] == ["BRATS_001", "BRATS_002"]
    assert dl["training"][0]["image"] == [f"imagesTr/BRATS_001_{k:04d}.nii.gz" for k in range(3)]
    assert dl["training"][0]["label"] == "labelsTr/BRATS_001.nii.gz"
    with pytest.raises(ValueError, match="channel index 0002"):
        make_datalist("folder", tmp_path, folds=2, channels=["FLAIR", "T1"], images_dir="imagesTr")


def test_folder_nnunet_single_channel_vs_numbered_cases(tmp_path):
    for i, c in enumerate(["x1", "x2"]):
        _write(tmp_path / "a" / "images" / f"{c}_0000", "image", i)
        _write(tmp_path / "a" / "labels" / c, "label", i)
    dl = make_datalist("folder", tmp_path / "a", folds=2)
    assert [e["case"] for e in dl["training"]] == ["x1", "x2"] and dl["channels"] == ["image"]
    # case ids that merely end in 4 digits stay whole
    for i in range(3):
        _write(tmp_path / "b" / "images" / f"case_{i:04d}", "image", i)
        _write(tmp_path / "b" / "labels" / f"case_{i:04d}", "label", i)
    dl = make_datalist("folder", tmp_path / "b", folds=3)
    assert [e["case"] for e in dl["training"]] == ["case_0000", "case_0001", "case_0002"]


def test_folder_labels_option(tmp_path):
    _write(tmp_path / "images" / "a")
    _write(tmp_path / "labels" / "a", "label")
    dl = make_datalist("folder", tmp_path, folds=1, labels={"background": 0, "lesion": 1})
    assert dl["labels"] == {"0": "background", "1": "lesion"}


# --------------------------------------------------------------------------------------------- phantom


def test_phantom_dispatches_and_holds_out_last_cases(tmp_path):
    ids = make_ibsr(tmp_path, 6)
    manifest = {"task": "tissue", "layout": "ibsr18", "cases": 6, "test_cases": 2, "seed": 1}
    (tmp_path / "phantom.json").write_text(json.dumps(manifest))
    dl = make_datalist("phantom", tmp_path, folds=2)
    assert dl["layout"] == "phantom" and dl["name"] == "phantom-tissue" and dl["channels"] == ["T1"]
    assert [e["case"] for e in dl["training"]] == ids[:4]
    assert [e["case"] for e in dl["testing"]] == ids[4:]
    assert all("label" in e and "fold" not in e for e in dl["testing"])  # held-out cases keep their labels
    assert sorted(Counter(e["fold"] for e in dl["training"]).values()) == [2, 2]
    assert_paths_resolve(dl, tmp_path)


def test_phantom_manifest_labels_and_errors(tmp_path):
    make_ibsr(tmp_path, 3, label="seg")
    manifest = {"layout": "ibsr18", "test_cases": 1, "labels": {"background": 0, "CSF": 1, "GM": 2, "WM": 3}}
    (tmp_path / "phantom.json").write_text(json.dumps(manifest))
    dl = make_datalist("phantom", tmp_path, folds=2)
    assert dl["labels"] == {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}
    (tmp_path / "phantom.json").write_text(json.dumps({"layout": "nope"}))
    with pytest.raises(ValueError, match="nope"):
        make_datalist("phantom", tmp_path, folds=2)
    (tmp_path / "phantom.json").unlink()
    with pytest.raises(ValueError, match="phantom.json"):
        make_datalist("phantom", tmp_path, folds=2)


# ----------------------------------------------------------------------------------------------- folds


def _folds(root, **kw):
    dl = make_datalist("ibsr18", root, **kw)
    return {e["case"]: e["fold"] for e in dl["training"]}, dl


def test_folds_reproducible_seeded_and_balanced(tmp_path):
    make_ibsr(tmp_path, 11)
    a, _ = _folds(tmp_path, folds=3, seed=0)
    b, _ = _folds(tmp_path, folds=3, seed=0)
    c, _ = _folds(tmp_path, folds=3, seed=1)
    assert a == b
    assert a != c
    for assignment in (a, c):
        sizes = Counter(assignment.values())
        assert set(sizes) == {0, 1, 2} and max(sizes.values()) - min(sizes.values()) <= 1
    one, _ = _folds(tmp_path, folds=1)
    assert set(one.values()) == {0}
    loo, _ = _folds(tmp_path, folds=11)
    assert sorted(loo.values()) == list(range(11))


def test_test_fraction_seeded(tmp_path):
    ids = make_ibsr(tmp_path, 10)
    _, dl = _folds(tmp_path, folds=2, test_fraction=0.3, seed=4)
    _, again = _folds(tmp_path, folds=2, test_fraction=0.3, seed=4)
    assert dl == again
    test_ids = [e["case"] for e in dl["testing"]]
    assert len(test_ids) == 3 and test_ids == sorted(test_ids)
    assert all("label" in e for e in dl["testing"])
    assert sorted(test_ids + [e["case"] for e in dl["training"]]) == ids
    others = {
        tuple(e["case"] for e in _folds(tmp_path, folds=2, test_fraction=0.3, seed=s)[1]["testing"])
        for s in range(5)
    }
    assert len(others) > 1
    assert dl["numTraining"] == 7 and dl["numTest"] == 3


def test_out_written_atomically(tmp_path):
    make_ibsr(tmp_path / "data", 4)
    out = tmp_path / "out" / "datalist.json"
    dl = make_datalist("ibsr18", tmp_path / "data", out=out, folds=2)
    assert json.loads(out.read_text()) == dl
    assert [p.name for p in out.parent.iterdir()] == ["datalist.json"]  # no temp file left behind
    out.write_text("old")
    make_datalist("ibsr18", tmp_path / "data", out=out, folds=2)
    assert json.loads(out.read_text()) == dl


def test_relative_root_gives_same_relative_paths(tmp_path, monkeypatch):
    make_ibsr(tmp_path / "data", 3)
    monkeypatch.chdir(tmp_path)
    assert make_datalist("ibsr18", "data", folds=3) == make_datalist("ibsr18", tmp_path / "data", folds=3)


# ---------------------------------------------------------------------------------------------- errors


def test_errors(tmp_path):
    assert {"ibsr18", "folder", "phantom"} <= set(LAYOUTS)
    with pytest.raises(ValueError, match="unknown layout 'brats99'"):
        make_datalist("brats99", tmp_path)
    with pytest.raises(
        ValueError, match=r"ibsr18 layout: no cases found.*IBSR_<nn>_ana_strip.*" + str(tmp_path.name)
    ):
        make_datalist("ibsr18", tmp_path)
    with pytest.raises(ValueError, match="images"):
        make_datalist("folder", tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        make_datalist("ibsr18", tmp_path / "missing")
    make_ibsr(tmp_path, 3)
    with pytest.raises(ValueError, match="folds"):
        make_datalist("ibsr18", tmp_path, folds=0)
    with pytest.raises(ValueError, match="folds=4 is more than the 3 training cases"):
        make_datalist("ibsr18", tmp_path, folds=4)
    with pytest.raises(ValueError, match="test_fraction"):
        make_datalist("ibsr18", tmp_path, test_fraction=1.0)
    with pytest.raises(ValueError, match="test_fraction"):
        make_datalist("ibsr18", tmp_path, folds=1, test_fraction=0.9)
