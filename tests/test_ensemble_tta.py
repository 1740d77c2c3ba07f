"""Fold ensembles and test-time augmentation (`brainbundles.inference.EnsembleInferer`): the mean of the
members' and views' probabilities, checked against hand computations on a small volume."""

from __future__ import annotations

import itertools

import pytest
import torch

from brainbundles.bundle.weights import save_weights
from brainbundles.inference import EnsembleInferer, FastInferer, ensemble_members


def _net(seed: int, out_channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, out_channels, 3, padding=1)
    ).eval()


def _plain(x, net):
    return net(x)


X = torch.randn(1, 2, 6, 7, 5, generator=torch.Generator().manual_seed(0))


def test_without_members_or_views_the_output_is_the_wrapped_inferers():
    net = _net(0)
    with torch.no_grad():
        assert torch.equal(EnsembleInferer(_plain)(X, net), net(X))


def test_mirroring_tta_is_the_mean_of_the_flipped_predictions_flipped_back():
    net = _net(1)
    with torch.no_grad():
        out = EnsembleInferer(_plain, flip_axes=(0, 1, 2))(X, net)
        expected = torch.zeros(1, 3, 6, 7, 5)
        combos = [c for r in range(4) for c in itertools.combinations((2, 3, 4), r)]
        for dims in combos:
            y = net(torch.flip(X, dims)) if dims else net(X)
            expected += torch.softmax(torch.flip(y, dims) if dims else y, 1)
        expected /= len(combos)
        assert len(combos) == 8 and out.shape == net(X).shape
        torch.testing.assert_close(torch.softmax(out, 1), expected, rtol=1e-5, atol=1e-6)
        # the network is not symmetric: TTA changes the prediction
        assert not torch.allclose(torch.softmax(out, 1), torch.softmax(net(X), 1), atol=1e-3)


def test_rot90_views_are_turned_back():
    """A network that only reads each voxel (1x1x1 convolution) gives the same output for every view."""
    torch.manual_seed(3)
    net = torch.nn.Conv3d(2, 3, 1).eval()
    with torch.no_grad():
        plain = torch.softmax(net(X), 1)
        out = EnsembleInferer(_plain, flip_axes=(0,), rot90=True)(X, net)
        torch.testing.assert_close(torch.softmax(out, 1), plain, rtol=1e-5, atol=1e-6)


def test_ensemble_is_the_mean_of_the_members_probabilities(tmp_path):
    members = []
    for k in range(3):
        d = tmp_path / "models" / f"fold_{k}"
        d.mkdir(parents=True)
        save_weights(_net(10 + k).state_dict(), d / "model.safetensors")
        members.append(d / "model.safetensors")
    (tmp_path / "models" / "fold_3").mkdir()  # a fold still training: no weights yet
    assert ensemble_members(tmp_path / "models") == members
    net = _net(99)
    with torch.no_grad():
        out = EnsembleInferer(_plain, members)(X, net)
        expected = sum(torch.softmax(_net(10 + k)(X), 1) for k in range(3)) / 3
        torch.testing.assert_close(torch.softmax(out, 1), expected, rtol=1e-5, atol=1e-6)


def test_sigmoid_outputs_average_in_probability_space(tmp_path):
    members = []
    for k in range(2):
        save_weights(_net(20 + k, 2).state_dict(), tmp_path / f"m{k}.safetensors")
        members.append(tmp_path / f"m{k}.safetensors")
    inferer = EnsembleInferer(FastInferer(precision="fp32", channels_last=False), members, "sigmoid", (1,))
    with torch.no_grad():
        out = inferer(X, _net(0, 2))
        expected = 0
        for k in range(2):
            net = _net(20 + k, 2)
            expected = (
                expected + torch.sigmoid(net(X)) + torch.sigmoid(torch.flip(net(torch.flip(X, (3,))), (3,)))
            )
        torch.testing.assert_close(torch.sigmoid(out), expected / 4, rtol=1e-4, atol=1e-5)


def test_members_sorted_by_fold_number(tmp_path):
    for k in (10, 2):
        (tmp_path / f"fold_{k}").mkdir()
        save_weights(_net(0).state_dict(), tmp_path / f"fold_{k}" / "model.safetensors")
    assert [p.parent.name for p in ensemble_members(tmp_path)] == ["fold_2", "fold_10"]
    assert ensemble_members(tmp_path / "none") == []


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="activation"):
        EnsembleInferer(_plain, activation="relu")
    with pytest.raises(ValueError, match="flip_axes"):
        EnsembleInferer(_plain, flip_axes=(3,))(X, _net(0))
