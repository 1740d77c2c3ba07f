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

import io
import json
import logging
import os
import re
import statistics
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from brainbundles.bundle.verify import parse_bundle
from brainbundles.bundle.weights import (
    PICKLE_SUFFIXES,
    WEIGHT_FILES,
    UnsafeFileError,
    find_weights,
    fold_weights,
    load_weights,
    save_weights,
)
from brainbundles.fileio import atomic_write, sha256_file, write_json_atomic, write_text_atomic

__all__ = [
    "WEIGHTS_FILE",
    "EXPORTED_FILE",
    "FINGERPRINT_FILE",
    "LARGE_FILES",
    "ENSEMBLE_COMBINATION",
    "bundle_files",
    "file_checksums",
    "training_fingerprint",
    "build_network",
    "example_input",
    "export_network",
    "check_exported_archive",
    "load_exported",
    "compare_exported",
    "next_version",
    "large_files_text",
    "export_bundle",
]

logger = logging.getLogger("brainbundles")

WEIGHTS_FILE = "models/model.safetensors"
EXPORTED_FILE = "models/model.pt2"
#: written by training (``TrainingCheckpoint(training_data=...)``), read by export
FINGERPRINT_FILE = "models/training_data.json"
#: MONAI's list of a bundle's large files (``monai.bundle download_large_files``), written by export
LARGE_FILES = "large_files.yml"
#: how inference combines an ensemble's members (:class:`brainbundles.inference.EnsembleInferer`)
ENSEMBLE_COMBINATION = "mean of the members' probabilities"
#: what a shared bundle holds: these top-level files, and everything under these folders except
#: pickles (``models/model.pt``, ``models/last.pt``): never the data, outputs or logs of a local run
SHARED_FILES = ("LICENSE", "README.md", LARGE_FILES)
SHARED_DIRS = ("configs", "docs", "models")
#: how far the exported program's output may be from the eager network's, relative to its range
EXPORT_TOLERANCE = 1e-4


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
    conventions, orientations, and the min / median / max voxel spacing (mm) and shape (from the headers)."""
    import hashlib

    import nibabel as nib

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
    return {
        "training_cases": len(train_items),
        "validation_cases": len(val_items),
        "case_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "training_files_sha256": hashlib.sha256(
            "\n".join(sorted(content(it) for it in train_items)).encode()
        ).hexdigest(),
        "validation_files_sha256": hashlib.sha256(
            "\n".join(sorted(content(it) for it in val_items)).encode()
        ).hexdigest(),
        "channels": list(channels),
        "label_conventions": sorted({str(it.get("label_convention", "bundle")) for it in train_items}),
        "orientations": sorted(orientations),
        "spacing_mm": _stats(spacings) if spacings else {},
        "shape": _stats(shapes) if shapes else {},
    }


def build_network(bundle_root: str | os.PathLike, weights: bool = True) -> torch.nn.Module:
    """The bundle's ``network_def`` on the CPU in eval mode, with its trained weights."""
    root = Path(bundle_root)
    net = parse_bundle(root, "inference").get_parsed_content("network_def")
    if weights:
        net.load_state_dict(load_weights(find_weights(root / "models")))
    return net.eval()


def example_input(bundle_root: str | os.PathLike, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A random network input of the bundle's patch (sliding-window) size: ``[batch, C, *patch]``; ``C`` is
    the config's ``in_channels`` where it has one (a bundle that adds channels, e.g. spatial features), else
    the number of ``channels``."""
    parser = parse_bundle(bundle_root, "inference")
    key = "in_channels" if "in_channels" in parser else "channels"
    channels = parser.get_parsed_content(key) if key == "in_channels" else len(parser.get_parsed_content(key))
    patch = [int(s) for s in parser.get_parsed_content("patch_size")]
    return torch.randn((batch, channels, *patch), generator=torch.Generator().manual_seed(seed))


def export_network(network: torch.nn.Module, example: torch.Tensor, path: str | os.PathLike) -> dict:
    """``torch.export`` the network for inputs shaped like ``example`` (any batch size where the
    network allows, else ``example``'s) and save the program to ``path`` atomically."""
    network = network.eval()
    with torch.no_grad():
        try:
            batch = torch.export.Dim("batch", min=1, max=1024)
            pair = torch.cat([example[:1], example[:1]])  # export specialises a dimension of size 1
            program = torch.export.export(network, (pair,), dynamic_shapes=({0: batch},))
            dynamic = True
        except Exception:  # noqa: BLE001 - some networks specialise on the batch size
            program = torch.export.export(network, (example,))
            dynamic = False
    program._example_inputs = None  # not shared: megabytes of random numbers
    buffer = io.BytesIO()  # saved from memory: the archive's folder is "archive", not the temporary name
    torch.export.save(program, buffer)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    shape = ["batch" if dynamic else example.shape[0], *example.shape[1:]]
    return {"file": Path(path).name, "format": "torch.export", "input_shape": shape, "dtype": "float32"}


#: members a torch.export archive written by :func:`export_network` holds
_PT2_MEMBER = re.compile(
    r"[^/]+/(archive_format|archive_version|byteorder|version|\.data/[^/]+|models/[^/]+\.json"
    r"|data/weights/(weight_\d+|[^/]+_weights_config\.json)|data/constants/[^/]+_constants_config\.json"
    r"|data/sample_inputs/[^/]+\.pt)"
)
#: graph nodes may call only ATen operators and these arithmetic functions (on symbolic sizes)
_PT2_TARGET = re.compile(
    r"torch\.ops\.aten\.\w+\.\w+|_operator\.(add|sub|mul|floordiv|truediv|mod|neg|getitem)"
)
#: names a symbolic size expression may use (torch parses them with sympy, which evaluates them)
_PT2_EXPR_NAMES = {"Symbol", "Integer", "Add", "Mul", "Pow", "FloorDiv", "Max", "Min", "Mod"}
_PT2_EXPR_NAMES |= {"positive", "integer", "True", "False"}


def _plain_expression(expr: str) -> bool:
    rest = re.sub(r"'s\d+'", "", expr)
    names = re.findall(r"[A-Za-z_]\w*", rest)
    return bool(re.fullmatch(r"[\w\s(),=+\-*/]*", rest)) and all(
        n in _PT2_EXPR_NAMES or re.fullmatch(r"s\d+", n) for n in names
    )


def _graph_strings(value, key: str | None = None):
    """(key, string) pairs of a serialised graph, keys of range constraints included."""
    if isinstance(value, dict):
        for k, v in value.items():
            if key == "range_constraints":
                yield "expr_str", k
            yield from _graph_strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _graph_strings(v, key)
    elif isinstance(value, str):
        yield key, value


def check_exported_archive(path: str | os.PathLike) -> None:
    """Refuse a ``.pt2`` archive with anything ``torch.export.load`` could run: members other than
    the graph, raw weights and configs; a pickle (sample inputs) holding more than tensors; pickled
    weights or constants; a graph node calling anything but ATen operators and arithmetic; a symbolic
    size that is not plain arithmetic (torch evaluates it with sympy). Raises :class:`UnsafeFileError`."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                refuse = f"{path}: refused: member {name!r} of the exported program"
                if not _PT2_MEMBER.fullmatch(name):
                    raise UnsafeFileError(f"{refuse} is not one torch.export writes for a network")
                if name.endswith("_config.json") and '"use_pickle": true' in z.read(name).decode():
                    raise UnsafeFileError(f"{refuse} stores pickled tensors")
                if name.endswith(".pt") and z.getinfo(name).file_size:  # empty: nothing torch unpickles
                    try:
                        torch.load(io.BytesIO(z.read(name)), weights_only=True)
                    except Exception as e:  # noqa: BLE001 - whatever it is, torch would unpickle it unsafely
                        raise UnsafeFileError(
                            f"{refuse} is a pickle that holds more than tensors ({e})"
                        ) from None
                if "/models/" in name:
                    for key, value in _graph_strings(json.loads(z.read(name))):
                        if key == "target" and not _PT2_TARGET.fullmatch(value):
                            raise UnsafeFileError(f"{refuse} calls {value!r}")
                        if key == "expr_str" and not _plain_expression(value):
                            raise UnsafeFileError(
                                f"{refuse} has a size expression that is code: {value[:80]!r}"
                            )
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path}: not a torch.export archive ({e})") from None


def load_exported(path: str | os.PathLike) -> torch.nn.Module:
    """The module of a ``torch.export`` program written by :func:`export_network`, after checking that
    :func:`check_exported_archive` passes. ``torch.export.load`` can still run code hidden in a file
    in ways no check foresees: load only programs you made or trust."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: exported program not found")
    check_exported_archive(path)
    return torch.export.load(str(path)).module()


def compare_exported(
    bundle_root: str | os.PathLike,
    network: torch.nn.Module | None = None,
    info: Mapping | None = None,
    path: str | os.PathLike | None = None,
) -> float:
    """Largest difference between the exported program's output and the eager network's (with the
    bundle's weights) on random inputs (a batch of 1, and one of 2 if the program takes any batch
    size, with a sequence missing in one sample), relative to the output range; ``ValueError`` above
    :data:`EXPORT_TOLERANCE`. ``info`` is what :func:`export_network` returned (default: the
    metadata's ``exported_model``); ``path`` the program (default ``models/model.pt2``)."""
    root = Path(bundle_root)
    if info is None:
        info = json.loads((root / "configs" / "metadata.json").read_text()).get("exported_model") or {}
    network = network if network is not None else build_network(root)
    path = Path(path) if path is not None else root / EXPORTED_FILE
    program = load_exported(path)
    dynamic = info.get("input_shape", [1])[0] == "batch"
    second = example_input(root, batch=2 if dynamic else 1, seed=2)
    if second.shape[1] > 1:
        second[0, 0] = 0  # a missing sequence, as the bundle fills it
    worst = 0.0
    with torch.no_grad():
        for x in (example_input(root, batch=1, seed=1), second):
            ref, out = network(x), program(x)
            if out.shape != ref.shape:
                raise ValueError(f"{path}: output shape {tuple(out.shape)}, eager {tuple(ref.shape)}")
            worst = max(worst, float((out - ref).abs().max() / ref.abs().max().clamp(min=1.0)))
    if not worst <= EXPORT_TOLERANCE:
        raise ValueError(
            f"{path}: differs from the eager network by {worst:.2e} (relative), "
            f"more than {EXPORT_TOLERANCE:g}"
        )
    return worst


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
        import yaml

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
