"""The inference protocol, measured: single fold, fold ensemble, ensemble + test-time augmentation, and
+ CRF, each scored on the same held-out phantoms and timed.

For a task it writes the demo's phantoms (``brainbundles demo``'s profile: cases, network size, epochs),
cross-validates a copy of the bundle over ``--folds`` folds (``run_cross_validation``, resumable: run the
same command again after an interruption), then segments the held-out ("testing") phantoms in each of
these ways (``--only`` picks some):

- ``single fold``: the fold-0 model alone (``single fold + CRF``: then the bundle's CRF);
- ``ensemble``: the mean probability of every fold model (``ensemble + CRF``: then the CRF);
- ``ensemble + left-right TTA``: also averaged with the left-right mirror image (axis 0 in RAS);
- ``ensemble + TTA``: also averaged over the mirrorings along ``--flip-axes`` (every combination);
- ``ensemble + TTA + CRF``: then the bundle's fully connected CRF on the probabilities.

Each is scored with the task's own metrics (those of ``brainbundles demo``) and timed (wall-clock seconds
for the whole inference run over the held-out cases, loading and writing included).

Usage::

    python benchmarks/protocol.py --task tissue --out runs/protocol_tissue [--folds 3] [--epochs N]

Writes ``<out>/protocol.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from monai.bundle import ConfigParser

from brainbundles.data.cases import inference_items
from brainbundles.data.phantom import write_phantom_dataset
from brainbundles.demo import DEMO_PROFILES, _evaluate
from brainbundles.fileio import write_json_atomic
from brainbundles.inference import ensemble_members
from brainbundles.paths import BUNDLE_NAMES
from brainbundles.workflows import copy_bundle, run_cross_validation, run_inference


def variants(members: list[str], flip_axes: list[int]) -> dict[str, dict]:
    """The inference settings compared, as config overrides (the single fold with its own lesion
    threshold, where the bundle tunes one; the ensemble uses the folds' mean)."""
    own = str(Path(members[0]).parent / "threshold.json") if members else ""
    return {
        "single fold": {"ensemble": members[:1], "probability_threshold_file": own},
        "single fold + CRF": {"ensemble": members[:1], "probability_threshold_file": own, "crf": True},
        "ensemble": {"ensemble": members},
        "ensemble + CRF": {"ensemble": members, "crf": True},
        "ensemble + left-right TTA": {"ensemble": members, "tta_flip_axes": [0]},
        "ensemble + TTA": {"ensemble": members, "tta_flip_axes": flip_axes},
        "ensemble + TTA + CRF": {"ensemble": members, "tta_flip_axes": flip_axes, "crf": True},
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=sorted(DEMO_PROFILES), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="default: the demo's")
    ap.add_argument("--flip-axes", default="0,1,2", help="spatial axes mirrored by TTA")
    ap.add_argument("--only", default=None, help="comma-separated variant names to run (default: all)")
    args = ap.parse_args(argv)

    profile = DEMO_PROFILES[args.task]
    out = args.out.resolve()
    data = out / "data"
    if not (data / "datalist.json").is_file():
        write_phantom_dataset(args.task, data, seed=0, **profile["phantom"])
    bundle = out / "bundle"
    if not (bundle / "configs").is_dir():
        copy_bundle(BUNDLE_NAMES[args.task], bundle, profile["bundle"])
    train = {**profile["train"], **({"epochs": args.epochs} if args.epochs else {})}
    t0 = time.perf_counter()
    cv = run_cross_validation(bundle, data, data / "datalist.json", folds=args.folds, **train)
    train_s = time.perf_counter() - t0

    members = [str(m) for m in ensemble_members(bundle / "models")]
    parser = ConfigParser(json.loads((bundle / "configs" / "inference.json").read_text()))
    items = inference_items(None, data / "datalist.json", data, parser["channels"], section="testing")
    axes = [int(a) for a in args.flip_axes.split(",") if a.strip()]
    chosen = variants(members, axes)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    results: dict = {
        "task": args.task,
        "folds": args.folds,
        "held_out_cases": len(items),
        "cv_training_seconds": round(train_s, 1),
        "cv_summary": cv["summary"],
        "variants": {},
    }
    previous = out / "protocol.json"  # a run with --only adds to the variants measured before
    if previous.is_file():
        before = json.loads(previous.read_text())
        results["variants"] = before.get("variants", {})
        results["cv_training_seconds"] = max(results["cv_training_seconds"], before["cv_training_seconds"])
    for name, overrides in chosen.items():
        pred = out / f"predictions_{name.replace(' ', '_').replace('+', 'and')}"
        t = time.perf_counter()
        run_inference(bundle, output_dir=pred, datalist=data / "datalist.json", **overrides)
        seconds = time.perf_counter() - t
        scores = _evaluate(
            args.task, items, pred, pred.with_name(pred.name.replace("predictions", "evaluation")), parser
        )
        results["variants"][name] = {"scores": scores, "seconds": round(seconds, 1)}
        print(f"{name}: {scores} in {seconds:.1f} s", flush=True)
    order = [k for k in variants(members, axes) if k in results["variants"]]
    results["variants"] = {k: results["variants"][k] for k in order}
    write_json_atomic(results, out / "protocol.json")

    metrics = list(next(iter(results["variants"].values()))["scores"])
    print(f"\n| {args.task} ({len(items)} held-out phantoms) | " + " | ".join(metrics) + " | seconds |")
    print("|---" * (len(metrics) + 2) + "|")
    for name, r in results["variants"].items():
        print(f"| {name} | " + " | ".join(f"{r['scores'][m]:.3f}" for m in metrics) + f" | {r['seconds']} |")
    return results


if __name__ == "__main__":
    main()
