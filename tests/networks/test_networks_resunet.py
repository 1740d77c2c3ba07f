"""ResUNet specifics: NeuroNet-like residual encoder (num_res_units units per scale, strided convolutions)."""

from __future__ import annotations

import torch

from brainbundles.networks import ResUNet
from brainbundles.networks.resunet import _PreActResidualUnit


def test_neuronet_layout_with_default_features() -> None:
    net = ResUNet(3, 1, 2)
    assert net.features == (16, 32, 64, 128) and net.num_res_units == 2 and net.divisor == 8
    # full resolution: the stem convolution only (as in the DLTK NeuroNet code); 2 units at each lower scale
    assert net.stem.kernel_size == (3, 3, 3) and net.stem.out_channels == 16
    assert len(net.encoders) == 3
    for scale, encoder in enumerate(net.encoders, start=1):
        units = list(encoder)
        assert len(units) == 2 and all(isinstance(u, _PreActResidualUnit) for u in units)
        assert units[0].conv1.stride == (2, 2, 2)  # strided-convolution downsampling
        assert units[0].shortcut.stride == (2, 2, 2)
        assert units[1].conv1.stride == (1, 1, 1)
        assert all(u.conv2.out_channels == net.features[scale] for u in units)
    assert not [m for m in net.modules() if isinstance(m, torch.nn.MaxPool3d | torch.nn.AvgPool3d)]
    # concatenation skips: each decoder unit sees 2 * features[s] channels
    assert [d.conv1.in_channels for d in net.decoders] == [128, 64, 32]
    assert net.head[-1].in_channels == 16 and net.head[-1].kernel_size == (1, 1, 1)


def test_num_res_units_is_configurable() -> None:
    net = ResUNet(2, 1, 2, features=(4, 8, 16), num_res_units=3)
    assert [len(e) for e in net.encoders] == [3, 3]
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 1, 8, 12)).shape == (1, 2, 8, 12)


def test_residual_unit_identity_shortcut() -> None:
    torch.manual_seed(0)
    unit = _PreActResidualUnit(3, 4, 4, 1, "relu", "instance", 0.0).eval()
    assert isinstance(unit.shortcut, torch.nn.Identity)
    x = torch.randn(1, 4, 8, 8, 8)
    with torch.no_grad():
        h = unit.conv2(unit.act2(unit.norm2(unit.conv1(unit.act1(unit.norm1(x))))))
        torch.testing.assert_close(unit(x), h + x)
    strided = _PreActResidualUnit(3, 4, 8, 2, "relu", "instance", 0.0)
    assert strided.shortcut.stride == (2, 2, 2) and strided.shortcut.kernel_size == (1, 1, 1)
