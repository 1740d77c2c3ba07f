"""Cross-validation folds: the one rule by which the datalists and the phantom data sets deal them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["assign_folds"]


def assign_folds(count: int, folds: Sequence[int], rng: np.random.Generator) -> list[int]:
    """Deal ``count`` cases to ``folds``: the fold of each case, in the cases' order.

    The cases are shuffled with ``rng.permutation(count)`` and dealt round-robin: the case at rank ``r`` of
    the permutation gets ``folds[r % len(folds)]``, so the folds' sizes differ by at most one. With
    ``folds = range(k)`` and ``rng = numpy.random.default_rng(seed)`` this is ``fold = rank % k``.
    """
    out = [0] * count
    for rank, i in enumerate(rng.permutation(count)):
        out[int(i)] = folds[rank % len(folds)]
    return out
