"""Where things are, and which bundles and workflows exist. Imports nothing of brainbundles.

The bundles, the index of published bundles (``model_info.json``), the metadata schema and the config
source are package data, found with :mod:`importlib.resources`, so an installed wheel finds them as a
source checkout does. In a source checkout the bundles are the repository's ``bundles/`` folder.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

__all__ = [
    "BUNDLE_NAMES",
    "LESION_TASKS",
    "WORKFLOWS",
    "META_SCHEMA",
    "bundles_dir",
    "index_file",
    "config_files",
    "is_bundle",
    "WEIGHT_FILES",
    "PICKLE_SUFFIXES",
    "WEIGHTS_FILE",
    "EXPORTED_FILE",
    "FINGERPRINT_FILE",
    "LARGE_FILES",
    "SHARED_FILES",
    "SHARED_DIRS",
    "bundle_files",
]

#: task name -> bundle folder name
BUNDLE_NAMES = {
    "tissue": "brain_tissue_mri_segmentation",
    "tumour": "brain_tumour_mri_segmentation",
    "wmh": "wmh_mri_segmentation",
    "ms": "ms_lesion_mri_segmentation",
}
#: tasks scored with lesion metrics rather than Dice per class: the metrics a demo reports for each
#: (WMH: the challenge's five; MS: Dice, lesion TPR (LTPR) and PPV (LPPV), lesion F1, volume difference)
LESION_TASKS = {
    "wmh": ("dice", "hd95", "avd", "lesion_recall", "lesion_f1"),
    "ms": ("dice", "lesion_recall", "lesion_precision", "lesion_f1", "avd"),
}
#: the workflows of a bundle: their config files (merged in order, as the model zoo does) and the id the
#: runner runs. ``train.json`` and ``inference.json`` each hold everything their workflow needs.
WORKFLOWS: dict[str, tuple[tuple[str, ...], str]] = {
    "training": (("train.json",), "training"),
    "evaluate": (("train.json", "evaluate.json"), "evaluating"),
    "multi_gpu": (("train.json", "multi_gpu_train.json"), "training"),
    "inference": (("inference.json",), "inference"),
    # optional (a bundle without the file has no such workflow): Havaei's second training phase
    "train_phase2": (("train.json", "train_phase2.json"), "training"),
}
#: the files a bundle's trained weights may be in (under ``models/``), in the order they are looked for
WEIGHT_FILES = ("model.safetensors", "model.pt")
#: file names that hold pickles (checked with ``bundle.weights.load_weights`` before anything uses them)
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")
#: a shared bundle's weights and exported program (``torch.export``)
WEIGHTS_FILE = "models/model.safetensors"
EXPORTED_FILE = "models/model.pt2"
#: written by training (``TrainingCheckpoint(training_data=...)``), read by export
FINGERPRINT_FILE = "models/training_data.json"
#: MONAI's list of a bundle's large files (``monai.bundle download_large_files``), written by export
LARGE_FILES = "large_files.yml"
#: what a shared bundle holds: these top-level files, and everything under these folders except
#: pickles (``models/model.pt``, ``models/last.pt``): never the data, outputs or logs of a local run
SHARED_FILES = ("LICENSE", "README.md", LARGE_FILES)
SHARED_DIRS = ("configs", "docs", "models")
#: the model zoo's metadata schema (a copy, so nothing is downloaded)
META_SCHEMA = Path(str(files("brainbundles.bundle") / "meta_schema.json"))


def bundles_dir() -> Path:
    """The folder holding the bundles: ``$BRAINBUNDLES_BUNDLES``; the package's ``bundles`` (an installed
    wheel); or, in a source checkout, the repository's ``bundles/``."""
    env = os.environ.get("BRAINBUNDLES_BUNDLES")
    if env:
        return Path(env)
    packaged = files("brainbundles") / "bundles"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "bundles"


def index_file() -> Path:
    """The index of published bundles: ``$BRAINBUNDLES_INDEX`` or the bundles' ``model_info.json``."""
    env = os.environ.get("BRAINBUNDLES_INDEX")
    return Path(env) if env else bundles_dir() / "model_info.json"


def config_files(bundle_root: str | os.PathLike, workflow: str) -> list[str]:
    """The config files, in merge order, of one of the bundle's workflows."""
    if workflow not in WORKFLOWS:
        raise ValueError(f"workflow: one of {sorted(WORKFLOWS)}, got {workflow!r}")
    return [str(Path(bundle_root) / "configs" / f) for f in WORKFLOWS[workflow][0]]


def is_bundle(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` looks like a bundle: it has ``configs/metadata.json`` and ``configs/inference.json``."""
    configs = Path(folder) / "configs"
    return (configs / "metadata.json").is_file() and (configs / "inference.json").is_file()


def bundle_files(bundle_root: str | os.PathLike) -> list[str]:
    """The files of a bundle that are shared (packaged and checksummed), as sorted POSIX paths
    relative to ``bundle_root``; hidden files and pickles are left out."""
    root = Path(bundle_root)
    out = [name for name in SHARED_FILES if (root / name).is_file()]
    for d in SHARED_DIRS:
        for p in (root / d).rglob("*"):
            rel = p.relative_to(root)
            if p.is_file() and not any(part.startswith(".") for part in rel.parts):
                if p.suffix not in PICKLE_SUFFIXES and "__pycache__" not in rel.parts:
                    out.append(rel.as_posix())
    return sorted(out)
