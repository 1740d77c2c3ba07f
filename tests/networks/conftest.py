"""Fixtures for the network tests.

The networks are exercised with tiny features and small volumes, where one intra-op thread is as fast as two
and, unlike two, does not collapse when the (2-core) machine is shared with other jobs (OpenMP barriers under
over-subscription made training steps ~10x slower in measurements). The thread count is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class LearningCheck:
    """A quick learning sanity check shared by the network tests: a few Adam steps on a tiny fixed batch must
    bring the loss well below that of the best input-independent prediction (the class frequencies), which
    bounds any network that ignores its input."""

    @staticmethod
    def smooth_field_batch(
        seed: int, spatial_dims: int, batch: int, size: int, smooth: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel 0: a smooth random field (noise box-filtered over ``smooth`` voxels, unit variance) plus a
        little noise; channel 1: noise. The three nested target regions are thresholds of the field."""
        g = torch.Generator().manual_seed(seed)
        pool = F.avg_pool3d if spatial_dims == 3 else F.avg_pool2d
        field = pool(
            torch.randn(batch, 1, *(size + smooth - 1,) * spatial_dims, generator=g), smooth, stride=1
        )
        field = field / field.std()
        x = torch.cat(
            [field + 0.1 * torch.randn(field.shape, generator=g), torch.randn(field.shape, generator=g)], 1
        )
        target = torch.cat([(field > t).float() for t in (-0.5, 0.0, 0.5)], dim=1)
        return x, target

    @staticmethod
    def constant_predictor_loss(target: torch.Tensor) -> float:
        """The loss of the best input-independent prediction (each channel's foreground fraction)."""
        dims = [d for d in range(target.dim()) if d != 1]
        prior = target.mean(dim=dims, keepdim=True).clamp(1e-3, 1 - 1e-3).expand_as(target)
        return F.binary_cross_entropy_with_logits(torch.logit(prior), target).item()

    @staticmethod
    def train(
        net: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int, lr: float
    ) -> list[float]:
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        net.train()
        losses = []
        for _ in range(steps):
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(net(x), target)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    def assert_learns(
        self, net: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int, lr: float
    ):
        losses = self.train(net, x, target, steps, lr)
        assert losses[-1] < losses[0] and losses[-1] < 0.75 * self.constant_predictor_loss(target), losses


@pytest.fixture
def learning() -> LearningCheck:
    return LearningCheck()
