"""Real-scan check of the WMH and MS lesion bundles: train on one MS patient, segment the other, and
compare with a plain FLAIR-hyperintensity threshold, both scored by the same lesion evaluation code.

The data are the two patients of ``$BRAINBUNDLES_DATA/ms`` (Lesjak et al. 2018: FLAIR, T1, T2, T1-Gd,
3-rater consensus lesion mask; skull-stripped, 1 mm, MNI space). White-matter MS lesions are
hyper-intense on FLAIR like WMH, so the WMH bundle's task applies too (``--sequences FLAIR,T1``, its
two channels); the MS bundle takes any of the sequences. With one training scan there is no held-out validation scan:
the training scan is also the validation fold (it only picks the checkpoint), and the test patient is
never seen in training.

Baseline: z-score the FLAIR inside the brain (the non-zero voxels), call every voxel above a threshold a
lesion, drop lesions smaller than the bundle's ``min_lesion_mm3``; the threshold is the one (0.5..5.0 in
steps of 0.1) that maximises Dice on the *training* patient, then applied unchanged to the test patient.

Usage::

    python benchmarks/ms_patients.py --out runs/wmh_ms [--epochs 100]
    python benchmarks/ms_patients.py --bundle ms_lesion_mri_segmentation --sequences FLAIR,T1,T2 --out runs/ms

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


#: the sequences of the open MS data, by the bundles' channel names
FILES = {"FLAIR": "FLAIR.nii.gz", "T1": "T1.nii.gz", "T2": "T2.nii.gz", "T1Gd": "T1POST.nii.gz"}


def _item(root: Path, patient: str, sequences: list[str]) -> dict:
    d = root / patient
    return {
        "image": [str(d / FILES[s]) for s in sequences],
        "channels": list(sequences),
        "label": str(d / "consensus_gt.nii.gz"),
    }


def _phantom_items(out: Path, cases: int, sequences: list[str]) -> list[dict]:
    """``cases`` MS phantoms at the real scans' size (1 mm) as training items (fold 1) with the
    ``sequences`` they have (FLAIR, T1, T2; no T1-Gd)."""
    from brainbundles.data.phantom import write_phantom_dataset

    data = write_phantom_dataset(
        "ms", out, cases=cases, folds=1, shape=(160, 192, 160), spacing=(1.0, 1.0, 1.0)
    )
    items = []
    for it in json.loads((data / "datalist.json").read_text())["training"]:
        keep = [i for i, c in enumerate(it["channels"]) if c in sequences]
        items.append(
            {
                "image": [str(data / it["image"][i]) for i in keep],
                "channels": [it["channels"][i] for i in keep],
                "label": str(data / it["label"]),
                "case": it["case"],
                "fold": 1,
            }
        )
    return items


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
        "--sequences", default="FLAIR,T1", help=f"comma-separated, of {', '.join(FILES)} (FLAIR first)"
    )
    parser.add_argument(
        "--phantoms",
        type=int,
        default=0,
        help="also train on this many synthetic MS phantoms (brainbundles phantom ms) besides the patient",
    )
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
    sequences = args.sequences.split(",")
    if sequences[0] != "FLAIR" or not set(sequences) <= set(FILES):
        raise SystemExit(f"--sequences: FLAIR first, then any of {', '.join(FILES)}; got {args.sequences}")
    results = {
        "settings": {
            **settings,
            "epochs": args.epochs,
            "samples": args.samples,
            "sequences": sequences,
            "phantoms": args.phantoms,
        },
        "runs": [],
    }
    for train_p, test_p in (PATIENTS, PATIENTS[::-1]):
        if args.train and train_p != args.train:
            continue
        run = out / f"train_{train_p}"
        train, test = _item(root, train_p, sequences), _item(root, test_p, sequences)
        # one training scan: it is fold 1 (training) and, under another id, fold 0 (validation)
        datalist = {
            "channels": sequences,
            "training": [
                {**train, "case": train_p, "fold": 1},
                {**train, "case": f"{train_p}_val", "fold": 0},
            ],
            "testing": [{**test, "case": test_p}],
        }
        run.mkdir(parents=True, exist_ok=True)
        if args.phantoms:
            datalist["training"] += _phantom_items(run / "phantoms", args.phantoms, sequences)
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
        (network,) = report["per_case"][test_p].values()
        min_mm3 = json.loads((bundle / "configs" / "inference.json").read_text())["min_lesion_mm3"]
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
