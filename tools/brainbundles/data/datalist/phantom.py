"""The ``phantom`` layout: a phantom data set's manifest (``phantom.json``) names the layout its files
follow (see :mod:`brainbundles.data.phantom`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brainbundles.data.datalist.registry import LAYOUTS, LayoutResult, _normalise_labels, register_layout

logger = logging.getLogger("brainbundles")


@register_layout("phantom")
def _layout_phantom(root: Path, channels: Sequence[str] | None = None, **options: Any) -> LayoutResult:
    """A phantom data set: ``<root>/phantom.json`` names the layout its files follow.

    The manifest (written by the phantom generator) holds at least ``"layout"``; optional ``"task"``,
    ``"name"``, ``"cases"`` (number of cases, checked with a warning), ``"test_cases"`` (the last that many
    case ids, sorted, go to "testing"), ``"channels"``, ``"labels"`` (``{value: name}`` or
    ``{name: value}``; overrides the layout's) and ``"layout_options"`` (passed on to the layout, and
    overridden by ``options``).
    """
    manifest_path = root / "phantom.json"
    if not manifest_path.is_file():
        raise ValueError(f"phantom layout: no cases found: no manifest phantom.json under root {root}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"phantom layout: {manifest_path} is not valid JSON: {e}") from e
    inner = manifest.get("layout") if isinstance(manifest, dict) else None
    if not isinstance(inner, str) or inner not in LAYOUTS or inner == "phantom":
        known = sorted(k for k in LAYOUTS if k != "phantom")
        raise ValueError(f"phantom layout: {manifest_path} names layout {inner!r}; expected one of {known}")
    if channels is None and manifest.get("channels"):
        channels = manifest["channels"]
    inner_options = {**(manifest.get("layout_options") or {}), **options}
    result = LAYOUTS[inner](root, channels, **inner_options)

    ids = sorted(c.case for c in result.cases)
    expected = manifest.get("cases")
    n_test = int(manifest.get("test_cases") or 0)
    if isinstance(expected, int) and len(ids) not in (expected, expected + n_test):
        logger.warning(
            "phantom layout: %s says %d cases, found %d under %s", manifest_path, expected, len(ids), root
        )
    if n_test < 0 or n_test >= len(ids):
        raise ValueError(
            f"phantom layout: {manifest_path} asks for test_cases={n_test} but {len(ids)} cases were found "
            f"(at least one must stay for training)"
        )
    result.test_cases = ids[len(ids) - n_test :] if n_test else []
    result.labels = _normalise_labels(manifest.get("labels")) or result.labels
    result.label_convention = manifest.get("label_convention") or result.label_convention
    task = manifest.get("task")
    result.name = str(manifest.get("name") or (f"phantom-{task}" if task else f"phantom-{result.name}"))
    return result
