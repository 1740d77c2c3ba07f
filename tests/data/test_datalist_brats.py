"""BraTS 2018-2021 and 2023 layouts: sequences mapped to the bundle order T1, T1c, T2, FLAIR."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbundles.data import check_case, make_datalist
from brainbundles.data.labels import BRATS_LABELS


def _case(root: Path, cid: str, sep: str, suffixes: list[str], seg_values=(0, 1, 2, 4)) -> None:
    d = root / cid
    d.mkdir(parents=True)
    rng = np.random.default_rng(len(cid))
    for i, suf in enumerate(suffixes):
        nib.save(
            nib.Nifti1Image((rng.random((6, 6, 6)) + i + 1).astype(np.float32), np.eye(4)),
            d / f"{cid}{sep}{suf}.nii.gz",
        )
    seg = np.zeros((6, 6, 6), np.uint8)
    seg.flat[: len(seg_values)] = seg_values
    nib.save(nib.Nifti1Image(seg, np.eye(4)), d / f"{cid}{sep}seg.nii.gz")


def test_brats_2018_2021_layout_maps_sequences_to_bundle_order(tmp_path):
    _case(tmp_path, "BraTS_001", "_", ["flair", "t1", "t1ce", "t2"])
    _case(tmp_path, "BraTS_002", "_", ["t2", "t1post", "flair", "t1"])  # T1c named t1post
    dl = make_datalist("brats", tmp_path, folds=2)
    assert dl["channels"] == ["T1", "T1c", "T2", "FLAIR"]
    assert dl["labels"] == BRATS_LABELS["brats2019"]
    first, second = dl["training"]
    assert first["image"] == [f"BraTS_001/BraTS_001_{s}.nii.gz" for s in ("t1", "t1ce", "t2", "flair")]
    assert second["image"][1] == "BraTS_002/BraTS_002_t1post.nii.gz"
    assert first["label"] == "BraTS_001/BraTS_001_seg.nii.gz"
    check_case(first, dl["channels"], label_values={0, 1, 2, 4}, base_dir=tmp_path)


def test_brats_2023_layout(tmp_path):
    _case(tmp_path, "BraTS-GLI-00000-000", "-", ["t1n", "t1c", "t2w", "t2f"], seg_values=(0, 1, 2, 3))
    dl = make_datalist("brats2023", tmp_path, folds=1)
    assert dl["labels"] == BRATS_LABELS["brats2023"]
    img = dl["training"][0]["image"]
    assert [Path(p).name.split("-")[-1] for p in img] == [
        "t1n.nii.gz",
        "t1c.nii.gz",
        "t2w.nii.gz",
        "t2f.nii.gz",
    ]


def test_brats_missing_or_doubled_sequence_is_named(tmp_path):
    _case(tmp_path / "a", "C1", "_", ["t1", "t1ce", "t2"])
    with pytest.raises(ValueError, match=r"C1 .*no FLAIR"):
        make_datalist("brats", tmp_path / "a", folds=1)
    _case(tmp_path / "b", "C2", "_", ["t1", "t1ce", "t1post", "t2", "flair"])
    with pytest.raises(ValueError, match="C2 has T1c twice"):
        make_datalist("brats", tmp_path / "b", folds=1)
    with pytest.raises(ValueError, match="no cases found"):
        make_datalist("brats2023", tmp_path / "b", folds=1)  # '_' names are not the 2023 layout


def test_real_brats_case_reads_in_bundle_order():
    root = os.environ.get("BRAINBUNDLES_DATA")
    if not root:
        pytest.skip("BRAINBUNDLES_DATA is not set: no real BraTS case to read")
    dl = make_datalist("brats", Path(root) / "brats", folds=1)
    item = dl["training"][0]
    assert [Path(p).name for p in item["image"]] == [
        "BraTS19_2013_10_1_t1.nii.gz",
        "BraTS19_2013_10_1_t1post.nii.gz",
        "BraTS19_2013_10_1_t2.nii.gz",
        "BraTS19_2013_10_1_flair.nii.gz",
    ]
    check_case(
        item, dl["channels"], label_values={0, 1, 2, 4}, require_label=True, base_dir=Path(root) / "brats"
    )
