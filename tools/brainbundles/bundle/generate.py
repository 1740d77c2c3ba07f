"""Write every bundle's configs from one source (``brainbundles generate-configs``).

What the four bundles share is written once, in ``config_source/core.json``; what each bundle changes is in
``config_source/<bundle>.json``. Both hold the same sections:

- ``common``: the ids of a bundle's training *and* inference configs (paths, channels, network, inferer,
  pre- and postprocessing);
- ``train`` and ``inference``: the ids only that workflow has;
- ``evaluate``, ``multi_gpu_train`` (and a bundle's own ``train_phase2``): overrides applied on top of
  ``train.json``, as in the MONAI model zoo.

A bundle's ``train.json`` is core ``common`` + its ``common`` + core ``train`` + its ``train``, merged key by
key (a nested object is merged, anything else, lists included, replaced); ``inference.json`` likewise with
``inference``. So ``train.json`` and ``inference.json`` each run alone with MONAI's bundle runner, and the
zoo's tools that load one of them by itself (``verify_net_in_out``, MONAI Label, 3D Slicer) find every id.
The committed files are this module's output: ``tests/bundle/test_generate.py`` fails when one differs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from brainbundles.fileio import json_text, write_text_atomic
from brainbundles.paths import BUNDLE_NAMES, bundles_dir

__all__ = ["SOURCE_FILES", "merge", "bundle_sources", "render_configs", "generate_configs"]

#: each generated file and the source sections it is merged from, in order
SOURCE_FILES: dict[str, tuple[str, ...]] = {
    "train.json": ("common", "train"),
    "inference.json": ("common", "inference"),
    "evaluate.json": ("evaluate",),
    "multi_gpu_train.json": ("multi_gpu_train",),
    "train_phase2.json": ("train_phase2",),
}
_SOURCE = files("brainbundles.bundle") / "config_source"


def merge(*configs: Mapping[str, Any]) -> dict[str, Any]:
    """``configs`` merged left to right: a key whose values are both objects is merged, any other value
    (lists included) replaces the earlier one."""
    out: dict[str, Any] = {}
    for config in configs:
        for key, value in config.items():
            if isinstance(out.get(key), dict) and isinstance(value, Mapping):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
    return out


def bundle_sources(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shared core and the differences of bundle ``name`` (a bundle folder name)."""
    own = _SOURCE / f"{name}.json"
    if not own.is_file():
        raise ValueError(f"no config source for bundle {name!r}; known: {sorted(BUNDLE_NAMES.values())}")
    return json.loads((_SOURCE / "core.json").read_text()), json.loads(own.read_text())


def render_configs(name: str) -> dict[str, str]:
    """The text of each config file of bundle ``name``, plus ``logging.conf``."""
    core, own = bundle_sources(name)
    out = {}
    for file, sections in SOURCE_FILES.items():
        parts = [part for s in sections for part in (core.get(s, {}), own.get(s, {}))]
        if not any(parts):  # a workflow this bundle does not have (train_phase2)
            continue
        out[file] = json_text(merge(*parts))
    out["logging.conf"] = (_SOURCE / "logging.conf").read_text()
    return out


def generate_configs(root: str | Path | None = None, check: bool = False) -> list[Path]:
    """Write the configs of every bundle under ``root`` (default: the package's bundles) from the source.
    With ``check``, write nothing and return the files that differ from what would be written (missing
    ones included); otherwise return the files written."""
    root = Path(root) if root is not None else bundles_dir()
    changed = []
    for name in sorted(BUNDLE_NAMES.values()):
        for file, text in render_configs(name).items():
            path = root / name / "configs" / file
            if path.is_file() and path.read_text() == text:
                continue
            changed.append(path)
            if not check:
                write_text_atomic(path, text)
    return changed
