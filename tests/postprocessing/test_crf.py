"""Dense 3D CRF (mean field) on segmentation probabilities: exact truncated kernels, denoising, the
intensity edge of the appearance kernel, multi-label mode, and the CRFd transform's metadata."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from brainbundles.postprocessing import CRFd, dense_crf
from brainbundles.postprocessing.crf import bilateral_message, spatial_message


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny volumes: one thread is faster, and immune to a busy machine's thread contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _noisy_cube(seed: int = 0, n: int = 24):
    """A 12^3 cube of label 1 in an n^3 volume; p(label 1) = 0.7 / 0.3, flipped in ~15% of voxels; an image
    bright in the cube."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.zeros(n, n, n, dtype=torch.bool)
    truth[6:18, 6:18, 6:18] = True
    flip = torch.rand(n, n, n, generator=g) < 0.15
    p1 = torch.where(truth ^ flip, 0.7, 0.3)
    image = 2.0 * truth.float()[None] + 0.1 * torch.randn(1, n, n, n, generator=g)
    return truth, p1, image


def _pairs(shape, window):
    """All voxel pairs (i, j), i != j, with |i - j| <= window per axis, as index arrays."""
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    diff = idx[None, :, :] - idx[:, None, :]
    ok = (np.abs(diff) <= np.asarray(window)).all(-1) & (np.abs(diff).sum(-1) > 0)
    return idx, diff, ok


def test_spatial_message_equals_brute_force():
    g = torch.Generator().manual_seed(1)
    q = torch.rand(3, 6, 5, 7, generator=g, dtype=torch.float64)
    spacing, sigma = (1.0, 1.5, 0.8), 1.0
    window = [int(np.floor(3 * sigma / s)) for s in spacing]  # the 3-sigma truncation, per axis
    idx, diff, ok = _pairs(q.shape[1:], window)
    w = np.exp(-((diff * np.asarray(spacing)) ** 2).sum(-1) / (2 * sigma**2)) * ok
    flat = q.reshape(3, -1).numpy()
    expected = np.einsum("ij,cj->ci", w, flat).reshape(q.shape)
    np.testing.assert_allclose(spatial_message(q, spacing, sigma).numpy(), expected, rtol=1e-10)


def test_bilateral_message_equals_brute_force():
    g = torch.Generator().manual_seed(2)
    q = torch.rand(2, 6, 6, 6, generator=g, dtype=torch.float64)
    f = torch.randn(2, 6, 6, 6, generator=g, dtype=torch.float64)
    spacing, sigma, radius, dilation = (1.0, 2.0, 1.0), 3.0, 1, 2
    idx, diff, ok = _pairs(q.shape[1:], [radius * dilation] * 3)
    ok &= (diff % dilation == 0).all(-1)
    fi = f.reshape(2, -1).numpy().T
    w = np.exp(
        -((diff * np.asarray(spacing)) ** 2).sum(-1) / (2 * sigma**2)
        - ((fi[:, None, :] - fi[None, :, :]) ** 2).sum(-1) / 2
    )
    expected = np.einsum("ij,cj->ci", w * ok, q.reshape(2, -1).numpy()).reshape(q.shape)
    got = bilateral_message(q, f, spacing, sigma, radius, dilation)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_no_pairwise_term_returns_input():
    truth, p1, image = _noisy_cube()
    prob = torch.stack([1 - p1, p1])
    for kw in ({"iterations": 0}, {"spatial_weight": 0.0, "bilateral_weight": 0.0}):
        torch.testing.assert_close(dense_crf(prob, image, **kw), prob, atol=1e-6, rtol=0)
        torch.testing.assert_close(
            dense_crf(p1[None], image, multilabel=True, **kw), p1[None], atol=1e-6, rtol=0
        )


def test_denoises_a_noisy_cube_and_sums_to_one():
    truth, p1, image = _noisy_cube()
    prob = torch.stack([1 - p1, p1])
    before = _dice(prob.argmax(0) == 1, truth)  # ~0.58
    out = dense_crf(prob, image, iterations=5, radius=1)
    assert out.shape == prob.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.sum(0), torch.ones_like(p1))
    after = _dice(out.argmax(0) == 1, truth)  # 1.0 measured; the spatial kernel alone gives ~0.89
    assert after >= before + 0.3, (before, after)
    smooth_only = _dice(dense_crf(prob, image, bilateral_weight=0.0).argmax(0) == 1, truth)
    assert smooth_only >= before + 0.2, (before, smooth_only)


def test_multilabel_denoises_one_channel():
    truth, p1, image = _noisy_cube(seed=3)
    other = torch.full_like(p1, 0.2)  # an empty second region channel
    prob = torch.stack([p1, other])
    out = dense_crf(prob, image, iterations=5, radius=1, multilabel=True)
    assert out.shape == prob.shape
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    before, after = _dice(p1 > 0.5, truth), _dice(out[0] > 0.5, truth)
    assert after >= before + 0.3, (before, after)
    assert not (out[1] > 0.5).any()


def test_appearance_kernel_follows_the_intensity_edge():
    """Label 0 sure for x < 8, label 1 sure for x >= 12, p = 0.5 in the slab 8 <= x < 12. By distance,
    slab voxels 8, 9 lean to label 0; when the image is bright from x = 8 on (the side of label 1),
    the appearance kernel alone pulls the whole slab to label 1."""
    n = 16
    p1 = torch.full((n, 6, 6), 0.5)
    p1[:8], p1[12:] = 0.1, 0.9
    prob = torch.stack([1 - p1, p1])
    kw = dict(spatial_weight=0.0, bilateral_weight=5.0, bilateral_sigma_intensity=0.5, radius=2, iterations=5)
    edge = torch.zeros(1, n, 6, 6)
    edge[:, 8:] = 3.0
    with_edge = dense_crf(prob, edge, **kw)[1, 8:12].mean((1, 2))
    uniform = dense_crf(prob, torch.ones(1, n, 6, 6), **kw)[1, 8:12].mean((1, 2))
    assert (with_edge > 0.6).all(), with_edge
    assert (uniform[:2] < 0.4).all() and (uniform[2:] > 0.6).all(), uniform
    # an all-zero (missing) image channel changes nothing
    empty = torch.cat([edge, torch.zeros_like(edge)])
    torch.testing.assert_close(dense_crf(prob, empty, **kw)[1, 8:12].mean((1, 2)), with_edge)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image": torch.zeros(1, 5, 5, 4)}, "spatial shape"),
        ({"iterations": -1}, "iterations"),
        ({"radius": -1}, "radius"),
        ({"dilation": 0}, "dilation"),
        ({"spatial_weight": -1.0}, "spatial_weight"),
        ({"spatial_sigma_mm": 0.0}, "spatial_sigma_mm"),
        ({"bilateral_sigma_mm": -1.0}, "bilateral_sigma_mm"),
        ({"bilateral_sigma_intensity": 0.0}, "bilateral_sigma_intensity"),
        ({"spacing": (1.0, 0.0, 1.0)}, "spacing"),
        ({"prob": torch.rand(1, 5, 5, 5)}, "multilabel"),
    ],
)
def test_bad_inputs_raise(kwargs, match):
    args = {"prob": torch.rand(2, 5, 5, 5), "image": torch.zeros(1, 5, 5, 5)} | kwargs
    with pytest.raises(ValueError, match=match):
        dense_crf(**args)


def test_crfd_keeps_metadata_and_reads_spacing(monkeypatch):
    _, p1, image = _noisy_cube(n=12)
    affine = torch.diag(torch.tensor([2.0, 1.0, 1.5, 1.0]))
    pred = MetaTensor(torch.stack([1 - p1, p1]), affine=affine)
    pred.applied_operations.extend([{"class": "Spacingd"}, {"class": "CropForegroundd"}])
    img = MetaTensor(image, affine=affine)
    data = {"pred": pred, "image": img}

    off = CRFd(enabled=False)
    assert off(data) is data and data["pred"] is pred

    seen = {}

    def spy(prob, image, spacing, **kw):
        seen["spacing"] = list(spacing)
        return dense_crf(prob, image, spacing, **kw)

    monkeypatch.setattr("brainbundles.postprocessing.crf.dense_crf", spy)
    out = CRFd(keys="pred", image_key="image", iterations=2, radius=1)(data)["pred"]
    assert seen["spacing"] == [2.0, 1.0, 1.5]
    assert isinstance(out, MetaTensor) and out.shape == pred.shape
    torch.testing.assert_close(out.affine, pred.affine)
    assert len(out.applied_operations) == 2
    torch.testing.assert_close(out.as_tensor().sum(0), torch.ones_like(p1))
    assert not torch.equal(out.as_tensor(), pred.as_tensor())
    # a plain image tensor: 1 mm
    CRFd(iterations=1, radius=1)({"pred": pred, "image": image})
    assert seen["spacing"] == [1.0, 1.0, 1.0]


def test_window_offsets_are_symmetric_and_complete():
    """Each offset in the window enters once (through o or -o): a one-hot q returns the kernel itself."""
    q = torch.zeros(1, 7, 7, 7, dtype=torch.float64)
    q[0, 3, 3, 3] = 1.0
    m = bilateral_message(q, torch.zeros(0, 7, 7, 7, dtype=torch.float64), (1, 1, 1), 1e9, 2, 1)[0]
    inner = m[1:6, 1:6, 1:6]
    assert float(m.sum()) == pytest.approx(124) and float(inner[2, 2, 2]) == 0
    assert all(
        float(inner[i, j, k]) == pytest.approx(1)
        for i, j, k in itertools.product(range(5), repeat=3)
        if (i, j, k) != (2, 2, 2)
    )


def test_crfd_image_channels_keeps_only_the_sequences(monkeypatch):
    """A bundle that appends non-image inputs (the WMH bundle's spatial features) keeps them out of the
    appearance kernel."""
    _, p1, image = _noisy_cube(n=8)
    seen = {}

    def spy(prob, image, spacing, **kw):
        seen["channels"] = image.shape[0]
        return prob

    monkeypatch.setattr("brainbundles.postprocessing.crf.dense_crf", spy)
    features = torch.cat([image, image * 2, image * 3])
    CRFd(image_channels=1)({"pred": torch.stack([1 - p1, p1]), "image": features})
    assert seen["channels"] == 1


def test_messages_are_normalised_by_the_kernel_mass_also_at_the_border():
    """With the same probabilities everywhere, every voxel's normalised message is ``weight * q`` (the
    kernel-weighted mean of identical neighbours), at the border too: one step gives
    ``softmax(log p + (w_s + w_b) p)`` at every voxel."""
    p = torch.tensor([0.7, 0.2, 0.1]).reshape(3, 1, 1, 1).expand(3, 7, 6, 5).contiguous()
    image = torch.randn(1, 7, 6, 5, generator=torch.Generator().manual_seed(0))
    out = dense_crf(p, image, iterations=1, spatial_weight=2.0, bilateral_weight=1.5, radius=1)
    expected = torch.softmax(p[:, 0, 0, 0].log() + 3.5 * p[:, 0, 0, 0], 0)
    torch.testing.assert_close(out, expected.reshape(3, 1, 1, 1).expand_as(p), atol=1e-5, rtol=1e-5)
