"""Cases per minute for a folder of cases: the model loaded once, with and without prefetching.

    python benchmarks/batch.py --bundle brain_tissue_mri_segmentation \
        --input ../shared/data/ibsr18/Training_Set/IBSR_*/IBSR_??.nii.gz

Each ``--input`` is one single-channel case (a multi-channel bundle takes ``--input`` folders, one per
case, as ``brainbundles infer`` does). The bundle's ``inference`` workflow runs over all of them in one
process (weights loaded once), once with ``prefetch`` on (the next case is read and preprocessed in a
background thread while the network and the postprocessing work on this one) and once with it off,
alternating ``--repeats`` times; each run writes into a fresh folder. Weights: the bundle's shipped
weights, else (a bundle without trained weights) a seeded random initialisation, which does not change
the time. The label maps of the two runs are compared: they must be identical.

The last line is ``cases <n> prefetch_cases_per_min <x> plain_cases_per_min <y> ratio <x / y>``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from _weights import bundle_with_weights

from brainbundles.workflows import run_inference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="brain_tissue_mri_segmentation", help="bundle name or folder")
    ap.add_argument("--input", nargs="+", required=True, help="the cases: files (one channel) or folders")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="batch_"))
    try:
        bundle, weights = bundle_with_weights(args.bundle, tmp / "bundle")
        print(f"weights: {weights}")
        inputs = [str(Path(p).resolve()) for p in args.input]
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for repeat in range(args.repeats):
            for prefetch in (True, False):
                out = tmp / f"out_{prefetch}_{repeat}"
                t0 = time.perf_counter()
                run_inference(bundle, inputs, output_dir=out, prefetch=prefetch)
                seconds[prefetch].append(time.perf_counter() - t0)
                print(
                    f"prefetch {prefetch}: {len(inputs)} cases in {seconds[prefetch][-1]:.1f} s", flush=True
                )
        first, second = (sorted((tmp / f"out_{p}_0").glob("*_seg.nii.gz")) for p in (True, False))
        assert len(first) == len(inputs) and [f.name for f in first] == [f.name for f in second]
        for a, b in zip(first, second, strict=True):
            if not np.array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj)):
                raise SystemExit(f"{a.name}: the label maps with and without prefetching differ")
        print("label maps with and without prefetching: identical")
        rate = {p: 60.0 * len(inputs) / min(s) for p, s in seconds.items()}
        print(
            f"cases {len(inputs)} prefetch_cases_per_min {rate[True]:.2f} plain_cases_per_min {rate[False]:.2f} "
            f"ratio {rate[True] / rate[False]:.2f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
