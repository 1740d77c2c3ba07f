"""The `brainbundles` command line: phantoms and datalists as a user types them."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "brainbundles.cli", *args], capture_output=True, text=True)


def test_phantom_then_datalists(tmp_path):
    out = tmp_path / "ph"
    proc = _cli("phantom", "tissue", "-o", str(out), "--cases", "4", "--test-cases", "1", "--seed", "5",
                "--shape", "40,48,36", "--spacing", "1.2,1.0,1.5", "--orientation", "LPS", "--folds", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.strip().splitlines()[-1]
        == f"wrote 5 tissue phantoms and their datalist to {out}/datalist.json"
    )
    assert proc.stderr.count("phantom ") >= 5 and "phantom 5 of 5 written" in proc.stderr  # progress per case
    img = nib.load(out / "IBSR_01" / "IBSR_01_ana_strip.nii.gz")
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert sorted(round(z, 3) for z in img.header.get_zooms()) == [1.0, 1.2, 1.5]

    dl_path = tmp_path / "dl.json"
    proc = _cli("datalist", "phantom", "-i", str(out), "-o", str(dl_path), "--folds", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"wrote {dl_path}: 4 training and 1 testing cases"
    dl = json.loads(dl_path.read_text())
    assert len(dl["training"]) == 4 and len(dl["testing"]) == 1
    assert {it["fold"] for it in dl["training"]} == {0, 1}
    assert dl["labels"] == {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}

    proc = _cli(
        "datalist", "ibsr18", "--input", str(out), "--output", str(tmp_path / "ibsr.json"), "--folds", "5"
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((tmp_path / "ibsr.json").read_text())["training"]) == 5


def test_isbi_consensus_then_datalist(tmp_path, capsys):
    """The ISBI 2015 consensus is a step of its own: the datalist names it when the masks are missing, the
    command writes them (and says so in one line), then the datalist lists them. (In-process: the other
    tests run the command as a subprocess.)"""
    from brainbundles.cli import main

    def cli(*args: str) -> tuple[int, str, str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    data = tmp_path / "isbi"
    for i, name in enumerate(("preprocessed/training01_01_flair_pp", "preprocessed/training01_01_mprage_pp",
                              "masks/training01_01_mask1", "masks/training01_01_mask2")):  # fmt: skip
        (data / "training01" / name).parent.mkdir(parents=True, exist_ok=True)
        arr = (np.random.default_rng(i).uniform(size=(4, 4, 4)) < 0.5).astype(np.uint8)
        nib.save(nib.Nifti1Image(arr, np.eye(4)), data / "training01" / f"{name}.nii.gz")
    dl_path = tmp_path / "dl.json"
    datalist = ["datalist", "isbi2015", "-i", str(data), "-o", str(dl_path), "--folds", "1"]
    datalist += ["--rater", "consensus"]
    code, _, err = cli(*datalist)
    assert code == 1 and f"brainbundles isbi-consensus -i {data}" in err
    assert not dl_path.exists() and not list(data.rglob("*consensus*"))

    code, out, err = cli("isbi-consensus", "-i", str(data))
    assert code == 0, err
    assert out.strip().splitlines()[-1] == (
        f"wrote 1 consensus mask (<subject>/masks/<time point>_consensus.nii.gz) under {data}"
    )
    assert (data / "training01" / "masks" / "training01_01_consensus.nii.gz").is_file()
    code, _, err = cli(*datalist)
    assert code == 0, err
    label = json.loads(dl_path.read_text())["training"][0]["label"]
    assert label == "training01/masks/training01_01_consensus.nii.gz"

    code, _, err = cli("isbi-consensus", "-i", str(tmp_path / "nowhere"))
    assert code == 1 and err.count("\n") == 1 and "does not exist" in err
    code, _, err = cli("isbi-consensus")
    assert code == 2 and "-i/--input" in err


def test_unknown_task_and_layout_are_clear_errors(tmp_path):
    proc = _cli("phantom", "kidney", "-o", str(tmp_path / "x"))
    assert proc.returncode != 0 and "task" in proc.stderr
    proc = _cli("datalist", "nolayout", "-i", str(tmp_path))
    assert proc.returncode != 0 and "nolayout" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_share_commands(tmp_path, monkeypatch, capsys, untrained_export):
    """export -> package -> publish (instructions, then the index) -> download by name -> verify, through
    the command's entry point in this process; then, as typed, a URL without a checksum is refused with
    exit 1 and a one-line error."""
    import os

    from brainbundles.cli import main

    bundle = untrained_export(tmp_path / "brain_tissue_mri_segmentation", export=False)
    monkeypatch.setenv("BRAINBUNDLES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BRAINBUNDLES_INDEX", str(tmp_path / "index.json"))

    def run(*argv: str) -> str:
        capsys.readouterr()
        main(list(argv))
        return capsys.readouterr().out

    out = run("export", str(bundle), "--version", "1.0.0", "--changelog", "first weights")
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"wrote {bundle}") and "version 1.0.0" in last and "model.pt2" in last
    assert "eval_metrics: none" in last
    zip_path = tmp_path / "b.zip"
    out = run("package", str(bundle), "-o", str(zip_path))
    sha = (tmp_path / "b.zip.sha256").read_text().split()[0]
    assert out.strip().splitlines()[-1] == f"wrote {zip_path} (sha256 {sha}) and {zip_path}.sha256"

    out = run("publish", str(zip_path))
    assert "gh release" in out and "huggingface-cli upload" in out
    assert out.strip().splitlines()[-1].startswith("wrote nothing")
    assert not (tmp_path / "index.json").exists()  # instructions only
    run("publish", str(zip_path), "--source", zip_path.as_uri())
    index = json.loads((tmp_path / "index.json").read_text())
    assert index == {"brain_tissue_mri_segmentation_v1.0.0": {"source": zip_path.as_uri(), "checksum": sha}}

    got = tmp_path / "dl" / "brain_tissue_mri_segmentation"
    out = run("download", "brain_tissue_mri_segmentation", "-o", str(tmp_path / "dl"))
    assert out.strip().splitlines()[-1] == f"wrote the verified bundle to {got}"
    out = run("verify", str(got))
    assert out.strip().splitlines()[-1] == f"{got}: verified (wrote nothing)"
    assert "checksums: " in out and "archive checked, not loaded" in out  # a download: strict, not run
    out = run("verify", str(bundle))  # the publisher's own folder: the program is run and compared
    assert "exported program agrees" in out

    env = {**os.environ, "BRAINBUNDLES_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "brainbundles.cli",
            "download",
            zip_path.as_uri(),
            "-o",
            str(tmp_path / "dl2"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 1 and "no sha256 is known" in proc.stderr and "--trust" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "dl2").exists()


COMMANDS = ["phantom", "datalist", "isbi-consensus", "demo", "infer", "train", "train-cv", "export",
            "package", "publish", "download", "verify", "generate-configs"]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_help_prints_help_and_does_no_work(command, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "brainbundles.cli", command, "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: brainbundles {command}") and "--help" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written (the demo's help once started the demo)


def test_every_command_names_input_and_output_alike():
    from brainbundles.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert sorted(commands) == sorted(COMMANDS)
    for name, command in commands.items():
        options = command._option_string_actions
        if "--input" in options:
            assert options["-i"] is options["--input"] and options["--input"].nargs is None, name
            assert type(options["--input"]).__name__ == "_AppendAction", name  # repeatable
        if "--output" in options:
            assert options["-o"] is options["--output"], name
        assert not {"--out", "--dir", "--root"} & set(options), name
    args = parser.parse_args(
        ["infer", "tissue", "-i", "a.nii.gz", "--input", "b.nii.gz", "-i", "flair=c.nii.gz"]
    )
    assert args.input == ["a.nii.gz", "b.nii.gz", "flair=c.nii.gz"]  # every repeated input kept


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["infer", "tissue", "-i", "x.nii.gz", "--outptu", "o"], "--outptu o (did you mean --output?)"),
        (["phantom", "--out", "o"], "--out (did you mean --output?)"),
        (["train", "tissue", "-i", "d", "--datalist", "d.json", "--epochs", "3"], "use --set epochs=VALUE"),
        (["infer", "tissue", "x.nii.gz"], "x.nii.gz (an input? use -i x.nii.gz)"),
        (["verify", "tissue", "--strictt"], "--strictt (did you mean --strict?)"),
    ],
)
def test_an_unknown_argument_is_an_error_naming_it(argv, expected, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "brainbundles.cli", *argv], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_config_key_the_bundle_lacks_is_an_error_naming_it(tmp_path):
    proc = _cli(
        "infer",
        "tissue",
        "-i",
        str(tmp_path / "x.nii.gz"),
        "-o",
        str(tmp_path / "o"),
        "--set",
        "prefetsh=false",
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "prefetsh (did you mean prefetch?)" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_set_values_are_json_or_python_literals_or_strings():
    from brainbundles.cli import parse_set

    got = parse_set(
        ["epochs=12", "patch_size=[96,96,96]", "resume=false", "crf=True", "name=run 1", "x=null"]
    )
    assert got == {
        "epochs": 12,
        "patch_size": [96, 96, 96],
        "resume": False,
        "crf": True,
        "name": "run 1",
        "x": None,
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_set(["epochs"])


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
