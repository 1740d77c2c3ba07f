"""K-fold cross-validation (`brainbundles train-cv`): each fold through the bundle runner, a summary that
agrees with the per-fold reports, and a killed run that goes on at the unfinished fold."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbundles.bundle.configs import parse_bundle
from brainbundles.data.phantom import write_phantom_dataset
from brainbundles.workflows import copy_bundle, run_cross_validation, run_inference

TINY = {"network_def#features": [4, 8, 16], "network_def#dropout": 0.0, "patch_size": [32, 32, 32]}
FAST = {"epochs": 1, "num_workers": 0, "num_samples": 1, "batch_size": 2, "val_interval": 1}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cv_phantoms")
    return write_phantom_dataset(
        "tissue", out, cases=6, seed=2, shape=(32, 40, 32), spacing=(2.0, 2.0, 2.0), folds=3
    )


def _cli(bundle: Path, data: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "brainbundles.cli", "train-cv", str(bundle), "-i", str(data), "--datalist", str(data / "datalist.json"),
        "--folds", "3", *extra,
    ]  # fmt: skip


def test_three_folds_killed_then_resumed_summary_matches_the_fold_reports(phantoms, tmp_path):
    bundle = copy_bundle("tissue", tmp_path / "bundle", TINY)
    extra = [a for k, v in FAST.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    # kill the run as soon as fold 0 is evaluated, when fold 1 starts
    proc = subprocess.Popen(_cli(bundle, phantoms, *extra), start_new_session=True)
    fold0 = bundle / "eval" / "fold_0" / "metrics.json"
    deadline = time.time() + 300
    while not fold0.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert fold0.is_file() and not (bundle / "eval" / "cv_summary.json").exists()
    fold0_model = (bundle / "models" / "fold_0" / "model.pt").stat().st_mtime_ns

    done = subprocess.run(_cli(bundle, phantoms, *extra), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (bundle / "models" / "fold_0" / "model.pt").stat().st_mtime_ns == fold0_model  # not retrained
    assert "fold 1 of 3 already done" in done.stderr

    summary = json.loads((bundle / "eval" / "cv_summary.json").read_text())
    assert set(summary["per_fold"]) == {"fold_0", "fold_1", "fold_2"}
    datalist = json.loads((phantoms / "datalist.json").read_text())["training"]
    for k in range(3):
        report = json.loads((bundle / "eval" / f"fold_{k}" / "metrics.json").read_text())
        # each fold is scored on its own validation cases, with its own model
        assert set(report["per_case"]) == {it["case"] for it in datalist if it["fold"] == k}
        assert (bundle / "models" / f"fold_{k}" / "model.pt").is_file()
        for cls, metrics in report["summary"].items():
            for m, v in metrics.items():
                got = summary["per_fold"][f"fold_{k}"][cls][m]
                assert got == v["mean"] if v["mean"] is None else got == pytest.approx(v["mean"])
    for cls, metrics in summary["summary"].items():
        for m, v in metrics.items():
            values = np.array([summary["per_fold"][f"fold_{k}"][cls][m] for k in range(3)], dtype=float)
            finite = values[~np.isnan(values)]  # a fold's NaN (null) mean is left out, and counted
            assert v["n"] == finite.size and v["n_nan"] == 3 - finite.size
            if finite.size:
                assert v["mean"] == pytest.approx(finite.mean())
            if finite.size > 1:
                assert v["sd"] == pytest.approx(np.std(finite, ddof=1))
    csv = (bundle / "eval" / "cv_summary.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in csv[1:]] == ["fold_0", "fold_1", "fold_2", "mean", "sd"]
    assert "± " in done.stdout and "dice" in done.stdout.lower()

    # the bundle now holds three fold models: inference averages them, with or without mirroring TTA,
    # and writes the same geometry either way
    assert len(parse_bundle(bundle, "inference").get_parsed_content("ensemble")) == 3
    image = (
        phantoms / datalist[0]["image"][0]
        if isinstance(datalist[0]["image"], list)
        else phantoms / datalist[0]["image"]
    )
    ref = nib.load(image)
    segs = []
    for name, extra in (("plain", {}), ("tta", {"tta_flip_axes": [0, 1, 2]})):
        out = run_inference(bundle, [image], output_dir=tmp_path / name, **extra)
        seg = nib.load(next(out.glob("*_seg.nii.gz")))
        assert seg.shape == ref.shape and np.allclose(seg.affine, ref.affine)
        segs.append(np.asanyarray(seg.dataobj))
    assert (segs[0] == segs[1]).mean() > 0.9  # the same segmentation, up to the averaged views


def test_datalist_without_enough_folds_is_refused(phantoms, tmp_path):
    bundle = copy_bundle("tissue", tmp_path / "bundle", TINY)
    with pytest.raises(ValueError, match=r"no training items in fold\(s\) \[3, 4\] of 5"):
        run_cross_validation(bundle, phantoms, phantoms / "datalist.json", folds=5)
    with pytest.raises(ValueError, match="at least 2 folds"):
        run_cross_validation(bundle, phantoms, phantoms / "datalist.json", folds=1)
    assert not list((bundle / "models").iterdir())
