"""Checks of the BraTS region and BraTS 2023 lesion-wise metrics (brainbundles.metrics.brats).

Hand-computed cases check the regions of each label convention, the empty-mask conventions, the
lesion-wise formula (missed lesions, false positives, the volume threshold, merging and matching by
dilation) and the scaling of HD95 with the spacing.

Reference values (``data/lesionwise_reference.json`` on the 12 synthetic cases of
``data/lesionwise_cases.npz``, 36 case × region pairs, written by ``crosscheck_lesionwise.py`` with
panoptica 2.1.7, surface-distance 0.1, connected-components-3d 3.29):

* ``brats2023``: a restatement of the official BraTS 2023 script (rachitsaluja/BraTS-2023-Metrics,
  ``get_LesionWiseScores``/``get_LesionWiseResults``, BraTS-GLI parameters) on the script's own
  building blocks (cc3d 26-connectivity, ``scipy.ndimage.binary_dilation`` with
  ``generate_binary_structure(3, 2)``, DeepMind surface-distance robust HD95, inf → 374). Compared on
  every case and region, with the default ``hd95_method="surfel"``: region Dice/HD95, lesion-wise
  Dice/HD95 and the TP/FN/FP lesion counts. Tolerance 1e-9 for Dice, 1e-6 mm for HD95 (float
  summation order only; the values agree exactly when generated).
* ``panoptica_merge`` / ``panoptica_brats``: panoptica's connected-component instances, matched with
  ``MaximizeMergeMatching(DSC, 0)`` and with the matcher of panoptica's shipped BraTS config
  (``NaiveThresholdMatching(IOU, 0.5)``, one-to-one), turned into ``sum(DSC_tp) / (tp + fn + fp)`` and
  ``(sum(HD95_tp) + 374 (fn + fp)) / (tp + fn + fp)``. Compared with ``hd95_method="pooled"`` (panoptica's
  HD95 is MedPy's pooled percentile, unlike the BraTS script's surfel one) on the case × region pairs
  where the two definitions agree (29 for merge matching, 23 for the BraTS config), same tolerances.

Where panoptica's definition differs from the BraTS 2023 rules (and the implementation follows BraTS):

1. BraTS merges reference components whose 3-voxel dilations (18-connectivity) touch into one lesion;
   panoptica keeps every connected component as an instance (``close_lesions_merged``).
2. BraTS matches every predicted component that intersects the *dilated* lesion, even without
   overlap (Dice 0 but a finite HD95, and no false positive); panoptica only matches overlapping
   instances (``near_miss``: a false positive plus a missed lesion there).
3. BraTS ignores reference lesions of at most 50 mm³ (and predictions matched to them are not false
   positives); panoptica has no volume threshold (``small_gt_lesion``).
4. BraTS lets one predicted component count for every lesion it reaches; panoptica matches a
   prediction to one reference instance only (``bridge``).
5. BraTS unites all predicted components matched to a lesion; panoptica's BraTS config matches one to
   one with IoU >= 0.5, so a split prediction leaves false positives (``split_prediction``) and a
   prediction with IoU < 0.5 is a false positive plus a miss (``low_overlap``); merge matching agrees
   with BraTS there.
6. HD95: BraTS uses DeepMind's surfel-area-weighted robust Hausdorff distance (no interpolation, max of
   the two directions); panoptica the pooled, interpolated percentile over surface voxels.

When ``panoptica`` (and, for the BraTS restatement, ``cc3d`` and ``surface_distance``) are importable,
the comparisons are also run live on freshly generated cases; otherwise those tests are skipped.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbundles.data.labels import BRATS_REGIONS, from_internal
from brainbundles.metrics import (
    BRATS_CHALLENGE_PARAMETERS,
    BRATS_MAX_DISTANCE,
    BRATS_METRICS,
    brats_hd95,
    evaluate_brats_arrays,
    evaluate_brats_case,
    evaluate_brats_items,
    lesionwise_scores,
)

DATA = Path(__file__).resolve().parent / "data"
CROSSCHECK = Path(__file__).resolve().parent / "crosscheck_lesionwise.py"
DICE_TOL = 1e-9
HD95_TOL = 1e-6  # mm
METHODS = ("surfel", "max", "pooled")


def _cube(mask: np.ndarray, lo: tuple[int, int, int], size: int | tuple[int, int, int]) -> None:
    sizes = (size,) * 3 if isinstance(size, int) else size
    mask[tuple(slice(a, a + s) for a, s in zip(lo, sizes, strict=True))] = True


def _empty(shape: tuple[int, int, int] = (48, 48, 48)) -> np.ndarray:
    return np.zeros(shape, dtype=bool)


# --------------------------------------------------------------------------- region metrics


def _tumour_pair() -> tuple[np.ndarray, np.ndarray]:
    """Internal labels: edema 16³ cube, core 10³ cube, enhancing 4³ cube; prediction shifted 1 voxel on axis 0."""
    ref = np.zeros((24, 24, 24), dtype=np.uint8)
    ref[2:18, 2:18, 2:18] = 2
    ref[5:15, 5:15, 5:15] = 1
    ref[7:11, 7:11, 7:11] = 3
    pred = np.roll(ref, 1, axis=0)
    return pred, ref


# WT 16³, TC 10³, ET 4³ cubes shifted by one voxel: Dice (n - 1) / n, HD95 = spacing along the shift
EXPECTED_DICE = {"WT": 15 / 16, "TC": 9 / 10, "ET": 3 / 4}
EXPECTED_VOXELS = {"WT": 16**3, "TC": 10**3, "ET": 4**3}


def _save(path: Path, data: np.ndarray, spacing: tuple[float, float, float]) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.uint8), np.diag([*spacing, 1.0])), path)
    return path


@pytest.mark.parametrize(
    ("ref_convention", "pred_convention"),
    [
        ("brats2019", "brats2023"),
        ("brats2023", "brats2023"),
        ("msd_task01", "brats2019"),
        ("brats2019", "msd_task01"),
    ],
)
def test_region_metrics_from_convention_files(
    tmp_path: Path, ref_convention: str, pred_convention: str
) -> None:
    spacing = (2.0, 1.0, 1.0)
    pred, ref = _tumour_pair()
    pred_path = _save(tmp_path / "pred.nii.gz", from_internal(pred, pred_convention), spacing)
    ref_path = _save(tmp_path / "ref.nii.gz", from_internal(ref, ref_convention), spacing)
    result = evaluate_brats_case(pred_path, ref_path, pred_convention, ref_convention)
    assert list(result) == ["WT", "TC", "ET"]
    for region, metrics in result.items():
        assert tuple(metrics) == BRATS_METRICS
        assert metrics["dice"] == pytest.approx(EXPECTED_DICE[region], abs=1e-12)
        assert metrics["hd95"] == pytest.approx(2.0, abs=1e-12)
        # one lesion per region, above the threshold: lesion-wise equals region values
        assert metrics["lesion_dice"] == pytest.approx(EXPECTED_DICE[region], abs=1e-12)
        assert metrics["lesion_hd95"] == pytest.approx(2.0, abs=1e-12)
        assert metrics["vol_ref_ml"] == pytest.approx(EXPECTED_VOXELS[region] * 2.0 / 1000.0)
        assert metrics["vol_pred_ml"] == pytest.approx(EXPECTED_VOXELS[region] * 2.0 / 1000.0)


def test_default_conventions_are_2023_prediction_and_2019_reference(tmp_path: Path) -> None:
    pred, ref = _tumour_pair()
    pred_path = _save(tmp_path / "pred.nii.gz", from_internal(pred, "brats2023"), (1.0, 1.0, 1.0))
    ref_path = _save(tmp_path / "ref.nii.gz", from_internal(ref, "brats2019"), (1.0, 1.0, 1.0))
    assert set(np.unique(nib.load(ref_path).get_fdata())) == {0, 1, 2, 4}
    result = evaluate_brats_case(pred_path, ref_path)
    assert result["ET"]["dice"] == pytest.approx(0.75)
    # read as 2023 the reference has a 4, which is not a 2023 label
    with pytest.raises(ValueError, match=str(ref_path)):
        evaluate_brats_case(pred_path, ref_path, ref_convention="brats2023")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("axis", "spacing"), [(0, (2.0, 1.0, 1.0)), (2, (1.0, 1.0, 3.0)), (1, (0.5, 0.7, 0.9))]
)
def test_hd95_scales_with_spacing_along_the_shift(method: str, axis: int, spacing: tuple[float, ...]) -> None:
    ref = _empty((20, 20, 20))
    _cube(ref, (5, 5, 5), 8)
    pred = np.roll(ref, 1, axis=axis)
    assert brats_hd95(pred, ref, spacing, method=method) == pytest.approx(spacing[axis], abs=1e-12)
    lw = lesionwise_scores(pred, ref, spacing, hd95_method=method)
    assert lw.hd95 == pytest.approx(spacing[axis], abs=1e-12)
    assert lw.dice == pytest.approx(7 / 8)


@pytest.mark.parametrize("method", METHODS)
def test_isotropic_spacing_scales_all_distances(method: str) -> None:
    data = np.load(DATA / "lesionwise_cases.npz")
    pred, ref = data["tumour_shifted__pred"] > 0, data["tumour_shifted__ref"] > 0
    base = brats_hd95(pred, ref, 1.0, method=method)
    assert base > 1.0
    assert brats_hd95(pred, ref, 2.5, method=method) == pytest.approx(2.5 * base, rel=1e-12)
    lw1 = lesionwise_scores(pred, ref, 1.0, hd95_method=method)
    lw2 = lesionwise_scores(pred, ref, 2.5, hd95_method=method)
    assert lw2.hd95 == pytest.approx(2.5 * lw1.hd95, rel=1e-12)
    assert lw2.dice == lw1.dice


def test_empty_region_conventions() -> None:
    ref = np.zeros((32, 32, 32), dtype=np.uint8)
    ref[4:20, 4:20, 4:20] = 2
    ref[8:16, 8:16, 8:16] = 1  # no enhancing tumour
    both = evaluate_brats_arrays(ref, ref, 1.0)
    assert both["ET"] == {
        "dice": 1.0,
        "hd95": 0.0,
        "lesion_dice": 1.0,
        "lesion_hd95": 0.0,
        "vol_pred_ml": 0.0,
        "vol_ref_ml": 0.0,
    }
    pred = ref.copy()
    pred[10:14, 10:14, 10:14] = 3  # enhancing only in the prediction: one false positive
    one = evaluate_brats_arrays(pred, ref, 1.0)
    assert one["ET"]["dice"] == 0.0 and one["ET"]["hd95"] == BRATS_MAX_DISTANCE == 374.0
    assert one["ET"]["lesion_dice"] == 0.0 and one["ET"]["lesion_hd95"] == 374.0
    missed = evaluate_brats_arrays(np.zeros_like(ref), ref, 1.0)
    for region in ("WT", "TC"):
        assert missed[region]["dice"] == 0.0 and missed[region]["hd95"] == 374.0
        assert missed[region]["lesion_dice"] == 0.0 and missed[region]["lesion_hd95"] == 374.0
    other = evaluate_brats_arrays(np.zeros_like(ref), ref, 1.0, max_distance=373.12866)
    assert other["WT"]["hd95"] == 373.12866 and other["WT"]["lesion_hd95"] == 373.12866
    for method in METHODS:
        assert brats_hd95(_empty(ref.shape), _empty(ref.shape), 1.0, method=method) == 0.0
        assert brats_hd95(_empty(ref.shape), ref > 0, 1.0, method=method) == 374.0


# --------------------------------------------------------------------------- lesion-wise rules


def _three_lesions() -> np.ndarray:
    ref = _empty()
    for lo in ((4, 4, 4), (4, 30, 4), (30, 30, 30)):
        _cube(ref, lo, 5)  # 125 voxels each, 21+ voxels apart
    return ref


def test_missed_lesion_and_false_positive_follow_the_formula() -> None:
    ref = _three_lesions()
    pred = _empty()
    _cube(pred, (4, 4, 4), 5)
    _cube(pred, (4, 30, 4), 5)
    lw = lesionwise_scores(pred, ref, 1.0)
    assert (lw.n_tp, lw.n_fn, lw.n_fp) == (2, 1, 0)
    assert lw.dice == pytest.approx((1 + 1 + 0) / 3, abs=1e-15)
    assert lw.hd95 == pytest.approx((0 + 0 + 374) / 3, abs=1e-12)

    _cube(pred, (30, 4, 30), 3)  # 27-voxel false positive, far from every lesion
    lw = lesionwise_scores(pred, ref, 1.0)
    assert (lw.n_tp, lw.n_fn, lw.n_fp) == (2, 1, 1)
    assert lw.dice == 0.5
    assert lw.hd95 == 187.0

    pred[4:9, 4:9, 4:9] = False
    _cube(pred, (5, 4, 4), 5)  # first lesion shifted by one voxel: Dice 0.8, HD95 1
    lw = lesionwise_scores(pred, ref, 1.0)
    assert lw.dice == pytest.approx((0.8 + 1 + 0 + 0) / 4, abs=1e-15)
    assert lw.hd95 == pytest.approx((1 + 0 + 374 + 374) / 4, abs=1e-12)
    assert [les.dice for les in lw.lesions] == pytest.approx([0.8, 1.0, 0.0])


def test_lesions_at_or_below_the_volume_threshold_are_ignored() -> None:
    ref = _empty()
    _cube(ref, (4, 4, 4), 10)
    _cube(ref, (30, 30, 30), 3)  # 27 voxels
    pred = _empty()
    _cube(pred, (4, 4, 4), 10)
    lw = lesionwise_scores(pred, ref, 1.0)
    assert (lw.dice, lw.hd95, lw.n_tp, lw.n_fn, lw.n_fp) == (1.0, 0.0, 1, 0, 0)
    assert [les.counted for les in lw.lesions] == [True, False]
    # a prediction matched only to an ignored lesion is not a false positive
    pred_small = pred.copy()
    _cube(pred_small, (30, 30, 30), 3)
    assert lesionwise_scores(pred_small, ref, 1.0).dice == 1.0
    assert lesionwise_scores(pred_small, ref, 1.0).n_fp == 0
    # a lower threshold, or larger voxels (27 · 8 mm³ = 216 mm³), count the missed lesion
    assert lesionwise_scores(pred, ref, 1.0, volume_threshold=20).dice == 0.5
    assert lesionwise_scores(pred, ref, 2.0).dice == 0.5
    assert lesionwise_scores(pred, ref, 2.0).hd95 == 187.0


def test_volume_threshold_is_exclusive() -> None:
    ref = _empty()
    _cube(ref, (4, 4, 4), (5, 5, 2))  # exactly 50 voxels = 50 mm³: ignored
    assert lesionwise_scores(_empty(), ref, 1.0).dice == 1.0
    ref[4, 4, 6] = True  # 51 voxels: counted and missed
    lw = lesionwise_scores(_empty(), ref, 1.0)
    assert (lw.dice, lw.hd95, lw.n_fn) == (0.0, 374.0, 1)


@pytest.mark.parametrize(("gap", "dilation", "n_lesions"), [(6, 3, 1), (7, 3, 2), (6, 1, 2), (2, 1, 1)])
def test_reference_components_merge_when_their_dilations_touch(
    gap: int, dilation: int, n_lesions: int
) -> None:
    ref = _empty()
    _cube(ref, (10, 10, 10), 5)
    _cube(ref, (10, 15 + gap, 10), 5)  # `gap` empty voxels between the cubes
    pred = _empty()
    _cube(pred, (10, 10, 10), 5)
    lw = lesionwise_scores(pred, ref, 1.0, dilation_factor=dilation)
    assert len(lw.lesions) == n_lesions
    if n_lesions == 1:  # one lesion of 250 voxels, found by the 125-voxel prediction
        assert lw.dice == pytest.approx(2 * 125 / 375, abs=1e-15)
        assert (lw.n_tp, lw.n_fn) == (1, 0)
    else:
        assert lw.dice == 0.5
        assert (lw.n_tp, lw.n_fn) == (1, 1)


def test_prediction_within_the_dilated_lesion_is_matched_without_overlap() -> None:
    ref = _empty()
    _cube(ref, (10, 10, 10), 5)
    near = _empty()
    _cube(near, (10, 17, 10), 5)  # 2 empty voxels: inside the 3-voxel dilation
    lw = lesionwise_scores(near, ref, 1.0)
    assert (lw.n_tp, lw.n_fn, lw.n_fp) == (1, 0, 0)
    assert lw.dice == 0.0
    assert lw.hd95 == pytest.approx(brats_hd95(near, ref, 1.0)) and lw.hd95 < 20
    far = _empty()
    _cube(far, (10, 18, 10), 5)  # 3 empty voxels: outside, a miss and a false positive
    lw = lesionwise_scores(far, ref, 1.0)
    assert (lw.n_tp, lw.n_fn, lw.n_fp) == (0, 1, 1)
    assert (lw.dice, lw.hd95) == (0.0, 374.0)


def test_one_prediction_can_match_several_lesions() -> None:
    ref = _empty()
    _cube(ref, (10, 5, 10), 5)
    _cube(ref, (10, 30, 10), 5)
    pred = _empty()
    _cube(pred, (10, 5, 10), (5, 30, 5))  # a bar over both lesions, 750 voxels
    lw = lesionwise_scores(pred, ref, 1.0)
    assert (lw.n_tp, lw.n_fn, lw.n_fp) == (2, 0, 0)
    assert lw.dice == pytest.approx(2 * 125 / (125 + 750), abs=1e-15)


def test_split_prediction_is_united_for_its_lesion() -> None:
    ref = _empty()
    _cube(ref, (10, 10, 10), 10)
    pred = ref.copy()
    pred[:, 14:16, :] = False  # two components, 400 voxels each
    lw = lesionwise_scores(pred, ref, 1.0)
    assert (lw.n_tp, lw.n_fn, lw.n_fp) == (1, 0, 0)
    assert lw.lesions[0].n_matched == 2
    assert lw.dice == pytest.approx(2 * 800 / 1800, abs=1e-15)


def test_both_empty_and_parameters() -> None:
    lw = lesionwise_scores(_empty(), _empty(), (1.0, 1.0, 1.0))
    assert (lw.dice, lw.hd95, lw.n_tp, lw.n_fn, lw.n_fp, lw.lesions) == (1.0, 0.0, 0, 0, 0, ())
    assert BRATS_CHALLENGE_PARAMETERS["BraTS-GLI"] == (3, 50.0)
    assert BRATS_CHALLENGE_PARAMETERS["BraTS-MET"] == (1, 2.0)
    with pytest.raises(ValueError, match="hd95_method"):
        lesionwise_scores(_empty(), _empty(), 1.0, hd95_method="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dilation_factor"):
        lesionwise_scores(_empty(), _empty(), 1.0, dilation_factor=-1)
    with pytest.raises(ValueError, match="3-D"):
        lesionwise_scores(np.zeros((4, 4)), np.zeros((4, 4)), 1.0)


# --------------------------------------------------------------------------- reference values


def _reference() -> tuple[dict, np.lib.npyio.NpzFile]:
    return json.loads((DATA / "lesionwise_reference.json").read_text()), np.load(
        DATA / "lesionwise_cases.npz"
    )


def _case(data, name: str) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    return data[f"{name}__pred"], data[f"{name}__ref"], tuple(float(s) for s in data[f"{name}__spacing"])


def _compare_brats2023(ours: dict, lws, expected: dict) -> None:
    for metric in ("dice", "lesion_dice"):
        assert abs(ours[metric] - expected[metric]) <= DICE_TOL, metric
    for metric in ("hd95", "lesion_hd95"):
        assert abs(ours[metric] - expected[metric]) <= HD95_TOL, metric
    assert (lws.n_tp, lws.n_fn, lws.n_fp) == (expected["n_tp"], expected["n_fn"], expected["n_fp"])


def _compare_panoptica(lws, expected: dict) -> None:
    assert (lws.n_tp, lws.n_fn, lws.n_fp) == (expected["n_tp"], expected["n_fn"], expected["n_fp"])
    assert abs(lws.dice - expected["lesion_dice"]) <= DICE_TOL
    assert abs(lws.hd95 - expected["lesion_hd95"]) <= HD95_TOL


def test_matches_the_brats2023_restatement_on_all_reference_cases() -> None:
    reference, data = _reference()
    assert len(reference["cases"]) == 12
    for name, case in reference["cases"].items():
        pred, ref, spacing = _case(data, name)
        ours = evaluate_brats_arrays(pred, ref, spacing)
        for region, values in BRATS_REGIONS.items():
            lws = lesionwise_scores(np.isin(pred, values), np.isin(ref, values), spacing)
            _compare_brats2023(ours[region], lws, case["regions"][region]["brats2023"])


def test_matches_panoptica_where_the_definitions_agree() -> None:
    reference, data = _reference()
    compared = {"merge": 0, "brats": 0}
    for name, case in reference["cases"].items():
        pred, ref, spacing = _case(data, name)
        for region, values in BRATS_REGIONS.items():
            r = case["regions"][region]
            lws = lesionwise_scores(
                np.isin(pred, values), np.isin(ref, values), spacing, hd95_method="pooled"
            )
            for key in compared:
                if r[f"agree_{key}"]:
                    _compare_panoptica(lws, r[f"panoptica_{key}"])
                    compared[key] += 1
    assert compared == {"merge": 29, "brats": 23}


def test_reference_disagreements_are_the_documented_ones() -> None:
    reference, _ = _reference()
    reasons = {
        (name, region): r["agree_merge_reason"]
        for name, case in reference["cases"].items()
        for region, r in case["regions"].items()
        if not r["agree_merge"]
    }
    assert reasons == {
        ("close_lesions_merged", "WT"): "reference components merged by dilation",
        ("near_miss", "WT"): "prediction within the dilation of a lesion it does not overlap",
        ("near_miss", "TC"): "prediction within the dilation of a lesion it does not overlap",
        ("near_miss", "ET"): "prediction within the dilation of a lesion it does not overlap",
        ("small_gt_lesion", "WT"): "reference lesion at or below the volume threshold",
        ("small_gt_lesion", "TC"): "reference lesion at or below the volume threshold",
        ("bridge", "WT"): "prediction overlapping several lesions",
    }


def _load_crosscheck():
    spec = importlib.util.spec_from_file_location("crosscheck_lesionwise", CROSSCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_live_panoptica_comparison() -> None:
    pytest.importorskip("panoptica")
    pytest.importorskip("cc3d")
    cc = _load_crosscheck()
    cases = cc.make_cases()
    evaluators = cc._evaluators()
    compared = 0
    for _name, (pred, ref, spacing, _) in cases.items():
        pano = {key: cc.panoptica_lesionwise(ev, pred, ref, spacing) for key, ev in evaluators.items()}
        for region, values in BRATS_REGIONS.items():
            p, r = np.isin(pred, values), np.isin(ref, values)
            agree = cc.agreement(p, r, spacing)
            lws = lesionwise_scores(p, r, spacing, hd95_method="pooled")
            merge = pano["panoptica_merge"][region]
            if (
                not agree["merge"]
                and (merge["n_tp"], merge["n_fn"], merge["n_fp"]) == agree["expected_merge_counts"]
            ):
                _compare_panoptica(lws, merge)
                compared += 1
            if not agree["brats"]:
                _compare_panoptica(lws, pano["panoptica_brats"][region])
                compared += 1
    assert compared >= 40


def test_live_brats2023_restatement_and_surfel_hd95() -> None:
    pytest.importorskip("cc3d")
    surface_distance = pytest.importorskip("surface_distance")
    cc = _load_crosscheck()
    for _name, (pred, ref, spacing, _) in cc.make_cases().items():
        ours = evaluate_brats_arrays(pred, ref, spacing)
        for region, values in BRATS_REGIONS.items():
            p, r = np.isin(pred, values), np.isin(ref, values)
            _compare_brats2023(
                ours[region], lesionwise_scores(p, r, spacing), cc.brats2023_reference(p, r, spacing)
            )
    rng = np.random.default_rng(0)
    from scipy import ndimage

    for _ in range(10):
        spacing = tuple(float(s) for s in rng.choice([0.5, 1.0, 1.3, 2.0, 3.0], 3))
        a = ndimage.gaussian_filter(rng.random((20, 24, 18)), 2) > 0.52
        b = ndimage.gaussian_filter(rng.random((20, 24, 18)), 2) > 0.52
        if a.any() and b.any():
            expected = surface_distance.compute_robust_hausdorff(
                surface_distance.compute_surface_distances(b, a, spacing), 95
            )
            assert brats_hd95(a, b, spacing) == pytest.approx(expected, abs=1e-9)


def test_generated_cases_match_the_stored_inputs() -> None:
    cc = _load_crosscheck()
    _, data = _reference()
    cases = cc.make_cases()
    assert sorted(f"{n}__{k}" for n in cases for k in ("pred", "ref", "spacing")) == sorted(data.files)
    for name, (pred, ref, spacing, _) in cases.items():
        np.testing.assert_array_equal(pred, data[f"{name}__pred"])
        np.testing.assert_array_equal(ref, data[f"{name}__ref"])
        np.testing.assert_array_equal(np.asarray(spacing), data[f"{name}__spacing"])


# --------------------------------------------------------------------------- files and reports


def test_evaluate_brats_items_writes_the_report(tmp_path: Path) -> None:
    pred, ref = _tumour_pair()
    pred_dir, label_dir = tmp_path / "pred", tmp_path / "labels"
    pred_dir.mkdir()
    label_dir.mkdir()
    other_pred = pred.copy()
    other_pred[other_pred == 3] = 1  # no enhancing in this prediction
    _save(pred_dir / "c1_seg.nii.gz", pred, (1.0, 1.0, 1.0))
    _save(pred_dir / "c2_seg.nii.gz", other_pred, (1.0, 1.0, 1.0))
    items = [
        {
            "case": "c1",
            "label": str(_save(label_dir / "c1.nii.gz", from_internal(ref, "brats2019"), (1.0,) * 3)),
        },
        {
            "case": "c2",
            "label": str(_save(label_dir / "c2.nii.gz", from_internal(ref, "msd_task01"), (1.0,) * 3)),
            "label_convention": "msd_task01",
        },
    ]
    out = tmp_path / "eval"
    report = evaluate_brats_items(items, pred_dir, out)
    assert list(report) == ["per_case", "summary"]
    assert report["per_case"]["c1"] == evaluate_brats_case(pred_dir / "c1_seg.nii.gz", items[0]["label"])
    assert report["per_case"]["c2"]["ET"]["dice"] == 0.0
    assert report["per_case"]["c2"]["ET"]["lesion_hd95"] == 374.0
    et = report["summary"]["ET"]["dice"]
    assert et["mean"] == pytest.approx(0.375) and et["n"] == 2 and et["n_nan"] == 0
    assert et["sd"] == pytest.approx(math.sqrt(2 * 0.375**2))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["summary"]["WT"]["lesion_dice"]["mean"] == pytest.approx(15 / 16)
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["case", "WT_dice", "WT_hd95"] and "ET_lesion_hd95" in rows[0]
    assert [row[0] for row in rows[1:]] == ["c1", "c2", "mean", "sd"]


def test_evaluate_brats_items_missing_prediction_names_the_file(tmp_path: Path) -> None:
    _, ref = _tumour_pair()
    label = _save(tmp_path / "ref.nii.gz", from_internal(ref, "brats2019"), (1.0,) * 3)
    with pytest.raises(FileNotFoundError, match="c9_pred.nii.gz"):
        evaluate_brats_items(
            [{"case": "c9", "label": str(label)}], tmp_path, tmp_path / "out", postfix="pred"
        )
    assert not (tmp_path / "out").exists()


def test_mismatched_files_raise_naming_the_files(tmp_path: Path) -> None:
    pred, ref = _tumour_pair()
    ref_path = _save(tmp_path / "ref.nii.gz", ref, (1.0,) * 3)
    shifted = tmp_path / "shifted.nii.gz"
    affine = np.eye(4)
    affine[0, 3] = 5.0
    nib.save(nib.Nifti1Image(pred, affine), shifted)
    with pytest.raises(ValueError, match="affine mismatch.*shifted.nii.gz"):
        evaluate_brats_case(shifted, ref_path, ref_convention="brats2023")
    small = _save(tmp_path / "small.nii.gz", pred[:20], (1.0,) * 3)
    with pytest.raises(ValueError, match="shape mismatch.*small.nii.gz"):
        evaluate_brats_case(small, ref_path, ref_convention="brats2023")
    bad = _save(tmp_path / "bad.nii.gz", from_internal(pred, "brats2019"), (1.0,) * 3)
    with pytest.raises(ValueError, match=r"bad.nii.gz.*\[4\]"):
        evaluate_brats_case(bad, ref_path, "brats2023", "brats2023")
    with pytest.raises(FileNotFoundError, match="nothere.nii.gz"):
        evaluate_brats_case(tmp_path / "nothere.nii.gz", ref_path)
