"""The phantom's sampling grid, its smooth random fields, and the geometric helpers its parts share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import generate_binary_structure

#: 6-connectivity (face neighbours) of the connected-component labelling
_CONNECT6 = generate_binary_structure(3, 1)


@dataclass(frozen=True)
class _Grid:
    """The RAS-ordered sampling grid: voxel centres at ``(i - (n - 1) / 2) * spacing`` mm."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def axis_mm(self, a: int) -> np.ndarray:
        n = self.shape[a]
        return (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * self.spacing[a]

    @property
    def fov(self) -> np.ndarray:
        return np.asarray(self.shape, dtype=np.float64) * np.asarray(self.spacing)

    def affine(self) -> np.ndarray:
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = [self.axis_mm(a)[0] for a in range(3)]
        return aff


@dataclass(frozen=True)
class _Fourier:
    """Smooth random field: ``sqrt(2 / K) * sum_k cos(2 pi f_k . p + phi_k)`` (unit variance)."""

    freqs: np.ndarray  # (K, 3), cycles per unit
    phases: np.ndarray  # (K,)

    @classmethod
    def draw(
        cls, rng: np.random.Generator, k: int, freq: float, spread: float = 0.25, dims: int = 3
    ) -> _Fourier:
        d = rng.standard_normal((k, dims))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        mags = freq * (1.0 + spread * rng.uniform(-1.0, 1.0, k))
        f = np.zeros((k, 3))
        f[:, :dims] = d * mags[:, None]
        return cls(freqs=f, phases=rng.uniform(0.0, 2.0 * np.pi, k))

    def _args(self, p: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        w = (2.0 * np.pi * self.freqs).astype(np.float32)
        return [
            (w[k], p[0] * w[k, 0] + p[1] * w[k, 1] + p[2] * w[k, 2] + np.float32(self.phases[k]))
            for k in range(len(w))
        ]

    def __call__(self, p: Sequence[np.ndarray]) -> np.ndarray:
        amp = np.float32(math.sqrt(2.0 / len(self.phases)))
        out = np.zeros(np.broadcast(*p).shape, dtype=np.float32)
        for _, arg in self._args(p):
            out += np.cos(arg)
        return out * amp

    def value_and_grad(self, p: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        amp = np.float32(math.sqrt(2.0 / len(self.phases)))
        shape = np.broadcast(*p).shape
        val = np.zeros(shape, dtype=np.float32)
        grad = [np.zeros(shape, dtype=np.float32) for _ in range(3)]
        for w, arg in self._args(p):
            val += np.cos(arg)
            s = np.sin(arg)
            for a in range(3):
                if w[a] != 0:
                    grad[a] -= s * w[a]
        return val * amp, [g * amp for g in grad]


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation matrix."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q
