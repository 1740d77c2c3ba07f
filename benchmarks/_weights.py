"""Shared by the hand-run benchmarks: a bundle copy that has weights to load."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from brainbundles.bundle.weights import find_weights
from brainbundles.workflows import copy_bundle, resolve_bundle


def bundle_with_weights(bundle: str, dest: Path) -> tuple[Path, str]:
    """Copy ``bundle`` (a name or folder) to ``dest``; keep its shipped weights, or (a bundle without
    trained weights) save a seeded random initialisation of its network, which does not change any
    timing. Returns the copy and which weights it has."""
    src = resolve_bundle(bundle)
    root = copy_bundle(src, dest)  # configs and docs only: the weights are copied here
    try:
        found = find_weights(src / "models")
        shutil.copy2(found, root / "models" / found.name)
        return root, "the bundle's"
    except FileNotFoundError:
        parser = ConfigParser()
        parser.read_config(str(root / "configs" / "inference.json"))
        torch.manual_seed(0)
        torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
        return root, "random (seed 0)"
