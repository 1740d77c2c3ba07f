"""INT8 post-training quantisation of a bundle's network against float32: time of one window, agreement.

    pip install openvino nncf          # for --backend openvino (not a dependency of brainbundles)
    pip install torchao                # for --backend pt2e
    python benchmarks/int8.py --bundle brain_tumour_mri_segmentation --shape 136 176 136 --backend openvino

The network is the bundle's ``network_def`` with its shipped weights, or (a bundle without trained
weights) a seeded random initialisation. It runs on one window of ``--shape`` (default: the brain crop
of the real BraTS case, padded to the network's divisor) with 2 threads:

- **PyTorch float32**, contiguous and channels-last (the bundles' fast path);
- ``--backend openvino``: OpenVINO float32, and OpenVINO INT8 after NNCF's post-training quantisation,
  calibrated on ``--calibration`` inputs;
- ``--backend pt2e``: PyTorch 2 export quantisation with the x86 Inductor quantiser, compiled with
  ``torch.compile`` (INT8), against ``torch.compile`` float32.

Calibration inputs are random normal tensors (z-scored MRI has that range) unless ``--image`` gives a
case's files, whose brain crop, z-scored per channel, is then both the calibration input and the timed
window. Seconds are the best of ``--repeats`` runs after one warm-up. Agreement is the fraction of voxels
whose predicted class (argmax, or sigmoid > 0.5 per channel) is the same as PyTorch float32's. The CPU's
instruction sets are printed: INT8 speed depends on AVX-512 VNNI (or AMX), which not every CPU has.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser

from brainbundles.bundle.weights import find_weights, load_weights
from brainbundles.inference import to_channels_last
from brainbundles.workflows import resolve_bundle


def _best(fn, x, repeats: int) -> tuple[float, np.ndarray]:
    out = fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(x)
        times.append(time.perf_counter() - t0)
    return min(times), np.asarray(out)


def _classes(logits: np.ndarray, sigmoid: bool) -> np.ndarray:
    return logits > 0 if sigmoid else logits.argmax(1)


def _cpu_flags() -> str:
    try:
        flags = next(
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return " ".join(f for f in wanted if f in flags.split())


def _inputs(args, channels: int, divisor: int) -> list[torch.Tensor]:
    if not args.image:
        shape = [-(-s // divisor) * divisor for s in args.shape]
        gen = torch.Generator().manual_seed(0)
        return [torch.randn(1, channels, *shape, generator=gen) for _ in range(args.calibration + 1)]
    import nibabel as nib

    arr = np.stack(
        [np.asarray(nib.load(p).dataobj, dtype=np.float32).reshape(nib.load(p).shape[:3]) for p in args.image]
    )
    brain = (arr != 0).any(0)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(brain))
    arr, brain = arr[(slice(None), *box)], brain[box]
    for c in range(arr.shape[0]):
        values = arr[c][brain]
        arr[c] = np.where(brain, (arr[c] - values.mean()) / (values.std() + 1e-8), 0)
    pad = [(0, 0)] + [(0, -(-s // divisor) * divisor - s) for s in arr.shape[1:]]
    return [torch.from_numpy(np.pad(arr, pad))[None]] * 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="brain_tumour_mri_segmentation")
    ap.add_argument("--backend", choices=("openvino", "pt2e"), default="openvino")
    ap.add_argument("--shape", type=int, nargs=3, default=(136, 176, 132))
    ap.add_argument("--image", nargs="+", help="a case's files, one per channel (skull-stripped)")
    ap.add_argument("--calibration", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(2)
    root = resolve_bundle(args.bundle)
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    try:
        net.load_state_dict(load_weights(find_weights(root / "models")))
        weights = "the bundle's"
    except FileNotFoundError:
        weights = "random (seed 0)"
    sigmoid = "sigmoid" in str(parser.get("predictor", {}).get("activation", ""))
    channels = int(parser.get_parsed_content("network_def#in_channels"))
    *calibration, x = _inputs(args, channels, int(getattr(net, "divisor", 1)))
    print(f"cpu flags: {_cpu_flags()}; weights {weights}; window {tuple(x.shape[2:])}; threads 2")
    with torch.no_grad():
        t32, ref = _best(net, x, args.repeats)
        to_channels_last(net)
        xcl = x.contiguous(memory_format=torch.channels_last_3d)
        tcl, _ = _best(net, xcl, args.repeats)
    print(f"pytorch fp32 contiguous {t32:.2f} s, channels-last {tcl:.2f} s")
    ref_classes = _classes(ref, sigmoid)
    if args.backend == "openvino":
        import nncf
        import openvino as ov

        with torch.no_grad():
            model = ov.convert_model(net, example_input=x, input=[tuple(x.shape)])
        core = ov.Core()
        fp32 = core.compile_model(
            model, "CPU", {"INFERENCE_NUM_THREADS": 2, "INFERENCE_PRECISION_HINT": "f32"}
        )
        tov, _ = _best(lambda a: fp32(a.numpy())[0], x, args.repeats)
        t0 = time.perf_counter()
        quantised = nncf.quantize(
            model, nncf.Dataset([c.numpy() for c in calibration]), subset_size=len(calibration)
        )
        tq = time.perf_counter() - t0
        int8 = core.compile_model(quantised, "CPU", {"INFERENCE_NUM_THREADS": 2})
        t8, out8 = _best(lambda a: int8(a.numpy())[0], x, args.repeats)
        print(f"openvino fp32 {tov:.2f} s; int8 {t8:.2f} s (quantisation {tq:.0f} s)")
        base = tcl
    else:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
        with torch.no_grad():
            net = net.to(memory_format=torch.contiguous_format)
            prepared = prepare_pt2e(torch.export.export(net, (x,)).module(), quantizer)
            for c in calibration:
                prepared(c)
            int8 = torch.compile(convert_pt2e(prepared))
            t8, out8 = _best(int8, x, args.repeats)
            tc, _ = _best(torch.compile(net), x, args.repeats)
        print(f"torch.compile fp32 {tc:.2f} s; pt2e int8 {t8:.2f} s")
        base = tcl
    agree = float((_classes(out8, sigmoid) == ref_classes).mean())
    print(f"int8_speedup_over_channels_last {base / t8:.2f} voxel_agreement {agree:.4f}")


if __name__ == "__main__":
    main()
