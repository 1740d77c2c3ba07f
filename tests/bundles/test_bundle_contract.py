"""What every bundle must do, one test per check, parametrised over the four bundles (ids: task names).

Configs parse and their references resolve; the metadata passes the model zoo's schema and the network
its in/out check; the MONAI workflows have their properties; the model zoo's own commands run from the
bundle's folder (``python -m monai.bundle run`` for training and inference, ``verify_net_in_out``,
``verify_metadata``); training writes checkpoints, resumes, runs in two processes (gloo) and refuses a
label outside the bundle's classes; evaluation reports the bundle's metrics in native space; inference
writes the scan's grid, with the uncertainty map and the CRF, and reports bad inputs while the batch goes
on; real scans keep their geometry.

What differs between bundles is in :data:`CONTRACT` (and the bad-input batches of :data:`BAD_BATCHES`);
how each bundle is made tiny, which phantoms it trains on, and the trained bundles themselves, come
from ``conftest.py`` (its ``BUNDLES`` table as the ``bundle_spec`` fixture; ``bundle_phantoms``,
``trained_bundle``, ``bundle_evaluation``: each built once per test run, also under pytest-xdist),
shared with the per-bundle test files, which hold what is specific to one bundle. A few checks of the runner that do not depend on the bundle (resume
after a kill, a failed two-process run, Nyúl landmarks) run for the tissue bundle only: they train, and
training every bundle for them would only cost time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainbundles.bundle.configs import parse_bundle
from brainbundles.bundle.verify import verify_configs, verify_metadata
from brainbundles.data.cases import inference_items
from brainbundles.data.phantom import write_phantom_dataset
from brainbundles.errors import InputError, TrainingProcessError
from brainbundles.paths import BUNDLE_NAMES, META_SCHEMA, config_files
from brainbundles.postprocessing import load_threshold
from brainbundles.transforms import SPATIAL_FEATURES
from brainbundles.workflows import copy_bundle, resolve_bundle, run_inference, run_training


@dataclass(frozen=True)
class Contract:
    """What one bundle promises."""

    #: the inference config's ``channels``, and the first input channels of the metadata's ``channel_def``
    channels: list[str]
    channel_def: list[str]
    #: the metadata's input and output channels
    in_channels: int
    out_channels: int
    #: ``verify_net_in_out`` overrides of ``network_def`` that make the network small
    net_in_out: dict
    #: the values a written label map may hold; the header of ``volumes.csv`` (its ``X_ml`` columns are
    #: the case record's ``volumes_ml``, its ``X_lesions`` columns the record's ``lesions``)
    labels: set[int]
    volumes_csv: str
    #: the evaluation's regions and the metrics each must have
    regions: set[str]
    metrics: set[str]
    #: a label value outside the bundle's classes (its training must refuse it)
    bad_label: int
    #: seed and voxel size of an LPS phantom on its own grid, for inference in native space
    lps_seed: int
    lps_spacing: tuple[float, float, float]
    #: the bundle tunes a lesion probability threshold at the end of training
    lesion: bool = False
    #: overrides of a resumed training (``None``: resume is not tested for this bundle)
    resume: dict | None = field(default_factory=dict)
    #: real scans (``$BRAINBUNDLES_DATA``): runs of ``(inputs, references)``, paths relative to the data folder;
    #: each reference is a case's scan whose grid its label map must take; with one reference the run makes
    #: one case
    real: list[tuple[list[str], list[str]]] = field(default_factory=list)
    #: the orientation and shape of each real run's references, and the case name of each run with one
    #: reference, where the test states them (``None``: not stated)
    real_axcodes: tuple[str, str, str] | None = None
    real_shape: tuple[int, int, int] | None = None
    real_case: str | None = None
    real_overrides: dict = field(default_factory=dict)


REAL_T1 = [
    "tissue/voxelmorph_test_scan/t1_norm.nii.gz",
    "tissue/fast_pve_t1/bet.nii.gz",
    "tissue/mni152_2009a/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "ms/patient07/T1.nii.gz",
    "ms/patient19/T1.nii.gz",
    "brats/BraTS19_2013_10_1/BraTS19_2013_10_1_t1.nii.gz",
]
BRATS_CASE = "brats/BraTS19_2013_10_1"
MS_PATIENT = "ms/patient07"
ROI_64 = {"inferer#roi_size": [64, 64, 64]}

CONTRACT: dict[str, Contract] = {
    "tissue": Contract(
        channels=["T1"],
        channel_def=["T1"],
        in_channels=1,
        out_channels=4,
        net_in_out={"features": [4, 8, 16, 32, 64]},
        labels={0, 1, 2, 3},
        volumes_csv="case,CSF_ml,GM_ml,WM_ml,total_ml",
        regions={"CSF", "GM", "WM"},
        metrics={"dice", "hd95", "avd"},
        bad_label=7,
        lps_seed=9,
        lps_spacing=(1.2, 1.0, 2.0),
        real=[(REAL_T1, REAL_T1)],
        real_overrides=ROI_64,
    ),
    "tumour": Contract(
        channels=["T1", "T1c", "T2", "FLAIR"],
        channel_def=["T1", "T1c", "T2", "FLAIR"],
        in_channels=4,
        out_channels=3,
        net_in_out={"init_filters": 8},
        labels={0, 1, 2, 3},  # the BraTS 2023 convention, the default
        volumes_csv="case,NETC_ml,SNFH_ml,ET_ml,total_ml",
        regions={"WT", "TC", "ET"},
        metrics={"dice", "hd95", "lesion_dice", "lesion_hd95"},
        bad_label=3,  # not a BraTS 2019 value, the phantoms' convention
        lps_seed=11,
        lps_spacing=(3.0, 2.5, 3.5),
        resume=None,
        real=[
            ([BRATS_CASE], [f"{BRATS_CASE}/BraTS19_2013_10_1_t1.nii.gz"]),
            (
                [
                    f"flair={BRATS_CASE}/BraTS19_2013_10_1_flair.nii.gz",
                    f"t1c={BRATS_CASE}/BraTS19_2013_10_1_t1post.nii.gz",
                ],
                [f"{BRATS_CASE}/BraTS19_2013_10_1_t1.nii.gz"],
            ),
        ],
        real_axcodes=("L", "P", "S"),
        real_shape=(240, 240, 155),
        real_case="BraTS19_2013_10_1",
    ),
    "wmh": Contract(
        channels=["FLAIR", "T1"],
        channel_def=["FLAIR", "T1"],
        in_channels=2 + len(SPATIAL_FEATURES),
        out_channels=2,
        net_in_out={"features": [4, 8, 16, 32]},
        labels={0, 1},
        volumes_csv="case,WMH_ml,total_ml,WMH_lesions",
        regions={"WMH"},
        metrics={"dice", "hd95", "avd", "lesion_recall", "lesion_f1", "vol_pred_ml", "lesions_pred"},
        bad_label=3,  # 2 is "other pathology", ignored in training
        lps_seed=9,
        lps_spacing=(1.2, 1.0, 2.0),
        lesion=True,
        real=[
            (
                [f"FLAIR={MS_PATIENT}/FLAIR.nii.gz", f"T1={MS_PATIENT}/T1.nii.gz"],
                [f"{MS_PATIENT}/FLAIR.nii.gz"],
            )
        ],
        real_axcodes=("L", "A", "S"),
        real_overrides=ROI_64,
    ),
    "ms": Contract(
        channels=["FLAIR", "T1", "T2", "PD", "T1Gd"],
        channel_def=["FLAIR", "T1", "T2", "PD", "T1-Gd"],
        in_channels=5,
        out_channels=2,
        net_in_out={"features": [4, 8, 16, 32]},
        labels={0, 1},
        volumes_csv="case,lesion_ml,total_ml,lesion_lesions",
        regions={"lesion"},
        metrics={
            "dice",
            "lesion_recall",
            "lesion_precision",
            "lesion_f1",
            "avd",
            "vol_pred_ml",
            "lesions_pred",
        },
        bad_label=2,
        lps_seed=9,
        lps_spacing=(1.2, 1.0, 2.0),
        lesion=True,
        resume={"tune_threshold": False},  # the stored threshold must then stay as it was
        real=[
            (
                [f"{s}={MS_PATIENT}/{f}.nii.gz" for s, f in pairs],
                [f"{MS_PATIENT}/FLAIR.nii.gz"],
            )
            for pairs in (
                (("FLAIR", "FLAIR"), ("T1", "T1")),
                (("FLAIR", "FLAIR"), ("T1", "T1"), ("T2", "T2"), ("T1Gd", "T1POST")),
            )
        ],
        real_axcodes=("L", "A", "S"),
        real_overrides=ROI_64,
    ),
}
assert set(CONTRACT) == set(BUNDLE_NAMES)

TASKS = list(CONTRACT)
LESION_TASKS = [t for t, c in CONTRACT.items() if c.lesion]
#: the runner's checks that do not depend on the bundle: run for one bundle
ONE = ["tissue"]


def _vol(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), path)
    return path


def _lps_case(task: str, folder: Path, **kwargs) -> dict:
    """One phantom case of ``task`` stored LPS and anisotropic on its own grid (``write_phantom_dataset``
    ``kwargs`` added): ``inputs`` (files as inference takes them: ``NAME=path`` for a multi-channel bundle)
    and the case's ``item`` from :func:`inference_items` (``case``, ``reference``)."""
    c = CONTRACT[task]
    data = write_phantom_dataset(
        task, folder, cases=1, seed=c.lps_seed, shape=(36, 44, 30), spacing=c.lps_spacing, orientation="LPS",
        folds=1, **kwargs,
    )  # fmt: skip
    item = json.loads((data / "datalist.json").read_text())["training"][0]
    files = [str(data / f) for f in item["image"]]
    names = item.get("channels", c.channels)  # the phantoms' files are in the bundle's channel order
    inputs = files if len(c.channels) == 1 else [f"{n}={f}" for n, f in zip(names, files, strict=True)]
    (case,) = inference_items(inputs, channels=c.channels)
    return {"inputs": inputs, "item": case}


def _check_outputs(out: Path, task: str, case: str, reference: str | Path) -> None:
    """What inference leaves for ``case``: the label map on the grid of ``reference`` (an LPS scan), voxel
    for voxel, with the bundle's label values; the case's volumes (and lesion counts); ``volumes.csv``;
    the overlay."""
    c = CONTRACT[task]
    seg, ref = nib.load(out / f"{case}_seg.nii.gz"), nib.load(reference)
    assert seg.shape == ref.shape
    assert np.array_equal(seg.affine, ref.affine)
    assert nib.aff2axcodes(seg.affine) == ("L", "P", "S")
    assert set(np.unique(np.asanyarray(seg.dataobj)).tolist()) <= c.labels
    columns = c.volumes_csv.split(",")[1:]
    record = json.loads((out / f"{case}_volumes.json").read_text())
    assert set(record["volumes_ml"]) == {k.removesuffix("_ml") for k in columns if k.endswith("_ml")}
    lesions = {k.removesuffix("_lesions") for k in columns if k.endswith("_lesions")}
    assert set(record.get("lesions", {})) == lesions
    assert (out / "volumes.csv").read_text().splitlines()[0] == c.volumes_csv
    assert (out / f"{case}_overlay.png").stat().st_size > 1000


# ------------------------------------------------------------------------------------------------ configs


@pytest.mark.parametrize("task", TASKS)
def test_configs_parse_and_references_resolve(task):
    bundle = resolve_bundle(task)
    refs = verify_configs(bundle)
    assert "network_def" in refs["inference"] and "validate#evaluator" in refs["training"]
    assert parse_bundle(bundle, "inference")["channels"] == CONTRACT[task].channels


@pytest.mark.parametrize("task", TASKS)
def test_metadata_channels(task):
    """The metadata's channels and classes (its schema and the network's shapes: the zoo's commands in
    :func:`test_zoo_verify_commands`)."""
    c, bundle = CONTRACT[task], resolve_bundle(task)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())["network_data_format"]
    image = meta["inputs"]["image"]
    assert image["num_channels"] == len(image["channel_def"]) == c.in_channels
    assert list(image["channel_def"].values())[: len(c.channel_def)] == c.channel_def
    assert meta["outputs"]["pred"]["num_channels"] == c.out_channels


@pytest.mark.parametrize("task", TASKS)
def test_bad_metadata_is_refused(task, tmp_path):
    bundle = copy_bundle(task, tmp_path / "b")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="network_data_format"):
        verify_metadata(bundle)


@pytest.mark.parametrize("workflow,wtype", [("training", "train"), ("inference", "infer")])
@pytest.mark.parametrize("task", TASKS)
def test_monai_workflow_properties(task, workflow, wtype, tmp_path, bundle_phantoms):
    from monai.bundle import ConfigWorkflow

    bundle, phantoms = resolve_bundle(task), bundle_phantoms(task)
    wf = ConfigWorkflow(
        config_file=config_files(bundle, workflow),
        meta_file=str(bundle / "configs" / "metadata.json"),
        workflow_type=wtype,
        bundle_root=str(bundle),
        dataset_dir=str(phantoms),
        data_list_file_path=str(phantoms / "datalist.json"),
        output_dir=str(tmp_path),
    )
    wf.initialize()
    assert wf.check_properties() in (None, [])


# ------------------------------------------------------------------------------ the model zoo's commands


@pytest.fixture(scope="session")
def zoo_bundle(_built_once) -> Callable[[str], Path]:
    """``zoo(task)``: a copy of the task's bundle as it ships (``copy_bundle``, no overrides) with weights
    in ``models/``: the bundle's own where it ships them (the tissue bundle), else its network's random
    initialisation (seed 0) saved as ``models/model.pt``."""
    from monai.bundle import ConfigParser

    from brainbundles.bundle.weights import find_weights

    def build(task: str, folder: Path) -> None:
        root = copy_bundle(task, folder)
        shipped = resolve_bundle(task) / "models"
        try:
            find_weights(shipped)
            shutil.copytree(shipped, root / "models", dirs_exist_ok=True)
        except FileNotFoundError:
            parser = ConfigParser()
            parser.read_config(str(root / "configs" / "inference.json"))
            with torch.random.fork_rng():  # the worker's random state stays as it was
                torch.manual_seed(0)
                net = parser.get_parsed_content("network_def")
            torch.save(net.state_dict(), root / "models" / "model.pt")

    return lambda task: _built_once(f"zoo-{task}", lambda folder: build(task, folder))


def _zoo(cmd: list[str], cwd: Path) -> str:
    """Run ``python -m monai.bundle CMD...`` in ``cwd``; fail with its output unless it exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *cmd], cwd=cwd, capture_output=True, text=True
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{cmd} in {cwd}: exit {proc.returncode}\n{output[-4000:]}"
    return output


@pytest.mark.parametrize("task", TASKS)
def test_zoo_inference_command_writes_the_scans_grid(task, zoo_bundle, tmp_path):
    """``python -m monai.bundle run --config_file configs/inference.json --bundle_root . --input_files [...]
    --output_dir OUT`` in the bundle's folder, on a phantom stored LPS, anisotropic and int16 on its own
    grid: the label map comes back on that grid, voxel for voxel, with the volumes, ``volumes.csv`` and the
    overlay."""
    bundle = zoo_bundle(task)
    case = _lps_case(task, tmp_path / "lps", dtype="int16")
    out = tmp_path / "out"
    _zoo(
        ["run", "--config_file", "configs/inference.json", "--bundle_root", ".",
         "--input_files", repr(case["inputs"]), "--output_dir", str(out)],
        cwd=bundle,
    )  # fmt: skip
    _check_outputs(out, task, case["item"]["case"], case["item"]["reference"])


@pytest.mark.parametrize("task", TASKS)
def test_zoo_verify_commands(task, zoo_bundle, tmp_path):
    """``verify_net_in_out`` (the bundle's network, made small with command-line overrides of ``network_def``)
    and ``verify_metadata`` against the package's copy of the schema, which is not downloaded again."""
    bundle = zoo_bundle(task)
    schema = Path(shutil.copy(META_SCHEMA, tmp_path / "schema.json"))
    small = [a for k, v in CONTRACT[task].net_in_out.items() for a in (f"--network_def#{k}", repr(v))]
    _zoo(
        ["verify_net_in_out", "network_def", "--meta_file", "configs/metadata.json",
         "--config_file", "configs/inference.json", *small],
        cwd=bundle,
    )  # fmt: skip
    output = _zoo(
        ["verify_metadata", "--meta_file", "configs/metadata.json", "--filepath", str(schema)], cwd=bundle
    )
    assert "skipped downloading" in output and "metadata is verified with no error" in output
    assert schema.read_bytes() == META_SCHEMA.read_bytes()


@pytest.mark.parametrize("task", TASKS)
def test_zoo_training_command_writes_checkpoints(task, trained_bundle, bundle_phantoms, bundle_spec):
    """The trained bundle of ``conftest.py`` was trained with ``python -m monai.bundle run training
    --config_file configs/train.json --bundle_root . --dataset_dir D --data_list_file_path D/datalist.json``
    (and the short run's settings) in its own folder: it wrote the best weights as a plain state dict, the
    last checkpoint with the optimiser and scheduler, and TensorBoard logs."""
    trained = trained_bundle(task)
    epochs = bundle_spec[task]["epochs"]
    record = json.loads((trained.parent / "zoo_training.json").read_text())
    assert record["returncode"] == 0 and record["cwd"] == str(trained)
    phantoms = bundle_phantoms(task)
    assert record["command"][1:13] == [
        "-m", "monai.bundle", "run", "training", "--config_file", "configs/train.json", "--bundle_root", ".",
        "--dataset_dir", str(phantoms), "--data_list_file_path", str(phantoms / "datalist.json"),
    ]  # fmt: skip
    assert record["command"][13:15] == ["--epochs", str(epochs)]
    models = trained / "models"
    assert (models / "model.pt").is_file() and (models / "last.pt").is_file()
    state = torch.load(models / "model.pt", weights_only=True)  # a plain state dict, no pickle
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    last = torch.load(models / "last.pt", weights_only=True)
    assert last["epoch"] == epochs and "optimizer" in last and "lr_scheduler" in last
    assert (trained / "eval" / "logs").is_dir()  # TensorBoard


# ------------------------------------------------------------------------------------------------ training


@pytest.mark.parametrize("task", [t for t, c in CONTRACT.items() if c.resume is not None])
def test_training_resumes(task, trained_bundle, bundle_phantoms, tmp_path, bundle_spec, train_fast):
    """One more epoch continues at the next epoch with the optimiser's and the scheduler's state."""
    trained, phantoms = trained_bundle(task), bundle_phantoms(task)
    epochs = bundle_spec[task]["epochs"]
    copy = shutil.copytree(trained, tmp_path / "resumed")
    threshold = copy / "models" / "threshold.json"
    stored = load_threshold(threshold) if CONTRACT[task].lesion else None
    run_training(
        copy, phantoms, phantoms / "datalist.json", epochs=epochs + 1, **CONTRACT[task].resume, **train_fast
    )
    resumed = torch.load(copy / "models" / "last.pt", weights_only=True)
    assert resumed["epoch"] == epochs + 1
    assert resumed["lr_scheduler"]["last_epoch"] == epochs + 1  # scheduler continued, not restarted
    if CONTRACT[task].resume.get("tune_threshold") is False:
        assert load_threshold(threshold) == stored


@pytest.mark.parametrize("task", LESION_TASKS)
def test_training_tunes_the_lesion_threshold_that_inference_uses(task, trained_bundle):
    trained = trained_bundle(task)
    stored = json.loads((trained / "models" / "threshold.json").read_text())
    assert 0 < stored["threshold"] < 1 and stored["cases"] == 2  # the two cases of validation fold 0
    assert len(stored["mean_dice"]) > 10
    assert (
        parse_bundle(trained, "inference").get_parsed_content("probability_threshold") == stored["threshold"]
    )
    untrained = parse_bundle(resolve_bundle(task), "inference")
    assert untrained.get_parsed_content("probability_threshold") == 0.5


@pytest.mark.parametrize("task", TASKS)
def test_training_refuses_label_outside_classes(task, bundle_phantoms, tmp_path, bundle_spec, train_fast):
    data = tmp_path / "data"
    shutil.copytree(bundle_phantoms(task), data)
    dl = json.loads((data / "datalist.json").read_text())
    label = data / dl["training"][0]["label"]
    img = nib.load(label)
    arr = np.asanyarray(img.dataobj).copy()
    arr[0, 0, 0] = CONTRACT[task].bad_label
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), label)
    bundle = copy_bundle(task, tmp_path / "bundle", bundle_spec[task]["tiny"])
    with pytest.raises(subprocess.CalledProcessError):
        run_training(bundle, data, data / "datalist.json", epochs=1, **train_fast)
    assert not (bundle / "models" / "last.pt").exists()


@pytest.mark.parametrize("task", TASKS)
def test_multi_process_training_gloo(
    task, bundle_phantoms, tmp_path, multi_process_training, bundle_spec, train_fast
):
    bundle = copy_bundle(task, tmp_path / "bundle", bundle_spec[task]["tiny"])
    multi_process_training(bundle, bundle_phantoms(task), **train_fast)
    models = bundle / "models"
    assert (models / "last.pt").is_file() and (models / "model.pt").is_file()
    if CONTRACT[task].lesion:
        assert load_threshold(models / "threshold.json") > 0


@pytest.mark.parametrize("task", ONE)
def test_failed_multi_process_training_reports_each_process_error(
    task, bundle_phantoms, tmp_path, bundle_spec, train_fast
):
    """Both processes fail (a datalist whose scan is missing: each one's input check refuses it)."""
    bundle = copy_bundle(task, tmp_path / "bundle", bundle_spec[task]["tiny"])
    datalist = tmp_path / "datalist.json"
    missing = tmp_path / "no_such_scan.nii.gz"
    items = [{"image": str(missing), "label": str(missing), "fold": f} for f in (0, 1)]
    datalist.write_text(json.dumps({"training": items}))
    with pytest.raises(TrainingProcessError) as err:
        run_training(bundle, bundle_phantoms(task), datalist, multi_gpu=True, nproc=2, epochs=1, **train_fast)
    message = str(err.value)
    assert "returned non-zero exit status" in message
    assert message.count("(last ") == 2 * 2  # stdout and stderr of both processes
    assert message.count("brainbundles.data.load_fold") >= 2  # each process's failing step


@pytest.mark.parametrize("task", ONE)
def test_training_killed_midrun_resumes(task, bundle_phantoms, tmp_path, bundle_spec):
    phantoms = bundle_phantoms(task)
    bundle = copy_bundle(task, tmp_path / "bundle", bundle_spec[task]["tiny"])
    files = config_files(bundle, "training")
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", json.dumps(files),
        "--meta_file", str(bundle / "configs" / "metadata.json"),
        "--bundle_root", str(bundle),
        "--dataset_dir", str(phantoms),
        "--data_list_file_path", str(phantoms / "datalist.json"),
        "--epochs", "30", "--num_workers", "0", "--num_samples", "1", "--val_interval", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = bundle / "models" / "last.pt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists(), "training wrote no checkpoint before being killed"
    done = torch.load(last, weights_only=True)["epoch"]
    assert 1 <= done < 30
    log = subprocess.run(
        cmd[:-8] + ["--epochs", str(done + 1), "--num_workers", "0", "--num_samples", "1", "--val_interval", "1",
                    "--logging_file", str(bundle / "configs" / "logging.conf")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f"epoch {done} of {done + 1} done" in log.stdout + log.stderr
    assert torch.load(last, weights_only=True)["epoch"] == done + 1


@pytest.mark.parametrize("task", ONE)
def test_nyul_landmarks_learned_in_training_and_used_at_inference(
    task, bundle_phantoms, tmp_path, bundle_spec, train_fast
):
    phantoms = bundle_phantoms(task)
    bundle = copy_bundle(task, tmp_path / "bundle", {**bundle_spec[task]["tiny"], "use_nyul": True})
    run_training(bundle, phantoms, phantoms / "datalist.json", epochs=1, **train_fast)
    landmarks = json.loads((bundle / "models" / "nyul_landmarks.json").read_text())
    assert len(landmarks["landmarks"]) == len(landmarks["percentiles"]) and np.all(
        np.diff(landmarks["landmarks"]) > 0
    )
    item = json.loads((phantoms / "datalist.json").read_text())["training"][0]
    image = phantoms / item["image"][0]
    out = run_inference(bundle, [image], output_dir=tmp_path / "out")
    assert nib.load(next(out.glob("*_seg.nii.gz"))).shape == nib.load(image).shape
    # inference needs the bundle's landmarks: without them it stops with an error naming the file
    (bundle / "models" / "nyul_landmarks.json").unlink()
    with pytest.raises(Exception, match="nyul_landmarks.json"):
        run_inference(bundle, [image], output_dir=tmp_path / "out2")


# ---------------------------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("task", TASKS)
def test_evaluate_writes_native_space_metrics(task, bundle_evaluation, bundle_phantoms):
    c, out = CONTRACT[task], bundle_evaluation(task)
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["summary"]) == c.regions
    for region in c.regions:
        assert c.metrics <= set(report["summary"][region]), region
    val = [
        i
        for i in json.loads((bundle_phantoms(task) / "datalist.json").read_text())["training"]
        if i["fold"] == 0
    ]
    assert set(report["per_case"]) == {i["case"] for i in val} and len(report["per_case"]) == len(val)
    assert (out / "metrics.csv").is_file()
    assert (out / "volumes.csv").read_text().splitlines()[0] == c.volumes_csv


# ----------------------------------------------------------------------------------------------- inference


@pytest.mark.parametrize("task", TASKS)
def test_uncertainty_map_and_crf_in_native_space(task, trained_bundle, tmp_path, check_uncertainty_and_crf):
    """With ``uncertainty`` and ``crf`` switched on, an LPS anisotropic scan gets its label map and its
    uncertainty map on its own grid (the CRF runs before ``Invertd``; for the tumour bundle's sigmoid
    regions the CRF and the uncertainty run per region)."""
    case = _lps_case(task, tmp_path / "lps")
    out = run_inference(
        trained_bundle(task), case["inputs"], output_dir=tmp_path / "out", uncertainty=True, crf=True
    )
    check_uncertainty_and_crf(out, case["item"]["reference"])


@dataclass
class BadBatch:
    """A batch of inputs for inference: one good case and bad ones."""

    inputs: list
    #: ``(where, problem)``: some line of the error names ``where`` and says ``problem``
    reported: list[tuple[str, str]]
    bad: int
    good_seg: str
    #: a command-line run of ``brainbundles infer`` on some of them (``-i``/``--input`` arguments) and what
    #: its stderr must say (``None``: not run)
    cli: tuple[list[str], list[str]] | None = None


def _bad_tissue(root: Path, phantoms: Path, bad_input_cases) -> BadBatch:
    """Single files: each a case."""
    good = phantoms / json.loads((phantoms / "datalist.json").read_text())["training"][0]["image"][0]
    bad = root / "bad"
    rng = np.random.default_rng(0)
    vol = rng.random((20, 20, 20)).astype(np.float32)
    cases = {
        "missing.nii.gz": None,
        "corrupt.nii.gz": b"not a nifti file",
        "flat.nii.gz": rng.random((20, 20)).astype(np.float32),
        "twochannels.nii.gz": rng.random((20, 20, 20, 2)).astype(np.float32),
        "nan.nii.gz": np.where(vol > 0.5, np.nan, vol).astype(np.float32),
        "inf.nii.gz": np.where(vol > 0.9, np.inf, vol).astype(np.float32),
        "zeros.nii.gz": np.zeros((20, 20, 20), np.float32),
    }
    bad.mkdir(parents=True)
    for name, content in cases.items():
        if isinstance(content, bytes):
            (bad / name).write_bytes(content)
        elif content is not None:
            _vol(bad / name, content)
    return BadBatch(
        inputs=[good, *(bad / name for name in cases)],
        reported=[(str(bad / name), "") for name in cases],
        bad=len(cases),
        good_seg=good.name.replace(".nii.gz", "_seg.nii.gz"),
        cli=(["-i", str(good), "-i", str(bad / "nan.nii.gz")], ["nan.nii.gz", "NaN"]),
    )


def _bad_tumour(root: Path, phantoms: Path, bad_input_cases) -> BadBatch:
    """A folder of case folders: the good case is written, every bad one is named with its problem."""
    item = json.loads((phantoms / "datalist.json").read_text())["testing"][0]
    shutil.copytree(phantoms / Path(item["image"][0]).parent, root / "good")
    rng = np.random.default_rng(0)
    vol = rng.random((20, 20, 20)).astype(np.float32)
    bad = {  # case -> (file -> content), plus the text its error must contain
        "missing": ({"missing_flair.nii.gz": None}, "file not found"),
        "corrupt": ({"corrupt_flair.nii.gz": b"not a nifti"}, "cannot be loaded"),
        "flat": ({"flat_flair.nii.gz": rng.random((20, 20)).astype(np.float32)}, "3D"),
        "nan": ({"nan_flair.nii.gz": np.where(vol > 0.5, np.nan, vol).astype(np.float32)}, "NaN"),
        "inf": ({"inf_flair.nii.gz": np.where(vol > 0.9, np.inf, vol).astype(np.float32)}, "Inf"),
        "zeros": ({"zeros_flair.nii.gz": np.zeros((20, 20, 20), np.float32)}, "all zero"),
        "shape": ({"shape_flair.nii.gz": vol, "shape_t1.nii.gz": vol[:10]}, "differs from shape"),
        "twice": ({"twice_flair.nii.gz": vol, "twice_t2f.nii.gz": vol}, "given twice"),
        "noseq": ({"noseq_seg.nii.gz": np.zeros((20, 20, 20), np.uint8)}, "no sequence given"),
    }
    for case, (files, _) in bad.items():
        (root / case).mkdir(parents=True)
        for name, content in files.items():
            p = root / case / name
            if isinstance(content, bytes):
                p.write_bytes(content)
            elif content is not None:
                _vol(p, content)
            else:  # a dangling link: listed in the folder, but no file behind it
                p.symlink_to(root / "does_not_exist.nii.gz")
    return BadBatch(
        inputs=[root],
        reported=[(str(root / case), problem) for case, (_, problem) in bad.items()],
        bad=len(bad),
        good_seg="good_seg.nii.gz",
        cli=(["--input", str(root / "twice")], ["given twice"]),
    )


def _bad_lesion(task: str) -> Callable[[Path, Path, object], BadBatch]:
    """FLAIR and T1 case folders: the shared bad cases (``bad_input_cases``) and one of the bundle's own
    (WMH: no T1, which it needs; MS: a T1 on another grid than the FLAIR)."""

    def make(root: Path, phantoms: Path, bad_input_cases) -> BadBatch:
        item = json.loads((phantoms / "datalist.json").read_text())["training"][0]
        good = root / "good"
        good.mkdir(parents=True)
        for name, path in zip(CONTRACT[task].channels, item["image"][:2], strict=False):
            shutil.copy(phantoms / path, good / f"good_{name}.nii.gz")
        folders = bad_input_cases(root / "bad")
        vol = np.random.default_rng(0).random((20, 20, 20)).astype(np.float32)
        if task == "wmh":
            own = root / "bad" / "noT1"
            _vol(own / "noT1_FLAIR.nii.gz", vol)
            reported = [("noT1", "missing sequence T1")]
        else:
            own = root / "bad" / "grids"
            _vol(own / "grids_FLAIR.nii.gz", vol)
            _vol(own / "grids_T1.nii.gz", vol[:18])
            reported = [("grids_T1.nii.gz", "")]
        return BadBatch(
            inputs=[good, *folders, own],
            reported=[(f"{n}_FLAIR.nii.gz", "") for n in ("nan", "zeros", "flat", "fourd")]
            + [("corrupt_T1.nii.gz", "")]
            + reported,
            bad=len(folders) + 1,
            good_seg="good_seg.nii.gz",
        )

    return make


BAD_BATCHES = {
    "tissue": _bad_tissue,
    "tumour": _bad_tumour,
    "wmh": _bad_lesion("wmh"),
    "ms": _bad_lesion("ms"),
}
assert set(BAD_BATCHES) == set(CONTRACT)


@pytest.mark.parametrize("task", TASKS)
def test_bad_inputs_are_reported_and_batch_goes_on(
    task, trained_bundle, bundle_phantoms, tmp_path, bad_input_cases
):
    trained = trained_bundle(task)
    batch = BAD_BATCHES[task](tmp_path / "in", bundle_phantoms(task), bad_input_cases)
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        run_inference(trained, batch.inputs, output_dir=out)
    msg = str(err.value)
    for where, problem in batch.reported:
        assert any(where in line and problem in line for line in msg.splitlines()), (
            f"{where}: {problem or 'a problem'} not reported in:\n{msg}"
        )
    assert f"{batch.bad} of {batch.bad + 1} input cases failed" in msg
    written = sorted(p.name for p in out.iterdir())
    assert [w for w in written if w.endswith("_seg.nii.gz")] == [batch.good_seg]
    assert not [w for w in written if w.startswith(".")], "temporary files left behind"

    if batch.cli:  # the command line reports the bad files and exits non-zero
        args, says = batch.cli
        proc = subprocess.run(
            [sys.executable, "-m", "brainbundles.cli", "infer", str(trained), *args, "--output", str(tmp_path / "cli")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode != 0
        for text in says:
            assert text in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("task", TASKS)
def test_real_scans_keep_their_geometry(task, trained_bundle, tmp_path):
    root = os.environ.get("BRAINBUNDLES_DATA")
    if not root:
        pytest.skip("BRAINBUNDLES_DATA is not set: no real scans to read")
    c, trained = CONTRACT[task], trained_bundle(task)

    def data(p: str) -> str:
        name, eq, path = p.rpartition("=")
        return f"{name}{eq}{Path(root) / path}"

    for run, (inputs, references) in enumerate(c.real):
        out = run_inference(
            trained, [data(p) for p in inputs], output_dir=tmp_path / f"real{run}", **c.real_overrides
        )
        for r in references:
            ref_path = Path(root) / r
            if len(references) == 1:
                segs = list(out.glob("*_seg.nii.gz"))
                if c.real_case:
                    assert segs == [out / f"{c.real_case}_seg.nii.gz"], segs
            else:  # each file its own case: same file names get their folder as prefix
                stem = ref_path.name.replace(".nii.gz", "_seg.nii.gz")
                segs = [out / n for n in (stem, f"{ref_path.parent.name}_{stem}") if (out / n).is_file()]
            assert len(segs) == 1, (r, segs)
            seg, ref = nib.load(segs[0]), nib.load(ref_path)
            assert seg.shape == ref.shape, r
            assert c.real_shape is None or ref.shape == c.real_shape, r
            assert np.array_equal(seg.affine, ref.affine), r
            assert nib.aff2axcodes(seg.affine) == (c.real_axcodes or nib.aff2axcodes(ref.affine)), r
