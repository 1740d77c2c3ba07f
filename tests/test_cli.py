"""The `brainbundles` command line: phantoms and datalists as a user types them."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "brainbundles.cli", *args], capture_output=True, text=True)


def test_phantom_then_datalists(tmp_path):
    out = tmp_path / "ph"
    proc = _cli("phantom", "tissue", "--out", str(out), "--cases", "4", "--test_cases", "1", "--seed", "5",
                "--shape", "[40,48,36]", "--spacing", "[1.2,1.0,1.5]", "--orientation", "LPS", "--folds", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    img = nib.load(out / "IBSR_01" / "IBSR_01_ana_strip.nii.gz")
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert sorted(round(z, 3) for z in img.header.get_zooms()) == [1.0, 1.2, 1.5]

    dl_path = tmp_path / "dl.json"
    proc = _cli("datalist", "phantom", "--root", str(out), "--out", str(dl_path), "--folds", "2")
    assert proc.returncode == 0, proc.stderr
    dl = json.loads(dl_path.read_text())
    assert len(dl["training"]) == 4 and len(dl["testing"]) == 1
    assert {it["fold"] for it in dl["training"]} == {0, 1}
    assert dl["labels"] == {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}

    proc = _cli(
        "datalist", "ibsr18", "--root", str(out), "--out", str(tmp_path / "ibsr.json"), "--folds", "5"
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((tmp_path / "ibsr.json").read_text())["training"]) == 5


def test_unknown_task_and_layout_are_clear_errors(tmp_path):
    proc = _cli("phantom", "kidney", "--out", str(tmp_path / "x"))
    assert proc.returncode != 0 and "task" in proc.stderr
    proc = _cli("datalist", "nolayout", "--root", str(tmp_path))
    assert proc.returncode != 0 and "nolayout" in proc.stderr
    assert not (tmp_path / "x").exists()
