"""Tests of brainbundles.data.folds: the one fold rule of the datalists and the phantom data sets."""

from __future__ import annotations

from collections import Counter

import numpy as np

from brainbundles.data.folds import assign_folds


def test_rank_modulo_folds_of_the_seeded_permutation():
    got = assign_folds(11, range(4), np.random.default_rng(3))
    perm = np.random.default_rng(3).permutation(11)
    assert got == [int(np.flatnonzero(perm == i)[0]) % 4 for i in range(11)]
    assert all(type(f) is int for f in got)
    assert sorted(Counter(got).values()) == [2, 3, 3, 3]  # sizes differ by at most one


def test_only_the_folds_given_and_the_generator_moves_on():
    rng = np.random.default_rng(0)
    got = assign_folds(7, [1, 2], rng)
    assert set(got) == {1, 2} and sorted(Counter(got).values()) == [3, 4]
    rng2 = np.random.default_rng(0)
    rng2.permutation(7)
    assert rng.uniform() == rng2.uniform()  # exactly one permutation drawn from it
    assert assign_folds(0, [0], np.random.default_rng(0)) == []
