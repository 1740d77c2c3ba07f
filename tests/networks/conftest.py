"""Fixtures for the network tests.

The networks are exercised with tiny features and small volumes, where one intra-op thread is as fast as two
and, unlike two, does not collapse when the (2-core) machine is shared with other jobs (OpenMP barriers under
over-subscription made training steps ~10x slower in measurements). The thread count is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
