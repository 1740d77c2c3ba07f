"""Checks that a bundle folder is complete and consistent (used by the tests and, later, `verify`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from monai.bundle import ConfigParser
from monai.bundle.reference_resolver import ReferenceResolver

__all__ = [
    "META_SCHEMA",
    "config_files",
    "verify_metadata",
    "parse_bundle",
    "verify_configs",
    "verify_net_in_out",
]

META_SCHEMA = Path(__file__).with_name("meta_schema.json")

#: the workflows of a bundle: their config files (merged in order) and the id the runner runs
WORKFLOWS: dict[str, tuple[tuple[str, ...], str]] = {
    "training": (("common.json", "train.json"), "training"),
    "evaluate": (("common.json", "train.json", "evaluate.json"), "evaluating"),
    "multi_gpu": (("common.json", "train.json", "multi_gpu_train.json"), "training"),
    "inference": (("common.json", "inference.json"), "inference"),
    # optional (a bundle without the file has no such workflow): Havaei's second training phase
    "train_phase2": (("common.json", "train.json", "train_phase2.json"), "training"),
}


def config_files(bundle_root: str | os.PathLike, workflow: str) -> list[str]:
    """The config files, in merge order, of one of the bundle's workflows."""
    if workflow not in WORKFLOWS:
        raise ValueError(f"workflow: one of {sorted(WORKFLOWS)}, got {workflow!r}")
    return [str(Path(bundle_root) / "configs" / f) for f in WORKFLOWS[workflow][0]]


def verify_metadata(bundle_root: str | os.PathLike) -> None:
    """Validate ``configs/metadata.json`` against the model-zoo fields with MONAI's ``verify_metadata``
    (the schema is the package's copy, so nothing is downloaded)."""
    from monai.bundle import verify_metadata as monai_verify_metadata

    monai_verify_metadata(
        meta_file=str(Path(bundle_root) / "configs" / "metadata.json"), filepath=str(META_SCHEMA)
    )


def parse_bundle(bundle_root: str | os.PathLike, workflow: str, **overrides) -> ConfigParser:
    """A ``ConfigParser`` holding a workflow's merged configs and metadata, with ``bundle_root`` set."""
    root = Path(bundle_root)
    parser = ConfigParser()
    parser.read_config(config_files(root, workflow))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser["bundle_root"] = str(root)
    for k, v in overrides.items():
        parser[k] = v
    return parser


def _references(value, found: set[str]) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _references(v, found)
    elif isinstance(value, list):
        for v in value:
            _references(v, found)
    elif isinstance(value, str):
        found.update(r.replace("::", "#") for r in ReferenceResolver.match_refs_pattern(value))


def verify_configs(bundle_root: str | os.PathLike) -> dict[str, list[str]]:
    """Every workflow's configs parse, every JSON is valid, and every ``@id`` reference names an id
    that exists. Returns the ids referenced per workflow; raises ``ValueError`` listing missing ones."""
    root = Path(bundle_root)
    for f in sorted((root / "configs").glob("*.json")):
        try:
            json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: invalid JSON ({e})") from e
    out: dict[str, list[str]] = {}
    for wf, (files, run_id) in WORKFLOWS.items():
        if not all((root / "configs" / f).is_file() for f in files):
            continue
        parser = parse_bundle(root, wf)
        refs: set[str] = set()
        _references(parser.get(), refs)
        missing = sorted(r for r in refs if r not in parser)
        if missing:
            raise ValueError(f"{root} workflow {wf}: references to missing ids {missing}")
        if run_id not in parser:
            raise ValueError(f"{root} workflow {wf}: no '{run_id}' id to run")
        out[wf] = sorted(refs)
    return out


def verify_net_in_out(bundle_root: str | os.PathLike, **overrides) -> None:
    """MONAI's ``verify_net_in_out`` on the bundle's network and metadata (on the CPU)."""
    from monai.bundle import verify_net_in_out as monai_verify

    root = Path(bundle_root)
    args = {f"network_def#{k}": v for k, v in overrides.items()}
    monai_verify(
        net_id="network_def",
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=str(root / "configs" / "common.json"),
        device="cpu",
        bundle_root=str(root),
        **args,
    )
