"""The four bundles' test data, built once per test run and shared by the contract test
(``test_bundle_contract.py``) and the per-bundle test files.

:data:`BUNDLES` says, per task, how a tiny version of the bundle is made and trained and which phantoms it
trains on. The session fixtures :func:`bundle_phantoms`, :func:`trained_bundle` and
:func:`bundle_evaluation` build each bundle's data once for the whole run, under pytest-xdist too: the
workers share one folder and a lock per item, so a bundle is trained once, by whichever worker needs it
first, while the other waits for it or trains another bundle. The tests must treat what these give as
read-only (copy it to change it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

#: the runner's settings for a training of seconds (command-line overrides)
TRAIN_FAST = {"num_workers": 0, "num_samples": 1, "batch_size": 2, "val_interval": 1}

_UNET_TINY = {"network_def#features": [4, 8, 16], "network_def#dropout": 0.0, "patch_size": [32, 32, 32]}
_PHANTOMS = {"cases": 4, "test_cases": 2, "shape": (40, 48, 40), "folds": 2}

#: task -> ``tiny``: overrides written into the copy of the bundle (network and patch size, which inference
#: shares); ``phantoms``: ``write_phantom_dataset`` arguments; ``epochs``: how long :func:`trained_bundle`
#: trains
BUNDLES: dict[str, dict] = {
    "tissue": {
        "tiny": _UNET_TINY,
        "phantoms": {**_PHANTOMS, "seed": 3, "spacing": (1.5, 1.5, 1.5)},
        "epochs": 2,
    },
    "tumour": {
        "tiny": {
            "network_def#init_filters": 8,
            "network_def#dropout": 0.0,
            "patch_size": [32, 32, 32],
            "spacing": [2.0, 2.0, 2.0],
        },
        "phantoms": {**_PHANTOMS, "seed": 5, "spacing": (3.0, 3.0, 3.0)},
        "epochs": 1,
    },
    "wmh": {
        "tiny": _UNET_TINY,
        "phantoms": {**_PHANTOMS, "seed": 3, "spacing": (1.5, 1.5, 1.5)},
        "epochs": 2,
    },
    "ms": {
        "tiny": _UNET_TINY,
        "phantoms": {**_PHANTOMS, "seed": 5, "spacing": (1.5, 1.5, 1.5)},
        "epochs": 2,
    },
}


def zoo_training_command(dataset_dir: Path, epochs: int) -> list[str]:
    """The model zoo's training command, to run in the bundle's folder, with the settings of a short run."""
    overrides = {"epochs": epochs, **TRAIN_FAST}
    return [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", "configs/train.json",
        "--bundle_root", ".",
        "--dataset_dir", str(dataset_dir),
        "--data_list_file_path", str(dataset_dir / "datalist.json"),
        *[a for k, v in overrides.items() for a in (f"--{k}", repr(v))],
    ]  # fmt: skip


@pytest.fixture(scope="session")
def bundle_spec() -> dict[str, dict]:
    """:data:`BUNDLES`: task -> ``tiny``, ``phantoms``, ``epochs``."""
    return BUNDLES


@pytest.fixture(scope="session")
def train_fast() -> dict:
    """:data:`TRAIN_FAST`: the runner's settings for a training of seconds."""
    return dict(TRAIN_FAST)


@pytest.fixture(scope="session")
def _built_once(tmp_path_factory) -> Callable[[str, Callable[[Path], object]], Path]:
    """``once(name, build)``: the folder ``<shared>/<name>``, which ``build(folder)`` fills the first time
    anyone in this run asks for it. Under pytest-xdist the workers share ``<shared>`` (the parent of their
    own base folders) and take a file lock per name; a finished build is marked by ``<name>.done``, so a
    failed one is tried again by the next test that needs it."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "bundles-shared"
    shared.mkdir(parents=True, exist_ok=True)
    known: dict[str, Path] = {}

    def once(name: str, build: Callable[[Path], object]) -> Path:
        if name not in known:
            folder, done = shared / name, shared / f"{name}.done"
            with FileLock(str(shared / f"{name}.lock")):
                if not done.exists():
                    if folder.exists():  # what a failed build left
                        shutil.rmtree(folder)
                    folder.mkdir(parents=True)
                    build(folder)
                    done.touch()
            known[name] = folder
        return known[name]

    return once


@pytest.fixture(scope="session")
def bundle_phantoms(_built_once) -> Callable[[str], Path]:
    """``phantoms(task)``: the task's phantom dataset (:data:`BUNDLES`), with its ``datalist.json``."""
    from brainbundles.data.phantom import write_phantom_dataset

    def write(task: str, folder: Path) -> None:
        assert write_phantom_dataset(task, folder, **BUNDLES[task]["phantoms"]) == folder

    def phantoms(task: str) -> Path:
        return _built_once(f"phantoms-{task}", lambda folder: write(task, folder))

    return phantoms


@pytest.fixture(scope="session")
def trained_bundle(_built_once, bundle_phantoms) -> Callable[[str], Path]:
    """``trained(task)``: a tiny copy of the task's bundle (``<folder>/bundle``) trained on its phantoms
    for ``epochs`` epochs (:data:`BUNDLES`) with the model zoo's command run in the bundle's folder
    (:func:`zoo_training_command`). The command, its folder and the end of its output are in
    ``<folder>/zoo_training.json``, beside the bundle."""
    from brainbundles.workflows import copy_bundle

    def train(task: str, folder: Path) -> None:
        bundle = copy_bundle(task, folder / "bundle", BUNDLES[task]["tiny"])
        cmd = zoo_training_command(bundle_phantoms(task), BUNDLES[task]["epochs"])
        proc = subprocess.run(cmd, cwd=bundle, capture_output=True, text=True)
        output = (proc.stdout + proc.stderr)[-4000:]
        assert proc.returncode == 0, f"{cmd} in {bundle} failed:\n{output}"
        (folder / "zoo_training.json").write_text(
            json.dumps({"command": cmd, "cwd": str(bundle), "returncode": proc.returncode, "output": output})
        )

    def trained(task: str) -> Path:
        return _built_once(f"trained-{task}", lambda folder: train(task, folder)) / "bundle"

    return trained


@pytest.fixture(scope="session")
def bundle_evaluation(_built_once, bundle_phantoms, trained_bundle) -> Callable[[str], Path]:
    """``evaluation(task)``: the output folder of the trained bundle's ``evaluating`` workflow
    (``train.json`` + ``evaluate.json`` through ``monai.bundle.run``) on its phantoms' validation fold."""
    from monai.bundle import run

    from brainbundles.paths import config_files

    def evaluation(task: str) -> Path:
        bundle, phantoms = trained_bundle(task), bundle_phantoms(task)
        return _built_once(
            f"evaluation-{task}",
            lambda out: run(
                run_id="evaluating",
                config_file=config_files(bundle, "evaluate"),
                meta_file=str(bundle / "configs" / "metadata.json"),
                bundle_root=str(bundle),
                dataset_dir=str(phantoms),
                data_list_file_path=str(phantoms / "datalist.json"),
                output_dir=str(out),
            ),
        )

    return evaluation
