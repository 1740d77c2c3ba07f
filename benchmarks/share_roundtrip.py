"""Time the sharing path on a trained bundle, through the `brainbundles` command (run by hand).

    python benchmarks/share_roundtrip.py demo_brats/bundle --name brain_tumour_mri_segmentation \\
        --datalist demo_brats/data/datalist.json --reference demo_brats/predictions

Copies the bundle (the original is left as it is), then runs `brainbundles export`, `package`,
serves the zip from 127.0.0.1, runs `download` by URL and sha256 into a fresh folder, and `infer`
from the URL on the datalist's testing cases. Prints each command's wall time (Python start-up
included), the zip's size and sha256, and how many segmentations are voxel-identical to
`--reference` (the original bundle's own predictions).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", help="a trained bundle folder")
    ap.add_argument("--name", required=True, help="the bundle's name, e.g. brain_tumour_mri_segmentation")
    ap.add_argument("--datalist", required=True, help="its 'testing' cases are segmented")
    ap.add_argument("--reference", help="the original bundle's predictions for those cases")
    ap.add_argument("--metrics", help="a metrics report for export (default: the bundle's eval/metrics.json)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="share-"))
    env = {**os.environ, "BRAINBUNDLES_CACHE": str(work / "cache")}

    def cli(label: str, *argv: str) -> None:
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "brainbundles.cli", *argv], env=env, capture_output=True, text=True
        )
        if proc.returncode:
            sys.exit(f"{label} failed:\n{proc.stderr[-3000:]}")
        print(f"{label}: {time.perf_counter() - t:.1f} s")

    bundle = work / args.name
    shutil.copytree(args.bundle, bundle, ignore=shutil.ignore_patterns("eval", "last*.pt"))
    if (Path(args.bundle) / "eval" / "metrics.json").is_file() and not args.metrics:
        args.metrics = str(Path(args.bundle) / "eval" / "metrics.json")
    cli("export", "export", str(bundle), *(["--metrics", args.metrics] if args.metrics else []))
    served = work / "served"
    served.mkdir()
    zip_path = served / f"{args.name}.zip"
    cli("package", "package", str(bundle), "-o", str(zip_path))
    sha = (served / f"{args.name}.zip.sha256").read_text().split()[0]
    print(f"zip: {zip_path.stat().st_size / 2**20:.1f} MiB, sha256 {sha}")

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{zip_path.name}"
    try:
        cli("download + verify", "download", url, "--sha256", sha, "-o", str(work / "fresh"))
        out = work / "out"
        cli("infer from the URL (download, verify, segment)", "infer", url, "--sha256", sha,
            "--datalist", str(Path(args.datalist).resolve()), "--output", str(out))  # fmt: skip
    finally:
        server.shutdown()
    if args.reference:
        refs = sorted(Path(args.reference).rglob("*_seg.nii.gz")) or sorted(
            Path(args.reference).rglob("*.nii.gz")
        )
        same = sum(
            np.array_equal(
                np.asarray(nib.load(r).dataobj),
                np.asarray(nib.load(out / r.relative_to(args.reference)).dataobj),
            )
            for r in refs
        )
        print(f"voxel-identical to the reference: {same}/{len(refs)}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
