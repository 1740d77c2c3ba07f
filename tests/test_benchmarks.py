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


@pytest.mark.parametrize("bundle", ["brain_tumour_mri_segmentation", "brain_tissue_mri_segmentation"])
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
    # the last line is computed from the lines above it: seconds and peaks of each path
    seconds = {k: float(v) for k, v in re.findall(r"^(plain|fast): seconds_per_case (\S+)", out, re.M)}
    peaks = {k: float(v) for k, v in re.findall(r"^(plain|fast): .* peak_rss_gb (\S+)", out, re.M)}
    assert speedup == pytest.approx(seconds["plain"] / seconds["fast"], rel=0.02, abs=0.01), out
    assert memory_ratio == pytest.approx(peaks["plain"] / peaks["fast"], rel=0.05, abs=0.01), out
    # agreement_dice is the fast path against the same windows in float32 and contiguous memory: the
    # numerical shortcuts only, which must not change the labels
    numeric = re.search(r"precision and\s+memory format only\): (.*)", out).group(1).split()
    assert len(numeric) >= 2 and agreement == pytest.approx(min(map(float, numeric[1::2])), abs=1e-4), out
    assert agreement >= 0.99, out
    truth = dict(re.findall(r"^(plain|fast) Dice against the true labels: (.*)$", out, re.M))
    assert set(truth) == {"plain", "fast"}, out
    for scores in truth.values():
        values = list(map(float, scores.split()[1::2]))
        assert values and all(0.0 <= v <= 1.0 for v in values), out


def test_training_benchmark_prints_both_rates() -> None:
    out = _run(
        "training.py", "--bundle", "brain_tumour_mri_segmentation", "--iterations", "1", "--cases", "2",
        "--brain-shape", "40", "48", "40", "--set", "patch_size=[32,32,32]", "num_samples=1",
    )  # fmt: skip
    m = re.search(r"pipeline_its (\S+) model_its (\S+) ratio (\S+)$", out.strip())
    assert m, out
    pipeline, model, ratio = map(float, m.groups())
    assert pipeline > 0 and model > 0 and ratio == pytest.approx(pipeline / model, rel=0.01)
