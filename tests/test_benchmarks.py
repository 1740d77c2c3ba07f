"""The hand-run benchmarks still run and print their last line (tiny cases; the numbers are in the READMEs)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("bundle", ["brats_mri_segmentation", "brain_tissue_mri_segmentation"])
def test_inference_benchmark_compares_plain_and_fast(bundle: str) -> None:
    out = _run(
        "inference.py",
        "--bundle",
        bundle,
        "--shape",
        "56",
        "64",
        "48",
        "--brain-shape",
        "40",
        "48",
        "40",
        "--repeats",
        "1",
    )
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"speedup (\S+) memory_ratio (\S+) agreement_dice (\S+)", last)
    assert m, out
    speedup, memory_ratio, agreement = map(float, m.groups())
    assert speedup > 0 and memory_ratio > 0 and 0.0 <= agreement <= 1.0
    # the same network and windows in float32 and contiguous memory give (nearly) the same labels
    numeric = re.search(r"precision and memory format only\): (.*)", out).group(1).split()
    assert len(numeric) >= 2 and min(map(float, numeric[1::2])) >= 0.99, out
    assert "Dice against the phantom's labels" in out


def test_training_benchmark_prints_both_rates() -> None:
    out = _run(
        "training.py", "--bundle", "brats_mri_segmentation", "--iterations", "1", "--cases", "2",
        "--brain-shape", "40", "48", "40", "--set", "patch_size=[32,32,32]", "num_samples=1",
    )  # fmt: skip
    m = re.search(r"pipeline_its (\S+) model_its (\S+) ratio (\S+)$", out.strip())
    assert m, out
    pipeline, model, ratio = map(float, m.groups())
    assert pipeline > 0 and model > 0 and ratio == pytest.approx(pipeline / model, rel=0.01)
