"""Time a bundle's inference workflow per case on a synthetic phantom (run by hand).

    python benchmarks/inference.py --bundle brain_tissue_mri_segmentation --shape 144 176 144 --spacing 1 1 1

Runs the bundle's own `inference` workflow (its configs, untrained random weights: speed does not
depend on the weights) on one phantom and prints seconds per case and the process's peak resident
memory. The comparison with a plain MONAI path comes with the fast-inference work (issue 5).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from brainbundles.data.phantom import write_phantom_dataset
from brainbundles.workflows import BUNDLE_NAMES, copy_bundle, resolve_bundle, run_inference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="brain_tissue_mri_segmentation")
    ap.add_argument("--shape", type=int, nargs=3, default=(144, 176, 144))
    ap.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0))
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    task = {v: k for k, v in BUNDLE_NAMES.items()}.get(args.bundle, args.bundle)
    tmp = Path(tempfile.mkdtemp(prefix="bench_"))
    try:
        data = write_phantom_dataset(
            task, tmp / "data", cases=1, shape=tuple(args.shape), spacing=tuple(args.spacing), folds=1
        )
        bundle = copy_bundle(resolve_bundle(args.bundle), tmp / "bundle")
        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "common.json"))
        torch.save(parser.get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
        image = next(data.glob("*/*_ana_strip.nii.gz"))
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run_inference(bundle, [image], output_dir=tmp / "out")
            times.append(time.perf_counter() - t0)
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(
            f"bundle {args.bundle} shape {tuple(args.shape)} device {parser.get_parsed_content('device')} "
            f"threads {torch.get_num_threads()}"
        )
        print(
            f"seconds_per_case {min(times):.2f} (runs: {', '.join(f'{t:.2f}' for t in times)}) peak_rss_gb {peak_gb:.2f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
