"""Tests of brainbundles.inference (precision, channels-last, one window or sliding windows) and of
brainbundles.transforms.brain_selector (the brain crop of the preprocessing)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.data.utils import list_data_collate
from monai.inferers import sliding_window_inference
from monai.transforms import CropForegroundd

import brainbundles.inference as inference
from brainbundles.inference import FastInferer, autocast_dtype, cpu_has_amx, cuda_amp, to_channels_last
from brainbundles.networks import UNetIN
from brainbundles.transforms import brain_selector, nonzero

CL3D = torch.channels_last_3d


def tiny_unet(seed: int = 0) -> UNetIN:
    """A 2-level U-Net (divisor 2) that rejects inputs whose spatial sizes are not divisible by 2."""
    torch.manual_seed(seed)
    net = UNetIN(spatial_dims=3, in_channels=1, out_channels=3, features=[4, 8])
    assert net.divisor == 2
    return net.eval()


class OneConv(torch.nn.Module):
    """A single 3x3x3 convolution (zero 'same' padding) that claims a divisor: zero-padding its input and
    cropping the output back leaves the result unchanged, so it checks the crop offsets independently."""

    def __init__(self, divisor: int = 4, in_channels: int = 1, out_channels: int = 2) -> None:
        super().__init__()
        self.divisor = divisor
        self.conv = torch.nn.Conv3d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for s in x.shape[2:]:
            assert s % self.divisor == 0, f"spatial size {s} not divisible by {self.divisor}"
        return self.conv(x)


class AutocastRecorder(torch.nn.Module):
    """A small conv stack that records, inside forward, the CPU autocast state and its conv output dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv3d(1, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv3d(4, 2, 1)
        self.records: list[tuple[bool, torch.dtype, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)
        self.records.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), h.dtype))
        return self.conv2(torch.relu(h))


class DDPLike(torch.nn.Module):
    """Like DistributedDataParallel: the real network is ``.module`` and the wrapper has no ``divisor``."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def padded_reference(net: torch.nn.Module, x: torch.Tensor, divisor: int) -> torch.Tensor:
    """The network on ``x`` zero-padded (centred, the extra voxel after) to ``divisor``, cropped back."""
    spatial = x.shape[2:]
    padded = [math.ceil(s / divisor) * divisor for s in spatial]
    before = [(p - s) // 2 for s, p in zip(spatial, padded, strict=True)]
    after = [p - s - b for s, p, b in zip(spatial, padded, before, strict=True)]
    # F.pad takes (last_before, last_after, ..., first_before, first_after)
    pad = [before[2], after[2], before[1], after[1], before[0], after[0]]
    with torch.no_grad():
        y = net(F.pad(x, pad))
    return y[
        :,
        :,
        before[0] : before[0] + spatial[0],
        before[1] : before[1] + spatial[1],
        before[2] : before[2] + spatial[2],
    ]


# ---------------------------------------------------------------- precision


@pytest.mark.parametrize("device", ["cpu", "cuda", torch.device("cpu"), torch.device("cuda")])
def test_fp32_is_plain_float32(device):
    assert autocast_dtype(device, "fp32") is None
    assert cuda_amp(device, "fp32") is False


def test_auto_on_cuda_is_float16():
    assert autocast_dtype("cuda", "auto") is torch.float16
    assert autocast_dtype(torch.device("cuda", 0), "auto") is torch.float16
    assert autocast_dtype("cuda") is torch.float16  # "auto" is the default


@pytest.mark.parametrize("amx", [True, False])
def test_auto_on_cpu_follows_amx(monkeypatch, amx):
    monkeypatch.setattr(inference, "cpu_has_amx", lambda: amx)
    assert autocast_dtype("cpu", "auto") is (torch.bfloat16 if amx else None)
    assert autocast_dtype("cpu") is (torch.bfloat16 if amx else None)


@pytest.mark.parametrize("amx", [True, False])
def test_auto_on_cpu_uses_amx_cache(monkeypatch, amx):
    monkeypatch.setattr(inference, "_amx", amx)
    assert cpu_has_amx() is amx
    assert autocast_dtype("cpu", "auto") is (torch.bfloat16 if amx else None)


def test_cpu_has_amx_probes_once_and_caches(monkeypatch):
    calls = []

    def fake_init():
        calls.append(1)
        return True

    monkeypatch.setattr(inference, "_amx", None)
    monkeypatch.setattr(torch._C._cpu, "_init_amx", fake_init)
    assert cpu_has_amx() is True
    assert cpu_has_amx() is True
    assert len(calls) == 1


def test_cpu_has_amx_runtime_error_is_false(monkeypatch):
    def failing_init():
        raise RuntimeError("no AMX")

    monkeypatch.setattr(inference, "_amx", None)
    monkeypatch.setattr(torch._C._cpu, "_init_amx", failing_init)
    assert cpu_has_amx() is False


def test_forced_precisions():
    assert autocast_dtype("cpu", "bf16") is torch.bfloat16
    assert autocast_dtype("cpu", "fp16") is torch.float16
    assert autocast_dtype("cuda", "fp16") is torch.float16


def test_other_devices_are_float32():
    for precision in ("auto", "bf16", "fp16"):
        assert autocast_dtype("meta", precision) is None


@pytest.mark.parametrize("precision", ["half", "float32", "", "FP32"])
def test_unknown_precision_raises(precision):
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype("cpu", precision)
    with pytest.raises(ValueError, match="precision"):
        cuda_amp("cuda", precision)


def test_bf16_on_cuda_without_support_raises(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(ValueError, match="bfloat16"):
        autocast_dtype("cuda", "bf16")


def test_bf16_on_cuda_with_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype("cuda", "bf16") is torch.bfloat16


def test_cuda_amp(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(inference, "cpu_has_amx", lambda: True)
    assert cuda_amp("cuda", "auto") is True
    assert cuda_amp("cuda") is True
    assert cuda_amp(torch.device("cuda"), "fp16") is True
    assert cuda_amp("cuda", "fp32") is False
    assert cuda_amp("cuda", "bf16") is False
    for precision in ("auto", "fp32", "bf16", "fp16"):  # fp16 on the CPU is autocast, but never AMP
        assert cuda_amp("cpu", precision) is False


# ---------------------------------------------------------------- training use: roi_size=None


@pytest.mark.parametrize("channels_last", [False, True])
def test_training_output_is_the_network_output(channels_last):
    net = tiny_unet()
    torch.manual_seed(1)
    x = torch.randn(2, 1, 16, 12, 8)
    with torch.no_grad():
        ref = net(x)
    out = FastInferer(roi_size=None, precision="fp32", channels_last=channels_last)(x, net)
    assert out.dtype == torch.float32
    assert out.shape == ref.shape == (2, 3, 16, 12, 8)
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_training_gradients_flow(channels_last):
    net = tiny_unet().train()
    torch.manual_seed(2)
    x = torch.randn(2, 1, 8, 8, 8)
    target = torch.randn(2, 3, 8, 8, 8)
    out = FastInferer(roi_size=None, precision="fp32", channels_last=channels_last)(x, net)
    assert out.requires_grad
    F.mse_loss(out, target).backward()
    params = [p for p in net.parameters() if p.requires_grad]
    assert params
    for p in params:
        assert p.grad is not None
        assert torch.isfinite(p.grad).all()
    assert any(p.grad.abs().sum() > 0 for p in params)


def test_bf16_runs_under_autocast_and_returns_float32():
    torch.manual_seed(3)
    net = AutocastRecorder()
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        ref = net(x)
    assert net.records == [(False, torch.get_autocast_dtype("cpu"), torch.float32)]
    net.records.clear()
    out = FastInferer(roi_size=None, precision="bf16")(x, net)
    assert net.records[0][0] is True
    assert net.records[0][1] == torch.bfloat16
    assert net.records[0][2] == torch.bfloat16
    assert out.dtype == torch.float32
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=0.1, rtol=0.05)  # bf16 rounding only
    assert not torch.is_autocast_enabled("cpu")  # the autocast context is left behind


def test_bf16_unet_conv_output_is_bfloat16():
    net = tiny_unet()
    seen = []
    first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv3d))
    first_conv.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    x = torch.randn(1, 1, 8, 8, 8)
    out = FastInferer(roi_size=None, precision="bf16")(x, net)
    assert seen == [torch.bfloat16]
    assert out.dtype == torch.float32


@pytest.mark.parametrize("amx", [True, False])
def test_auto_on_cpu_inferer_follows_amx(monkeypatch, amx):
    monkeypatch.setattr(inference, "cpu_has_amx", lambda: amx)
    net = AutocastRecorder()
    out = FastInferer(roi_size=None, precision="auto")(torch.randn(1, 1, 4, 4, 4), net)
    assert net.records[0][0] is amx
    assert net.records[0][2] == (torch.bfloat16 if amx else torch.float32)
    assert out.dtype == torch.float32


def test_fp32_runs_without_autocast():
    net = AutocastRecorder()
    FastInferer(roi_size=None, precision="fp32")(torch.randn(1, 1, 4, 4, 4), net)
    assert net.records[0][0] is False
    assert net.records[0][2] == torch.float32


# ---------------------------------------------------------------- one window


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(15, 17, 13), (16, 15, 14), (9, 10, 11)])
def test_whole_window_pads_to_divisor_centred(channels_last, shape):
    net = tiny_unet()
    torch.manual_seed(4)
    x = torch.randn(1, 1, *shape)
    ref = padded_reference(net, x, 2)
    inferer = FastInferer(
        roi_size=(8, 8, 8), max_window_voxels=10**6, precision="fp32", channels_last=channels_last
    )
    out = inferer(x, net)
    assert out.shape == (1, 3, *shape)
    assert out.dtype == torch.float32
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_whole_window_pads_asymmetrically_with_divisor_4():
    # 13 -> 16: 1 before, 2 after; 17 -> 20: 1 before, 2 after; 10 -> 12: 1 before, 1 after
    torch.manual_seed(5)
    net = UNetIN(spatial_dims=3, in_channels=1, out_channels=2, features=[4, 4, 8]).eval()
    assert net.divisor == 4
    x = torch.randn(1, 1, 13, 17, 10)
    ref = padded_reference(net, x, 4)
    out = FastInferer(roi_size=(8, 8, 8), max_window_voxels=10**6, precision="fp32")(x, net)
    assert out.shape == (1, 2, 13, 17, 10)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # the same padding the other way round (extra voxel before) gives a different answer
    with torch.no_grad():
        wrong = net(F.pad(x, [1, 1, 2, 1, 2, 1]))[:, :, 2:15, 2:19, 1:11]
    assert not torch.allclose(out, wrong, atol=1e-3)


@pytest.mark.parametrize("channels_last", [False, True])
def test_whole_window_matches_fully_convolutional_reference(channels_last):
    torch.manual_seed(6)
    net = OneConv(divisor=4).eval()
    x = torch.randn(2, 1, 13, 10, 7)
    with torch.no_grad():
        ref = net.conv(x)  # zero 'same' padding: what the padded, cropped run must give everywhere
    out = FastInferer(
        roi_size=(8, 8, 8), max_window_voxels=10**6, precision="fp32", channels_last=channels_last
    )(x, net)
    assert out.shape == (2, 2, 13, 10, 7)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_training_path_also_pads_non_divisible_input():
    torch.manual_seed(7)
    net = OneConv(divisor=4).eval()
    x = torch.randn(1, 1, 5, 6, 7)
    with torch.no_grad():
        ref = net.conv(x)
    out = FastInferer(roi_size=None, precision="fp32")(x, net)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_divisible_input_is_not_padded():
    seen = []

    class Spy(OneConv):
        def forward(self, x):
            seen.append(tuple(x.shape[2:]))
            return super().forward(x)

    net = Spy(divisor=4).eval()
    FastInferer(roi_size=(8, 8, 8), max_window_voxels=10**6, precision="fp32")(
        torch.randn(1, 1, 8, 12, 4), net
    )
    assert seen == [(8, 12, 4)]


def test_plain_callable_has_divisor_one():
    torch.manual_seed(8)
    conv = torch.nn.Conv3d(1, 2, 3, padding=1).eval()
    seen = []

    def fn(x):
        seen.append(tuple(x.shape))
        return conv(x)

    x = torch.randn(1, 1, 7, 5, 3)
    with torch.no_grad():
        ref = conv(x)
        out = FastInferer(roi_size=(4, 4, 4), max_window_voxels=10**6, precision="fp32")(x, fn)
    assert seen == [(1, 1, 7, 5, 3)]  # one window, unpadded
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- sliding windows


@pytest.mark.parametrize(
    ("max_window_voxels", "overlap", "mode"),
    [(0, 0.25, "gaussian"), (0, 0.5, "constant"), (1000, 0.25, "gaussian")],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_sliding_window_fallback_matches_monai(max_window_voxels, overlap, mode, channels_last):
    net = tiny_unet()
    torch.manual_seed(9)
    x = torch.randn(1, 1, 12, 10, 14)  # padded: 12*10*14 = 1680 voxels > 1000
    roi = (8, 8, 8)
    with torch.no_grad():
        ref = sliding_window_inference(x, roi, 4, net, overlap, mode)
        out = FastInferer(
            roi_size=roi,
            sw_batch_size=4,
            overlap=overlap,
            mode=mode,
            max_window_voxels=max_window_voxels,
            precision="fp32",
            channels_last=channels_last,
        )(x, net)
    assert out.shape == (1, 3, 12, 10, 14)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # and it differs from a single whole-window run (instance norm sees different statistics)
    whole = FastInferer(roi_size=roi, max_window_voxels=10**6, precision="fp32")(x, net)
    assert not torch.allclose(out, whole, atol=1e-3)


def test_window_choice_boundary(monkeypatch):
    calls = []
    real = inference.sliding_window_inference

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "sliding_window_inference", spy)
    net = OneConv(divisor=4).eval()
    x = torch.randn(1, 1, 7, 8, 5)  # padded to 8 x 8 x 8 = 512 voxels
    with torch.no_grad():
        FastInferer(roi_size=(4, 4, 4), max_window_voxels=512, precision="fp32")(x, net)
        assert calls == []  # exactly fits: one window
        FastInferer(roi_size=(4, 4, 4), max_window_voxels=511, precision="fp32")(x, net)
        assert calls == [1]
        FastInferer(roi_size=(4, 4, 4), max_window_voxels=0, precision="fp32")(x, net)
        assert calls == [1, 1]
        FastInferer(roi_size=None, max_window_voxels=0, precision="fp32")(x, net)
        assert calls == [1, 1]  # roi_size None: always the whole input


# ---------------------------------------------------------------- channels-last


def test_channels_last_converts_weights_in_place():
    net = tiny_unet()
    before = {name: p for name, p in net.named_parameters()}
    five_d = [p for p in net.parameters() if p.dim() == 5]
    assert any(not p.is_contiguous(memory_format=CL3D) for p in five_d)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    torch.manual_seed(10)
    x = torch.randn(1, 1, 8, 8, 8)
    out_plain = FastInferer(roi_size=None, precision="fp32", channels_last=False)(x, net)
    assert any(not p.is_contiguous(memory_format=CL3D) for p in five_d)  # channels_last=False: untouched
    out_cl = FastInferer(roi_size=None, precision="fp32", channels_last=True)(x, net)
    for p in net.parameters():
        if p.dim() == 5:
            assert p.is_contiguous(memory_format=CL3D)
    after = dict(net.named_parameters())
    assert after.keys() == before.keys()
    for name, p in after.items():
        assert p is before[name]
    assert all(p is q for p, q in zip(optimizer.param_groups[0]["params"], net.parameters(), strict=True))
    torch.testing.assert_close(out_cl, out_plain, atol=1e-5, rtol=1e-5)
    # an optimizer step on the converted parameters still updates them
    F.mse_loss(FastInferer(roi_size=None, precision="fp32")(x, net), torch.zeros_like(out_cl)).backward()
    w = before[next(n for n, p in before.items() if p.dim() == 5)]
    old = w.detach().clone()
    optimizer.step()
    assert not torch.equal(w.detach(), old)


def test_channels_last_skips_4d_inputs():
    class Mixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv2 = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.conv3 = torch.nn.Conv3d(3, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv2(x)

    torch.manual_seed(15)
    net = Mixed()
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        ref = net(x)
        out = FastInferer(roi_size=None, precision="fp32", channels_last=True)(x, net)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert net.conv2.weight.is_contiguous()
    assert not net.conv3.weight.is_contiguous(memory_format=CL3D)  # a 4D input converts nothing


def test_to_channels_last_mixed_2d_3d():
    torch.manual_seed(11)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.Conv3d(3, 4, 3, padding=1),
        torch.nn.Linear(4, 2),
    )
    ids = [id(p) for p in net.parameters()]
    values = [p.detach().clone() for p in net.parameters()]
    assert not net[1].weight.is_contiguous(memory_format=CL3D)
    assert to_channels_last(net) is net
    assert net[1].weight.is_contiguous(memory_format=CL3D)
    w2d = net[0].weight
    assert w2d.is_contiguous()
    assert not w2d.is_contiguous(memory_format=torch.channels_last)
    assert [id(p) for p in net.parameters()] == ids
    for p, v in zip(net.parameters(), values, strict=True):
        assert torch.equal(p, v)
    to_channels_last(net)  # idempotent
    assert net[1].weight.is_contiguous(memory_format=CL3D)


# ---------------------------------------------------------------- metadata and wrappers


@pytest.mark.parametrize("max_window_voxels", [10**6, 0])
def test_metatensor_keeps_affine(max_window_voxels):
    net = tiny_unet()
    affine = torch.tensor(
        [[0.0, -2.0, 0.0, 10.0], [1.5, 0.0, 0.0, -4.0], [0.0, 0.0, 3.0, 7.0], [0.0, 0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )
    torch.manual_seed(12)
    items = [MetaTensor(torch.randn(1, 11, 10, 9), affine=affine) for _ in range(2)]
    batch = list_data_collate(items)
    assert isinstance(batch, MetaTensor) and batch.is_batch
    with torch.no_grad():
        out = FastInferer(roi_size=(8, 8, 8), max_window_voxels=max_window_voxels, precision="fp32")(
            batch, net
        )
        ref = FastInferer(roi_size=(8, 8, 8), max_window_voxels=max_window_voxels, precision="fp32")(
            batch.as_tensor(), net
        )
    assert isinstance(out, MetaTensor)
    assert not isinstance(ref, MetaTensor)
    assert out.shape == (2, 3, 11, 10, 9)
    assert out.dtype == torch.float32
    assert out.affine.shape == batch.affine.shape == (2, 4, 4)
    torch.testing.assert_close(out.affine, batch.affine)
    for i in range(2):
        torch.testing.assert_close(out.affine[i].to(affine.dtype), affine)
    torch.testing.assert_close(out.as_tensor(), ref, atol=1e-5, rtol=1e-5)


def test_metatensor_unbatched_keeps_affine():
    net = OneConv(divisor=4).eval()
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([5.0, -6.0, 7.0], dtype=torch.float64)
    x = MetaTensor(torch.randn(1, 1, 5, 6, 7), affine=affine)
    with torch.no_grad():
        out = FastInferer(roi_size=(4, 4, 4), max_window_voxels=10**6, precision="fp32")(x, net)
    assert isinstance(out, MetaTensor)
    torch.testing.assert_close(out.affine.to(torch.float64), affine)
    assert out.shape == (1, 2, 5, 6, 7)


def test_ddp_like_wrapper_uses_inner_divisor():
    inner = tiny_unet()
    wrapper = DDPLike(inner).eval()
    assert not hasattr(wrapper, "divisor")
    torch.manual_seed(13)
    x = torch.randn(1, 1, 15, 17, 13)
    with pytest.raises(ValueError, match="divisible"):  # the bare network needs the padding
        inner(x)
    ref = padded_reference(inner, x, 2)
    out = FastInferer(roi_size=(8, 8, 8), max_window_voxels=10**6, precision="fp32")(x, wrapper)
    assert out.shape == (1, 3, 15, 17, 13)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_ddp_like_wrapper_divisor_4():
    inner = OneConv(divisor=4).eval()
    wrapper = DDPLike(inner).eval()
    x = torch.randn(1, 1, 9, 6, 3)
    with torch.no_grad():
        ref = inner.conv(x)
    out = FastInferer(roi_size=None, precision="fp32")(x, wrapper)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert inner.conv.weight.is_contiguous(memory_format=CL3D)  # the wrapper's parameters are the inner's


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("precision", ["half", "float16", "bfloat16", "AUTO"])
def test_inferer_rejects_unknown_precision(precision):
    with pytest.raises(ValueError, match="precision"):
        FastInferer(roi_size=(8, 8, 8), precision=precision)


@pytest.mark.parametrize("max_window_voxels", [-1, -1000])
def test_inferer_rejects_negative_window(max_window_voxels):
    with pytest.raises(ValueError, match="max_window_voxels"):
        FastInferer(roi_size=(8, 8, 8), max_window_voxels=max_window_voxels)


def test_inferer_defaults():
    inferer = FastInferer(roi_size=[8, 8, 8])
    assert inferer.roi_size == (8, 8, 8)
    assert inferer.precision == "auto"
    assert inferer.channels_last is True
    assert inferer.max_window_voxels == 0
    assert FastInferer().roi_size is None


# ---------------------------------------------------------------- brain_selector


def test_brain_selector_selects_nonzero():
    x = torch.tensor([[0.0, -1.5, 2.0], [0.0, 1e-6, -0.0]])
    expected = torch.tensor([[False, True, True], [False, True, False]])
    assert brain_selector(True) is nonzero
    assert brain_selector() is nonzero
    mask = brain_selector(True)(x)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_brain_selector_false_selects_everything():
    x = torch.tensor([[0.0, -1.5, 2.0], [0.0, 0.0, 0.0]])
    mask = brain_selector(False)(x)
    assert mask.dtype == torch.bool
    assert mask.shape == x.shape
    assert bool(mask.all())
    assert bool(brain_selector(False)(torch.zeros(2, 3, 4)).all())


def _image_with_block() -> MetaTensor:
    img = torch.zeros(1, 14, 12, 13)
    torch.manual_seed(14)
    block = torch.randn(3, 4, 5).abs() + 0.5
    block[0] = -block[0]  # a z-scored brain: its first slab is negative
    img[0, 5:8, 4:8, 3:8] = block
    return MetaTensor(img, affine=torch.eye(4, dtype=torch.float64))


def test_crop_foreground_with_brain_selector():
    img = _image_with_block()
    common = {"keys": "image", "source_key": "image", "margin": 2, "allow_smaller": True}

    full = CropForegroundd(select_fn=brain_selector(False), **common)({"image": img.clone()})["image"]
    assert full.shape == (1, 14, 12, 13)
    torch.testing.assert_close(full.as_tensor(), img.as_tensor())

    cropped = CropForegroundd(select_fn=brain_selector(True), **common)({"image": img.clone()})["image"]
    assert cropped.shape == (1, 3 + 4, 4 + 4, 5 + 4)
    torch.testing.assert_close(cropped.as_tensor(), img.as_tensor()[:, 3:10, 2:10, 1:10])
    assert torch.count_nonzero(cropped) == torch.count_nonzero(img)  # all of the block, negatives too
    # the crop moved the origin by the voxels cut before the block
    torch.testing.assert_close(
        cropped.affine[:3, 3].to(torch.float64), torch.tensor([3.0, 2.0, 1.0]).double()
    )

    # MONAI's default (x > 0) would cut off the negative slab
    default = CropForegroundd(**common)({"image": img.clone()})["image"]
    assert default.shape[1] == 2 + 4


class _Loader:
    """A list that records which items have been read and fails at ``fail_at``."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at, self.read = n, fail_at, []

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for i in range(self.n):
            if i == self.fail_at:
                raise ValueError(f"case {i}: unreadable")
            self.read.append(i)
            yield i


@pytest.mark.parametrize("enabled", [True, False])
def test_prefetch_yields_every_item_in_order(enabled):
    p = inference.Prefetch(_Loader(5), enabled=enabled)
    assert len(p) == 5
    assert list(p) == [0, 1, 2, 3, 4]
    assert list(p) == [0, 1, 2, 3, 4]  # again: a new pass


def test_prefetch_raises_a_loading_error_at_its_item():
    got = []
    with pytest.raises(ValueError, match="case 2: unreadable"):
        for item in inference.Prefetch(_Loader(4, fail_at=2)):
            got.append(item)
    assert got == [0, 1]


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    import threading

    for item in inference.Prefetch(_Loader(100)):
        if item == 1:
            break
    assert not [t for t in threading.enumerate() if t.name == "brainbundles-prefetch"]


def test_prefetch_attached_loads_the_next_item_after_the_forward_pass():
    """Attached to an engine, item k+1 is read only once the network has run on item k."""
    from ignite.engine import Engine
    from monai.engines.utils import IterationEvents

    loader = _Loader(3)
    prefetch = inference.Prefetch(loader)
    seen = []

    def step(engine, item):
        import time

        time.sleep(0.3)  # time enough for an eager prefetch to read the next item
        seen.append((item, list(loader.read)))
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        return item

    engine = Engine(step)
    engine.register_events(*IterationEvents)
    prefetch.attach(engine)
    engine.run(prefetch, max_epochs=1)
    # during item k's step (before its forward pass completed) nothing after item k had been read
    assert seen == [(0, [0]), (1, [0, 1]), (2, [0, 1, 2])]
