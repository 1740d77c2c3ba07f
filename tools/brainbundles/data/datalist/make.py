"""A data set's cases -> a MONAI (Decathlon-style) datalist with reproducible cross-validation folds.

:func:`make_datalist` finds the cases of a dataset laid out on disk in a known way (a *layout*, see
:data:`~brainbundles.data.datalist.registry.LAYOUTS`), and returns (and optionally writes) a datalist::

    {
      "name": "IBSR18", "layout": "ibsr18", "channels": ["T1"],
      "labels": {"0": "background", "1": "CSF", "2": "GM", "3": "WM"},     # when known
      "folds": 5, "seed": 0, "numTraining": 14, "numTest": 4,
      "training": [{"image": ["IBSR_01/IBSR_01_ana_strip.nii.gz"], "label": "IBSR_01/IBSR_01_segTRI_ana.nii.gz",
                    "fold": 3, "case": "IBSR_01"}, ...],
      "testing":  [{"image": [...], "case": "IBSR_17"}, ...]             # "label" too when the case has one
    }

All paths are relative to ``root`` (POSIX separators), so a bundle's ``dataset_dir`` can be set to ``root``.
``image`` is always a list with one path per channel, in ``channels`` order.

Splitting (all reproducible from ``seed``):

1. cases are sorted by case id;
2. cases without a label, and cases a layout forces into testing (``phantom``: the manifest's last
   ``test_cases``), go to ``"testing"``;
3. with ``test_fraction > 0``, ``round(test_fraction * n)`` (at least one) of the remaining labelled cases are
   drawn with ``numpy.random.default_rng(seed)`` and moved to ``"testing"`` (they keep their label);
4. cases a layout gives a fixed fold (``ibsr18`` MAIA split: the reference study's held-back IBSR_07 and
   IBSR_16 are fold 0) keep it; the remaining cases are shuffled with the same generator
   (``rng.permutation``) and dealt round-robin to the folds no fixed case uses (to all folds when every
   fold has one), so those folds' sizes differ by at most one (:func:`brainbundles.data.folds.assign_folds`,
   which deals the phantom data sets' folds too).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brainbundles.data.datalist.registry import LAYOUTS, Case
from brainbundles.data.folds import assign_folds
from brainbundles.fileio import write_json_atomic

__all__ = ["make_datalist"]

logger = logging.getLogger("brainbundles")


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def make_datalist(
    layout: str,
    root: str | Path,
    out: str | Path | None = None,
    folds: int = 5,
    seed: int = 0,
    test_fraction: float = 0.0,
    channels: Sequence[str] | None = None,
    **layout_options: Any,
) -> dict:
    """Build a Decathlon-style datalist for the data set under ``root`` laid out as ``layout``.

    Args:
        layout: a key of :data:`LAYOUTS` (``"ibsr18"``, ``"folder"``, ``"phantom"``, ...).
        root: the data set folder; all paths in the datalist are relative to it.
        out: when given, the datalist is also written there as JSON, atomically.
        folds: number of cross-validation folds (1 <= folds <= number of training cases).
        seed: seed of ``numpy.random.default_rng`` for the test draw and the fold shuffle.
        test_fraction: fraction (0 <= f < 1) of the labelled cases moved to "testing".
        channels: channel names (the layout's default when None).
        layout_options: passed to the layout function (e.g. ``images_dir=`` for ``"folder"``, ``rater=``
            for ``"isbi2015"``); an option the layout does not take is a ValueError.

    Returns:
        the datalist dict (see the module docstring).

    Raises:
        ValueError: unknown layout, missing root, no cases found, bad ``folds`` / ``test_fraction``,
            or a layout-specific problem (e.g. a case missing a channel).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known layouts: {', '.join(sorted(LAYOUTS))}")
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 1:
        raise ValueError(f"folds must be an integer >= 1, got folds={folds!r}")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got test_fraction={test_fraction!r}")
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise ValueError(f"layout {layout!r}: root {root} does not exist or is not a folder")

    fn = LAYOUTS[layout]
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        known = [
            n for n, p in params.items() if n not in ("root", "channels") and p.kind is not p.VAR_POSITIONAL
        ]
        unknown = sorted(set(layout_options) - set(known))
        if unknown:
            raise ValueError(
                f"layout {layout!r} has no option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                f"(its options: {', '.join(known) or 'none'})"
            )
    result = fn(root, list(channels) if channels is not None else None, **layout_options)
    if not result.cases:
        raise ValueError(f"layout {layout!r}: no cases found under root {root}")
    cases = sorted(result.cases, key=lambda c: c.case)
    ids = [c.case for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"layout {layout!r}: duplicate case ids under root {root}: {dupes}")

    forced = set(result.test_cases)
    unknown = forced - set(ids)
    if unknown:
        raise ValueError(f"layout {layout!r}: test cases {sorted(unknown)} are not among the cases found")
    pool = [c for c in cases if c.label is not None and c.case not in forced]
    testing = {c.case for c in cases if c.label is None or c.case in forced}

    rng = np.random.default_rng(seed)
    if test_fraction > 0 and pool:
        n_test = max(1, int(round(test_fraction * len(pool))))
        if n_test >= len(pool):
            raise ValueError(
                f"test_fraction={test_fraction} would move {n_test} of {len(pool)} labelled cases to testing, "
                "leaving none for training"
            )
        drawn = rng.choice(len(pool), size=n_test, replace=False)
        testing |= {pool[i].case for i in drawn}
        pool = [c for c in pool if c.case not in testing]

    fold_of: dict[str, int] = {}
    if pool:
        if folds > len(pool):
            raise ValueError(
                f"folds={folds} is more than the {len(pool)} training case{'s' if len(pool) != 1 else ''} "
                f"found by layout {layout!r} under root {root}"
            )
        fixed = {c: f for c, f in result.fold_cases.items() if any(p.case == c for p in pool)}
        bad = {c: f for c, f in fixed.items() if not 0 <= f < folds}
        if bad:
            raise ValueError(
                f"layout {layout!r}: fixed folds {bad} are outside 0..{folds - 1} (folds={folds})"
            )
        fold_of.update(fixed)
        free = [f for f in range(folds) if f not in fixed.values()] or list(range(folds))
        rest = [c for c in pool if c.case not in fixed]
        fold_of.update(zip((c.case for c in rest), assign_folds(len(rest), free, rng), strict=True))
    else:
        logger.warning(
            "layout %r: no labelled cases under %s, the datalist has testing cases only", layout, root
        )

    def entry(c: Case) -> dict:
        e: dict[str, Any] = {"image": [_rel(p, root) for p in c.image]}
        if c.label is not None:
            e["label"] = _rel(c.label, root)
        if c.channels is not None:
            e["channels"] = list(c.channels)
        if result.label_convention and c.label is not None:
            e["label_convention"] = result.label_convention
        if c.case in fold_of:
            e["fold"] = fold_of[c.case]
        e["case"] = c.case
        return e

    datalist: dict[str, Any] = {"name": result.name, "layout": layout, "channels": list(result.channels)}
    if result.labels:
        datalist["labels"] = dict(result.labels)
    if result.label_convention:
        datalist["label_convention"] = result.label_convention
    training = [entry(c) for c in cases if c.case in fold_of]
    test_entries = [entry(c) for c in cases if c.case in testing]
    datalist.update(
        folds=folds,
        seed=seed,
        numTraining=len(training),
        numTest=len(test_entries),
        training=training,
        testing=test_entries,
    )
    if out is not None:
        write_json_atomic(datalist, out)
    return datalist
