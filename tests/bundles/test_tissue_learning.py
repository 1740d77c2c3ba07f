"""Learning test: `brainbundles demo tissue`, exactly as the README runs it, must learn.

It makes phantoms, trains the tissue bundle through the MONAI bundle runner on the CPU, infers on
held-out phantoms and evaluates them in their native space. A pipeline that mixes up orientation,
labels, intensities or the loss stays far below the thresholds (a network that has not learned
scores well under 0.5 on CSF and GM). The trained bundle's uncertainty map must also single out a
scan with an injected artefact.
"""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from brainbundles.workflows import run_inference

THRESHOLD = 0.85  # per-class mean Dice on held-out phantoms (issue 2)
TIME_LIMIT_S = 600  # the demo must finish in under 10 minutes on 2 cores
#: the artefact's uncertain volume over the clean scan's (measured 1.17 and 1.18 on two held-out phantoms)
ARTEFACT_RATIO = 1.05


def _with_artefact(src, dst, seed=0):
    """``src`` with a 24 mm cube of strong noise (4 x the brain's intensity sd) at the volume's centre."""
    img = nib.load(src)
    a = img.get_fdata().astype(np.float32)
    sd = a[a > 0].std()
    cube = tuple(slice(s // 2 - 12, s // 2 + 12) for s in a.shape)
    a[cube] += np.random.default_rng(seed).normal(0, 4 * sd, a[cube].shape).astype(np.float32)
    nib.save(nib.Nifti1Image(a, img.affine, img.header), dst)
    return dst


@pytest.mark.slow
def test_demo_tissue_learns(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "brainbundles.cli", "demo", "tissue", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    dice = metrics["scores"]
    assert set(dice) == {"CSF", "GM", "WM"}
    for name, value in dice.items():
        assert value >= THRESHOLD, f"{name} Dice {value:.3f} < {THRESHOLD}: {metrics}"
    assert metrics["seconds"]["total"] < TIME_LIMIT_S, metrics["seconds"]
    assert "mean Dice CSF" in proc.stdout

    # a complete trained bundle is left behind, and its predictions are on the held-out scans' grids
    bundle = out / "bundle"
    for f in ("configs/common.json", "configs/inference.json", "configs/metadata.json", "LICENSE"):
        assert (bundle / f).is_file(), f
    state = torch.load(bundle / "models" / "model.pt", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    testing = json.loads((out / "data" / "datalist.json").read_text())["testing"]
    assert metrics["held_out_cases"] == len(testing) > 0
    for item in testing:
        image = nib.load(out / "data" / item["image"][0])
        seg = nib.load(out / "predictions" / f"{item['case']}_seg.nii.gz")
        assert seg.shape == image.shape and np.array_equal(seg.affine, image.affine)

    # uncertainty: the same held-out scan with an artefact is marked less certain than the clean one
    for item in testing[:2]:
        clean = out / "data" / item["image"][0]
        noisy = _with_artefact(clean, tmp_path / f"{item['case']}_artefact.nii.gz")
        res = run_inference(
            bundle, [clean, noisy], output_dir=tmp_path / f"unsure_{item['case']}", uncertainty=True
        )
        summary = {p.name: json.loads(p.read_text())["uncertainty"] for p in res.glob("*_volumes.json")}
        (art,) = [v for k, v in summary.items() if "artefact" in k]
        (ref,) = [v for k, v in summary.items() if "artefact" not in k]
        assert art["uncertain_ml"] > ARTEFACT_RATIO * ref["uncertain_ml"], summary
        u = nib.load(art["map"])
        assert u.shape == nib.load(noisy).shape and np.array_equal(u.affine, nib.load(noisy).affine)
