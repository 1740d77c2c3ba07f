"""The end-to-end demo (``brainbundles demo <task>``): synthetic phantoms written, a copy of the task's
bundle trained on them with settings that fit a 2-core CPU, the held-out phantoms segmented and scored."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from monai.bundle import ConfigParser

from brainbundles.data.cases import inference_items
from brainbundles.data.phantom import write_phantom_dataset
from brainbundles.fileio import write_json_atomic
from brainbundles.metrics import evaluate_brats_items, evaluate_items, evaluate_lesion_items
from brainbundles.paths import BUNDLE_NAMES, LESION_TASKS
from brainbundles.workflows import copy_bundle, run_inference, run_training

__all__ = ["DEMO_PROFILES", "QUICK_PROFILES", "run_demo"]

logger = logging.getLogger("brainbundles")


#: settings that make a bundle train in minutes on a 2-core CPU: written into the demo's bundle copy
#: (network and patch size, which inference must share) or passed to the training run (the rest)
#: the lesion demos (WMH, MS): 16 + 4 phantoms at 1 mm, a small U-Net on 48³ patches, 40 epochs
_LESION_DEMO: dict = {
    "phantom": {"cases": 16, "test_cases": 4, "shape": (96, 112, 96), "spacing": (1.0, 1.0, 1.0), "folds": 4},
    "bundle": {
        "network_def#features": [16, 32, 64, 128],
        "network_def#dropout": 0.0,
        "patch_size": [48, 48, 48],
    },
    "train": {
        "epochs": 40,
        "val_interval": 10,
        "learning_rate": 0.002,
        "num_samples": 4,
        "batch_size": 4,
        "num_workers": 0,
    },
}

DEMO_PROFILES: dict[str, dict] = {
    "tissue": {
        "phantom": {
            "cases": 16,
            "test_cases": 4,
            "shape": (80, 96, 80),
            "spacing": (1.0, 1.0, 1.0),
            "folds": 4,
        },
        "bundle": {
            "network_def#features": [16, 32, 64, 128],
            "network_def#dropout": 0.0,
            "patch_size": [48, 48, 48],
            "spacing": [1.0, 1.0, 1.0],
        },
        "train": {
            "epochs": 50,
            "val_interval": 10,
            "learning_rate": 0.002,
            "num_samples": 4,
            "batch_size": 4,
            "num_workers": 0,
        },
    },
    "tumour": {
        "phantom": {
            "cases": 16,
            "test_cases": 4,
            "shape": (72, 88, 72),
            "spacing": (2.0, 2.0, 2.0),
            "folds": 4,
        },
        "bundle": {
            "network_def#init_filters": 8,
            "network_def#dropout": 0.0,
            "patch_size": [48, 48, 48],
            "spacing": [2.0, 2.0, 2.0],
        },
        "train": {
            "epochs": 60,
            "val_interval": 10,
            "learning_rate": 0.003,
            "sequence_dropout": 0.2,
            "crop_ratios": [2, 1, 1, 1],
            "num_samples": 4,
            "batch_size": 2,
            "num_workers": 0,
        },
    },
    "wmh": {**_LESION_DEMO, "missing_sequences": False},  # the bundle needs both FLAIR and T1
    "ms": _LESION_DEMO,
}


def _quick(shape: tuple[int, int, int], spacing: float, network: dict, **train) -> dict:
    """A quick demo profile: 8 + 2 phantoms of ``shape`` at ``spacing`` mm, trained and segmented at that
    spacing with ``network`` on 32³ patches, 40 epochs."""
    return {
        "phantom": {"cases": 8, "test_cases": 2, "shape": shape, "spacing": (spacing,) * 3, "folds": 4},
        "bundle": {
            **network,
            "network_def#dropout": 0.0,
            "patch_size": [32, 32, 32],
            "spacing": [spacing] * 3,
        },
        "train": {
            "epochs": 40,
            "val_interval": 10,
            "learning_rate": 0.003,
            "num_samples": 4,
            "batch_size": 4,
            "num_workers": 0,
            **train,
        },
    }


_HALF_UNET = {"network_def#features": [8, 16, 32, 64]}
#: ``brainbundles demo TASK --quick``: the same pipeline (phantoms, bundle runner training, inference,
#: evaluation in native space) on coarser, fewer phantoms with a narrower network: under 1.5 minutes per
#: task on 2 cores. It checks an installation end to end, and is the test suite's learning test; its
#: scores are below the full demo's (the bundle READMEs give both).
QUICK_PROFILES: dict[str, dict] = {
    "tissue": _quick((48, 56, 48), 2.0, _HALF_UNET),
    "tumour": _quick(
        (48, 59, 48),
        3.0,
        {"network_def#init_filters": 8},
        batch_size=2,
        sequence_dropout=0.2,
        crop_ratios=[2, 1, 1, 1],
    ),
    "wmh": {**_quick((64, 75, 64), 1.5, _HALF_UNET), "missing_sequences": False},
    "ms": _quick((64, 75, 64), 1.5, _HALF_UNET),
}


def _evaluate(task: str, items: list[dict], pred_dir: Path, out_dir: Path, parser: ConfigParser) -> dict:
    """Score a demo's predictions with the task's own metrics, as means over the cases: Dice per class
    (tumour: per region), keyed by class or region name; for a lesion task the metrics
    :data:`LESION_TASKS` names, of the lesion class (label 1)."""

    if task == "tumour":
        report = evaluate_brats_items(items, pred_dir, out_dir, pred_convention=parser["output_convention"])
    elif task in LESION_TASKS:
        name = parser["label_names"]["1"]
        report = evaluate_lesion_items(
            items, pred_dir, out_dir, ignore_label=parser.get("ignore_label"), class_name=name
        )
        return {m: report["summary"][name][m]["mean"] for m in LESION_TASKS[task]}
    else:
        report = evaluate_items(items, pred_dir, parser.get_parsed_content("label_names"), out_dir)
    return {name: report["summary"][name]["dice"]["mean"] for name in report["summary"]}


def _without(items: list[dict], channel: str, channels: Sequence[str]) -> list[dict]:
    """Datalist items with one sequence left out (the case then names the sequences it has)."""
    out = []
    for it in items:
        names = list(it.get("channels") or channels)
        if len(it["image"]) != len(names):
            raise ValueError(f"{it['image'][0]}: a sequence can be left out of one file per sequence only")
        keep = [i for i, n in enumerate(names) if n != channel]
        # without "reference", the output takes the grid of the first file left
        rest = {k: v for k, v in it.items() if k != "reference"}
        out.append({**rest, "image": [it["image"][i] for i in keep], "channels": [names[i] for i in keep]})
    return out


def run_demo(
    task: str = "tissue",
    out: str | os.PathLike = "demo_tissue",
    seed: int = 0,
    missing_sequences: bool = True,
    quick: bool = False,
    **train_overrides,
) -> dict:
    """Phantoms -> training through the bundle runner -> inference on held-out phantoms -> evaluation.

    The settings (phantoms, network, training) are the task's :data:`DEMO_PROFILES`, or with ``quick``
    its :data:`QUICK_PROFILES` (a check of the whole pipeline in about a minute; lower scores).

    Leaves ``out/data`` (phantoms + datalist), ``out/bundle`` (a complete trained bundle),
    ``out/predictions`` and ``out/evaluation``, and writes ``out/metrics.json``, which it also returns:
    under ``scores`` the held-out cases' means of the task's metrics (:func:`_evaluate`: Dice per class or
    tumour region; the lesion metrics for lesion tasks). For a multi-sequence task with
    ``missing_sequences``, the held-out cases are also segmented with each sequence left out
    (``scores_without``).
    """

    if task not in DEMO_PROFILES:
        raise ValueError(f"task: one of {sorted(DEMO_PROFILES)}, got {task!r}")
    profile = (QUICK_PROFILES if quick else DEMO_PROFILES)[task]
    out = Path(out).resolve()
    t0 = time.perf_counter()
    data = write_phantom_dataset(task, out / "data", seed=seed, **profile["phantom"])
    bundle = copy_bundle(BUNDLE_NAMES[task], out / "bundle", profile["bundle"])
    t_data = time.perf_counter()
    run_training(bundle, data, data / "datalist.json", **{**profile["train"], **train_overrides})
    t_train = time.perf_counter()
    run_inference(bundle, output_dir=out / "predictions", datalist=data / "datalist.json")
    t_infer = time.perf_counter()
    parser = ConfigParser(json.loads((bundle / "configs" / "inference.json").read_text()))
    channels = parser["channels"]
    items = inference_items(None, data / "datalist.json", data, channels, section="testing")
    scores = _evaluate(task, items, out / "predictions", out / "evaluation", parser)
    metrics: dict = {"task": task, "held_out_cases": len(items), "scores": scores}
    kind = "" if task in LESION_TASKS else "Dice "
    print(
        f"held-out phantoms: {len(items)} cases; mean {kind}"
        + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
    )
    if (
        missing_sequences and profile.get("missing_sequences", True) and len(channels) > 1
    ):  # the same held-out cases, each sequence left out in turn
        metrics["scores_without"] = {}
        present = {c for it in items for c in (it.get("channels") or channels)}
        for ch in [c for c in channels if c in present]:  # not a sequence no held-out case has
            tag = f"without_{ch}"
            datalist = {"channels": channels, "testing": _without(items, ch, channels)}
            write_json_atomic(datalist, out / "data" / f"datalist_{tag}.json")
            run_inference(
                bundle, output_dir=out / f"predictions_{tag}", datalist=out / "data" / f"datalist_{tag}.json"
            )
            metrics["scores_without"][ch] = d = _evaluate(
                task, items, out / f"predictions_{tag}", out / f"evaluation_{tag}", parser
            )
            print(f"without {ch}: mean {kind}" + ", ".join(f"{k} {v:.3f}" for k, v in d.items()))
    metrics["seconds"] = {
        "phantoms": round(t_data - t0, 1),
        "training": round(t_train - t_data, 1),
        "inference": round(t_infer - t_train, 1),
        "total": round(time.perf_counter() - t0, 1),
    }
    write_json_atomic(metrics, out / "metrics.json")
    print(f"time: {metrics['seconds']}; metrics in {out / 'metrics.json'}; trained bundle in {bundle}")
    return metrics
