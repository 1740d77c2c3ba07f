"""Training throughput of a bundle: iterations/s with its data pipeline against the model step alone.

    python benchmarks/training.py --bundle brain_tumour_mri_segmentation [--iterations 6] [--num-workers 2]

Builds the bundle's own training objects from its configs (``train.json``: the
cached deterministic preprocessing, the random transforms after the cache, the data loader, network,
``train#inferer`` with the bundle's precision and memory format, loss and optimizer) on synthetic
phantoms of adult brain size at 1 mm, then times

- **pipeline**: iterations that each take the next batch from the data loader, move it to the device and
  run the training step (forward through ``train#inferer``, loss, backward, optimizer step);
- **model step alone**: the same step on one batch already in memory.

Warm-up iterations are not timed; the two are timed in alternation. Prints both rates, peak memory and the last line
``pipeline_its <x> model_its <y> ratio <x / y>`` (the pipeline keeps the model busy when the ratio is
close to 1).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from brainbundles.data.phantom import write_phantom_dataset
from brainbundles.paths import BUNDLE_NAMES, config_files
from brainbundles.workflows import copy_bundle, resolve_bundle

BRAIN = {"tumour": (136, 176, 132), "tissue": (136, 172, 140)}  # 1 mm brain sizes of the real scans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="brain_tumour_mri_segmentation", help="bundle name or folder")
    ap.add_argument("--iterations", type=int, default=6, help="timed iterations of each")
    ap.add_argument("--cases", type=int, default=4, help="phantom training cases")
    ap.add_argument("--brain-shape", type=int, nargs=3, help="phantom size at 1 mm (default: by task)")
    ap.add_argument("--num-workers", type=int, help="data loader workers (default: the bundle's)")
    ap.add_argument(
        "--set", nargs="*", default=[], metavar="ID=JSON", help="config overrides, e.g. batch_size=1"
    )
    args = ap.parse_args()
    task = {v: k for k, v in BUNDLE_NAMES.items()}.get(Path(args.bundle).name, args.bundle)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        data = write_phantom_dataset(
            task,
            tmp / "data",
            cases=args.cases + 1,
            shape=tuple(args.brain_shape or BRAIN[task]),
            spacing=(1.0,) * 3,
            folds=args.cases + 1,
        )
        bundle = copy_bundle(resolve_bundle(args.bundle), tmp / "bundle")
        parser = ConfigParser()
        parser.read_config(config_files(bundle, "training"))
        parser.update(
            {
                "bundle_root": str(bundle),
                "dataset_dir": str(data),
                "data_list_file_path": str(data / "datalist.json"),
            }
        )
        if args.num_workers is not None:
            parser["num_workers"] = args.num_workers
        for item in args.set:
            key, _, value = item.partition("=")
            parser[key] = json.loads(value)
        device = parser.get_parsed_content("device")
        network = parser.get_parsed_content("network")
        inferer = parser.get_parsed_content("train#inferer")
        loss_fn = parser.get_parsed_content("loss")
        optimizer = parser.get_parsed_content("optimizer")
        loader = parser.get_parsed_content("train#dataloader")
        network.train()

        def step(batch: dict) -> float:
            image, label = batch["image"].to(device), batch["label"].to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(inferer(image, network), label)
            loss.backward()
            optimizer.step()
            return float(loss)

        def batches():
            while True:
                yield from loader

        stream = batches()
        first = next(stream)
        step(first)  # warm-up
        step(next(stream))
        pipeline_s = model_s = 0.0
        for _ in range(args.iterations):  # interleaved, so that drift in the machine's speed hits both
            t0 = time.perf_counter()
            step(next(stream))
            t1 = time.perf_counter()
            step(first)
            pipeline_s, model_s = pipeline_s + t1 - t0, model_s + time.perf_counter() - t1
        pipeline, model = args.iterations / pipeline_s, args.iterations / model_s
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(
            f"bundle {Path(args.bundle).name} batch {tuple(first['image'].shape)} device {device} "
            f"precision {parser['precision']} channels_last {parser['channels_last']} "
            f"num_workers {parser.get_parsed_content('num_workers')} threads {torch.get_num_threads()} peak_rss_gb {peak_gb:.2f}"
        )
        print(f"pipeline_its {pipeline:.4f} model_its {model:.4f} ratio {pipeline / model:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
