"""A bundle's configs read into objects: the merged configs of a workflow, and the network."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from brainbundles.bundle.weights import find_weights, load_weights
from brainbundles.paths import config_files

__all__ = ["parse_bundle", "build_network", "example_input"]


def parse_bundle(bundle_root: str | os.PathLike, workflow: str, **overrides) -> ConfigParser:
    """A ``ConfigParser`` holding a workflow's merged configs and metadata, with ``bundle_root`` set."""
    root = Path(bundle_root)
    parser = ConfigParser()
    parser.read_config(config_files(root, workflow))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser["bundle_root"] = str(root)
    for k, v in overrides.items():
        parser[k] = v
    return parser


def build_network(bundle_root: str | os.PathLike, weights: bool = True) -> torch.nn.Module:
    """The bundle's ``network_def`` on the CPU in eval mode, with its trained weights."""
    root = Path(bundle_root)
    net = parse_bundle(root, "inference").get_parsed_content("network_def")
    if weights:
        net.load_state_dict(load_weights(find_weights(root / "models")))
    return net.eval()


def example_input(bundle_root: str | os.PathLike, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A random network input of the bundle's patch (sliding-window) size: ``[batch, C, *patch]``; ``C`` is
    the config's ``in_channels`` where it has one (a bundle that adds channels, e.g. spatial features), else
    the number of ``channels``."""
    parser = parse_bundle(bundle_root, "inference")
    key = "in_channels" if "in_channels" in parser else "channels"
    channels = parser.get_parsed_content(key) if key == "in_channels" else len(parser.get_parsed_content(key))
    patch = [int(s) for s in parser.get_parsed_content("patch_size")]
    return torch.randn((batch, channels, *patch), generator=torch.Generator().manual_seed(seed))
