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


def test_share_commands(tmp_path, monkeypatch, capsys, untrained_export):
    """export -> package -> publish (instructions, then the index) -> download by name -> verify, through
    the command's own functions; then, as typed, a URL without a checksum is refused with exit 1 and a
    one-line error."""
    import os

    from brainbundles.cli import Commands

    bundle = untrained_export(tmp_path / "brain_tissue_mri_segmentation", export=False)
    monkeypatch.setenv("BRAINBUNDLES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BRAINBUNDLES_INDEX", str(tmp_path / "index.json"))
    cmd = Commands()

    out = cmd.export(str(bundle), version="1.0.0", changelog="first weights")
    assert "version 1.0.0" in out and "model.pt2" in out and "eval_metrics: none" in out
    zip_path = tmp_path / "b.zip"
    out = cmd.package(str(bundle), out=str(zip_path))
    sha = (tmp_path / "b.zip.sha256").read_text().split()[0]
    assert f"sha256 {sha}" in out

    out = cmd.publish(str(zip_path))
    assert "gh release" in out and "huggingface-cli upload" in out
    assert not (tmp_path / "index.json").exists()  # instructions only
    cmd.publish(str(zip_path), source=zip_path.as_uri())
    index = json.loads((tmp_path / "index.json").read_text())
    assert index == {"brain_tissue_mri_segmentation_v1.0.0": {"source": zip_path.as_uri(), "checksum": sha}}

    got = tmp_path / "dl" / "brain_tissue_mri_segmentation"
    assert cmd.download("brain_tissue_mri_segmentation", dir=str(tmp_path / "dl")) == str(got)
    capsys.readouterr()
    assert cmd.verify(str(got)).endswith("verified")
    out = capsys.readouterr().out
    assert "checksums: " in out and "archive checked, not loaded" in out  # a download: strict, not run
    cmd.verify(str(bundle))  # the publisher's own folder: the program is run and compared
    assert "exported program agrees" in capsys.readouterr().out

    env = {**os.environ, "BRAINBUNDLES_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "brainbundles.cli",
            "download",
            zip_path.as_uri(),
            "--dir",
            str(tmp_path / "dl2"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 1 and "no sha256 is known" in proc.stderr and "--trust" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "dl2").exists()


def test_training_overrides_reach_the_runner_with_their_types():
    # the bundle runner parses its command line with fire: JSON's false/null would arrive as strings
    # ("false" is true), so a switched-off channels_last would stay on
    from fire.parser import DefaultParseValue

    from brainbundles.workflows import _runner_args

    overrides = {
        "channels_last": False,
        "init_weights": None,
        "patch_size": [32, 32, 32],
        "lr": 0.003,
        "name": "x",
    }
    args = _runner_args(overrides)
    assert args[0::2] == [f"--{k}" for k in overrides]
    assert [DefaultParseValue(v) for v in args[1::2]] == list(overrides.values())
