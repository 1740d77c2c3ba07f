"""Access to a network's output (classification) layer, for two-phase training.

Havaei et al. (2017, "Brain tumor segmentation with deep neural networks", Medical Image Analysis) train in two
phases: first on class-balanced patches, then only the output layer is retrained on patches drawn with the
true class distribution, to recalibrate the output probabilities. Networks that support this expose their
final layer as the attribute ``output_layer``; :func:`output_layer_parameters` returns its parameters, e.g.
``torch.optim.SGD(output_layer_parameters(net), lr=...)`` for the second phase.
"""

from __future__ import annotations

import torch.nn as nn

__all__ = ["output_layer_parameters"]


def output_layer_parameters(network: nn.Module) -> list[nn.Parameter]:
    """Return the parameters of ``network.output_layer`` (weight, then bias).

    Wrappers are unwrapped first: ``DistributedDataParallel``/``DataParallel`` (through ``.module``) and
    ``torch.compile`` (through ``._orig_mod``), repeatedly.

    Raises:
        ValueError: if ``network`` (once unwrapped) has no ``output_layer`` module.
    """
    current: object = network
    for _ in range(16):  # wrappers can nest (e.g. DDP around a compiled module); never loop forever
        if not isinstance(current, nn.Module):
            break
        layer = getattr(current, "output_layer", None)
        if isinstance(layer, nn.Module):
            return list(layer.parameters())
        inner = current._modules.get("module")
        if inner is None:
            inner = current._modules.get("_orig_mod")
        if inner is None:
            break
        current = inner
    raise ValueError(
        f"network ({type(network).__name__}) has no output_layer: two-phase training needs a network that "
        "exposes its final layer as the attribute output_layer."
    )
