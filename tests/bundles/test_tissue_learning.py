"""Learning test: `brainbundles demo tissue` must learn, quick (`--quick`, in the default suite) and as the
README runs it (`full`, marked `demo`: `python -m pytest -m demo`).

It makes phantoms, trains the tissue bundle through the MONAI bundle runner on the CPU, infers on
held-out phantoms and evaluates them in their native space. A pipeline that mixes up orientation,
labels, intensities or the loss stays far below the thresholds (a network that has not learned
scores well under 0.5 on CSF and GM). The trained bundle's uncertainty map must also single out a
scan with an injected artefact.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import torch

from brainbundles.workflows import run_inference

#: per-class mean Dice on held-out phantoms: the full demo's target (issue 2); the quick demo measured
#: CSF 0.830, GM 0.838, WM 0.940 (2 mm phantoms, half-width network, 40 epochs); stopped after 2 epochs,
#: CSF 0.147, GM 0.604, WM 0.351
THRESHOLD = {"full": 0.85, "quick": 0.75}
TIME_LIMIT_S = {"full": 600, "quick": 300}  # the demo must finish in under 10 minutes on 2 cores
#: the artefact's uncertain volume over the clean scan's (full: measured 1.17 and 1.18 on two held-out
#: phantoms; quick: 1.075 and 1.076, its coarser model is unsure of more of the clean scan)
ARTEFACT_RATIO = {"full": 1.05, "quick": 1.02}


def _with_artefact(src, dst, seed=0):
    """``src`` with a cube of 24 voxels of strong noise (4 x the brain's intensity sd) at the volume's centre
    (24 mm in the full demo's 1 mm phantoms, 48 mm in the quick demo's 2 mm ones)."""
    img = nib.load(src)
    a = img.get_fdata().astype(np.float32)
    sd = a[a > 0].std()
    cube = tuple(slice(s // 2 - 12, s // 2 + 12) for s in a.shape)
    a[cube] += np.random.default_rng(seed).normal(0, 4 * sd, a[cube].shape).astype(np.float32)
    nib.save(nib.Nifti1Image(a, img.affine, img.header), dst)
    return dst


def test_demo_tissue_learns(tmp_path, demo_mode, run_demo_cli, demo_time_limit):
    out = tmp_path / "demo"
    metrics, stdout = run_demo_cli("tissue", out, demo_mode)
    dice = metrics["scores"]
    assert set(dice) == {"CSF", "GM", "WM"}
    for name, value in dice.items():
        assert value >= THRESHOLD[demo_mode], f"{name} Dice {value:.3f} < {THRESHOLD[demo_mode]}: {metrics}"
    assert metrics["seconds"]["total"] < demo_time_limit(demo_mode, TIME_LIMIT_S[demo_mode]), metrics[
        "seconds"
    ]
    assert "mean Dice CSF" in stdout

    # a complete trained bundle is left behind, and its predictions are on the held-out scans' grids
    bundle = out / "bundle"
    for f in ("configs/train.json", "configs/inference.json", "configs/metadata.json", "LICENSE"):
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
        assert art["uncertain_ml"] > ARTEFACT_RATIO[demo_mode] * ref["uncertain_ml"], summary
        u = nib.load(art["map"])
        assert u.shape == nib.load(noisy).shape and np.array_equal(u.affine, nib.load(noisy).affine)
