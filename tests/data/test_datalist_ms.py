"""MS lesion layouts: ISBI 2015 (time points, two raters, their consensus), MSSEG 2016 (centres and patients,
DP/GADO) and the open MS data of Lesjak et al.; channels FLAIR, T1, T2, PD, T1Gd, the last three optional."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbundles.data import check_case, make_datalist, write_isbi_consensus
from brainbundles.data.datalist import LAYOUTS
from brainbundles.data.labels import MS_CHANNELS, MS_LABELS
from brainbundles.data.sequences import match_sequence, normalise_channel

SHAPE = (4, 4, 4)
ALL = ["FLAIR", "T1", "T2", "PD", "T1Gd"]
#: a grid other than the identity, to see it carried over to the consensus mask
AFFINE = np.array([[-1.2, 0, 0, 10.0], [0, 1.0, 0, -20.0], [0, 0, 0.9, 5.0], [0, 0, 0, 1]])


def _save(path: Path, data: np.ndarray | None = None, seed: int = 0, affine=AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = np.random.default_rng(seed).uniform(1, 10, SHAPE).astype(np.float32)
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=2)
    nib.save(img, str(path))
    return path


def _mask(seed: int, dtype=np.uint8) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(size=SHAPE) < 0.5).astype(dtype)


def _check_items(dl: dict, root: Path) -> None:
    for item in dl["training"] + dl["testing"]:
        check_case(item, MS_CHANNELS, label_values={0, 1}, base_dir=root, allow_missing=True)
        assert not any(Path(p).is_absolute() for p in item["image"])


# -------------------------------------------------------------------------------------------- ISBI 2015


def _isbi_tp(
    subject: Path,
    tp: str,
    seqs=("flair", "mprage", "t2", "pd"),
    masks=("mask1", "mask2"),
    ext: str = ".nii",
) -> Path:
    """One ISBI time point ``<subject>/preprocessed/<tp>_<seq>_pp<ext>`` with ``masks/<tp>_<mask><ext>``."""
    for i, s in enumerate(seqs):
        _save(subject / "preprocessed" / f"{tp}_{s}_pp{ext}", seed=i)
        _save(subject / "orig" / f"{tp}_{s}.nii.gz", seed=i)  # raw scans: ignored
    for j, m in enumerate(masks):
        _save(subject / "masks" / f"{tp}_{m}{ext}", _mask(10 + j, np.float32 if j == 0 else np.uint8))
    return subject


def test_ms_layouts_are_registered():
    assert {"isbi2015", "msseg2016", "ms_open"} <= set(LAYOUTS)
    assert MS_LABELS == {"0": "background", "1": "lesion"}
    assert list(MS_CHANNELS) == ALL


def test_isbi2015_time_points_channels_and_test_release(tmp_path):
    train = tmp_path / "training"
    _isbi_tp(train / "training01", "training01_01")
    _isbi_tp(train / "training01", "training01_02")
    _isbi_tp(train / "training02", "training02_01", seqs=("mprage", "flair", "t2"), ext=".nii.gz")
    _isbi_tp(tmp_path / "testdata_website" / "test01", "test01_01", masks=())
    dl = make_datalist("isbi2015", tmp_path, folds=3)
    assert dl["layout"] == "isbi2015" and dl["name"] == "ISBI2015"
    assert dl["channels"] == ALL and dl["labels"] == MS_LABELS
    assert [e["case"] for e in dl["training"]] == ["training01_01", "training01_02", "training02_01"]
    first, _, third = dl["training"]
    assert first["image"] == [f"training/training01/preprocessed/training01_01_{s}_pp.nii" for s in
                              ("flair", "mprage", "t2", "pd")]  # fmt: skip
    assert first["channels"] == ["FLAIR", "T1", "T2", "PD"]  # ISBI has no T1Gd
    assert first["label"] == "training/training01/masks/training01_01_mask1.nii"
    assert third["image"] == [
        f"training/training02/preprocessed/training02_01_{s}_pp.nii.gz" for s in ("flair", "mprage", "t2")
    ]
    assert third["channels"] == ["FLAIR", "T1", "T2"]
    assert third["label"] == "training/training02/masks/training02_01_mask1.nii.gz"
    assert sorted(e["fold"] for e in dl["training"]) == [0, 1, 2]
    (test,) = dl["testing"]
    assert test["case"] == "test01_01" and "label" not in test
    assert test["channels"] == ["FLAIR", "T1", "T2", "PD"]
    assert test["image"][1] == "testdata_website/test01/preprocessed/test01_01_mprage_pp.nii"
    _check_items(dl, tmp_path)
    assert not list(tmp_path.rglob("*consensus*"))  # listing writes no file


def test_isbi2015_raters(tmp_path):
    _isbi_tp(tmp_path / "training01", "training01_01")
    dl = make_datalist("isbi2015", tmp_path, folds=1, rater="mask2")
    assert dl["training"][0]["label"] == "training01/masks/training01_01_mask2.nii"
    with pytest.raises(ValueError, match=r"rater='mask3', expected one of \['mask1', 'mask2', 'consensus'\]"):
        make_datalist("isbi2015", tmp_path, folds=1, rater="mask3")


def test_isbi2015_consensus_is_the_intersection_on_mask1s_grid_written_by_its_own_step(tmp_path):
    _isbi_tp(tmp_path / "training01", "training01_01")
    _isbi_tp(tmp_path / "test01", "test01_01", masks=())  # no masks: nothing to write
    masks = tmp_path / "training01" / "masks"
    out = masks / "training01_01_consensus.nii.gz"
    assert write_isbi_consensus(str(tmp_path)) == [out]
    m1, m2, cons = (nib.load(masks / n) for n in ("training01_01_mask1.nii", "training01_01_mask2.nii", out))
    data = np.asanyarray(cons.dataobj)
    assert cons.get_data_dtype() == np.uint8 and data.dtype == np.uint8
    expected = (m1.get_fdata() > 0) & (m2.get_fdata() > 0)
    assert expected.any() and (expected != ((m1.get_fdata() > 0) | (m2.get_fdata() > 0))).any()
    np.testing.assert_array_equal(data, expected.astype(np.uint8))
    np.testing.assert_allclose(cons.affine, m1.affine)
    assert cons.shape == m1.shape and cons.header.get_zooms() == m1.header.get_zooms()
    assert int(cons.header["qform_code"]) == 1 and int(cons.header["sform_code"]) == 2
    assert sorted(p.name for p in masks.iterdir()) == [  # no temporary file left behind
        "training01_01_consensus.nii.gz",
        "training01_01_mask1.nii",
        "training01_01_mask2.nii",
    ]
    assert not list((tmp_path / "test01").rglob("*consensus*"))

    dl = make_datalist("isbi2015", tmp_path, folds=1, rater="consensus")
    (item,) = dl["training"]
    assert item["label"] == "training01/masks/training01_01_consensus.nii.gz"
    assert [e["case"] for e in dl["testing"]] == ["test01_01"]
    check_case(item, MS_CHANNELS, label_values={0, 1}, base_dir=tmp_path, allow_missing=True)

    # a mask changed since: listing reads the consensus as it is (it writes nothing) ...
    _save(masks / "training01_01_mask2.nii", np.zeros(SHAPE, np.uint8))
    old = masks.joinpath("training01_01_mask2.nii").stat().st_mtime_ns - 10**11
    os.utime(out, ns=(old, old))
    make_datalist("isbi2015", tmp_path, folds=1, rater="consensus")
    assert out.stat().st_mtime_ns == old and np.asanyarray(nib.load(out).dataobj).any()
    # ... and the step, run again, replaces it
    assert write_isbi_consensus(tmp_path) == [out]
    assert not np.asanyarray(nib.load(out).dataobj).any()


def test_isbi2015_consensus_missing_names_the_file_and_the_command_that_writes_it(tmp_path):
    _isbi_tp(tmp_path / "training01", "training01_01")
    missing = tmp_path / "training01" / "masks" / "training01_01_consensus.nii.gz"
    with pytest.raises(
        ValueError,
        match=rf"isbi2015 layout: rater='consensus' needs {re.escape(str(missing))}, which is missing: write "
        rf"the consensus masks first with `brainbundles isbi-consensus -i {re.escape(str(tmp_path))}`",
    ):
        make_datalist("isbi2015", tmp_path, folds=1, rater="consensus")
    assert not list(tmp_path.rglob("*consensus*"))  # listing writes nothing
    assert make_datalist("isbi2015", tmp_path, folds=1)["numTraining"] == 1  # mask1: no step


def test_isbi2015_consensus_step_errors(tmp_path):
    with pytest.raises(ValueError, match="isbi2015 consensus: root .*nowhere does not exist or is not a"):
        write_isbi_consensus(tmp_path / "nowhere")
    _isbi_tp(tmp_path / "test01", "test01_01", masks=())
    with pytest.raises(ValueError, match="isbi2015 consensus: no time point with the raters' masks: search"):
        write_isbi_consensus(tmp_path)
    # one time point refused: nothing written, not even the good one's
    _isbi_tp(tmp_path / "training01", "training01_01")
    _isbi_tp(tmp_path / "training02", "training02_01", masks=("mask1",))
    missing = tmp_path / "training02" / "masks" / "training02_01_mask2.nii"
    with pytest.raises(
        ValueError,
        match=rf"isbi2015 consensus of time point training02_01 needs {re.escape(str(missing))}\[\.gz\], "
        r"which is missing \(while .*training02_01_mask1.nii exists\)",
    ):
        write_isbi_consensus(tmp_path)
    assert not list(tmp_path.rglob("*consensus*"))
    # the raters' masks on two grids
    _isbi_tp(tmp_path / "training02", "training02_01", masks=())
    _save(missing, _mask(3), affine=np.eye(4))
    with pytest.raises(ValueError, match="_01_mask1.nii and .*training02_01_mask2.nii are not on the same"):
        write_isbi_consensus(tmp_path)


def test_isbi2015_a_missing_raters_mask_names_the_file(tmp_path):
    _isbi_tp(tmp_path / "training01", "training01_01", masks=("mask1",))
    _isbi_tp(tmp_path / "training02", "training02_01", masks=())  # no mask at all: testing
    masks = tmp_path / "training01" / "masks"
    dl = make_datalist("isbi2015", tmp_path, folds=1)
    assert [e["case"] for e in dl["training"]] == ["training01_01"]
    assert [e["case"] for e in dl["testing"]] == ["training02_01"]
    for rater in ("mask2", "consensus"):
        with pytest.raises(
            ValueError,
            match=rf"rater='{rater}' needs {re.escape(str(masks / 'training01_01_mask2.nii'))}\[\.gz\], which is "
            rf"missing \(while {re.escape(str(masks / 'training01_01_mask1.nii'))} exists\)",
        ):
            make_datalist("isbi2015", tmp_path, folds=1, rater=rater)
    assert not list(tmp_path.rglob("*consensus*"))


def test_isbi2015_missing_required_sequence_names_the_folder(tmp_path):
    _isbi_tp(tmp_path / "training01", "training01_01")
    _isbi_tp(tmp_path / "training02", "training02_01", seqs=("flair", "t2", "pd"))
    pre = tmp_path / "training02" / "preprocessed"
    with pytest.raises(
        ValueError,
        match=rf"isbi2015 layout: case training02_01 in folder {re.escape(str(pre))} has no T1 image "
        r"\(training02_01_flair_pp.nii\[.gz\], training02_01_mprage_pp.nii\[.gz\]\)",
    ):
        make_datalist("isbi2015", tmp_path, folds=1)
    with pytest.raises(ValueError, match="case training02_01 in folder .* has no T1 image"):
        make_datalist("isbi2015", tmp_path / "training02", folds=1, rater="consensus")
    assert not list(tmp_path.rglob("*consensus*"))  # nothing written for a case that is refused


# -------------------------------------------------------------------------------------------- MSSEG 2016


def _msseg_patient(
    root: Path, rel: str, seqs=("FLAIR", "T1", "T2", "DP", "GADO"), label: bool = True, ext: str = ".nii.gz"
) -> Path:
    d = root / rel
    for i, s in enumerate(seqs):
        _save(d / "Preprocessed_Data" / f"{s}_preprocessed{ext}", seed=i)
        _save(d / "Raw_Data" / f"{s}{ext}", seed=i)  # ignored
    if label:
        _save(d / "Masks" / f"Consensus{ext}", _mask(1))
        _save(d / "Masks" / f"ManualSegmentation_1{ext}", _mask(2))  # ignored
    return d


def test_msseg2016_centres_patients_and_optional_sequences(tmp_path):
    _msseg_patient(tmp_path, "Center_01/Patient_01")
    _msseg_patient(tmp_path, "Center_01/Patient_02", seqs=("T2", "FLAIR", "T1"), ext=".nii")
    _msseg_patient(tmp_path, "Center_07/Patient_01", seqs=("FLAIR", "T1", "GADO"))
    _msseg_patient(tmp_path, "Center_08/Patient_03", label=False)
    dl = make_datalist("msseg2016", tmp_path, folds=2)
    assert dl["layout"] == "msseg2016" and dl["name"] == "MSSEG2016"
    assert dl["channels"] == ALL and dl["labels"] == MS_LABELS
    ids = ["Center_01_Patient_01", "Center_01_Patient_02", "Center_07_Patient_01"]
    assert [e["case"] for e in dl["training"]] == ids
    full, no_dp, gado = dl["training"]
    assert full["image"] == [
        f"Center_01/Patient_01/Preprocessed_Data/{s}_preprocessed.nii.gz"
        for s in ("FLAIR", "T1", "T2", "DP", "GADO")
    ]
    assert "channels" not in full  # all five: the datalist's order
    assert full["label"] == "Center_01/Patient_01/Masks/Consensus.nii.gz"
    assert no_dp["channels"] == ["FLAIR", "T1", "T2"]
    assert no_dp["image"][2] == "Center_01/Patient_02/Preprocessed_Data/T2_preprocessed.nii"
    assert gado["channels"] == ["FLAIR", "T1", "T1Gd"]
    assert gado["image"][2] == "Center_07/Patient_01/Preprocessed_Data/GADO_preprocessed.nii.gz"
    (test,) = dl["testing"]
    assert test["case"] == "Center_08_Patient_03" and "label" not in test and "channels" not in test
    _check_items(dl, tmp_path)


def test_msseg2016_missing_required_sequence_names_the_folder(tmp_path):
    _msseg_patient(tmp_path, "Center_01/Patient_01")
    bad = _msseg_patient(tmp_path, "Center_01/Patient_02", seqs=("T1", "T2", "DP"))
    with pytest.raises(
        ValueError,
        match=rf"msseg2016 layout: case Center_01_Patient_02 in folder "
        rf"{re.escape(str(bad / 'Preprocessed_Data'))} has no FLAIR image",
    ):
        make_datalist("msseg2016", tmp_path, folds=1)


# ----------------------------------------------------------------------------------------- open MS data


def _open_patient(root: Path, rel: str, seqs=("FLAIR", "T1", "T1POST", "T2"), label: bool = True) -> Path:
    d = root / rel
    for i, s in enumerate(seqs):
        _save(d / f"{s}.nii.gz", seed=i)
    if label:
        _save(d / "consensus_gt.nii.gz", _mask(3))
    return d


def test_ms_open_cases_and_missing_sequences(tmp_path):
    _open_patient(tmp_path, "patient01")
    _open_patient(tmp_path, "patient02", seqs=("PD", "T1POST", "T2", "T1", "FLAIR"))
    _open_patient(tmp_path, "more/patient03", seqs=("FLAIR", "T1"), label=False)
    _save(tmp_path / "atlas" / "T1.nii.gz")  # a lone T1 is no case
    dl = make_datalist("ms_open", tmp_path, folds=2)
    assert dl["layout"] == "ms_open" and dl["name"] == "OpenMS"
    assert dl["channels"] == ALL and dl["labels"] == MS_LABELS
    assert [e["case"] for e in dl["training"]] == ["patient01", "patient02"]
    p1, p2 = dl["training"]
    assert p1["image"] == ["patient01/FLAIR.nii.gz", "patient01/T1.nii.gz", "patient01/T2.nii.gz",
                           "patient01/T1POST.nii.gz"]  # fmt: skip
    assert p1["channels"] == ["FLAIR", "T1", "T2", "T1Gd"] and p1["label"] == "patient01/consensus_gt.nii.gz"
    assert [Path(p).name for p in p2["image"]] == ["FLAIR.nii.gz", "T1.nii.gz", "T2.nii.gz", "PD.nii.gz",
                                                   "T1POST.nii.gz"]  # fmt: skip
    assert "channels" not in p2
    (test,) = dl["testing"]
    assert test == {
        "image": ["more/patient03/FLAIR.nii.gz", "more/patient03/T1.nii.gz"],
        "channels": ["FLAIR", "T1"],
        "case": "more_patient03",
    }
    _check_items(dl, tmp_path)


def test_ms_open_channels_option_and_unknown_options(tmp_path):
    _open_patient(tmp_path, "patient01")
    assert make_datalist("ms_open", tmp_path, folds=1, channels=[c.lower() for c in ALL])["channels"] == ALL
    for bad in (["FLAIR", "T1"], ["T1", "FLAIR", "T2", "PD", "T1Gd"]):
        with pytest.raises(
            ValueError, match=r"layout 'ms_open' has channels \['FLAIR', 'T1', 'T2', 'PD', 'T1Gd'\]"
        ):
            make_datalist("ms_open", tmp_path, folds=1, channels=bad)
    with pytest.raises(ValueError, match=r"layout 'ms_open' has no option rater \(its options: none\)"):
        make_datalist("ms_open", tmp_path, folds=1, rater="mask1")
    with pytest.raises(ValueError, match=r"layout 'isbi2015' has no option raters \(its options: rater\)"):
        make_datalist("isbi2015", tmp_path, folds=1, raters="mask1")


@pytest.mark.parametrize("seqs", [("FLAIR", "T2"), ("T1", "T1POST")])
def test_ms_open_missing_required_sequence_names_the_folder(tmp_path, seqs):
    _open_patient(tmp_path, "patient01")
    bad = _open_patient(tmp_path, "patient02", seqs=seqs)
    missing = "T1" if "FLAIR" in seqs else "FLAIR"
    with pytest.raises(
        ValueError,
        match=rf"ms_open layout: case patient02 in folder {re.escape(str(bad))} has no {missing} image",
    ):
        make_datalist("ms_open", tmp_path, folds=1)


@pytest.mark.parametrize("layout", ["isbi2015", "msseg2016", "ms_open"])
def test_no_cases_found_names_the_root(tmp_path, layout):
    root = tmp_path / "data"
    _save(root / "unrelated" / "scan.nii.gz")
    _save(root / "wmh" / "0" / "pre" / "FLAIR.nii.gz")  # another layout's case, FLAIR only
    with pytest.raises(
        ValueError, match=rf"{layout} layout: no cases found: searched .* under root {re.escape(str(root))}$"
    ):
        make_datalist(layout, root, folds=1)


def test_real_open_ms_data():
    root = os.environ.get("BRAINBUNDLES_DATA")
    if not root:
        pytest.skip("BRAINBUNDLES_DATA is not set: no real MS cases to read")
    ms = Path(root) / "ms"
    dl = make_datalist("ms_open", ms, folds=2)
    assert dl["name"] == "OpenMS" and dl["labels"] == MS_LABELS and dl["numTest"] == 0
    assert [e["case"] for e in dl["training"]] == ["patient07", "patient19"]
    for item in dl["training"]:
        cid = item["case"]
        assert item["channels"] == ["FLAIR", "T1", "T2", "T1Gd"]
        assert item["image"] == [f"{cid}/{n}.nii.gz" for n in ("FLAIR", "T1", "T2", "T1POST")]
        assert item["label"] == f"{cid}/consensus_gt.nii.gz"
        check_case(
            item, MS_CHANNELS, label_values={0, 1}, require_label=True, base_dir=ms, allow_missing=True
        )


# ------------------------------------------------------------------------------------ sequence names, CLI


def test_ms_sequence_names():
    assert [
        normalise_channel(n, MS_CHANNELS) for n in ("GADO", "T1POST", "t1c", "T1Gd", "DP", "pd", "MPRAGE")
    ] == [
        "T1Gd",
        "T1Gd",
        "T1Gd",
        "T1Gd",
        "PD",
        "PD",
        "T1",
    ]
    names = {
        "DP_preprocessed.nii.gz": "PD",
        "GADO_preprocessed.nii.gz": "T1Gd",
        "T1_preprocessed.nii.gz": "T1",
        "T1POST.nii.gz": "T1Gd",
        "training01_01_mprage_pp.nii": "T1",
        "training01_01_flair_pp.nii": "FLAIR",
        "consensus_gt.nii.gz": None,
    }
    assert {n: match_sequence(n, MS_CHANNELS) for n in names} == names
    assert normalise_channel("t1post", ["T1", "T1c", "T2", "FLAIR"]) == "T1c"  # BraTS keeps its name


def test_cli_datalist_passes_layout_options(tmp_path):
    _isbi_tp(tmp_path / "training01", "training01_01")
    out = tmp_path / "dl.json"

    def cli(*args: str) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            "-m",
            "brainbundles.cli",
            "datalist",
            "isbi2015",
            "-i",
            str(tmp_path),
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True)

    proc = cli("-o", str(out), "--folds", "1", "--rater", "consensus")
    assert proc.returncode == 1 and f"brainbundles isbi-consensus -i {tmp_path}" in proc.stderr
    assert not out.exists()
    write_isbi_consensus(tmp_path)
    proc = cli("-o", str(out), "--folds", "1", "--rater", "consensus")
    assert proc.returncode == 0, proc.stderr
    dl = json.loads(out.read_text())
    assert dl["training"][0]["label"] == "training01/masks/training01_01_consensus.nii.gz"
    assert (tmp_path / dl["training"][0]["label"]).is_file()
    proc = cli("-o", str(tmp_path / "x.json"), "--rater", "mask3")
    assert proc.returncode == 1 and "rater='mask3'" in proc.stderr and not (tmp_path / "x.json").exists()
