"""Argument validation for the networks of :mod:`brainbundles.networks`: per-argument checks, and
:func:`validate_common` for the U-Net family's shared signature, built from them.

Every check raises ``ValueError`` whose message starts with the argument's name. Private to the package.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._common import ActType, NormType, make_act, make_norm

__all__ = [
    "check_act",
    "check_dropout",
    "check_int",
    "check_int_sequence",
    "check_norm",
    "check_spatial_dims",
    "validate_common",
]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_spatial_dims(spatial_dims: object, allowed: Sequence[int] = (2, 3)) -> int:
    """Return ``spatial_dims`` if it is an int in ``allowed``; raise ``ValueError`` naming it otherwise."""
    if not _is_int(spatial_dims) or spatial_dims not in allowed:
        choices = " or ".join(str(a) for a in allowed)
        raise ValueError(f"spatial_dims must be {choices}, got {spatial_dims!r}.")
    return int(spatial_dims)  # type: ignore[call-overload]


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an int (not a bool) ``>= minimum``; raise ``ValueError`` naming ``name``."""
    if not _is_int(value) or value < minimum:  # type: ignore[operator]
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)  # type: ignore[call-overload]


def check_int_sequence(name: str, value: object, min_len: int = 1, minimum: int = 1) -> tuple[int, ...]:
    """Return ``value`` as a tuple of ints if it is a sequence of at least ``min_len`` ints ``>= minimum``."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a sequence of ints, got {value!r}.")
    if len(value) < min_len:
        raise ValueError(f"{name} must have at least {min_len} entries, got {tuple(value)!r}.")
    if not all(_is_int(v) and v >= minimum for v in value):
        raise ValueError(f"{name} must contain only ints >= {minimum}, got {tuple(value)!r}.")
    return tuple(int(v) for v in value)


def check_dropout(dropout: object) -> float:
    """Return ``dropout`` as a float if it lies in [0, 1); NaN, bools and strings are rejected."""
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not (0.0 <= float(dropout) < 1.0):
        raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}.")
    return float(dropout)


def check_act(act: ActType, channels: int = 1) -> None:
    """Raise ``ValueError`` naming ``act`` unless MONAI can build the activation."""
    try:
        make_act(act, channels=channels)
    except Exception as e:  # MONAI raises ValueError / TypeError / KeyError depending on the mistake
        raise ValueError(f"act {act!r} is not a valid activation: {e}") from e


def check_norm(
    norm: NormType, spatial_dims: int, channels: Iterable[int], allow_none: bool = True, context: str = ""
) -> None:
    """Raise ``ValueError`` naming ``norm`` unless it builds for every channel count in ``channels``
    (``context`` is added to the message, e.g. the widths the counts come from)."""
    if norm is None or norm == "":
        if not allow_none:
            raise ValueError(f"norm must name a normalisation for this network, got {norm!r}.")
        return
    for c in sorted(set(channels)):
        try:
            make_norm(norm, spatial_dims, channels=c)
        except Exception as e:
            raise ValueError(
                f"norm {norm!r} is not a valid normalisation for {c} channels{context}: {e}"
            ) from e


def validate_common(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    features: Sequence[int],
    dropout: float,
    act: ActType,
    norm: NormType,
    min_levels: int = 2,
) -> tuple[int, ...]:
    """Validate the arguments the U-Net family shares; return ``features`` as a tuple of ints.

    Raises:
        ValueError: naming the offending argument.
    """
    check_spatial_dims(spatial_dims)
    check_int("in_channels", in_channels)
    check_int("out_channels", out_channels)
    feats = check_int_sequence("features", features, min_len=min_levels)  # one entry per resolution level
    check_dropout(dropout)
    check_act(act)
    # The networks normalise features[i] and (in decoders) 2 * features[i] channels: check each count, so
    # that e.g. a group count that does not divide one of them is reported against ``norm``.
    check_norm(norm, spatial_dims, [c * k for c in feats for k in (1, 2)], context=f" (features {feats})")
    return feats
