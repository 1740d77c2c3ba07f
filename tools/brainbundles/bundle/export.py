"""Exporting a trained bundle for sharing.

``export_bundle`` writes the weights as ``models/model.safetensors`` (no pickle), the network as a
``torch.export`` program (``models/model.pt2``, runnable with torch alone) checked to give the eager
network's output, ``large_files.yml`` (MONAI's list of the weights files and programs, with their
sha256 and a download address to fill in), and updates ``configs/metadata.json``: a new version and
changelog entry, the evaluation metrics measured by the bundle's ``evaluate`` workflow, the training
data fingerprint that training recorded, and the sha256 of every file that a package of the bundle holds.

A bundle with fold models (``brainbundles train-cv``: ``models/fold_<k>/``) is an ensemble: inference
averages its members' probabilities (:class:`brainbundles.inference.EnsembleInferer`), so each member is
exported in its folder (``models/fold_<k>/model.safetensors`` and ``model.pt2``) and the metadata's
``ensemble`` lists them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import torch
import yaml

from brainbundles.bundle.configs import build_network, example_input
from brainbundles.bundle.program import compare_exported, export_network
from brainbundles.bundle.weights import find_weights, fold_weights, load_weights, save_weights
from brainbundles.fileio import sha256_file, write_json_atomic, write_text_atomic
from brainbundles.paths import (
    EXPORTED_FILE,
    FINGERPRINT_FILE,
    LARGE_FILES,
    WEIGHT_FILES,
    WEIGHTS_FILE,
    bundle_files,
)

__all__ = [
    "ENSEMBLE_COMBINATION",
    "file_checksums",
    "training_fingerprint",
    "next_version",
    "large_files_text",
    "export_bundle",
]

logger = logging.getLogger("brainbundles")

#: how inference combines an ensemble's members (:class:`brainbundles.inference.EnsembleInferer`)
ENSEMBLE_COMBINATION = "mean of the members' probabilities"


def file_checksums(bundle_root: str | os.PathLike) -> dict[str, str]:
    """sha256 of every shared file except ``configs/metadata.json`` (which holds them)."""
    root = Path(bundle_root)
    return {f: sha256_file(root / f) for f in bundle_files(root) if f != "configs/metadata.json"}


def _stats(rows: Sequence[Sequence[float]]) -> dict[str, list[float]]:
    cols = list(zip(*rows, strict=True))
    return {
        "min": [round(min(c), 4) for c in cols],
        "median": [round(statistics.median(c), 4) for c in cols],
        "max": [round(max(c), 4) for c in cols],
    }


def training_fingerprint(
    train_items: Sequence[Mapping], val_items: Sequence[Mapping], channels: Sequence[str]
) -> dict:
    """What a network was trained on: case counts, a sha256 over the sorted case ids, a sha256 over the
    training cases' files by content (each case's id and the sha256 of its image and label files, so the
    same data anywhere gives the same value) and one over the validation cases', channels, label
    conventions, orientations, and the min / median / max voxel spacing (mm) and shape (from the headers).
    A network trained on its validation cases too (``load_fold(split="all")``, a final model on all the
    data) gets ``validation_cases_trained_on``: its validation scores then measure the fit to its own
    training scans, not accuracy on unseen ones."""
    spacings, shapes, orientations = [], [], set()
    for item in list(train_items) + list(val_items):
        first = item["image"][0] if isinstance(item["image"], (list, tuple)) else item["image"]
        img = nib.load(str(first))
        spacings.append([float(z) for z in img.header.get_zooms()[:3]])
        shapes.append([int(s) for s in img.shape[:3]])
        orientations.add("".join(nib.aff2axcodes(img.affine)))

    def case_id(item: Mapping) -> str:  # the case id, not a path that differs from machine to machine
        first = item["image"][0] if isinstance(item["image"], (list, tuple)) else item["image"]
        return str(item.get("case") or item.get("id") or Path(str(first)).name)

    def content(item: Mapping) -> str:  # the case's files, by content
        images = item["image"] if isinstance(item["image"], (list, tuple)) else [item["image"]]
        files = list(images) + ([item["label"]] if item.get("label") else [])
        return case_id(item) + " " + " ".join(sha256_file(f) for f in files)

    every = list(train_items) + list(val_items)
    ids = sorted(case_id(it) for it in every)
    trained, validated = [content(it) for it in train_items], [content(it) for it in val_items]
    seen = set(trained)
    overlap = sum(v in seen for v in validated)
    fingerprint = {
        "training_cases": len(train_items),
        "validation_cases": len(val_items),
        "case_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "training_files_sha256": hashlib.sha256("\n".join(sorted(trained)).encode()).hexdigest(),
        "validation_files_sha256": hashlib.sha256("\n".join(sorted(validated)).encode()).hexdigest(),
        "channels": list(channels),
        "label_conventions": sorted({str(it.get("label_convention", "bundle")) for it in train_items}),
        "orientations": sorted(orientations),
        "spacing_mm": _stats(spacings) if spacings else {},
        "shape": _stats(shapes) if shapes else {},
    }
    if overlap:
        fingerprint["validation_cases_trained_on"] = overlap
    return fingerprint


def next_version(version: str) -> str:
    """The next patch version: ``0.1.0`` -> ``0.1.1``."""
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise ValueError(f"version: {version!r} is not MAJOR.MINOR.PATCH; pass the new version explicitly")
    return f"{m[1]}.{m[2]}.{int(m[3]) + 1}"


def _measured_metrics(metrics_file: Path) -> dict:
    """``{"<class>_<metric>": mean, ..., "evaluated_cases": n}`` from a metrics report (``metrics.json``
    as the ``evaluate`` workflow writes it)."""
    try:
        report = json.loads(metrics_file.read_text())
        summary = report["summary"]
        out = {
            f"{cls}_{metric}": round(float(v["mean"]), 4)
            for cls, metrics in summary.items()
            for metric, v in metrics.items()
            if v.get("mean") is not None
        }
        out["evaluated_cases"] = len(report.get("per_case", {}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{metrics_file}: not a metrics report with a 'summary' ({e})") from None
    return out


def _large_file_urls(path: Path) -> dict[tuple[str, str], str]:
    """``{(path, sha256): url}`` of the filled-in addresses in an existing large-files list, so that export
    keeps them for files that did not change; empty where there is none or it does not parse."""
    try:
        entries = yaml.safe_load(path.read_text())["large_files"]
        return {(str(e["path"]), str(e.get("hash_val"))): str(e["url"]) for e in entries if e.get("url")}
    except Exception:  # noqa: BLE001 - no list, or not one export wrote: nothing to keep
        return {}


def large_files_text(
    bundle_root: str | os.PathLike,
    files: Sequence[str],
    urls: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """MONAI's ``large_files.yml`` (as ``monai.bundle download_large_files`` reads it) listing ``files``
    (POSIX paths relative to ``bundle_root``): each one's ``path``, ``url`` (empty, for the publisher to fill
    in, unless ``urls`` has one for that path and sha256), ``hash_val`` (its sha256) and ``hash_type``. Every
    string is JSON-quoted, which YAML reads as it is, so no YAML writer is needed."""
    root = Path(bundle_root)
    lines = ["large_files:" if files else "large_files: []"]
    for rel in files:
        digest = sha256_file(root / rel)
        url = (urls or {}).get((rel, digest), "")
        lines += [
            f"  - path: {json.dumps(rel)}",
            f"    url: {json.dumps(url)}",
            f"    hash_val: {json.dumps(digest)}",
            '    hash_type: "sha256"',
        ]
    return "\n".join(lines) + "\n"


def _members(root: Path) -> tuple[list[tuple[Path, Path, Path]], bool]:
    """``(weights file now, safetensors to write, program to write)`` of each model that export shares,
    and whether they are an ensemble: every fold model (:func:`brainbundles.bundle.weights.fold_weights`,
    what :func:`brainbundles.inference.ensemble_members` gives the inferer), else the single model."""
    models = root / "models"
    folds = fold_weights(models)
    if not folds:
        return [(find_weights(models), root / WEIGHTS_FILE, root / EXPORTED_FILE)], False
    single = [n for n in (*WEIGHT_FILES, Path(EXPORTED_FILE).name) if (models / n).is_file()]
    if single:
        raise ValueError(
            f"{models}: holds fold models ({', '.join(f.parent.name for f in folds)}) and a single model "
            f"({', '.join(single)}); inference uses only the folds' ensemble (it loads each member over the "
            "single model), so export shares the folds: move the single model out of models/ and export again"
        )
    names = Path(WEIGHTS_FILE).name, Path(EXPORTED_FILE).name
    return [(f, f.with_name(names[0]), f.with_name(names[1])) for f in folds], True


def _export_programs(
    root: Path, network: torch.nn.Module, members: Sequence[tuple[Mapping, Path]], ensemble: bool
) -> dict:
    """Export the network with each member's weights (``(state dict, program path)``) and compare each
    program with the eager network; the programs are moved into place only once all agree. Returns the
    metadata's ``exported_model``: the program's ``file`` (relative to ``models/``; for an ensemble, the
    list of the members' programs) and the largest ``max_relative_difference``."""
    # compared first; named *.pt2 so that torch loads it as the final file will be loaded
    staged = [path.with_name(f".{path.stem}.new{path.suffix}") for _, path in members]
    try:
        worst = []
        for (state, _), tmp in zip(members, staged, strict=True):
            network.load_state_dict(state)
            info = export_network(network, example_input(root), tmp)
            worst.append(compare_exported(root, network, info, path=tmp))
        for (_, path), tmp in zip(members, staged, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
    files = [path.relative_to(root / "models").as_posix() for _, path in members]
    info["file"] = files if ensemble else files[0]
    info["max_relative_difference"] = max(worst)
    return info


def _training_data(root: Path, weights: list[Path], ensemble: bool) -> dict | None:
    """The metadata's ``training_data``: the training data fingerprint that training wrote
    (:data:`FINGERPRINT_FILE`), or None; for an ensemble, ``{"members": [...]}`` with each member's
    fingerprint (its fold's ``training_data.json``, or None), in the members' order."""

    def read(path: Path) -> dict | None:
        return json.loads(path.read_text()) if path.is_file() else None

    if not ensemble:
        return read(root / FINGERPRINT_FILE)
    return {"members": [read(w.parent / Path(FINGERPRINT_FILE).name) for w in weights]}


def export_bundle(
    bundle_root: str | os.PathLike,
    version: str | None = None,
    changelog: str | None = None,
    metrics: str | os.PathLike | None = None,
) -> dict:
    """Export a trained bundle in place (see the module docstring) and return its new metadata.

    ``version`` defaults to the next patch version; ``metrics`` to ``<bundle>/eval/metrics.json`` when
    it exists (the ``evaluate`` workflow's report); without one, ``eval_metrics`` is left empty and the
    changelog says the weights were not evaluated. A network ``torch.export`` cannot trace is shared
    without ``models/model.pt2`` (the metadata says why); an export that disagrees with the eager
    network is an error.

    A bundle with fold models is exported as the ensemble that inference runs: each member as
    ``models/fold_<k>/model.safetensors`` and ``model.pt2``, listed in order in the metadata's
    ``ensemble`` (``members``, ``combination``) and ``exported_model`` (``file``: the list of programs);
    a single model beside the folds (which inference never uses) is refused. ``large_files.yml`` lists
    every weights file and program."""
    root = Path(bundle_root)
    meta_path = root / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    # everything that can be refused is checked before anything is written
    new_version = version or next_version(str(meta["version"]))
    if new_version in meta.get("changelog", {}):
        raise ValueError(f"version: {new_version} is already in {meta_path}'s changelog")
    metrics_file = Path(metrics) if metrics is not None else root / "eval" / "metrics.json"
    measured = _measured_metrics(metrics_file) if metrics is not None or metrics_file.is_file() else {}
    members, ensemble = _members(root)
    network = build_network(root, weights=False)
    states = []
    for found, _, _ in members:  # the trained weights, checked against the network definition
        try:
            network.load_state_dict(load_weights(found))
        except RuntimeError as e:
            raise ValueError(f"{found}: does not fit the bundle's network_def ({str(e).strip()})") from None
        states.append({k: v.clone() for k, v in network.state_dict().items()})

    for state, (_, weights, _) in zip(states, members, strict=True):
        save_weights(state, weights)
    programs = [program for _, _, program in members]
    try:
        meta["exported_model"] = _export_programs(
            root, network, list(zip(states, programs, strict=True)), ensemble
        )
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - torch.export cannot trace every network
        for program in programs:
            program.unlink(missing_ok=True)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        meta["exported_model"] = {"file": None, "reason": f"torch.export failed: {reason}"}
        logger.warning("%s: no exported program (%s); the bundle needs brainbundles to run", root, reason)
    if ensemble:
        listed = [weights.relative_to(root).as_posix() for _, weights, _ in members]
        meta["ensemble"] = {"members": listed, "combination": ENSEMBLE_COMBINATION}
    else:
        meta.pop("ensemble", None)
    large = [
        path.relative_to(root).as_posix()
        for _, weights, program in members
        for path in (weights, program)
        if path.is_file()
    ]
    write_text_atomic(root / LARGE_FILES, large_files_text(root, large, _large_file_urls(root / LARGE_FILES)))

    meta["eval_metrics"] = measured
    meta["training_data"] = _training_data(root, [weights for _, weights, _ in members], ensemble)
    note = changelog or "trained weights exported" + (
        f" (evaluated on {measured['evaluated_cases']} cases)" if measured else " (not evaluated)"
    )
    meta["version"] = new_version
    meta["changelog"] = {new_version: note, **meta.get("changelog", {})}
    meta["files_sha256"] = file_checksums(root)  # large_files.yml included
    write_json_atomic(meta, meta_path)
    logger.info("exported %s version %s", root, new_version)
    return meta
