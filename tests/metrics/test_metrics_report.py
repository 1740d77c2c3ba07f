"""Checks of per-case evaluation, summaries and report files (brainbundles.metrics.report)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbundles.metrics import (
    METRICS,
    avd,
    dice,
    evaluate_case,
    evaluate_files,
    evaluate_folder,
    hd95,
    summarize,
    volume_ml,
    write_report,
)
from brainbundles.metrics import report as report_module

SPACING = (2.0, 1.0, 1.5)
LABELS = {"CSF": 1, "GM": 2, "WM": 3}


def _label_maps() -> tuple[np.ndarray, np.ndarray]:
    """Reference: three 10^3 cubes; prediction: label 1 shifted by 3 voxels on axis 0, label 3 missing."""
    ref = np.zeros((40, 16, 16), dtype=np.int16)
    ref[2:12, 3:13, 3:13] = 1
    ref[14:24, 3:13, 3:13] = 2
    ref[27:37, 3:13, 3:13] = 3
    pred = np.zeros_like(ref)
    pred[5:15, 3:13, 3:13] = 1  # overlaps 7/10 of the CSF cube; GM then overwrites pred slice 14
    pred[14:24, 3:13, 3:13] = 2  # exact
    return pred, ref


def test_evaluate_case_hand_computed_values() -> None:
    pred, ref = _label_maps()
    result = evaluate_case(pred, ref, SPACING, LABELS)
    assert list(result) == ["CSF", "GM", "WM"]
    for metrics in result.values():
        assert tuple(metrics) == METRICS
    voxel_ml = 2.0 * 1.0 * 1.5 / 1000
    # CSF: pred = x in [5, 14) (9 slices, slice 14 is GM), ref = x in [2, 12): overlap 7 slices of 100 voxels.
    csf = result["CSF"]
    assert csf["dice"] == pytest.approx(2 * 700 / (900 + 1000))
    assert csf["avd"] == pytest.approx(10.0)
    assert csf["vol_pred_ml"] == pytest.approx(900 * voxel_ml)
    assert csf["vol_ref_ml"] == pytest.approx(1000 * voxel_ml)
    # the far faces are 3 voxels (6 mm) and 2 voxels (4 mm) from the other surface
    assert csf["hd95"] == pytest.approx(6.0)
    gm = result["GM"]
    assert (gm["dice"], gm["hd95"], gm["avd"]) == (1.0, 0.0, 0.0)
    wm = result["WM"]
    assert wm["dice"] == 0.0
    assert math.isnan(wm["hd95"])
    assert wm["avd"] == pytest.approx(100.0)
    assert wm["vol_pred_ml"] == 0.0


def test_evaluate_case_matches_metric_functions_and_label_unions() -> None:
    rng = np.random.default_rng(3)
    ref = rng.choice([0, 1, 2, 4], size=(12, 10, 8), p=[0.4, 0.2, 0.2, 0.2])
    pred = np.where(rng.random(ref.shape) < 0.7, ref, rng.choice([0, 1, 2, 4], size=ref.shape))
    labels = {"WT": [1, 2, 4], "TC": [1, 4], "ET": 4, "absent": [7]}
    result = evaluate_case(pred, ref, SPACING, labels)
    for name, labs in [("WT", [1, 2, 4]), ("TC", [1, 4]), ("ET", [4])]:
        p, r = np.isin(pred, labs), np.isin(ref, labs)
        assert result[name] == {
            "dice": dice(p, r),
            "hd95": hd95(p, r, SPACING),
            "avd": avd(p, r),
            "vol_pred_ml": volume_ml(p, SPACING),
            "vol_ref_ml": volume_ml(r, SPACING),
        }
    assert result["WT"]["vol_ref_ml"] == pytest.approx(np.count_nonzero(ref) * 3.0 / 1000)
    # a class absent from both maps: perfect agreement by convention
    assert result["absent"] == {"dice": 1.0, "hd95": 0.0, "avd": 0.0, "vol_pred_ml": 0.0, "vol_ref_ml": 0.0}


def test_evaluate_case_hd95_method_is_passed_through() -> None:
    ref = np.zeros((12, 12, 12), dtype=np.uint8)
    ref[2, 1:11, 1:11] = 1
    pred = ref.copy()
    pred[8, 2:4, 3:8] = 1
    assert evaluate_case(pred, ref, (2, 1, 1), {"L": 1})["L"]["hd95"] == pytest.approx(12.0)
    assert evaluate_case(pred, ref, (2, 1, 1), {"L": 1}, hd95_method="pooled")["L"]["hd95"] == pytest.approx(
        0.0
    )


@pytest.mark.parametrize("labels", [{}, {"A": []}, {"A": 1.5}, {"A": [1, "2"]}, {"A": True}, {"": 1}])
def test_evaluate_case_rejects_bad_labels(labels: dict) -> None:
    pred, ref = _label_maps()
    with pytest.raises(ValueError):
        evaluate_case(pred, ref, SPACING, labels)


def test_evaluate_case_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="same shape"):
        evaluate_case(np.zeros((3, 3, 3)), np.zeros((3, 3, 2)), (1, 1, 1), {"A": 1})


# ---------------------------------------------------------------- summaries


def _per_case() -> dict[str, dict[str, dict[str, float]]]:
    nan = float("nan")
    return {
        "sub-01": {"CSF": {"dice": 0.8, "hd95": 2.0}, "GM": {"dice": 0.9, "hd95": nan}},
        "sub-02": {"CSF": {"dice": 0.6, "hd95": 4.5}, "GM": {"dice": 0.7, "hd95": 1.0}},
        "sub-03": {"CSF": {"dice": 0.75, "hd95": nan}, "GM": {"dice": 0.95, "hd95": nan}},
    }


def test_summarize_against_numpy() -> None:
    per_case = _per_case()
    summary = summarize(per_case)
    for cls in ("CSF", "GM"):
        for metric in ("dice", "hd95"):
            values = np.array([per_case[c][cls][metric] for c in per_case])
            finite = values[~np.isnan(values)]
            stats = summary[cls][metric]
            assert stats["n"] == finite.size
            assert stats["n_nan"] == np.isnan(values).sum()
            assert stats["mean"] == pytest.approx(np.mean(finite))
            expected_sd = np.std(finite, ddof=1) if finite.size > 1 else 0.0
            assert stats["sd"] == pytest.approx(expected_sd)
    assert summary["CSF"]["dice"]["sd"] == pytest.approx(np.std([0.8, 0.6, 0.75], ddof=1))
    assert summary["GM"]["hd95"] == {"mean": 1.0, "sd": 0.0, "n": 1, "n_nan": 2}


def test_summarize_all_nan_and_random_values() -> None:
    summary = summarize({"a": {"X": {"m": float("nan")}}, "b": {"X": {"m": float("nan")}}})
    stats = summary["X"]["m"]
    assert (stats["n"], stats["n_nan"]) == (0, 2)
    assert math.isnan(stats["mean"]) and math.isnan(stats["sd"])

    rng = np.random.default_rng(0)
    values = rng.normal(5, 2, size=25)
    values[[3, 7, 11]] = np.nan
    summary = summarize({f"c{i}": {"X": {"m": float(v)}} for i, v in enumerate(values)})["X"]["m"]
    assert summary["mean"] == pytest.approx(np.nanmean(values))
    assert summary["sd"] == pytest.approx(np.nanstd(values, ddof=1))
    assert (summary["n"], summary["n_nan"]) == (22, 3)


def test_summarize_rejects_inconsistent_cases() -> None:
    with pytest.raises(ValueError, match="sub-02"):
        summarize({"sub-01": {"A": {"dice": 1.0}}, "sub-02": {"B": {"dice": 1.0}}})


def test_summarize_empty() -> None:
    assert summarize({}) == {}


# ---------------------------------------------------------------- report files


def _strict_json(path: Path) -> dict:
    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


def test_write_report_round_trip(tmp_path: Path) -> None:
    per_case = _per_case()
    out_dir = tmp_path / "reports" / "run1"  # created on demand
    json_path, csv_path = write_report(per_case, out_dir)
    assert (json_path, csv_path) == (out_dir / "metrics.json", out_dir / "metrics.csv")

    data = _strict_json(json_path)
    assert set(data) == {"per_case", "summary"}
    assert data["per_case"]["sub-02"]["CSF"] == {"dice": 0.6, "hd95": 4.5}
    assert data["per_case"]["sub-01"]["GM"]["hd95"] is None  # NaN -> null
    assert data["summary"]["GM"]["hd95"] == {"mean": 1.0, "sd": 0.0, "n": 1, "n_nan": 2}
    assert data["summary"]["CSF"]["dice"]["mean"] == pytest.approx((0.8 + 0.6 + 0.75) / 3)

    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["case", "CSF_dice", "CSF_hd95", "GM_dice", "GM_hd95"]
        rows = list(reader)
    assert [r["case"] for r in rows] == ["sub-01", "sub-02", "sub-03", "mean", "sd"]
    by_case = {r["case"]: r for r in rows}
    for case_id, classes in per_case.items():
        for cls, metrics in classes.items():
            for metric, value in metrics.items():
                parsed = float(by_case[case_id][f"{cls}_{metric}"])
                assert (math.isnan(parsed) and math.isnan(value)) or parsed == value
    summary = summarize(per_case)
    for stat in ("mean", "sd"):
        for cls, metrics in summary.items():
            for metric, stats in metrics.items():
                assert float(by_case[stat][f"{cls}_{metric}"]) == pytest.approx(stats[stat])
    assert float(by_case["sd"]["CSF_dice"]) == pytest.approx(np.std([0.8, 0.6, 0.75], ddof=1))
    assert sorted(p.name for p in out_dir.iterdir()) == ["metrics.csv", "metrics.json"]  # no temp files


def test_write_report_prefix_and_overwrite(tmp_path: Path) -> None:
    write_report({"a": {"X": {"dice": 0.1}}}, tmp_path, prefix="val")
    json_path, csv_path = write_report({"b": {"X": {"dice": 0.2}}}, tmp_path, prefix="val")
    assert json_path.name == "val.json" and csv_path.name == "val.csv"
    assert list(_strict_json(json_path)["per_case"]) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val.csv", "val.json"]


def test_write_report_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    json_path, _ = write_report({"a": {"X": {"dice": 0.1}}}, tmp_path)
    before = json_path.read_text()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(report_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_report({"b": {"X": {"dice": 0.2}}}, tmp_path)
    assert json_path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "metrics.json"]


def test_write_report_rejects_reserved_case_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        write_report({"mean": {"X": {"dice": 0.1}}}, tmp_path)


# ---------------------------------------------------------------- NIfTI files


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def test_evaluate_files_uses_header_spacing(tmp_path: Path) -> None:
    pred, ref = _label_maps()
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-40.0, 12.5, 3.0]
    pred_path = _save(tmp_path / "pred.nii.gz", pred, affine)
    ref_path = _save(tmp_path / "ref.nii.gz", ref, affine)
    # WM HD95 is NaN (class missing from the prediction): compare NaN-safely
    expected = _nan_safe(evaluate_case(pred, ref, SPACING, LABELS))
    assert _nan_safe(evaluate_files(pred_path, ref_path, LABELS)) == expected
    # float-typed files holding integer labels are accepted
    float_path = _save(tmp_path / "pred_float.nii", pred.astype(np.float32), affine)
    result = evaluate_files(float_path, ref_path, LABELS)
    assert result["CSF"]["hd95"] == pytest.approx(6.0)
    assert result["CSF"]["vol_ref_ml"] == pytest.approx(1000 * 3.0 / 1000)


def test_evaluate_files_reads_maps_stored_4d_with_a_trailing_axis_of_one(tmp_path: Path) -> None:
    """IBSR18 stores its 3D label maps as 4D (X, Y, Z, 1), whose header zooms have a fourth entry 0."""
    pred, ref = _label_maps()
    affine = np.diag([*SPACING, 1.0])
    expected = _nan_safe(evaluate_case(pred, ref, SPACING, LABELS))
    ref4 = _save(tmp_path / "ref4.nii.gz", ref[..., None], affine)
    pred4 = _save(tmp_path / "pred4.nii.gz", pred[..., None], affine)
    pred3 = _save(tmp_path / "pred3.nii.gz", pred, affine)
    assert _nan_safe(evaluate_files(pred4, ref4, LABELS)) == expected
    assert _nan_safe(evaluate_files(pred3, ref4, LABELS)) == expected  # a 3D prediction of a 4D scan
    two = _save(tmp_path / "two.nii.gz", np.stack([ref, ref], -1), affine)
    with pytest.raises(ValueError, match="shape mismatch"):
        evaluate_files(pred4, two, LABELS)


def _nan_safe(result: dict) -> dict:
    """NaN != NaN: replace NaN with a sentinel so dicts compare."""
    return {
        c: {m: ("nan" if isinstance(v, float) and math.isnan(v) else v) for m, v in ms.items()}
        for c, ms in result.items()
    }


def test_evaluate_files_shape_mismatch_names_both_files(tmp_path: Path) -> None:
    affine = np.eye(4)
    pred_path = _save(tmp_path / "case7_pred.nii.gz", np.zeros((4, 5, 6), np.uint8), affine)
    ref_path = _save(tmp_path / "case7_ref.nii.gz", np.zeros((4, 5, 7), np.uint8), affine)
    with pytest.raises(ValueError, match="shape") as info:
        evaluate_files(pred_path, ref_path, {"A": 1})
    message = str(info.value)
    assert str(pred_path) in message and str(ref_path) in message
    assert "(4, 5, 6)" in message and "(4, 5, 7)" in message


def test_evaluate_files_affine_mismatch_names_both_files(tmp_path: Path) -> None:
    data = np.zeros((4, 5, 6), np.uint8)
    data[1:3, 1:3, 1:3] = 1
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    shifted = affine.copy()
    shifted[0, 3] = 0.5
    pred_path = _save(tmp_path / "case8_pred.nii.gz", data, affine)
    ref_path = _save(tmp_path / "case8_ref.nii.gz", data, shifted)
    with pytest.raises(ValueError, match="affine") as info:
        evaluate_files(pred_path, ref_path, {"A": 1})
    assert str(pred_path) in str(info.value) and str(ref_path) in str(info.value)

    # a difference below the 1e-4 tolerance is accepted
    nearly = affine.copy()
    nearly[0, 3] = 5e-5
    ok_path = _save(tmp_path / "case8_ok.nii.gz", data, nearly)
    assert evaluate_files(pred_path, ok_path, {"A": 1})["A"]["dice"] == 1.0


def test_evaluate_files_rejects_non_integer_labels(tmp_path: Path) -> None:
    affine = np.eye(4)
    probs = np.full((3, 3, 3), 0.4, dtype=np.float32)
    pred_path = _save(tmp_path / "probs.nii.gz", probs, affine)
    ref_path = _save(tmp_path / "ref.nii.gz", np.zeros((3, 3, 3), np.uint8), affine)
    with pytest.raises(ValueError, match="probs.nii.gz"):
        evaluate_files(pred_path, ref_path, {"A": 1})


def test_evaluate_folder(tmp_path: Path) -> None:
    pred, ref = _label_maps()
    affine = np.diag([*SPACING, 1.0])
    pairs = []
    for case_id, p in [("sub-01", pred), ("sub-02", ref)]:
        pairs.append(
            (
                case_id,
                _save(tmp_path / f"{case_id}_pred.nii.gz", p, affine),
                _save(tmp_path / f"{case_id}_ref.nii.gz", ref, affine),
            )
        )
    out_dir = tmp_path / "out"
    result = evaluate_folder(pairs, LABELS, out_dir)
    assert set(result) == {"per_case", "summary"}
    assert list(result["per_case"]) == ["sub-01", "sub-02"]
    assert result["per_case"]["sub-02"]["WM"]["dice"] == 1.0
    wm_hd = result["summary"]["WM"]["hd95"]
    assert (wm_hd["n"], wm_hd["n_nan"], wm_hd["mean"], wm_hd["sd"]) == (1, 1, 0.0, 0.0)
    csf_dice = result["summary"]["CSF"]["dice"]
    assert csf_dice["mean"] == pytest.approx((1400 / 1900 + 1.0) / 2)
    data = _strict_json(out_dir / "metrics.json")
    assert data["summary"]["CSF"]["dice"]["mean"] == pytest.approx(csf_dice["mean"])
    with (out_dir / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case"] for r in rows] == ["sub-01", "sub-02", "mean", "sd"]
    assert "WM_vol_pred_ml" in rows[0]
    assert float(rows[0]["CSF_dice"]) == pytest.approx(1400 / 1900)


def test_evaluate_folder_rejects_duplicate_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        evaluate_folder([("a", "p1", "r1"), ("a", "p2", "r2")], LABELS, tmp_path)
    assert not any(os.scandir(tmp_path))
