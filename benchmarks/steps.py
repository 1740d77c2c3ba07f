"""Where the time of one case goes: a bundle's inference workflow on one case under ``cProfile``.

    python benchmarks/steps.py --bundle brain_tumour_mri_segmentation --image t1.nii.gz t1c.nii.gz t2.nii.gz flair.nii.gz

The workflow runs twice in one process (the first run warms up); the second is profiled and broken
down into steps by the cumulative time of the functions that do them. Weights: the bundle's shipped
weights, else a seeded random initialisation (the time does not depend on them). Steps done in the
prefetch thread (reading and preprocessing) are not seen by the profiler, which follows the calling
thread only; ``--no-prefetch`` shows them.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import tempfile
import time
from pathlib import Path

from _weights import bundle_with_weights

from brainbundles.workflows import run_inference

#: step name: (file the function is in, function name)
STEPS = {
    "network (FastInferer)": ("brainbundles/inference.py", "run"),
    "reading the files (LoadImage)": ("monai/transforms/io/array.py", "__call__"),
    "preprocessing in all": ("monai/data/dataset.py", "_transform"),
    "postprocessing in all": ("monai/engines/utils.py", "engine_apply_transform"),
    "component clean-up": ("brainbundles/postprocessing/components.py", "__call__"),
    "label conversions (argmax, regions)": ("brainbundles/transforms/labels.py", "__call__"),
    "writing label map, volumes, overlay": ("brainbundles/transforms/io.py", "__call__"),
    "overlay PNG": ("brainbundles/visualize.py", "save_overlay_png"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="brain_tumour_mri_segmentation")
    ap.add_argument("--image", nargs="+", required=True, help="the case: one file per channel")
    ap.add_argument("--no-prefetch", action="store_true", help="read the case in the calling thread")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="steps_"))
    try:
        bundle, _ = bundle_with_weights(args.bundle, tmp / "bundle")
        images = [str(Path(p).resolve()) for p in args.image]
        overrides = {"prefetch": not args.no_prefetch}
        run_inference(bundle, images, output_dir=tmp / "warm-up", **overrides)
        profile = cProfile.Profile()
        t0 = time.perf_counter()
        profile.enable()
        run_inference(bundle, images, output_dir=tmp / "profiled", **overrides)
        profile.disable()
        total = time.perf_counter() - t0
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        print(f"{'whole case (under the profiler)':40s} {total:6.2f} s")
        for step, (path, function) in STEPS.items():
            seconds = sum(
                v[3] for (file, _, name), v in stats.items() if file.endswith(path) and name == function
            )
            print(f"{step:40s} {seconds:6.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
