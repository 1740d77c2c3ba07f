"""Fixtures shared across test folders."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

#: a tissue bundle small enough to build, export and run in seconds
TINY_TISSUE = {"network_def#features": [4, 8, 16], "network_def#dropout": 0.0, "patch_size": [32, 32, 32]}


@pytest.fixture(scope="session")
def untrained_export() -> Callable[..., Path]:
    """``make(dest, task="tissue", overrides=TINY_TISSUE, export=True, **export_kwargs)``: a copy of a
    bundle at ``dest`` with random weights (no training) in ``models/model.safetensors``, exported
    (``export_bundle(root, **export_kwargs)``) unless ``export`` is false."""
    from brainbundles.bundle.export import build_network, export_bundle
    from brainbundles.bundle.weights import save_weights
    from brainbundles.workflows import copy_bundle

    def make(
        dest: Path,
        task: str = "tissue",
        overrides: Mapping | None = None,
        export: bool = True,
        **export_kwargs,
    ) -> Path:
        root = copy_bundle(task, dest, TINY_TISSUE if overrides is None else overrides)
        save_weights(build_network(root, weights=False).state_dict(), root / "models" / "model.safetensors")
        if export:
            export_bundle(root, **export_kwargs)
        return root

    return make
