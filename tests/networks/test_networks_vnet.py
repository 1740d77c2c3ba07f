"""VNet specifics (Milletari et al., 2016): 5x5x5 residual stages, strided down-convs, concatenation skips."""

from __future__ import annotations

import pytest
import torch

from brainbundles.networks import VNet


def _stage_convs(stage: torch.nn.Module) -> list[torch.nn.Conv3d]:
    return [block.conv for block in stage.convs]


def test_paper_layout_with_default_features() -> None:
    net = VNet(3, 1, 2)
    assert net.features == (16, 32, 64, 128, 256)
    assert net.divisor == 16
    assert [len(s.convs) for s in [net.input_stage, *net.down_stages]] == [1, 2, 3, 3, 3]
    assert [len(s.convs) for s in net.up_stages] == [3, 3, 2, 1]  # decoder mirrors the encoder
    for stage in [net.input_stage, *net.down_stages, *net.up_stages]:
        assert all(c.kernel_size == (5, 5, 5) for c in _stage_convs(stage))
    for down in net.downs:
        assert down.conv.kernel_size == (2, 2, 2) and down.conv.stride == (2, 2, 2)
    for up in net.ups:
        assert isinstance(up.conv, torch.nn.ConvTranspose3d) and up.conv.stride == (2, 2, 2)
    # concatenation skips: the decoder stage of level i works on 2 * features[i] channels
    assert [s.convs[0].conv.in_channels for s in net.up_stages] == [256, 128, 64, 32]
    assert net.head.in_channels == 32 and net.head.kernel_size == (1, 1, 1)
    # per-channel PReLU, as in the reference implementation
    assert net.down_stages[0].act.num_parameters == 32


def test_convs_per_stage_is_configurable() -> None:
    net = VNet(2, 1, 2, features=(4, 8, 16), convs_per_stage=(2, 1, 4), kernel_size=3)
    assert [len(s.convs) for s in [net.input_stage, *net.down_stages]] == [2, 1, 4]
    assert [len(s.convs) for s in net.up_stages] == [1, 2]
    assert net.input_stage.convs[0].conv.kernel_size == (3, 3)
    assert VNet(2, 1, 2, features=(4, 8, 16)).convs_per_stage == (1, 2, 3)


@pytest.mark.parametrize(
    ("in_channels", "shortcut"), [(1, "_ChannelRepeat"), (2, "_ChannelRepeat"), (3, "Conv3d")]
)
def test_input_stage_shortcut(in_channels: int, shortcut: str) -> None:
    net = VNet(3, in_channels, 2, features=(4, 8))
    assert type(net.input_stage.shortcut).__name__ == shortcut
    x = torch.randn(1, in_channels, 8, 8, 8)
    if shortcut == "_ChannelRepeat":  # the paper replicates the input channels to features[0]
        out = net.input_stage.shortcut(x)
        torch.testing.assert_close(out, x.repeat(1, 4 // in_channels, 1, 1, 1))


def test_residual_stage_adds_its_input() -> None:
    torch.manual_seed(0)
    net = VNet(3, 1, 2, features=(4, 8), norm=None, act="relu").eval()
    stage = net.down_stages[0]
    x = torch.randn(1, 8, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(stage(x), torch.relu(stage.convs(x) + x))
