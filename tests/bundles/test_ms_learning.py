"""Learning test: `brainbundles demo ms` must learn, quick (`--quick`, in the default suite) and exactly as
the README runs it (`full`, marked `demo`: `python -m pytest -m demo`).

It makes MS phantoms (ovoid periventricular, juxtacortical and deep lesions on FLAIR, T1, T2 and PD),
trains the MS bundle through the MONAI bundle runner on the CPU (with random sequence dropout, and the
lesion probability threshold tuned on the validation fold), infers on held-out phantoms, also with each
sequence left out, and scores them lesion by lesion in their native space. A pipeline that breaks the
channel order, the zero-filling of absent sequences, the lesion sampling, the threshold or the geometry
stays far below the thresholds (a network that has not learned finds no lesions: Dice and LTPR near 0).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

#: lesion Dice and lesion true positive rate (lesion recall) on held-out phantoms: the full demo's
#: targets (issue 7); the quick demo (1.5 mm phantoms, half-width network, 40 epochs) measured Dice
#: 0.702, LTPR 0.934, and without T1 / PD Dice 0.572 / 0.669; stopped after 2 epochs, Dice 0.348
DICE = {"full": 0.70, "quick": 0.55}
LTPR = {"full": 0.70, "quick": 0.70}
TIME_LIMIT_S = {"full": 900, "quick": 300}  # the demo must finish in under 15 minutes on 2 cores


def test_demo_ms_learns(tmp_path, demo_mode, run_demo_cli, demo_time_limit):
    out = tmp_path / "demo"
    metrics, _ = run_demo_cli("ms", out, demo_mode)
    scores = metrics["scores"]
    assert set(scores) == {"dice", "lesion_recall", "lesion_precision", "lesion_f1", "avd"}
    assert scores["dice"] >= DICE[demo_mode], metrics
    assert scores["lesion_recall"] >= LTPR[demo_mode], metrics
    assert metrics["seconds"]["total"] < demo_time_limit(demo_mode, TIME_LIMIT_S[demo_mode]), metrics[
        "seconds"
    ]
    # without one sequence (zero-filled) the bundle still segments: the FLAIR matters most
    assert set(metrics["scores_without"]) == {"FLAIR", "T1", "T2", "PD"}  # the phantoms have no T1-Gd
    for seq in ("T1", "PD"):
        assert metrics["scores_without"][seq]["dice"] >= DICE[demo_mode] - 0.15, metrics["scores_without"]

    bundle = out / "bundle"
    threshold = json.loads((bundle / "models" / "threshold.json").read_text())["threshold"]
    assert 0 < threshold < 1
    testing = json.loads((out / "data" / "datalist.json").read_text())["testing"]
    assert metrics["held_out_cases"] == len(testing) > 0
    for item in testing:
        flair = nib.load(out / "data" / item["image"][0])
        seg = nib.load(out / "predictions" / f"{item['case']}_seg.nii.gz")
        assert seg.shape == flair.shape and np.array_equal(seg.affine, flair.affine)
        record = json.loads((out / "predictions" / f"{item['case']}_volumes.json").read_text())
        assert record["volumes_ml"]["lesion"] > 0 and record["lesions"]["lesion"] >= 1
