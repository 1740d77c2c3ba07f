"""Reference values for the BraTS 2023 lesion-wise metrics (not a pytest module).

Run with an environment that has numpy, scipy, ``panoptica`` (which pulls ``connected-components-3d``)
and DeepMind's ``surface-distance`` (PyPI 0.1), *not* the project venv (panoptica would downgrade its
numpy)::

    /tmp/pv/bin/pip install panoptica surface-distance
    /tmp/pv/bin/python tests/metrics/crosscheck_lesionwise.py

It does not import ``brainbundles``. It writes into ``tests/metrics/data/``:

* ``lesionwise_cases.npz``: deterministic synthetic cases, per case ``<name>__pred`` and ``<name>__ref``
  (48³ uint8 label maps in the internal/BraTS 2023 numbering 0 bg, 1 NETC, 2 SNFH, 3 ET) and
  ``<name>__spacing`` (mm);
* ``lesionwise_reference.json``: per case and region (WT, TC, ET)

  - ``"brats2023"``: a restatement of the official BraTS 2023 script (rachitsaluja/BraTS-2023-Metrics,
    ``get_LesionWiseScores`` + ``get_LesionWiseResults``, challenge BraTS-GLI: dilation 3, threshold
    50) built from the same components the script uses: ``cc3d.connected_components(connectivity=26)``,
    ``scipy.ndimage.binary_dilation`` with ``generate_binary_structure(3, 2)`` and DeepMind
    ``surface_distance.compute_surface_distances`` / ``compute_robust_hausdorff(…, 95)``, inf → 374.
    The official repository is not installable from PyPI, so this is the closest executable stand-in.
  - ``"panoptica_brats"`` / ``"panoptica_merge"``: panoptica's lesion-wise evaluation turned into the
    BraTS 2023 formula. ``panoptica_brats`` uses the matching of panoptica's shipped
    ``configs/panoptica_evaluator_BRATS.yaml`` (semantic input, connected-components instances,
    ``NaiveThresholdMatching(IOU, 0.5, allow_many_to_one=False)``); ``panoptica_merge`` uses
    ``MaximizeMergeMatching(DSC, 0.0)`` (every overlapping prediction may be merged into a reference
    instance), which is closer to the BraTS rules. Instance metrics DSC and HD95 (panoptica's HD95 is
    MedPy's pooled 95th percentile). From panoptica's TP/FP/FN counts and per-TP lists:
    ``lesion_dice = sum(DSC_tp) / (tp + fn + fp)``, ``lesion_hd95 = (sum(HD95_tp) + 374 (fn + fp)) /
    (tp + fn + fp)``, 1 and 0 when the denominator is 0.
  - ``agree_brats`` / ``agree_merge``: whether that panoptica configuration defines the same lesions and
    the same matching as the BraTS 2023 rules for this region, decided from the masks' structure (see
    :func:`agreement`), with the reason when it does not.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy import ndimage

SHAPE = (48, 48, 48)
REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
DILATION_FACTOR = 3
VOLUME_THRESHOLD = 50.0
MAX_DISTANCE = 374.0
DATA_DIR = Path(__file__).resolve().parent / "data"


# --------------------------------------------------------------------------- synthetic cases


def _smooth_noise(rng: np.random.Generator, sigma: float = 3.0) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(SHAPE), sigma)
    return noise / (np.abs(noise).max() + 1e-12)


def _ellipsoid(center, radii, rng: np.random.Generator | None = None, wobble: float = 0.0) -> np.ndarray:
    """Boolean ellipsoid, its boundary perturbed by smooth noise of relative amplitude ``wobble``."""
    grid = np.indices(SHAPE, dtype=np.float64)
    r2 = sum(((grid[a] - center[a]) / radii[a]) ** 2 for a in range(3))
    if rng is not None and wobble > 0:
        return np.sqrt(r2) <= 1.0 + wobble * _smooth_noise(rng)
    return r2 <= 1.0


def _tumour(label: np.ndarray, center, radius: float, rng, *, enhancing: bool = True, wobble: float = 0.15):
    """Paint edema (2) around a core: necrosis (1) inside an enhancing rim (3)."""
    r = np.asarray(radius, dtype=np.float64) * np.array([1.0, 0.85, 1.1])
    edema = _ellipsoid(center, r, rng, wobble)
    core = _ellipsoid(center, 0.6 * r, rng, wobble)
    necrosis = _ellipsoid(center, 0.35 * r, rng, wobble)
    label[edema] = 2
    if enhancing:
        label[core] = 3
        label[necrosis] = 1
    else:
        label[core] = 1


def make_cases() -> dict[str, tuple[np.ndarray, np.ndarray, tuple[float, float, float], str]]:
    """name -> (pred, ref, spacing, description); fully determined by the seeds below."""
    cases = {}
    z = lambda: np.zeros(SHAPE, dtype=np.uint8)  # noqa: E731

    rng = np.random.default_rng(1)
    ref, pred = z(), z()
    _tumour(ref, (24, 24, 24), 12, rng)
    _tumour(pred, (25, 23, 24), 11.5, rng)
    cases["tumour_shifted"] = (pred, ref, (1.0, 1.0, 1.0), "one tumour, prediction shifted and reshaped")

    rng = np.random.default_rng(2)
    ref, pred = z(), z()
    _tumour(ref, (13, 13, 13), 8, rng)
    _tumour(ref, (35, 35, 34), 8, rng)
    _tumour(pred, (13, 14, 13), 8, rng)  # detects the first, misses the second
    pred[_ellipsoid((40, 8, 40), (4, 4, 4))] = 3  # false positive in WT, TC and ET
    pred[_ellipsoid((40, 8, 40), (2, 2, 2))] = 1
    cases["two_tumours_fn_fp"] = (pred, ref, (1.0, 1.0, 1.5), "two tumours, one missed, one false positive")

    rng = np.random.default_rng(3)
    ref, pred = z(), z()
    _tumour(ref, (24, 24, 24), 12, rng)
    _tumour(pred, (24, 24, 25), 12, rng)
    pred[:, 23:26, :] = 0  # a cut splits every predicted region in two components
    cases["split_prediction"] = (pred, ref, (0.9, 1.1, 1.3), "prediction split into two components")

    rng = np.random.default_rng(4)
    ref, pred = z(), z()
    _tumour(ref, (24, 22, 24), 11, rng, enhancing=False)
    _tumour(pred, (24, 23, 24), 11, rng, enhancing=False)
    pred[_ellipsoid((24, 23, 24), (2.5, 2.5, 2.5))] = 3
    cases["empty_et_reference"] = (pred, ref, (1.0, 1.0, 1.0), "no enhancing tumour in the reference")

    rng = np.random.default_rng(5)
    ref, pred = z(), z()
    _tumour(ref, (24, 24, 24), 10, rng, enhancing=False)
    _tumour(pred, (24, 25, 24), 10, rng, enhancing=False)
    cases["empty_et_both"] = (pred, ref, (1.2, 1.2, 1.2), "no enhancing tumour in either")

    cases["both_empty"] = (z(), z(), (1.0, 1.0, 1.0), "no tumour at all")

    rng = np.random.default_rng(7)
    ref = z()
    _tumour(ref, (22, 26, 24), 10, rng)
    cases["prediction_empty"] = (z(), ref, (1.0, 1.0, 2.0), "tumour missed entirely")

    rng = np.random.default_rng(8)
    ref, pred = z(), z()
    _tumour(ref, (24, 24, 24), 10, rng)
    pred_t = z()
    _tumour(pred_t, (24, 24, 24), 10, rng)
    pred[:, :, 24:] = pred_t[:, :, 19:-5]  # shifted by 5 voxels along the last axis
    cases["low_overlap"] = (pred, ref, (1.0, 1.0, 1.0), "prediction overlaps with IoU < 0.5")

    # Cases where panoptica's lesion definition differs from the BraTS 2023 rules.
    ref, pred = z(), z()
    ref[_ellipsoid((24, 14, 24), (5, 5, 5))] = 2
    ref[_ellipsoid((24, 30, 24), (5, 5, 5))] = 2  # 5 empty voxels between them: the 3-voxel dilations touch
    pred[_ellipsoid((24, 15, 24), (5, 5, 5))] = 2
    pred[_ellipsoid((24, 30, 24), (5, 5, 4))] = 2
    cases["close_lesions_merged"] = (pred, ref, (1.0, 1.0, 1.0), "two GT lesions merged by dilation")

    ref, pred = z(), z()
    ref[_ellipsoid((24, 16, 24), (6, 6, 6))] = 3
    pred[_ellipsoid((24, 26, 24), (3, 3, 3))] = 3  # 2 empty voxels from the lesion: inside its dilation
    ref[_ellipsoid((12, 36, 36), (4, 4, 4))] = 1
    pred[_ellipsoid((12, 36, 36), (4, 4, 3))] = 1
    cases["near_miss"] = (pred, ref, (1.0, 1.0, 1.0), "prediction near, not touching, a lesion")

    ref, pred = z(), z()
    ref[_ellipsoid((20, 20, 20), (7, 7, 7))] = 2
    ref[_ellipsoid((38, 38, 38), (1.5, 1.5, 1.5))] = 1  # 19 voxels < 50: ignored
    pred[_ellipsoid((20, 21, 20), (7, 7, 7))] = 2
    pred[_ellipsoid((38, 38, 38), (2, 2, 2))] = 1
    pred[_ellipsoid((6, 40, 8), (1, 1, 1))] = 3  # a 7-voxel false positive still counts
    cases["small_gt_lesion"] = (pred, ref, (1.0, 1.0, 1.0), "GT lesion below the volume threshold")

    ref, pred = z(), z()
    ref[_ellipsoid((24, 12, 24), (5, 5, 5))] = 2
    ref[_ellipsoid((24, 36, 24), (5, 5, 5))] = 2
    pred[_ellipsoid((24, 24, 24), (5, 17, 5))] = 2  # one component over both lesions
    cases["bridge"] = (pred, ref, (1.0, 1.0, 1.0), "one predicted component over two GT lesions")
    return cases


# --------------------------------------------------------------------------- BraTS 2023 restatement


def _robust_hd95(gt: np.ndarray, pred: np.ndarray, spacing) -> float:
    import surface_distance

    if not hasattr(np, "Inf"):  # surface-distance 0.1 uses np.Inf, removed in numpy 2
        np.Inf = np.inf
    distances = surface_distance.compute_surface_distances(gt.astype(bool), pred.astype(bool), spacing)
    value = float(surface_distance.compute_robust_hausdorff(distances, 95))
    return MAX_DISTANCE if math.isinf(value) else value


def brats2023_reference(pred: np.ndarray, ref: np.ndarray, spacing) -> dict:
    """The BraTS 2023 script's per-region computation (BraTS-GLI parameters) on binary masks."""
    import cc3d

    sx, sy, sz = spacing
    if not ref.any() and not pred.any():
        full_dice, full_hd95 = 1.0, 0.0
    else:
        full_dice = 2.0 * np.logical_and(pred, ref).sum() / (pred.sum() + ref.sum())
        full_hd95 = _robust_hd95(ref, pred, spacing)

    structure = ndimage.generate_binary_structure(3, 2)
    gt_cc = cc3d.connected_components(ref.astype(np.uint8), connectivity=26)
    pred_cc = cc3d.connected_components(pred.astype(np.uint8), connectivity=26)
    gt_dilated = ndimage.binary_dilation(ref, structure=structure, iterations=DILATION_FACTOR)
    gt_dilated_cc = cc3d.connected_components(gt_dilated.astype(np.uint8), connectivity=26)
    lesions = np.zeros_like(gt_dilated_cc)
    for comp in range(1, int(gt_dilated_cc.max()) + 1):
        lesions[(gt_dilated_cc == comp) & (gt_cc > 0)] = comp

    matched_pred: list[int] = []
    rows = []  # (volume, n_matched, dice, hd95)
    for comp in range(1, int(lesions.max()) + 1):
        lesion = lesions == comp
        lesion_dilated = ndimage.binary_dilation(lesion, structure=structure, iterations=DILATION_FACTOR)
        hits = np.unique(pred_cc[lesion_dilated])
        hits = hits[hits != 0]
        matched_pred.extend(int(h) for h in hits)
        lesion_pred = np.isin(pred_cc, hits)
        d = 2.0 * np.logical_and(lesion_pred, lesion).sum() / (lesion_pred.sum() + lesion.sum())
        rows.append(
            (lesion.sum() * sx * sy * sz, len(hits), float(d), _robust_hd95(lesion, lesion_pred, spacing))
        )
    fp = np.unique(pred_cc[np.isin(pred_cc, matched_pred + [0], invert=True)])
    kept = [r for r in rows if r[0] > VOLUME_THRESHOLD]
    denominator = len(kept) + len(fp)
    if denominator == 0:
        lesion_dice, lesion_hd95 = 1.0, 0.0
    else:
        lesion_dice = sum(r[2] for r in kept) / denominator
        lesion_hd95 = (sum(r[3] for r in kept) + len(fp) * MAX_DISTANCE) / denominator
    return {
        "dice": float(full_dice),
        "hd95": float(full_hd95),
        "lesion_dice": float(lesion_dice),
        "lesion_hd95": float(lesion_hd95),
        "n_tp": sum(1 for r in kept if r[1] > 0),
        "n_fn": sum(1 for r in kept if r[1] == 0),
        "n_fp": int(len(fp)),
    }


# --------------------------------------------------------------------------- panoptica


def _evaluators() -> dict:
    from panoptica import (
        ConnectedComponentsInstanceApproximator,
        InputType,
        Metric,
        NaiveThresholdMatching,
        Panoptica_Evaluator,
    )
    from panoptica.instance_matcher import MaximizeMergeMatching
    from panoptica.utils.citation_reminder import disable_citation_reminder
    from panoptica.utils.edge_case_handling import (
        EdgeCaseHandler,
        EdgeCaseResult,
        MetricZeroTPEdgeCaseHandling,
    )
    from panoptica.utils.label_group import LabelMergeGroup
    from panoptica.utils.segmentation_class import SegmentationClassGroups

    disable_citation_reminder()
    groups = SegmentationClassGroups(
        {name: LabelMergeGroup(list(values)) for name, values in REGIONS.items()}
    )
    matchers = {
        # the matcher of panoptica/configs/panoptica_evaluator_BRATS.yaml
        "panoptica_brats": NaiveThresholdMatching(Metric.IOU, 0.5, allow_many_to_one=False),
        "panoptica_merge": MaximizeMergeMatching(Metric.DSC, 0.0),
    }
    # zero-TP edge cases only fill the averaged metrics; the per-TP lists used here are then empty
    zero_tp = MetricZeroTPEdgeCaseHandling(
        no_instances_result=EdgeCaseResult.NAN, default_result=EdgeCaseResult.INF
    )
    edge_cases = EdgeCaseHandler(
        listmetric_zeroTP_handling={
            Metric.DSC: MetricZeroTPEdgeCaseHandling(
                no_instances_result=EdgeCaseResult.NAN, default_result=EdgeCaseResult.ZERO
            ),
            Metric.HD95: zero_tp,
        }
    )
    return {
        name: Panoptica_Evaluator(
            expected_input=InputType.SEMANTIC,
            instance_approximator=ConnectedComponentsInstanceApproximator(),
            instance_matcher=matcher,
            edge_case_handler=edge_cases,
            segmentation_class_groups=groups,
            instance_metrics=[Metric.DSC, Metric.HD95],
            global_metrics=[Metric.DSC],
        )
        for name, matcher in matchers.items()
    }


def panoptica_lesionwise(evaluator, pred: np.ndarray, ref: np.ndarray, spacing) -> dict:
    """Per region: panoptica's TP/FP/FN and per-TP DSC/HD95 turned into the BraTS 2023 formula."""
    from panoptica import Metric, MetricMode

    results = evaluator.evaluate(pred, ref, voxelspacing=tuple(spacing), verbose=False, log_times=False)
    out = {}
    for region in REGIONS:
        res = results[region.lower()]
        tp, fp, fn = int(res.tp), int(res.fp), int(res.fn)
        dsc = [float(v) for v in res.get_list_metric(Metric.DSC, MetricMode.ALL)] if tp else []
        hd = [float(v) for v in res.get_list_metric(Metric.HD95, MetricMode.ALL)] if tp else []
        denominator = tp + fn + fp
        if denominator == 0:
            lesion_dice, lesion_hd95 = 1.0, 0.0
        else:
            lesion_dice = sum(dsc) / denominator
            lesion_hd95 = (sum(hd) + MAX_DISTANCE * (fn + fp)) / denominator
        out[region] = {
            "lesion_dice": lesion_dice,
            "lesion_hd95": lesion_hd95,
            "n_tp": tp,
            "n_fn": fn,
            "n_fp": fp,
        }
    return out


def agreement(pred: np.ndarray, ref: np.ndarray, spacing) -> dict[str, str]:
    """Why panoptica's lesions/matching differ from the BraTS 2023 rules on this region ("" = they agree).

    Both panoptica configurations agree with the BraTS rules when (a) dilation merges no reference
    components, (b) every reference component is larger than the volume threshold, and (c) every
    predicted component that touches the dilation of a reference component overlaps that component
    and no other reference component's dilation. ``panoptica_brats`` (one-to-one, IoU >= 0.5) further
    needs every reference component overlapped by at most one predicted component, with IoU >= 0.5.
    ``panoptica_merge`` further needs its greedy merging to take every overlapping component, checked
    from its counts by the caller.
    """
    import cc3d

    structure = ndimage.generate_binary_structure(3, 2)
    gt_cc, n_gt = cc3d.connected_components(ref.astype(np.uint8), connectivity=26, return_N=True)
    pred_cc, n_pred = cc3d.connected_components(pred.astype(np.uint8), connectivity=26, return_N=True)
    dilated = ndimage.binary_dilation(ref, structure=structure, iterations=DILATION_FACTOR)
    n_dilated = cc3d.connected_components(dilated.astype(np.uint8), connectivity=26, return_N=True)[1]
    reasons = []
    if n_dilated != n_gt:
        reasons.append("reference components merged by dilation")
    volumes = [np.count_nonzero(gt_cc == g) * float(np.prod(spacing)) for g in range(1, n_gt + 1)]
    if any(v <= VOLUME_THRESHOLD for v in volumes):
        reasons.append("reference lesion at or below the volume threshold")
    overlapping_preds: dict[int, list[int]] = {g: [] for g in range(1, n_gt + 1)}
    for p in range(1, n_pred + 1):
        comp = pred_cc == p
        overlaps = set(np.unique(gt_cc[comp]).tolist()) - {0}
        near = {
            g
            for g in range(1, n_gt + 1)
            if np.any(
                comp & ndimage.binary_dilation(gt_cc == g, structure=structure, iterations=DILATION_FACTOR)
            )
        }
        if near != overlaps:
            reasons.append("prediction within the dilation of a lesion it does not overlap")
        if len(overlaps) > 1:
            reasons.append("prediction overlapping several lesions")
        for g in overlaps:
            overlapping_preds[g].append(p)
    common = "; ".join(dict.fromkeys(reasons))
    brats = list(reasons)
    for g, preds in overlapping_preds.items():
        if len(preds) > 1:
            brats.append("several predictions overlap one lesion (one-to-one matching)")
        elif preds:
            a, b = gt_cc == g, pred_cc == preds[0]
            if np.logical_and(a, b).sum() / np.logical_or(a, b).sum() < 0.5:
                brats.append("overlap with IoU < 0.5")
    n_overlapped = sum(1 for preds in overlapping_preds.values() if preds)
    n_unmatched = n_pred - len({p for preds in overlapping_preds.values() for p in preds})
    return {
        "merge": common,
        "brats": "; ".join(dict.fromkeys(brats)),
        "expected_merge_counts": (n_overlapped, n_gt - n_overlapped, n_unmatched),
    }


# --------------------------------------------------------------------------- main


def compute_reference(cases) -> dict:
    evaluators = _evaluators()
    out: dict = {}
    for name, (pred, ref, spacing, description) in cases.items():
        pano = {key: panoptica_lesionwise(ev, pred, ref, spacing) for key, ev in evaluators.items()}
        regions = {}
        for region, values in REGIONS.items():
            p, r = np.isin(pred, values), np.isin(ref, values)
            agree = agreement(p, r, spacing)
            merge = pano["panoptica_merge"][region]
            merge_reason = agree["merge"]
            if (
                not merge_reason
                and (merge["n_tp"], merge["n_fn"], merge["n_fp"]) != agree["expected_merge_counts"]
            ):
                merge_reason = "greedy merge left an overlapping prediction unmatched"
            regions[region] = {
                "brats2023": brats2023_reference(p, r, spacing),
                "panoptica_brats": pano["panoptica_brats"][region],
                "panoptica_merge": merge,
                "agree_brats": agree["brats"] == "",
                "agree_brats_reason": agree["brats"],
                "agree_merge": merge_reason == "",
                "agree_merge_reason": merge_reason,
            }
        out[name] = {"description": description, "spacing": list(spacing), "regions": regions}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    import panoptica

    cases = make_cases()
    reference = compute_reference(cases)
    args.out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, (pred, ref, spacing, _) in cases.items():
        arrays[f"{name}__pred"] = pred
        arrays[f"{name}__ref"] = ref
        arrays[f"{name}__spacing"] = np.asarray(spacing, dtype=np.float64)
    np.savez_compressed(args.out / "lesionwise_cases.npz", **arrays)
    from importlib.metadata import version

    payload = {
        "generator": "tests/metrics/crosscheck_lesionwise.py",
        "versions": {
            "panoptica": getattr(panoptica, "__version__", None) or version("panoptica"),
            "surface-distance": version("surface-distance"),
            "connected-components-3d": version("connected-components-3d"),
            "numpy": np.__version__,
        },
        "parameters": {
            "dilation_factor": DILATION_FACTOR,
            "volume_threshold_mm3": VOLUME_THRESHOLD,
            "max_distance": MAX_DISTANCE,
        },
        "cases": reference,
    }
    (args.out / "lesionwise_reference.json").write_text(json.dumps(payload, indent=1) + "\n")
    for name, case in reference.items():
        for region, r in case["regions"].items():
            b, m, n = r["brats2023"], r["panoptica_merge"], r["panoptica_brats"]
            print(
                f"{name:22s} {region}  brats {b['lesion_dice']:.4f}/{b['lesion_hd95']:8.3f} "
                f"({b['n_tp']},{b['n_fn']},{b['n_fp']})  merge {m['lesion_dice']:.4f}/{m['lesion_hd95']:8.3f} "
                f"{'=' if r['agree_merge'] else 'x'}  brats-cfg {n['lesion_dice']:.4f}/{n['lesion_hd95']:8.3f} "
                f"{'=' if r['agree_brats'] else 'x'}  {r['agree_merge_reason'] or r['agree_brats_reason']}"
            )


if __name__ == "__main__":
    main()
