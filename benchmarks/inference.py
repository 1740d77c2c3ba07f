"""Time a bundle's inference per case: the plain path against the fast path, same weights, same process.

    python benchmarks/inference.py --bundle brain_tumour_mri_segmentation [--weights TRAINED_BUNDLE]
    python benchmarks/inference.py --bundle brain_tissue_mri_segmentation --image T1.nii.gz

Both paths run the bundle's own ``inference`` workflow (loading, preprocessing, postprocessing and
writing included) on one case:

- **plain**: what the MONAI model zoo does: the whole volume (no crop to the brain), float32,
  contiguous memory, MONAI's ``SlidingWindowInferer`` with one window covering the whole volume (padded to
  the network's divisor; the zoo's BraTS bundle uses one 240×240×160 window), overlap 0.5;
- **fast**: the bundle as shipped (crop to the brain, ``FastInferer``: precision policy, channels-last,
  one window over the crop).

The case is ``--image`` (one file per channel), or a synthetic phantom with a brain of adult size
(``--brain-shape``) centred in a ``--shape`` grid (default 240×240×155 for BraTS, 182×218×182 for a 1 mm
T1). Weights: the trained weights of a bundle of the same network (``--weights``: its folder or its
``models`` folder, e.g. a training run's; the configs are always ``--bundle``'s), else a seeded random initialisation (then the agreement Dice is not meaningful: nothing
trained separates tissue from background). The paths alternate ``--repeats`` times; seconds are the
best run, memory is the peak resident set size of the process during a path (Linux: ``VmHWM``, reset
before each path, after returning freed memory to the system). Agreement is the Dice between two
label maps, per label (tissue) or per region (tumour: WT, TC, ET), over labels present in either:

- ``agreement_dice`` (the last line): the fast path against a **reference** run of the same windows in
  float32 and contiguous memory (the fast path's numerical shortcuts only: precision and memory
  format). It is what the fast path must keep at 0.99 or more;
- against the plain path (whole volume, other windows, no crop): printed, not a pass mark, since a
  different window changes what a network with group or instance normalisation computes;
- with ``--label`` (a labelled case) or on a phantom: each path's Dice against the true labels, so the
  fast path can be seen to be no worse than the plain one.

The last line is ``speedup <x> memory_ratio <plain peak / fast peak> agreement_dice <min Dice>``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser

from brainbundles.bundle.weights import find_weights
from brainbundles.data.labels import BRATS_REGIONS, to_internal
from brainbundles.data.phantom import write_phantom_dataset
from brainbundles.metrics import dice
from brainbundles.paths import BUNDLE_NAMES
from brainbundles.workflows import copy_bundle, resolve_bundle, run_inference

GRIDS = {  # task: (grid shape, brain shape) in 1 mm voxels; brain sizes of the real scans in ../shared/data
    "tumour": ((240, 240, 155), (136, 176, 132)),
    "tissue": ((182, 218, 182), (136, 172, 140)),
}


def _padded_phantom(task: str, out: Path, grid: tuple[int, ...], brain: tuple[int, ...]) -> list[Path]:
    """A 1 mm phantom with a ``brain``-sized head, zero-padded (centred) into ``grid``: its image files,
    then its label map."""
    data = write_phantom_dataset(task, out / "phantom", cases=1, shape=brain, spacing=(1.0,) * 3, folds=1)
    files = sorted(data.glob("*/*.nii.gz"), key=lambda p: "seg" in p.name)
    before = [(g - b) // 2 for g, b in zip(grid, brain, strict=True)]
    written = []
    for f in files:
        img = nib.load(f)
        arr = np.zeros(grid, dtype=img.get_data_dtype())
        arr[tuple(slice(o, o + b) for o, b in zip(before, brain, strict=True))] = np.asanyarray(img.dataobj)
        affine = img.affine.copy()
        affine[:3, 3] -= affine[:3, :3] @ np.array(before, dtype=float)  # same world position of the head
        dst = out / f.name
        nib.save(nib.Nifti1Image(arr, affine), dst)
        written.append(dst)
    return written


def _network_grid(img: nib.Nifti1Image, spacing, divisor: int) -> list[int]:
    """The case's size in RAS at the bundle's spacing, rounded up to the network's divisor: one window."""
    ornt = nib.orientations.io_orientation(img.affine)
    size = [0, 0, 0]
    for axis, (ras_axis, _) in enumerate(ornt):
        mm = img.shape[axis] * float(img.header.get_zooms()[axis])
        size[int(ras_axis)] = int(np.ceil(mm / float(spacing[int(ras_axis)]) - 1e-3))
    return [-(-s // divisor) * divisor for s in size]


def _release_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory is measured on Linux only")


def _regions(label: np.ndarray, task: str, convention: str | None) -> dict[str, np.ndarray]:
    if task == "tumour":
        internal = to_internal(label, convention)
        return {r: np.isin(internal, values) for r, values in BRATS_REGIONS.items()}
    return {str(v): label == v for v in np.unique(label) if v != 0}


def agreement(
    plain: Path, fast: Path, task: str, convention: str | None, reference_convention: str | None = None
) -> dict[str, float]:
    """Dice between the two label maps per label or region present in either."""
    a, b = (np.asarray(nib.load(p).dataobj) for p in (plain, fast))
    ra, rb = _regions(a, task, reference_convention or convention), _regions(b, task, convention)
    return {k: dice(ra.get(k, 0 * a), rb.get(k, 0 * b)) for k in sorted(set(ra) | set(rb))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="brain_tumour_mri_segmentation", help="bundle name or folder")
    ap.add_argument("--weights", help="trained weights of the same network: a bundle or its models folder")
    ap.add_argument("--image", nargs="+", help="the case: one file per channel (default: a phantom)")
    ap.add_argument("--label", help="the case's true label map (with --image), in its dataset's convention")
    ap.add_argument("--label-convention", help="the --label file's label convention (default: the bundle's)")
    ap.add_argument("--shape", type=int, nargs=3, help="phantom grid (default: by task)")
    ap.add_argument("--brain-shape", type=int, nargs=3, help="phantom brain size (default: by task)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", help="the fast path's precision (default: the bundle's)")
    args = ap.parse_args()
    task = {v: k for k, v in BUNDLE_NAMES.items()}.get(Path(args.bundle).name, args.bundle)
    tmp = Path(tempfile.mkdtemp(prefix="bench_"))
    try:
        bundle = copy_bundle(resolve_bundle(args.bundle), tmp / "bundle")
        if args.weights:  # the trained weights only: the configs are the bundle's as it is now
            found = find_weights(
                Path(args.weights) / "models" if Path(args.weights, "models").is_dir() else args.weights
            )
            shutil.copy2(found, bundle / "models" / found.name)
        else:
            parser = ConfigParser()
            parser.read_config(str(bundle / "configs" / "inference.json"))
            torch.manual_seed(0)
            torch.save(parser.get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
            print("weights: random (seed 0): the agreement Dice is not meaningful without trained weights")
        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "inference.json"))
        truth, truth_convention = None, None
        if args.image:
            images = [Path(p).resolve() for p in args.image]
            truth = Path(args.label).resolve() if args.label else None
            truth_convention = args.label_convention or parser.get("label_convention")
        else:
            grid, brain = GRIDS[task]
            *images, truth = _padded_phantom(
                task, tmp, tuple(args.shape or grid), tuple(args.brain_shape or brain)
            )
            truth_convention = "brats2019" if task == "tumour" else None  # the phantoms' BraTS 2019 layout
        first = nib.load(images[0])
        shape = first.shape[:3]
        divisor = int(getattr(parser.get_parsed_content("network_def"), "divisor", 1))
        whole = _network_grid(first, parser["spacing"], divisor)
        plain = {
            "crop_to_brain": False,
            "precision": "fp32",
            "channels_last": False,
            "inferer": {
                "_target_": "SlidingWindowInferer",
                "roi_size": whole,
                "sw_batch_size": 1,
                "overlap": 0.5,
                "mode": "gaussian",
            },
        }
        fast = {"precision": args.precision} if args.precision else {}
        reference = {"precision": "fp32", "channels_last": False}
        paths = {"plain": plain, "fast": fast, "reference": reference}
        times: dict[str, list[float]] = {name: [] for name in paths}
        peaks: dict[str, float] = dict.fromkeys(paths, 0.0)
        for repeat in range(args.repeats):
            for name, overrides in paths.items():
                if name == "reference" and repeat:
                    continue  # its output is what matters, not its speed
                _release_memory()
                _reset_peak()
                t0 = time.perf_counter()
                run_inference(bundle, images, output_dir=tmp / name, **overrides)
                times[name].append(time.perf_counter() - t0)
                peaks[name] = max(peaks[name], _peak_gb())
        outputs = {name: next((tmp / name).rglob("*.nii.gz")) for name in times}
        convention = parser.get("output_convention")
        dices = agreement(outputs["plain"], outputs["fast"], task, convention)
        numeric = agreement(outputs["reference"], outputs["fast"], task, convention)
        print(
            f"bundle {Path(args.bundle).name} case {shape} channels {len(images)} "
            f"threads {torch.get_num_threads()} python {sys.version.split()[0]} torch {torch.__version__}"
        )
        for name in ("plain", "fast"):
            runs = ", ".join(f"{t:.2f}" for t in times[name])
            print(
                f"{name}: seconds_per_case {min(times[name]):.2f} (runs: {runs}) peak_rss_gb {peaks[name]:.2f}"
            )
        print("agreement with plain: " + " ".join(f"{k} {v:.4f}" for k, v in dices.items()))
        print(
            "agreement with the reference (the fast path's own windows in float32, contiguous: precision and "
            "memory format only): " + " ".join(f"{k} {v:.4f}" for k, v in numeric.items())
        )
        if truth is not None:
            for name in ("plain", "fast"):
                scores = agreement(
                    truth, outputs[name], task, convention, reference_convention=truth_convention
                )
                print(
                    f"{name} Dice against the true labels: "
                    + " ".join(f"{k} {v:.4f}" for k, v in scores.items())
                )
        speedup = min(times["plain"]) / min(times["fast"])
        print(
            f"speedup {speedup:.2f} memory_ratio {peaks['plain'] / peaks['fast']:.2f} "
            f"agreement_dice {min(numeric.values(), default=1.0):.4f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
