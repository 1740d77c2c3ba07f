"""Dice of a tissue model on a labelled scan with Gaussian noise added inside the brain.

    python benchmarks/noise_robustness.py \
        --image ../shared/data/ibsr18/Training_Set/IBSR_07/IBSR_07.nii.gz \
        --label ../shared/data/ibsr18/Training_Set/IBSR_07/IBSR_07_seg.nii.gz --sd 0 0.25 0.4

The scan goes through the bundle's own inference preprocessing (reorientation, resampling, z-score
inside the brain, crop). Noise of each standard deviation ``--sd`` (z-units, seeded) is then added to
the brain's voxels, the background staying 0 as in a skull-stripped scan; the bundle's sliding-window
predictor, softmax and ``Invertd`` bring the probabilities back to the scan's native grid, where each
voxel takes its most probable class (background wherever the scan is 0) and is scored against the
label map. ``--ckpt_dir`` picks the weights (default: the bundle's shipped ``models/``); ``--set`` overrides
a config id for weights trained with one (``--set 'network_def#features=[16,48,96,192,384]'``).
"""

from __future__ import annotations

import argparse
import json

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import Activationsd, Compose, Invertd

from brainbundles.bundle.weights import load_bundle_weights
from brainbundles.metrics.overlap import dice
from brainbundles.workflows import resolve_bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="brain_tissue_mri_segmentation")
    ap.add_argument(
        "--ckpt_dir", default=None, help="folder with the weights (default: the bundle's models/)"
    )
    ap.add_argument("--image", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--sd", type=float, nargs="+", default=[0.0, 0.25, 0.4])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ID=JSON",
        help="a config override, e.g. network_def#features=[16,48,96,192,384]",
    )
    args = ap.parse_args()

    root = resolve_bundle(args.bundle)
    ckpt = args.ckpt_dir or str(root / "models")
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    parser["ckpt_dir"] = ckpt
    for item in args.set:
        key, _, value = item.partition("=")
        parser[key] = json.loads(value)
    torch.set_num_threads(2)
    pre = parser.get_parsed_content("preprocessing")
    predictor = parser.get_parsed_content("predictor")
    net = parser.get_parsed_content("network")
    load_bundle_weights(ckpt, net)
    net.eval()
    post = Compose(
        [
            Activationsd(keys="pred", softmax=True),
            Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False, to_tensor=True),
        ]
    )
    names = {int(k): v for k, v in parser["label_names"].items() if int(k)}
    scan = np.asarray(nib.load(args.image).dataobj).squeeze()
    truth = np.asarray(nib.load(args.label).dataobj).squeeze()
    for sd in args.sd:
        data = pre({"image": [args.image]})
        x = data["image"][0].numpy()
        noise = np.random.default_rng(args.seed).normal(0.0, sd, x.shape).astype(np.float32)
        data["image"][0] = torch.as_tensor(np.where(x != 0, x + noise, 0))
        with torch.no_grad():
            data["pred"] = predictor(data["image"][None], net)[0]
        pred = post(data)["pred"].numpy().argmax(0).squeeze()
        pred[scan == 0] = 0
        scores = ", ".join(f"{n} Dice {dice(pred == k, truth == k):.4f}" for k, n in names.items())
        print(f"noise sd {sd:g}: {scores}", flush=True)


if __name__ == "__main__":
    main()
