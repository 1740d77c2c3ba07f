"""Input channels: put a case's sequences in the bundle's order, fill the missing ones, and drop
sequences at random in training so a network learns to do without them.

A missing sequence is filled with zeros. After per-channel z-scoring of the brain (the bundles'
``NormalizeIntensityd(nonzero=True)``) zero is the mean brain intensity, and an all-zero channel stays
zero; :class:`RandDropChannelsd` zeroes channels *after* normalisation, so at inference a filled channel
looks exactly like a channel dropped in training. HeMIS-style networks
(:class:`brainbundles.networks.HeMIS`) read an all-zero channel as absent and leave it out of their
fusion (Havaei et al., MICCAI 2016).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

from brainbundles.data.sequences import normalise_channel

__all__ = ["ArrangeChannelsd", "RandDropChannelsd"]

logger = logging.getLogger("brainbundles")


class ArrangeChannelsd(MapTransform):
    """Reorder a loaded image's channels into ``channels`` order and fill the absent ones with zeros.

    The data dict's ``channels_key`` entry (a datalist item's ``"channels"``) names the loaded channels
    in file order (a Decathlon 4D file, or a case lacking some sequences); without it the image must
    already have ``len(channels)`` channels in bundle order. Each filled sequence is logged once per
    case, and the names of the filled ones are stored under ``missing_key`` (comma-separated, ``""``
    when none is missing); ``channels_key`` is removed so cases with and without it batch together.
    """

    def __init__(
        self,
        keys: KeysCollection,
        channels: Sequence[str],
        channels_key: str = "channels",
        missing_key: str = "missing_channels",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channels = [str(c) for c in channels]
        self.channels_key = channels_key
        self.missing_key = missing_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        given = d.pop(self.channels_key, None)  # popped: items with and without it collate alike
        d[self.missing_key] = ""
        if given is None:
            return d
        names = [normalise_channel(g, self.channels) for g in ([given] if isinstance(given, str) else given)]
        missing = [c for c in self.channels if c not in names]
        for key in self.key_iterator(d):
            img = d[key]
            if img.shape[0] != len(names):
                raise ValueError(
                    f"{_case(d)}: the image has {img.shape[0]} channels but '{self.channels_key}' names "
                    f"{len(names)} ({', '.join(names)})"
                )
            if names == self.channels:
                continue
            out = img.new_zeros((len(self.channels), *img.shape[1:]))
            for i, name in enumerate(names):
                out[self.channels.index(name)] = img[i]
            d[key] = out
        if missing:
            logger.warning(
                "%s: no %s; filled with zeros (the network was trained with these sequences dropped at random)",
                _case(d),
                ", ".join(missing),
            )
        d[self.missing_key] = ",".join(missing)
        return d


def _case(d: Mapping) -> str:
    return str(d.get("case") or d.get("reference") or "case")


class RandDropChannelsd(RandomizableTransform, MapTransform):
    """Sequence dropout: with probability ``prob`` zero a random non-empty subset of at most
    ``max_drop`` of the present channels (those of the first key that are not all zero: a sequence the
    case lacks is not dropped again), always keeping at least one present, the same ones for every key."""

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.3,
        max_drop: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if max_drop is not None and max_drop < 1:
            raise ValueError(f"max_drop: expected an integer >= 1 or None, got {max_drop!r}")
        self.max_drop = max_drop
        self._drop: np.ndarray = np.zeros(0, dtype=int)

    def randomize(self, present: Sequence[int]) -> None:
        """Choose the channels to drop among the indices ``present``."""
        super().randomize(None)
        n = len(present)
        if not self._do_transform or n < 2:
            self._drop = np.zeros(0, dtype=int)
            return
        most = n - 1 if self.max_drop is None else min(self.max_drop, n - 1)
        k = int(self.R.randint(1, most + 1))
        self._drop = np.asarray(present)[self.R.choice(n, size=k, replace=False)]

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        first = next(self.key_iterator(d), None)
        if first is None:
            return d
        img = d[first]
        self.randomize([c for c in range(img.shape[0]) if bool(img[c].any())])
        if len(self._drop):
            for key in self.key_iterator(d):
                img = d[key].clone()
                img[torch.as_tensor(self._drop)] = 0
                d[key] = img
        return d
