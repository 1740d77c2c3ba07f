"""Real-scan check of the WMH bundle: train on one MS patient, segment the other, and compare with a plain
FLAIR-hyperintensity threshold, both scored by the same WMH challenge evaluation code.

The data are the two patients of ``$BRAINBUNDLES_DATA/ms`` (Lesjak et al. 2018: FLAIR, T1, 3-rater
consensus lesion mask; skull-stripped, 1 mm, MNI space). White-matter MS lesions are hyper-intense on FLAIR
like WMH, so the bundle's task applies. With one training scan there is no held-out validation scan:
the training scan is also the validation fold (it only picks the checkpoint), and the test patient is
never seen in training.

Baseline: z-score the FLAIR inside the brain (the non-zero voxels), call every voxel above a threshold a
lesion, drop lesions smaller than the bundle's ``min_lesion_mm3``; the threshold is the one (0.5..5.0 in
steps of 0.1) that maximises Dice on the *training* patient, then applied unchanged to the test patient.

Usage::

    python benchmarks/wmh_ms_patients.py --out runs/wmh_ms [--epochs 100]

Writes ``<out>/results.json`` and prints one line per direction and method.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from brainbundles.metrics import evaluate_lesion_arrays, evaluate_lesion_items
from brainbundles.postprocessing import remove_small_components
from brainbundles.workflows import copy_bundle, run_inference, run_training

PATIENTS = ("patient07", "patient19")
#: the settings the README's numbers were measured with (a small network that trains in minutes on a CPU)
BUNDLE_SETTINGS = {
    "network_def#features": [16, 32, 64, 128],
    "network_def#dropout": 0.1,
    "patch_size": [48, 48, 48],
}
THRESHOLDS = np.round(np.arange(0.5, 5.01, 0.1), 2)


def _item(root: Path, patient: str) -> dict:
    d = root / patient
    return {"image": [str(d / "FLAIR.nii.gz"), str(d / "T1.nii.gz")], "label": str(d / "consensus_gt.nii.gz")}


def flair_threshold(flair: np.ndarray, threshold: float, min_voxels: float) -> np.ndarray:
    """Voxels of the brain (non-zero FLAIR) whose FLAIR z-score exceeds ``threshold``, as 0/1, with
    26-connected lesions smaller than ``min_voxels`` removed."""
    brain = flair != 0
    values = flair[brain]
    z = np.zeros_like(flair, dtype=np.float64)
    z[brain] = (values - values.mean()) / values.std()
    return remove_small_components(brain & (z > threshold), min_voxels).astype(np.uint8)


def _load(path: str) -> tuple[np.ndarray, tuple[float, ...]]:
    img = nib.load(path)
    return np.asanyarray(img.dataobj).astype(np.float32), tuple(float(z) for z in img.header.get_zooms()[:3])


def baseline(train: dict, test: dict, min_lesion_mm3: float) -> tuple[float, dict]:
    """The FLAIR threshold tuned on ``train`` and its metrics on ``test``."""
    flair, spacing = _load(train["image"][0])
    ref, _ = _load(train["label"])
    min_voxels = min_lesion_mm3 / float(np.prod(spacing))
    dice = [
        evaluate_lesion_arrays(flair_threshold(flair, t, min_voxels), ref, spacing)["dice"]
        for t in THRESHOLDS
    ]
    best = float(THRESHOLDS[int(np.argmax(dice))])
    flair, spacing = _load(test["image"][0])
    ref, _ = _load(test["label"])
    return best, evaluate_lesion_arrays(flair_threshold(flair, best, min_voxels), ref, spacing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.join(os.environ.get("BRAINBUNDLES_DATA", ""), "ms"))
    parser.add_argument("--out", default="runs/wmh_ms")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--bundle", default="wmh_mri_segmentation")
    parser.add_argument("--train", choices=PATIENTS, help="only this training direction")
    parser.add_argument("--samples", type=int, default=8, help="patches per scan and epoch")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=JSON", help="bundle config override"
    )
    args = parser.parse_args()
    settings = {**BUNDLE_SETTINGS, **{k: json.loads(v) for k, v in (o.split("=", 1) for o in args.set)}}
    root, out = Path(args.data), Path(args.out).resolve()
    if not all((root / p / "FLAIR.nii.gz").is_file() for p in PATIENTS):
        raise SystemExit(
            f"{root}: expected {', '.join(PATIENTS)} with FLAIR, T1 and consensus_gt (set BRAINBUNDLES_DATA)"
        )
    results = {"settings": {**settings, "epochs": args.epochs, "samples": args.samples}, "runs": []}
    for train_p, test_p in (PATIENTS, PATIENTS[::-1]):
        if args.train and train_p != args.train:
            continue
        run = out / f"train_{train_p}"
        train, test = _item(root, train_p), _item(root, test_p)
        # one training scan: it is fold 1 (training) and, under another id, fold 0 (validation)
        datalist = {
            "channels": ["FLAIR", "T1"],
            "training": [
                {**train, "case": train_p, "fold": 1},
                {**train, "case": f"{train_p}_val", "fold": 0},
            ],
            "testing": [{**test, "case": test_p}],
        }
        run.mkdir(parents=True, exist_ok=True)
        (run / "datalist.json").write_text(json.dumps(datalist, indent=1))
        bundle = copy_bundle(args.bundle, run / "bundle", settings)
        t0 = time.perf_counter()
        run_training(
            bundle,
            run,
            run / "datalist.json",
            epochs=args.epochs,
            val_interval=10,
            num_samples=args.samples,
            batch_size=4,
        )
        t_train = time.perf_counter() - t0
        run_inference(bundle, output_dir=run / "predictions", datalist=run / "datalist.json")
        report = evaluate_lesion_items(
            [{**test, "case": test_p}], run / "predictions", run / "evaluation", ignore_label=None
        )
        network = report["per_case"][test_p]["WMH"]
        min_mm3 = json.loads((bundle / "configs" / "common.json").read_text())["min_lesion_mm3"]
        threshold, base = baseline(train, test, min_mm3)
        results["runs"].append(
            {
                "train": train_p,
                "test": test_p,
                "training_seconds": round(t_train, 1),
                "network": network,
                "flair_threshold": {"z": threshold, **base},
            }
        )
        for name, m in (("network", network), (f"FLAIR z > {threshold}", base)):
            print(
                f"train {train_p} -> test {test_p}: {name}: Dice {m['dice']:.3f}, HD95 {m['hd95']:.1f} mm, "
                f"AVD {m['avd']:.1f}%, lesion recall {m['lesion_recall']:.3f}, lesion F1 {m['lesion_f1']:.3f}"
            )
        (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
