"""What only the brain tissue bundle does: the networks ``network_def`` selects. Everything every bundle
does (configs, metadata, the model zoo's commands, training, evaluation, inference in native space, bad
input, real scans) is in ``test_bundle_contract.py``."""

from __future__ import annotations

import pytest
import torch

from brainbundles.bundle.configs import parse_bundle
from brainbundles.workflows import resolve_bundle

BUNDLE = resolve_bundle("brain_tissue_mri_segmentation")


@pytest.mark.parametrize("network", ["UNetIN", "VNet", "ResUNet"])
def test_network_selected_by_network_def(network):
    parser = parse_bundle(BUNDLE, "inference")
    parser["network_def#_target_"] = f"brainbundles.networks.{network}"
    parser["network_def#features"] = [4, 8, 16, 32]
    net = parser.get_parsed_content("network_def")
    assert type(net).__name__ == network
    assert net(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 4, 16, 16, 16)
