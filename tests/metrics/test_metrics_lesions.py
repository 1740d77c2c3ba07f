"""Checks of the WMH challenge metrics and lesion-wise detection (brainbundles.metrics.lesions).

Hand-computed cases check lesion counting (connectivity, detection by one overlapping voxel), recall,
precision and F1, the empty-mask conventions, the ignore label, the challenge's HD95 (in-plane edges
with SimpleITK's 3x3-square ball kernel and the array outside counted as foreground, anisotropic
spacing, interpolated percentiles) and the report files.

Reference values (``CROSSCHECK_EXPECTED``): the WMH challenge's ``evaluation.py`` (``getImages``,
``getDSC``, ``getHausdorff``, ``getLesionDetection``, ``getAVD``; restated in ``_challenge_metrics``
below) run with SimpleITK 2.5.7 on the four synthetic cases of ``_crosscheck_case``. When SimpleITK is
importable the restatement is also run live; otherwise that test is skipped.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from brainbundles.metrics import (
    WMH_METRICS,
    evaluate_lesion_arrays,
    evaluate_lesion_items,
    hd95,
    lesion_detection,
    wmh_hd95,
)

NAN = float("nan")


def _box(shape: tuple[int, int, int], *boxes: tuple[slice, slice, slice]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for b in boxes:
        mask[b] = True
    return mask


def _cube(lo: tuple[int, int, int], size: int = 3) -> tuple[slice, slice, slice]:
    return tuple(slice(a, a + size) for a in lo)  # type: ignore[return-value]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


# --------------------------------------------------------------------------- detection


def test_two_reference_lesions_one_detected() -> None:
    ref = _box((14, 14, 14), _cube((1, 1, 1)), _cube((9, 9, 9)))
    pred = _box((14, 14, 14), _cube((2, 2, 2)))  # overlaps the first lesion only
    det = lesion_detection(pred, ref)
    assert det == {
        "n_ref": 2,
        "n_pred": 1,
        "n_ref_detected": 1,
        "n_pred_correct": 1,
        "recall": 0.5,
        "precision": 1.0,
        "f1": pytest.approx(2 / 3, abs=1e-12),
    }


def test_false_positive_blobs_lower_precision_and_f1() -> None:
    shape = (20, 20, 20)
    ref = _box(shape, _cube((1, 1, 1)), _cube((1, 10, 1)), _cube((10, 1, 1)))
    pred = _box(
        shape,
        _cube((3, 3, 3)),  # touches lesion 1 in one voxel (3, 3, 3)
        _cube((1, 10, 1), 1),  # one voxel inside lesion 2
        _cube((15, 15, 15)),  # three false positives
        _cube((1, 15, 10), 2),
        _cube((10, 10, 10), 1),
    )
    det = lesion_detection(pred, ref)
    assert (det["n_ref"], det["n_pred"], det["n_ref_detected"], det["n_pred_correct"]) == (3, 5, 2, 2)
    assert det["recall"] == pytest.approx(2 / 3, abs=1e-12)
    assert det["precision"] == pytest.approx(2 / 5, abs=1e-12)
    # F1 = 2 (2/3)(2/5) / (2/3 + 2/5) = (8/15) / (16/15) = 1/2
    assert det["f1"] == pytest.approx(0.5, abs=1e-12)


def test_one_component_over_two_lesions_counts_once_each_way() -> None:
    ref = _box((12, 12, 12), _cube((1, 1, 1)), _cube((1, 6, 1)))
    pred = _box((12, 12, 12), (slice(2, 3), slice(2, 8), slice(2, 3)))  # a bar through both lesions
    det = lesion_detection(pred, ref)
    assert (det["n_ref"], det["n_pred"], det["n_ref_detected"], det["n_pred_correct"]) == (2, 1, 2, 1)
    assert det["recall"] == det["precision"] == det["f1"] == 1.0


@pytest.mark.parametrize(
    ("second", "n26", "n6"),
    [((3, 3, 3), 1, 2), ((3, 3, 2), 1, 2), ((3, 2, 2), 1, 1)],
    ids=["corner", "edge", "face"],
)
def test_connectivity_26_vs_6(second: tuple[int, int, int], n26: int, n6: int) -> None:
    ref = np.zeros((6, 6, 6), dtype=bool)
    ref[2, 2, 2] = ref[second] = True
    pred = np.zeros_like(ref)
    pred[2, 2, 2] = True
    det26 = lesion_detection(pred, ref, connectivity=26)
    det6 = lesion_detection(pred, ref, connectivity=6)
    assert det26["n_ref"] == n26
    assert det6["n_ref"] == n6
    assert det26["recall"] == 1.0
    assert det6["recall"] == pytest.approx(1 / n6)
    assert lesion_detection(pred, ref)["n_ref"] == n26  # default is 26
    # the same voxels as a prediction
    assert lesion_detection(ref, pred, connectivity=6)["precision"] == pytest.approx(1 / n6)


@pytest.mark.parametrize("bad", [4, 8, 18, 27, True, "26"])
def test_invalid_connectivity_raises(bad: object) -> None:
    mask = np.ones((3, 3, 3), dtype=bool)
    with pytest.raises(ValueError, match="connectivity"):
        lesion_detection(mask, mask, connectivity=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="connectivity"):
        evaluate_lesion_arrays(mask, mask, 1.0, connectivity=bad)  # type: ignore[arg-type]


def test_detection_needs_3d_masks_of_equal_shape() -> None:
    with pytest.raises(ValueError, match="3-D"):
        lesion_detection(np.ones((4, 4)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="same shape"):
        lesion_detection(np.ones((4, 4, 4)), np.ones((4, 4, 5)))


@pytest.mark.parametrize(
    ("pred_on", "ref_on", "expected"),
    [
        (False, False, (1.0, 1.0, 1.0)),
        (True, False, (NAN, 0.0, 0.0)),
        (False, True, (0.0, NAN, 0.0)),
    ],
    ids=["both-empty", "ref-empty", "pred-empty"],
)
def test_detection_empty_mask_conventions(
    pred_on: bool, ref_on: bool, expected: tuple[float, float, float]
) -> None:
    pred = _box((8, 8, 8), *([_cube((1, 1, 1))] if pred_on else []))
    ref = _box((8, 8, 8), *([_cube((4, 4, 4))] if ref_on else []))
    det = lesion_detection(pred, ref)
    got = (det["recall"], det["precision"], det["f1"])
    assert all(_same(g, e) for g, e in zip(got, expected, strict=True)), got
    assert (det["n_pred"], det["n_ref"]) == (int(pred_on), int(ref_on))


def test_zero_recall_and_precision_give_zero_f1() -> None:
    pred = _box((10, 10, 10), _cube((0, 0, 0)))
    ref = _box((10, 10, 10), _cube((6, 6, 6)))
    det = lesion_detection(pred, ref)
    assert (det["recall"], det["precision"], det["f1"]) == (0.0, 0.0, 0.0)


# --------------------------------------------------------------------------- HD95


@pytest.mark.parametrize(("spacing", "expected"), [((1.0, 1.0, 1.0), 1.0), ((2.0, 1.0, 3.0), 2.0)])
def test_wmh_hd95_cubes_offset_in_plane(spacing: tuple[float, float, float], expected: float) -> None:
    """3³ cubes shifted one voxel along axis 0. Per slice each edge is the 8-voxel ring; pred → ref per
    slice: 4 × 0, the ring voxel over the reference's centre at min(s_y, s_x) = 1, 3 × s_x (the far row)
    → over 24 values P95 (position 21.85) is s_x; ref → pred is the mirror image."""
    ref = _box((8, 8, 8), _cube((2, 2, 2)))
    pred = _box((8, 8, 8), _cube((3, 2, 2)))
    assert wmh_hd95(pred, ref, spacing) == pytest.approx(expected, abs=1e-12)
    assert wmh_hd95(ref, pred, spacing) == pytest.approx(expected, abs=1e-12)


def test_wmh_hd95_cubes_offset_across_slices() -> None:
    """Shift along axis 2 (slices): the top ring of the prediction is s_z from the reference's top ring,
    16 of the 24 edge voxels coincide, so P95 = s_z."""
    ref = _box((8, 8, 8), _cube((2, 2, 2)))
    pred = _box((8, 8, 8), _cube((2, 2, 3)))
    assert wmh_hd95(pred, ref, (1.0, 1.0, 3.0)) == pytest.approx(3.0, abs=1e-12)
    assert wmh_hd95(pred, ref, 0.5) == pytest.approx(0.5, abs=1e-12)


def test_wmh_hd95_uses_square_inplane_kernel_and_interpolated_percentile() -> None:
    """A 5×5 slab with a hole in its centre against the full slab, spacing (2, 1, 1).

    The sitk ball of radius (1, 1, 0) is the 3×3 square, so all 8 voxels around the hole are edges
    (a 3×3 cross would keep the 4 diagonal ones). Full slab edges: its 16-voxel ring, all on the
    reference's edges, so pred → ref P95 is 0. ref → pred over 24 edge voxels: 16 × 0, the 6 voxels
    next to the ring along axis 1 at s_y = 1, the 2 next to it along axis 0 only at 2 mm:
    P95 at position 0.95 · 23 = 21.85 between 1 (index 21) and 2 (index 22) is 1.85 mm (a cross kernel
    would give 2.0). The package's 3-D surface HD95 gives 0 here (single slice: every voxel is surface).
    """
    full = _box((7, 7, 3), (slice(1, 6), slice(1, 6), slice(1, 2)))
    holed = full.copy()
    holed[3, 3, 1] = False
    assert wmh_hd95(full, holed, (2.0, 1.0, 1.0)) == pytest.approx(1.85, abs=1e-12)
    assert hd95(full, holed, (2.0, 1.0, 1.0)) == pytest.approx(0.0, abs=1e-12)


def test_wmh_hd95_slice_interiors_are_not_edges() -> None:
    """A filled 5×5 single-slice slab and its 16-voxel ring have the same in-plane edges: HD95 0. The 3-D
    surface definition (``hd95``) counts the slab's inner 3×3 and gives 1."""
    slab = _box((7, 7, 3), (slice(1, 6), slice(1, 6), slice(1, 2)))
    ring = slab.copy()
    ring[2:5, 2:5, 1] = False
    assert wmh_hd95(slab, ring, 1.0) == 0.0
    assert hd95(slab, ring, 1.0) == pytest.approx(1.0, abs=1e-12)


def test_wmh_hd95_array_border_counts_as_foreground() -> None:
    """As SimpleITK's BinaryErode (boundaryToForeground), a lesion has no edge on the array border: the
    reference's only edge is the column next to the background, which the prediction matches (0). With
    the border as background its far column would be 2 voxels away."""
    ref = _box((5, 5, 1), (slice(0, 3), slice(0, 5), slice(0, 1)))
    pred = _box((5, 5, 1), (slice(2, 3), slice(0, 5), slice(0, 1)))
    assert wmh_hd95(pred, ref, 1.0) == 0.0
    assert wmh_hd95(np.pad(pred, 1), np.pad(ref, 1), 1.0) == pytest.approx(2.0, abs=1e-12)


def test_wmh_hd95_empty_conventions_and_errors() -> None:
    empty = np.zeros((6, 6, 6), dtype=bool)
    blob = _box((6, 6, 6), _cube((1, 1, 1)))
    assert wmh_hd95(empty, empty, 1.0) == 0.0
    assert math.isnan(wmh_hd95(blob, empty, 1.0))
    assert math.isnan(wmh_hd95(empty, blob, 1.0))
    full = np.ones((4, 4, 2), dtype=bool)  # no in-plane edge anywhere: undefined
    assert math.isnan(wmh_hd95(full, full, 1.0))
    with pytest.raises(ValueError, match="3-D"):
        wmh_hd95(np.ones((4, 4)), np.ones((4, 4)), 1.0)
    with pytest.raises(ValueError, match="spacing"):
        wmh_hd95(blob, blob, (1.0, 1.0))


# --------------------------------------------------------------------------- case metrics


def _wmh_case() -> tuple[np.ndarray, np.ndarray]:
    """Reference: two 2³ lesions and a label-2 region; prediction: lesion 1 plus 2 voxels beside it."""
    ref = np.zeros((12, 12, 12), dtype=np.uint8)
    ref[1:3, 1:3, 1:3] = 1
    ref[7:9, 7:9, 7:9] = 1
    ref[1:3, 8:11, 1:3] = 2
    pred = np.zeros_like(ref)
    pred[1:3, 1:3, 1:3] = 1
    return pred, ref


def test_evaluate_lesion_arrays_values_and_order() -> None:
    pred, ref = _wmh_case()
    pred[1:3, 4, 1] = 1  # 2 voxels, 1 voxel away from lesion 1: a separate false-positive lesion
    spacing = (1.0, 2.0, 0.5)
    got = evaluate_lesion_arrays(pred, ref, spacing)
    assert tuple(got) == (*WMH_METRICS, "lesion_precision")
    assert WMH_METRICS[:5] == ("dice", "hd95", "avd", "lesion_recall", "lesion_f1")
    assert got["dice"] == pytest.approx(2 * 8 / (10 + 16))
    assert got["avd"] == pytest.approx(abs(10 - 16) / 16 * 100)  # 37.5 %
    assert got["lesion_recall"] == 0.5
    assert got["lesion_precision"] == 0.5
    assert got["lesion_f1"] == 0.5
    assert got["vol_pred_ml"] == pytest.approx(10 * 1.0 / 1000)
    assert got["vol_ref_ml"] == pytest.approx(16 * 1.0 / 1000)
    assert (got["lesions_pred"], got["lesions_ref"]) == (2.0, 2.0)
    assert got["hd95"] == pytest.approx(wmh_hd95(pred == 1, ref == 1, spacing), abs=1e-12)
    assert got["hd95"] > 0


def test_prediction_inside_ignore_label_is_not_a_false_positive() -> None:
    pred, ref = _wmh_case()
    baseline = evaluate_lesion_arrays(pred, ref, 1.0)
    inside = pred.copy()
    inside[1:3, 9:11, 1:3] = 1  # a blob entirely inside the label-2 region
    got = evaluate_lesion_arrays(inside, ref, 1.0)
    assert got == baseline
    assert got["lesion_precision"] == 1.0 and got["lesions_pred"] == 1.0
    # without the masking the blob is a false-positive lesion
    unmasked = evaluate_lesion_arrays(inside, ref, 1.0, ignore_label=None)
    assert unmasked["lesion_precision"] == 0.5
    assert unmasked["dice"] == pytest.approx(2 * 8 / (16 + 16))
    assert baseline["dice"] == pytest.approx(2 * 8 / (8 + 16))
    assert unmasked["vol_pred_ml"] == pytest.approx(16 / 1000)
    # the same blob outside the label-2 region counts
    outside = pred.copy()
    outside[5:7, 9:11, 1:3] = 1
    got_out = evaluate_lesion_arrays(outside, ref, 1.0)
    assert got_out["lesion_precision"] == 0.5
    assert got_out["dice"] == pytest.approx(2 * 8 / (16 + 16))
    assert got_out["avd"] == pytest.approx(0.0)  # 16 predicted voxels against 16
    assert baseline["avd"] == pytest.approx(50.0)


def test_lesion_and_ignore_labels() -> None:
    pred, ref = _wmh_case()
    other = pred.copy()
    other[5:7, 9:11, 1:3] = 2  # a prediction label other than lesion_label is background
    assert evaluate_lesion_arrays(other, ref, 1.0) == evaluate_lesion_arrays(pred, ref, 1.0)
    # relabelled maps give the same metrics with matching labels
    ref_relabel = np.select([ref == 1, ref == 2], [3, 7], 0)
    pred_relabel = np.where(pred == 1, 3, 0)
    pred_relabel[1:3, 9:11, 1:3] = 3  # inside the ignore region (label 7)
    assert evaluate_lesion_arrays(
        pred_relabel, ref_relabel, 1.0, lesion_label=3, ignore_label=7
    ) == evaluate_lesion_arrays(pred, ref, 1.0)
    with pytest.raises(ValueError, match="differ"):
        evaluate_lesion_arrays(pred, ref, 1.0, lesion_label=2, ignore_label=2)
    with pytest.raises(ValueError, match="lesion_label"):
        evaluate_lesion_arrays(pred, ref, 1.0, lesion_label=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same shape"):
        evaluate_lesion_arrays(pred[:-1], ref, 1.0)


def test_evaluate_lesion_arrays_empty_reference_and_prediction() -> None:
    ref = np.zeros((6, 6, 6), dtype=np.uint8)
    ref[0:2, 0:2, 0:2] = 2
    pred = np.zeros_like(ref)
    pred[0:2, 0:2, 0:2] = 1  # only inside the ignore region: masked away
    got = evaluate_lesion_arrays(pred, ref, 1.0)
    assert got["dice"] == 1.0 and got["hd95"] == 0.0 and got["avd"] == 0.0
    assert got["lesion_recall"] == got["lesion_precision"] == got["lesion_f1"] == 1.0
    got = evaluate_lesion_arrays(pred, ref, 1.0, ignore_label=None)  # a prediction, no reference
    assert got["dice"] == 0.0 and got["lesion_f1"] == 0.0 and got["lesion_precision"] == 0.0
    assert math.isnan(got["hd95"]) and math.isnan(got["avd"]) and math.isnan(got["lesion_recall"])


# --------------------------------------------------------------------------- cross-check vs the challenge


def _crosscheck_case(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic synthetic WMH case ``n`` (0–3): blobs, a shifted/perforated prediction with
    false positives, and label-2 voxels."""
    shape = (18, 15, 9)
    i, j, k = np.indices(shape)
    seeds = (i * 7 + j * 11 + k * 13 + 5 * n) % (41 + 6 * n) == 0
    ref = np.zeros(shape, dtype=np.uint8)
    ref[ndimage.binary_dilation(seeds, iterations=1)] = 1
    ref[((i + 2 * j + n) % 13 == 0) & (k == 4 + n % 3)] = 2
    pred = np.roll(ref == 1, n % 3, axis=n % 3) & ((i * 3 + j * 5 + k) % 11 != 0)
    pred |= (i * 5 + j * 3 + k * 7 + n) % 53 == 0
    return pred.astype(np.uint8), ref


CROSSCHECK_SPACINGS = [(1.0, 1.0, 3.0), (0.9, 1.2, 3.0), (1.0, 1.0, 1.0), (0.5, 0.5, 2.5)]
CROSSCHECK_KEYS = ("dice", "hd95", "avd", "lesion_recall", "lesion_f1", "lesion_precision")
# WMH challenge evaluation.py (restated in _challenge_metrics) with SimpleITK 2.5.7
CROSSCHECK_EXPECTED = [
    (0.9, 1.4142135623730951, 1.5915119363395225, 1.0, 0.7586206896551725, 0.6111111111111112),
    (0.2831325301204819, 1.7999999999999994, 0.6006006006006006, 1.0, 0.888888888888889, 0.8),
    (0.11505922165820648, 2.0, 3.0927835051546393, 0.8125, 0.6312594840667678, 0.5161290322580645),
    (0.8873239436619719, 1.0, 5.797101449275362, 1.0, 0.8947368421052632, 0.8095238095238095),
]


@pytest.mark.parametrize("n", range(4))
def test_matches_stored_challenge_values(n: int) -> None:
    pred, ref = _crosscheck_case(n)
    got = evaluate_lesion_arrays(pred, ref, CROSSCHECK_SPACINGS[n])
    for key, expected in zip(CROSSCHECK_KEYS, CROSSCHECK_EXPECTED[n], strict=True):
        assert got[key] == pytest.approx(expected, rel=1e-9, abs=1e-12), key


def _challenge_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> tuple[float, ...]:
    """The WMH challenge's evaluation.py on arrays (numpy axes i, j, k = SimpleITK x, y, z)."""
    import scipy.spatial
    import SimpleITK as sitk

    def image(arr: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)).astype(np.float32))
        img.SetSpacing([float(s) for s in spacing])
        return img

    test_image, result_image = image(ref), image(pred)
    # getImages
    masked_test = sitk.BinaryThreshold(test_image, 0.5, 1.5, 1, 0)
    non_wmh = sitk.BinaryThreshold(test_image, 1.5, 2.5, 0, 1)
    result = sitk.BinaryThreshold(sitk.Mask(result_image, non_wmh), 0.5, 1000, 1, 0)
    test = sitk.Cast(masked_test, sitk.sitkUInt8)
    result = sitk.Cast(result, sitk.sitkUInt8)
    t_arr, r_arr = sitk.GetArrayFromImage(test), sitk.GetArrayFromImage(result)
    # getDSC, getAVD
    dsc = 1.0 - scipy.spatial.distance.dice(t_arr.flatten(), r_arr.flatten())
    avd_value = abs(float(r_arr.sum()) - float(t_arr.sum())) / float(t_arr.sum()) * 100
    # getHausdorff
    h_test = sitk.GetArrayFromImage(sitk.Subtract(test, sitk.BinaryErode(test, (1, 1, 0))))
    h_result = sitk.GetArrayFromImage(sitk.Subtract(result, sitk.BinaryErode(result, (1, 1, 0))))
    t_pts = [
        test.TransformIndexToPhysicalPoint(x.tolist()) for x in np.transpose(np.flipud(np.nonzero(h_test)))
    ]
    r_pts = [
        test.TransformIndexToPhysicalPoint(x.tolist()) for x in np.transpose(np.flipud(np.nonzero(h_result)))
    ]

    def dist(a: list, b: list) -> np.ndarray:
        return scipy.spatial.KDTree(a, leafsize=100).query(b, k=1, eps=0, p=2)[0]

    hd = max(np.percentile(dist(t_pts, r_pts), 95), np.percentile(dist(r_pts, t_pts), 95))
    # getLesionDetection
    cc = sitk.ConnectedComponentImageFilter()
    cc.SetFullyConnected(True)
    cc_test = cc.Execute(test)
    n_wmh = len(np.unique(sitk.GetArrayFromImage(cc_test))) - 1
    hit = sitk.Multiply(cc_test, sitk.Cast(result, sitk.sitkUInt32))
    recall = 1.0 if n_wmh == 0 else (len(np.unique(sitk.GetArrayFromImage(hit))) - 1) / n_wmh
    cc_result = cc.Execute(result)
    n_det = len(np.unique(sitk.GetArrayFromImage(cc_result))) - 1
    hit = sitk.Multiply(cc_result, sitk.Cast(test, sitk.sitkUInt32))
    precision = 1.0 if n_det == 0 else (len(np.unique(sitk.GetArrayFromImage(hit))) - 1) / n_det
    f1 = 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)
    return dsc, float(hd), avd_value, recall, f1, precision


@pytest.mark.parametrize("n", range(4))
def test_matches_challenge_script_live(n: int) -> None:
    pytest.importorskip("SimpleITK")
    pred, ref = _crosscheck_case(n)
    expected = _challenge_metrics(pred, ref, CROSSCHECK_SPACINGS[n])
    got = evaluate_lesion_arrays(pred, ref, CROSSCHECK_SPACINGS[n])
    for key, value in zip(CROSSCHECK_KEYS, expected, strict=True):
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        assert value == pytest.approx(CROSSCHECK_EXPECTED[n][CROSSCHECK_KEYS.index(key)], rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------- items and reports


def _save(path: Path, data: np.ndarray, spacing: tuple[float, float, float]) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.uint8), np.diag([*spacing, 1.0])), path)
    return path


def test_evaluate_lesion_items_writes_report(tmp_path: Path) -> None:
    spacing = (1.25, 1.0, 3.0)  # exact in the header's float32
    pred_dir, label_dir, out_dir = tmp_path / "pred", tmp_path / "labels", tmp_path / "out"
    pred_dir.mkdir()
    label_dir.mkdir()
    cases = {"c1": _crosscheck_case(1), "c2": _wmh_case()}
    empty_pred = np.zeros_like(cases["c2"][0])
    cases["c3"] = (empty_pred, cases["c2"][1])  # nothing predicted: hd95, precision NaN
    items = []
    for case, (pred, ref) in cases.items():
        _save(pred_dir / f"{case}_wmh.nii.gz", pred, spacing)
        items.append({"case": case, "label": str(_save(label_dir / f"{case}.nii.gz", ref, spacing))})

    result = evaluate_lesion_items(items, pred_dir, out_dir, postfix="wmh", class_name="lesion")

    expected = {c: evaluate_lesion_arrays(p, r, spacing) for c, (p, r) in cases.items()}
    assert list(result["per_case"]) == ["c1", "c2", "c3"]
    for case, metrics in expected.items():
        assert list(result["per_case"][case]) == ["lesion"]
        got = result["per_case"][case]["lesion"]
        assert list(got) == list(metrics)
        assert all(_same(got[k], v) for k, v in metrics.items()), case

    payload = json.loads((out_dir / "metrics.json").read_text())
    for case, metrics in expected.items():
        for key, value in metrics.items():
            stored = payload["per_case"][case]["lesion"][key]
            assert stored is None if math.isnan(value) else stored == pytest.approx(value, abs=1e-12)
    dice_summary = payload["summary"]["lesion"]["dice"]
    assert dice_summary["n"] == 3 and dice_summary["n_nan"] == 0
    assert dice_summary["mean"] == pytest.approx(np.mean([m["dice"] for m in expected.values()]))
    assert payload["summary"]["lesion"]["hd95"]["n_nan"] == 1
    assert payload["summary"]["lesion"]["lesion_precision"]["n"] == 2
    assert result["summary"]["lesion"]["dice"]["mean"] == pytest.approx(dice_summary["mean"])

    with (out_dir / "metrics.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["case", *(f"lesion_{m}" for m in (*WMH_METRICS, "lesion_precision"))]
    assert [r[0] for r in rows[1:]] == ["c1", "c2", "c3", "mean", "sd"]
    assert float(rows[1][1]) == pytest.approx(expected["c1"]["dice"], abs=1e-12)
    assert rows[3][2] == "nan"


def test_evaluate_lesion_items_missing_prediction(tmp_path: Path) -> None:
    pred, ref = _wmh_case()
    label = _save(tmp_path / "c1_label.nii.gz", ref, (1.0, 1.0, 1.0))
    _save(tmp_path / "c1_seg.nii.gz", pred, (1.0, 1.0, 1.0))
    items = [{"case": "c1", "label": str(label)}, {"case": "c2", "label": str(label)}]
    with pytest.raises(FileNotFoundError, match="c2_seg.nii.gz"):
        evaluate_lesion_items(items, tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # default class name and postfix
    result = evaluate_lesion_items(items[:1], tmp_path, tmp_path / "out")
    assert list(result["per_case"]["c1"]) == ["WMH"]
    assert result["per_case"]["c1"]["WMH"] == evaluate_lesion_arrays(pred, ref, 1.0)
    assert (tmp_path / "out" / "metrics.json").is_file() and (tmp_path / "out" / "metrics.csv").is_file()


def test_evaluate_lesion_items_checks_images(tmp_path: Path) -> None:
    pred, ref = _wmh_case()
    label = _save(tmp_path / "c1_label.nii.gz", ref, (1.0, 1.0, 1.0))
    _save(tmp_path / "c1_seg.nii.gz", pred, (1.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="affine"):
        evaluate_lesion_items([{"case": "c1", "label": str(label)}], tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="duplicate"):
        evaluate_lesion_items([{"case": "c1", "label": str(label)}] * 2, tmp_path, tmp_path / "out")
