"""Tests of brainbundles.data.checks: every bad-input case is caught, named by file, and explained."""

from __future__ import annotations

import gzip
import logging
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbundles.data.checks import CaseList, check_case, resolve_item
from brainbundles.errors import InputError

SHAPE = (8, 8, 8)


def _vol(shape=SHAPE, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).uniform(1, 100, size=shape).astype(dtype)


def _label(shape=SHAPE, values=(0, 1, 2, 3), dtype=np.uint8):
    lab = np.zeros(shape, dtype=dtype)
    flat = lab.reshape(-1)
    flat[: len(values) * 10] = np.repeat(np.asarray(values, dtype=dtype), 10)
    return lab


def save(path: Path, data: np.ndarray, affine=None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return str(path)


def raises(item, channels, match_path, *fragments, **kwargs) -> str:
    """check_case must raise InputError whose message starts with ``match_path`` and holds every fragment."""
    with pytest.raises(InputError) as info:
        check_case(item, channels, **kwargs)
    msg = str(info.value)
    assert msg.startswith(f"{match_path}: "), msg
    for f in fragments:
        assert f.lower() in msg.lower(), f"{f!r} not in {msg!r}"
    return msg


# ------------------------------------------------------------------------------------------- good cases


def test_good_single_channel_passes(tmp_path):
    img = save(tmp_path / "t1.nii.gz", _vol())
    lab = save(tmp_path / "seg.nii.gz", _label())
    assert (
        check_case({"image": [img], "label": lab}, ["T1"], label_values={0, 1, 2, 3}, require_label=True)
        is None
    )
    check_case({"image": img}, ["T1"])  # a single path (not a list) is fine too


def test_good_multichannel_list_and_label_passes(tmp_path):
    aff = np.diag([0.9, 0.9, 3.0, 1.0])
    aff[:3, 3] = [-90.0, 120.0, -60.0]
    imgs = [save(tmp_path / f"c_{n}.nii.gz", _vol(seed=i), aff) for i, n in enumerate(["T1", "FLAIR"])]
    lab = save(tmp_path / "c_seg.nii.gz", _label(values=(0, 1)), aff)
    check_case({"image": imgs, "label": lab}, ["T1", "FLAIR"], label_values=[0, 1])


def test_good_4d_channels_file_and_trailing_singleton(tmp_path):
    four = save(tmp_path / "multi.nii.gz", _vol(SHAPE + (3,)))
    check_case({"image": [four]}, ["T1", "T2", "FLAIR"])
    check_case({"image": four}, ["T1", "T2", "FLAIR"])
    single = save(tmp_path / "single4d.nii.gz", _vol(SHAPE + (1,)))
    check_case({"image": [single]}, ["T1"])


def test_integer_dtypes_and_int_valued_float_label_pass(tmp_path):
    for dtype in (np.uint8, np.int16, np.float64):
        img = save(tmp_path / f"img_{np.dtype(dtype).name}.nii.gz", _vol(dtype=dtype))
        lab = save(tmp_path / f"lab_{np.dtype(dtype).name}.nii.gz", _label(dtype=dtype))
        check_case({"image": [img], "label": lab}, ["T1"], label_values={0, 1, 2, 3})


def test_relative_paths_with_base_dir(tmp_path, monkeypatch):
    save(tmp_path / "sub" / "t1.nii.gz", _vol())
    save(tmp_path / "sub" / "seg.nii.gz", _label())
    item = {"image": ["sub/t1.nii.gz"], "label": "sub/seg.nii.gz", "case": "a"}
    check_case(item, ["T1"], base_dir=tmp_path)
    monkeypatch.chdir(tmp_path / "sub")  # without base_dir: relative to the current directory
    check_case({"image": ["t1.nii.gz"]}, ["T1"])
    resolved = resolve_item(item, tmp_path)
    assert resolved["image"] == [str(tmp_path / "sub" / "t1.nii.gz")]
    assert resolved["label"] == str(tmp_path / "sub" / "seg.nii.gz")
    assert resolved["case"] == "a"
    # a relative path that does not exist where base_dir points is reported resolved
    raises({"image": ["sub/t1.nii.gz"]}, ["T1"], str(tmp_path / "elsewhere" / "sub" / "t1.nii.gz"), "not found",
           base_dir=tmp_path / "elsewhere")  # fmt: skip


def test_analyze_pair_accepted_by_hdr_and_img(tmp_path):
    nib.save(nib.AnalyzeImage(_vol(), np.eye(4)), str(tmp_path / "ana.hdr"))
    assert (tmp_path / "ana.img").is_file()
    check_case({"image": [str(tmp_path / "ana.hdr")]}, ["T1"])
    check_case({"image": [str(tmp_path / "ana.img")]}, ["T1"])


def test_affine_within_tolerance_passes_beyond_fails(tmp_path):
    a = save(tmp_path / "a.nii.gz", _vol())
    near = np.eye(4)
    near[0, 3] = 5e-4
    b = save(tmp_path / "b.nii.gz", _vol(seed=1), near)
    check_case({"image": [a, b]}, ["T1", "T2"])
    far = np.eye(4)
    far[0, 3] = 2e-3
    c = save(tmp_path / "c.nii.gz", _vol(seed=1), far)
    raises({"image": [a, c]}, ["T1", "T2"], c, "affine", a)


# -------------------------------------------------------------------------------------------- bad cases


def test_missing_file(tmp_path):
    good = save(tmp_path / "t1.nii.gz", _vol())
    missing = str(tmp_path / "nope.nii.gz")
    raises({"image": [missing]}, ["T1"], missing, "not found")
    raises({"image": [good, missing]}, ["T1", "T2"], missing, "not found")
    raises({"image": [good], "label": missing}, ["T1"], missing, "not found")


def test_missing_analyze_companion(tmp_path):
    nib.save(nib.AnalyzeImage(_vol(), np.eye(4)), str(tmp_path / "ana.hdr"))
    os.remove(tmp_path / "ana.img")
    raises({"image": [str(tmp_path / "ana.hdr")]}, ["T1"], str(tmp_path / "ana.hdr"), "ana.img")


def test_corrupt_gz_file(tmp_path):
    bad = tmp_path / "corrupt.nii.gz"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    raises({"image": [str(bad)]}, ["T1"], str(bad), "cannot be loaded")


def test_not_an_image(tmp_path):
    bad = tmp_path / "text.nii"
    bad.write_text("this is not a NIfTI file\n" * 20)
    raises({"image": [str(bad)]}, ["T1"], str(bad), "cannot be loaded")


def test_truncated_gz_file(tmp_path):
    good = save(tmp_path / "full.nii.gz", _vol((16, 16, 16)))
    raw = gzip.decompress(Path(good).read_bytes())
    bad = tmp_path / "truncated.nii.gz"
    bad.write_bytes(gzip.compress(raw[: len(raw) // 2]))  # valid header, half the voxel data
    raises({"image": [str(bad)]}, ["T1"], str(bad), "cannot be read", "truncated")


def test_bad_header_or_values_named_before_work(tmp_path, bad_header_scans):
    good = save(tmp_path / "good.nii.gz", _vol((20, 20, 20)))
    scans = bad_header_scans(tmp_path / "bad")
    assert len(scans) == 7
    for path, problem in scans.values():
        raises({"image": [str(path)]}, ["T1"], str(path), problem)
        # as the second channel it is named too
        raises({"image": [good, str(path)]}, ["T1", "FLAIR"], str(path), problem)


def test_huge_header_is_refused_without_reading_voxels(tmp_path, bad_header_scans):
    """The 2000^3 claim (16 GB) is refused from the header: the check allocates next to nothing."""
    import subprocess
    import sys

    path = bad_header_scans(tmp_path)["huge"][0]
    code = (
        "import resource, sys\n"
        "from brainbundles.data.checks import check_case\nfrom brainbundles.errors import InputError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    check_case({{'image': {str(path)!r}}}, ['T1'])\n"
        "except InputError as e:\n"
        "    print(e)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    message, grown_kb = proc.stdout.strip().splitlines()
    assert message.startswith(f"{path}: header describes 2000x2000x2000"), message
    assert int(grown_kb) < 50_000, f"the check grew the process by {int(grown_kb) / 1024:.0f} MB"


def test_truncated_uncompressed_file_found_from_its_size(tmp_path):
    good = save(tmp_path / "full.nii", _vol((16, 16, 16)))
    with open(good, "r+b") as f:
        f.truncate(352 + 16 * 16 * 8 * 4)  # half the voxel data
    raises({"image": [good]}, ["T1"], good, "but the file has", "truncated")


def test_same_scan_for_two_sequences(tmp_path):
    a = save(tmp_path / "a_T1.nii.gz", _vol())
    raises({"image": [a, a]}, ["T1", "T1c"], a, "same scan", "T1", "T1c")
    copy = tmp_path / "copy_T1c.nii.gz"
    copy.write_bytes(Path(a).read_bytes())
    raises({"image": [a, str(copy)]}, ["T1", "T1c"], str(copy), "same scan")
    other = save(tmp_path / "b_T1c.nii.gz", _vol(seed=1))
    check_case({"image": [a, other]}, ["T1", "T1c"])


def test_2d_image(tmp_path):
    flat = save(tmp_path / "flat.nii.gz", _vol((8, 8)))
    raises({"image": [flat]}, ["T1"], flat, "2D", "expected a 3D volume")
    slab = save(tmp_path / "slab.nii.gz", _vol((8, 8, 1)))
    raises({"image": [slab]}, ["T1"], slab, "not 3D", "2D slice")


def test_4d_where_single_channel_expected(tmp_path):
    four = save(tmp_path / "four.nii.gz", _vol(SHAPE + (2,)))
    raises({"image": [four]}, ["T1"], four, "4D", "expected a single 3D channel")
    t1 = save(tmp_path / "t1.nii.gz", _vol())
    raises({"image": [t1, four]}, ["T1", "FLAIR"], four, "4D", "FLAIR")


def test_wrong_channel_count(tmp_path):
    paths = [save(tmp_path / f"c{i}.nii.gz", _vol(seed=i)) for i in range(3)]
    msg = raises(
        {"image": paths}, ["T1", "FLAIR"], paths[0], "wrong number of channels", "expected 2", "found 3"
    )
    assert "T1, FLAIR" in msg
    raises({"image": paths[0]}, ["T1", "FLAIR"], paths[0], "expected 2 (T1, FLAIR)", "found 1")
    four = save(tmp_path / "four.nii.gz", _vol(SHAPE + (3,)))
    raises({"image": [four]}, ["T1", "FLAIR"], four, "expected 2 (T1, FLAIR)", "found 3")


def test_mismatched_shapes(tmp_path):
    a = save(tmp_path / "a_T1.nii.gz", _vol())
    b = save(tmp_path / "b_FLAIR.nii.gz", _vol((8, 8, 9)))
    raises({"image": [a, b]}, ["T1", "FLAIR"], b, "shape", "(8, 8, 9)", "(8, 8, 8)", a)


def test_mismatched_affines(tmp_path):
    a = save(tmp_path / "a_T1.nii.gz", _vol())
    b = save(tmp_path / "b_FLAIR.nii.gz", _vol(), np.diag([1.0, 1.0, 1.5, 1.0]))
    raises({"image": [a, b]}, ["T1", "FLAIR"], b, "affine", "differs", a)


def test_label_shape_and_affine_mismatch(tmp_path):
    img = save(tmp_path / "t1.nii.gz", _vol())
    lab = save(tmp_path / "seg_shape.nii.gz", _label((8, 8, 7)))
    raises({"image": [img], "label": lab}, ["T1"], lab, "label shape", "(8, 8, 7)", img)
    shifted = np.eye(4)
    shifted[2, 3] = 1.0
    lab2 = save(tmp_path / "seg_aff.nii.gz", _label(), shifted)
    raises({"image": [img], "label": lab2}, ["T1"], lab2, "label affine", "differs", img)


def test_label_value_outside_allowed(tmp_path):
    img = save(tmp_path / "t1.nii.gz", _vol())
    lab = save(tmp_path / "seg.nii.gz", _label(values=(0, 1, 2, 5)))
    msg = raises({"image": [img], "label": lab}, ["T1"], lab, "unexpected label values 5", "allowed: 0, 1, 2, 3",
                 label_values={0, 1, 2, 3})  # fmt: skip
    assert "values 5 (" in msg  # only the unexpected value is listed
    check_case({"image": [img], "label": lab}, ["T1"])  # no label_values: not checked


def test_label_non_integer(tmp_path):
    img = save(tmp_path / "t1.nii.gz", _vol())
    data = _label(dtype=np.float32)
    data[0, 0, 0] = 0.5
    lab = save(tmp_path / "seg.nii.gz", data)
    raises({"image": [img], "label": lab}, ["T1"], lab, "non-integer", "0.5")


def test_nan_voxel(tmp_path):
    data = _vol()
    data[1, 2, 3] = np.nan
    img = save(tmp_path / "nan.nii.gz", data)
    raises({"image": [img]}, ["T1"], img, "1 NaN voxel")


def test_inf_voxels(tmp_path):
    data = _vol()
    data[0, 0, 0] = np.inf
    data[0, 0, 1] = -np.inf
    img = save(tmp_path / "inf.nii.gz", data)
    raises({"image": [img]}, ["T1"], img, "2 Inf voxels")


def test_nan_in_second_channel_names_that_file(tmp_path):
    a = save(tmp_path / "a.nii.gz", _vol())
    data = _vol(seed=1)
    data[..., 0] = np.nan
    b = save(tmp_path / "b.nii.gz", data)
    raises({"image": [a, b]}, ["T1", "FLAIR"], b, f"{SHAPE[0] * SHAPE[1]} NaN voxels")


def test_all_zero_and_constant_image(tmp_path):
    zero = save(tmp_path / "zero.nii.gz", np.zeros(SHAPE, np.float32))
    raises({"image": [zero]}, ["T1"], zero, "all zero")
    const = save(tmp_path / "const.nii.gz", np.full(SHAPE, 7, np.int16))
    raises({"image": [const]}, ["T1"], const, "constant", "7")
    data = _vol(SHAPE + (2,))
    data[..., 1] = 0
    four = save(tmp_path / "four.nii.gz", data)
    raises({"image": [four]}, ["T1", "FLAIR"], four, "channel 1 (FLAIR)", "all zero")


def test_require_label(tmp_path):
    img = save(tmp_path / "t1.nii.gz", _vol())
    check_case({"image": [img]}, ["T1"])
    raises({"image": [img]}, ["T1"], img, "no label", require_label=True)


def test_check_is_fast_on_brats_sized_float_volume(tmp_path):
    shape = (240, 240, 155)
    x, y, z = np.meshgrid(*(np.linspace(0, 1, n, dtype=np.float32) for n in shape), indexing="ij")
    data = (x + y + z).astype(np.float32)
    img = save(tmp_path / "big.nii.gz", data)
    lab = save(tmp_path / "big_seg.nii.gz", (data * 1.3).astype(np.uint8))
    timings = []
    for _ in range(3):  # best of three: the machine may be shared
        start = time.perf_counter()
        check_case({"image": [img], "label": lab}, ["T1"], label_values={0, 1, 2, 3})
        timings.append(time.perf_counter() - start)
    assert min(timings) < 1.0, timings


# --------------------------------------------------------------------------------------------- CaseList


def test_caselist_keeps_good_reports_bad(tmp_path, caplog):
    good1 = {"image": ["g1.nii.gz"], "label": "g1_seg.nii.gz", "case": "g1"}
    good2 = {"image": ["g2.nii.gz"], "case": "g2"}
    save(tmp_path / "g1.nii.gz", _vol())
    save(tmp_path / "g1_seg.nii.gz", _label())
    save(tmp_path / "g2.nii.gz", _vol(seed=2))
    nan = _vol()
    nan[0, 0, 0] = np.nan
    save(tmp_path / "bad_nan.nii.gz", nan)
    bad_nan = {"image": ["bad_nan.nii.gz"], "case": "b1"}
    bad_missing = {"image": ["missing.nii.gz"], "case": "b2"}
    save(tmp_path / "b3_seg.nii.gz", _label(values=(0, 9)))
    save(tmp_path / "b3.nii.gz", _vol())
    bad_label = {"image": ["b3.nii.gz"], "label": "b3_seg.nii.gz", "case": "b3"}

    with caplog.at_level(logging.ERROR, logger="brainbundles"):
        cases = CaseList([good1, bad_nan, good2, bad_missing, bad_label], ["T1"], label_values={0, 1, 2, 3},
                         base_dir=tmp_path)  # fmt: skip
    assert [c["case"] for c in cases.valid] == ["g1", "g2"]
    assert cases.valid[0]["image"] == [str(tmp_path / "g1.nii.gz")]
    assert cases.valid[0]["label"] == str(tmp_path / "g1_seg.nii.gz")
    assert all(os.path.isabs(p) for c in cases.valid for p in c["image"])
    assert [item["case"] for item, _ in cases.errors] == ["b1", "b2", "b3"]
    assert "NaN" in cases.errors[0][1] and "not found" in cases.errors[1][1] and "9" in cases.errors[2][1]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for name in ("bad_nan.nii.gz", "missing.nii.gz", "b3_seg.nii.gz"):
        assert name in logged

    with pytest.raises(InputError) as info:
        cases.raise_if_invalid()
    msg = str(info.value)
    assert msg.startswith(str(tmp_path / "bad_nan.nii.gz") + ": ")
    for name, problem in [("bad_nan.nii.gz", "NaN"), ("missing.nii.gz", "not found"), ("b3_seg.nii.gz", "9")]:
        line = next(ln for ln in msg.splitlines() if name in ln)
        assert problem in line
    assert "3 of 5 input cases" in msg


def test_caselist_all_good_does_not_raise(tmp_path):
    save(tmp_path / "a.nii.gz", _vol())
    cases = CaseList([{"image": "a.nii.gz"}], ["T1"], base_dir=tmp_path, require_label=False)
    assert cases.errors == [] and len(cases.valid) == 1
    assert cases.valid[0]["image"] == str(tmp_path / "a.nii.gz")
    cases.raise_if_invalid()


def test_caselist_require_label(tmp_path):
    save(tmp_path / "a.nii.gz", _vol())
    cases = CaseList([{"image": "a.nii.gz"}], ["T1"], base_dir=tmp_path, require_label=True)
    assert cases.valid == [] and "no label" in cases.errors[0][1]
    with pytest.raises(InputError, match="no label"):
        cases.raise_if_invalid()


# -------------------------------------------------------------------------------------------- real data

REAL_T1 = [
    "tissue/voxelmorph_test_scan/t1_norm.nii.gz",
    "tissue/fast_pve_t1/bet.nii.gz",
    "tissue/mni152_2009a/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "ms/patient07/T1.nii.gz",
    "brats/BraTS19_2013_10_1/BraTS19_2013_10_1_t1.nii.gz",
]


@pytest.fixture
def real_data() -> Path:
    root = os.environ.get("BRAINBUNDLES_DATA")
    if not root:
        pytest.skip("BRAINBUNDLES_DATA is not set: real scans unavailable (see /work/shared/data/README.md)")
    return Path(root)


@pytest.mark.parametrize("rel", REAL_T1)
def test_real_t1_passes(real_data, rel):
    check_case({"image": [rel]}, ["T1"], base_dir=real_data)


def test_real_tissue_label_passes(real_data):
    item = {
        "image": ["tissue/voxelmorph_test_scan/t1_norm.nii.gz"],
        "label": "tissue/voxelmorph_test_scan/tissue3_from_aseg.nii.gz",
    }
    check_case(item, ["T1"], label_values={0, 1, 2, 3}, require_label=True, base_dir=real_data)


def test_real_brats_multichannel_and_old_labels(real_data):
    d = "brats/BraTS19_2013_10_1/BraTS19_2013_10_1_"
    item = {"image": [f"{d}{c}.nii.gz" for c in ("flair", "t1", "t1post", "t2")], "label": f"{d}seg.nii.gz"}
    check_case(item, ["FLAIR", "T1", "T1c", "T2"], label_values={0, 1, 2, 4}, base_dir=real_data)
    # BraTS 2019 labels (1/2/4) are caught when the 2023+ convention (1/2/3) is expected
    with pytest.raises(InputError, match=r"seg\.nii\.gz: unexpected label values 4 "):
        check_case(item, ["FLAIR", "T1", "T1c", "T2"], label_values={0, 1, 2, 3}, base_dir=real_data)


def test_real_aseg_is_not_a_tissue_label(real_data):
    item = {
        "image": ["tissue/voxelmorph_test_scan/t1_norm.nii.gz"],
        "label": "tissue/voxelmorph_test_scan/aseg.nii.gz",
    }
    with pytest.raises(InputError, match="aseg.nii.gz: unexpected label values"):
        check_case(item, ["T1"], label_values={0, 1, 2, 3}, base_dir=real_data)
