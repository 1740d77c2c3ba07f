"""A batch of one good scan and bad inputs, run as a user would (``run_inference`` and the command
line): every problem is one line naming the file (or argument) and the problem, the good case is
written, nothing partial is left, the exit status is non-zero; and a killed batch resumes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbundles.errors import InputError
from brainbundles.workflows import run_inference, run_training


@pytest.fixture(scope="module")
def tissue(tmp_path_factory, untrained_export) -> types.SimpleNamespace:
    """A tiny tissue bundle with random weights and one good 24^3 scan."""
    tmp = tmp_path_factory.mktemp("tissue")
    bundle = untrained_export(tmp / "brain_tissue_mri_segmentation", export=False)
    rng = np.random.default_rng(0)
    scan = rng.uniform(10, 100, (24, 24, 24)).astype(np.float32)
    good = tmp / "good.nii.gz"
    nib.save(nib.Nifti1Image(scan, np.diag([1.0, 1.0, 1.0, 1.0])), good)
    return types.SimpleNamespace(bundle=bundle, good=good, tmp=tmp)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "brainbundles.cli", *args], capture_output=True, text=True)


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The command failed with ``error: ...`` naming every fragment, and no traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert errors, proc.stderr[-2000:]
    text = proc.stderr[proc.stderr.index(errors[0]) :]
    for f in fragments:
        assert f in text, f"{f!r} not in {text!r}"
    return text


def outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_bad_scans_in_a_batch_are_named_and_the_good_one_is_written(tissue, tmp_path, bad_header_scans):
    """Headers that lie (16 GB claimed in a few bytes, NaN or singular affine, zero voxel size), values
    no scan has (1e30, all negative) and a link to itself: each named with its problem by the checks,
    before any work; the good scan is written; the huge one never costs memory."""
    inputs = tmp_path / "inputs"
    scans = bad_header_scans(inputs)
    (inputs / "self.nii.gz").symlink_to(inputs / "self.nii.gz")
    (inputs / "good.nii.gz").write_bytes(tissue.good.read_bytes())
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        run_inference(tissue.bundle, [inputs], output_dir=out)
    msg = str(err.value)
    lines = msg.splitlines()
    for path, problem in scans.values():
        line = next((ln for ln in lines if ln.startswith(f"{path}: ")), "")
        assert problem in line, f"{path.name}: {problem!r} not in {line!r}"
    assert any(ln.startswith(f"{inputs / 'self.nii.gz'}: file not found") for ln in lines), msg
    assert f"{len(scans) + 1} of {len(scans) + 2} input cases failed" in msg
    assert [f for f in outputs(out) if f.endswith("_seg.nii.gz")] == ["good_seg.nii.gz"]
    assert not [f for f in outputs(out) if f.startswith(".")], "temporary files left behind"

    # the command line: the same lines, exit status 1, no traceback, and memory far below 16 GB
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "maxrss_kb=%M", sys.executable, "-m", "brainbundles.cli", "infer",
         str(tissue.bundle), "-i", str(tissue.good), "-i", str(scans["huge"][0]), "--output", str(tmp_path / "cli")],
        capture_output=True, text=True,
    )  # fmt: skip
    one_line_error(proc, f"{scans['huge'][0]}: header describes 2000x2000x2000")
    rss_kb = int(proc.stderr.rsplit("maxrss_kb=", 1)[1].split()[0])
    assert rss_kb < 1_000_000, f"peak memory {rss_kb / 1e6:.2f} GB"
    assert "good_seg.nii.gz" in outputs(tmp_path / "cli")


def test_bad_arguments_are_one_line_errors(tissue, tmp_path):
    out_file = tmp_path / "taken.txt"
    out_file.write_text("a file, not a folder\n")
    one_line_error(
        cli("infer", str(tissue.bundle), "-i", str(tissue.good), "--output", str(out_file)),
        f"{out_file}: the output must be a folder",
    )
    assert out_file.read_text() == "a file, not a folder\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(
        cli("infer", str(tissue.bundle), "--input", str(empty), "--output", str(tmp_path / "o1")),
        f"{empty}: folder holds no image files",
    )
    assert not (tmp_path / "o1").exists() or outputs(tmp_path / "o1") == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"testing": [{"image": "good.nii.gz"},', "is not valid JSON"),
        ('{"testing": [{"image": "good.nii.gz"}, {"label": "x.nii.gz", "case": "b"}]}',
         "item 1 of 'testing' (b) has no 'image' entry"),
        ('["good.nii.gz"]', "must be a JSON object"),
        ('{"testing": [{"image": []}]}', "item 0 of 'testing' 'image' must be a path"),
    ],
    ids=["syntax", "no-image", "not-object", "empty-image"],
)  # fmt: skip
def test_bad_inference_datalist_is_named(tissue, tmp_path, content, problem):
    datalist = tmp_path / "datalist.json"
    datalist.write_text(content)
    (tmp_path / "good.nii.gz").write_bytes(tissue.good.read_bytes())
    with pytest.raises(InputError, match="^" + str(datalist).replace(".", r"\.") + ": "):
        run_inference(tissue.bundle, datalist=datalist, output_dir=tmp_path / "out")
    one_line_error(
        cli("infer", str(tissue.bundle), "--datalist", str(datalist), "--output", str(tmp_path / "o")),
        f"{datalist}: ",
        problem,
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{'training': []}", "is not valid JSON"),
        ('{"training": [{"label": "a_seg.nii.gz", "fold": 0}]}', "item 0 of 'training' has no 'image' entry"),
        ('{"training": [{"image": "a.nii.gz", "fold": "zero"}]}', "'fold' must be a whole number"),
        ('{"testing": [{"image": "a.nii.gz"}]}', "no 'training' cases"),
    ],
    ids=["syntax", "no-image", "fold", "no-training"],
)
def test_bad_training_datalist_is_named_before_the_runner_starts(tissue, tmp_path, content, problem):
    datalist = tmp_path / "datalist.json"
    datalist.write_text(content)
    with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        run_training(tissue.bundle, tmp_path, datalist, epochs=1)
    one_line_error(
        cli("train", str(tissue.bundle), "-i", str(tmp_path), "--datalist", str(datalist)),
        f"{datalist}: ",
        problem,
    )


def test_a_rerun_writes_only_missing_cases_and_cleans_up(tissue, tmp_path):
    """A batch "killed" after its first case (its second case's outputs and a stale temporary file as a
    SIGKILL leaves them) is run again: only the missing case is computed, the temporary file is gone,
    and volumes.csv lists exactly this run's cases, not an earlier run's on other inputs."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("a", "b"):
        (inputs / f"{name}.nii.gz").write_bytes(tissue.good.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    other = {"case": "old", "image": "/elsewhere/old.nii.gz", "volumes_ml": {"CSF": 1.0, "total": 1.0}}
    (out / "old_volumes.json").write_text(json.dumps(other))  # an earlier run's, on another input
    run_inference(tissue.bundle, [inputs / "a.nii.gz"], output_dir=out)
    first = {f: (out / f).stat().st_mtime_ns for f in outputs(out)}
    (out / ".b_seg.part-x1y2.nii.gz").write_bytes(b"half a file")  # what a SIGKILL leaves
    run_inference(tissue.bundle, [inputs], output_dir=out)
    files = outputs(out)
    assert not [f for f in files if f.startswith(".")], files
    for f in ("a_seg.nii.gz", "a_volumes.json", "a_overlay.png"):
        assert (out / f).stat().st_mtime_ns == first[f], f"{f} was rewritten"
    for f in ("b_seg.nii.gz", "b_volumes.json", "b_overlay.png"):
        assert f in files
    with open(out / "volumes.csv", newline="") as f:
        assert [row["case"] for row in csv.DictReader(f)] == ["a", "b"]
    # a case whose record is missing (killed between the label map and the record) is recomputed,
    # and --resume false recomputes everything
    (out / "b_volumes.json").unlink()
    before = (out / "a_seg.nii.gz").stat().st_mtime_ns
    run_inference(tissue.bundle, [inputs], output_dir=out)
    assert (out / "b_volumes.json").is_file()
    assert (out / "a_seg.nii.gz").stat().st_mtime_ns == before
    one_line_error(
        cli("infer", str(tissue.bundle), "-i", str(inputs), "-o", str(out), "--set", "resume=fals"), "resume"
    )
    assert (out / "a_seg.nii.gz").stat().st_mtime_ns == before
    proc = cli("infer", str(tissue.bundle), "-i", str(inputs), "-o", str(out), "--set", "resume=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "case 2 of 2 written: b" in proc.stdout + proc.stderr
    assert (out / "a_seg.nii.gz").stat().st_mtime_ns != before
    # other weights (a retrained bundle) write the folder anew
    import shutil

    import torch

    from brainbundles.bundle.configs import build_network
    from brainbundles.bundle.weights import save_weights

    retrained = Path(shutil.copytree(tissue.bundle, tmp_path / "retrained" / tissue.bundle.name))
    torch.manual_seed(1)
    save_weights(
        build_network(retrained, weights=False).state_dict(), retrained / "models" / "model.safetensors"
    )
    before = {f: (out / f).stat().st_mtime_ns for f in ("a_seg.nii.gz", "b_seg.nii.gz")}
    run_inference(retrained, [inputs], output_dir=out)
    assert all((out / f).stat().st_mtime_ns != t for f, t in before.items())


def test_sequence_problems_of_a_multichannel_bundle_are_one_line_errors(tissue, tmp_path, untrained_export):
    """The tumour bundle given a misspelt sequence name, and the same file as T1 and T1c."""
    brats = untrained_export(
        tmp_path / "brain_tumour_mri_segmentation",
        "tumour",
        {"network_def#init_filters": 8, "patch_size": [32, 32, 32]},
        export=False,
    )
    scans = {}
    for i, name in enumerate(("flair", "t1", "t1c", "t2")):
        scans[name] = tmp_path / f"case_{name}.nii.gz"
        data = np.random.default_rng(i).uniform(10, 100, (24, 24, 24)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.eye(4)), scans[name])
    one_line_error(
        cli(
            "infer",
            str(brats),
            "-i",
            f"flare={scans['flair']}",
            "-i",
            f"t1c={scans['t1c']}",
            "--output",
            str(tmp_path / "o1"),
        ),
        f"flare={scans['flair']}: sequence 'flare' is not one of the bundle's channels",
    )
    one_line_error(
        cli("infer", str(brats), "-i", f"t1={scans['t1']}", "-i", f"t1c={scans['t1']}", "-i", f"flair={scans['flair']}",
            "--output", str(tmp_path / "o2")),
        f"{scans['t1']}: the same scan is given as T1",
        "and as T1c",
    )  # fmt: skip
    assert not [p for p in (tmp_path / "o2").rglob("*_seg.nii.gz")]


def test_a_batch_killed_half_way_resumes(tissue, tmp_path):
    """SIGKILL once the first of four cases is written; the rerun writes only the missing cases and
    leaves no temporary file."""
    import os
    import signal
    import time

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in "abcd":
        (inputs / f"{name}.nii.gz").write_bytes(tissue.good.read_bytes())
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "brainbundles.cli", "infer", str(tissue.bundle), "-i", str(inputs), "--output", str(out),
         "--set", "tta_flip_axes=[0, 1, 2]"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "a_volumes.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name[: -len("_volumes.json")] for p in out.glob("*_volumes.json")}
    assert "a" in done and len(done) < 4, f"killed too late to test anything: {sorted(done)}"
    written = {c: (out / f"{c}_seg.nii.gz").stat().st_mtime_ns for c in done}
    rerun = cli(
        "infer",
        str(tissue.bundle),
        "-i",
        str(inputs),
        "--output",
        str(out),
        "--set",
        "tta_flip_axes=[0, 1, 2]",
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(done)} of 4 cases already written" in rerun.stdout + rerun.stderr
    assert {c: (out / f"{c}_seg.nii.gz").stat().st_mtime_ns for c in done} == written
    files = outputs(out)
    assert not [f for f in files if f.startswith(".")], files
    for c in "abcd":
        assert {f"{c}_seg.nii.gz", f"{c}_volumes.json", f"{c}_overlay.png"} <= set(files)
    with open(out / "volumes.csv", newline="") as f:
        assert [row["case"] for row in csv.DictReader(f)] == list("abcd")
