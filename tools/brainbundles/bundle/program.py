"""The exported program of a bundle (``models/model.pt2``, a ``torch.export`` archive): writing it, checking
that an archive holds nothing that would run code, loading it, and comparing it with the eager network."""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from brainbundles.bundle.configs import build_network, example_input
from brainbundles.errors import UnsafeFileError
from brainbundles.fileio import atomic_write
from brainbundles.paths import EXPORTED_FILE

__all__ = [
    "EXPORT_TOLERANCE",
    "export_network",
    "check_exported_archive",
    "load_exported",
    "compare_exported",
]

#: how far the exported program's output may be from the eager network's, relative to its range
EXPORT_TOLERANCE = 1e-4


def export_network(network: torch.nn.Module, example: torch.Tensor, path: str | os.PathLike) -> dict:
    """``torch.export`` the network for inputs shaped like ``example`` (any batch size where the
    network allows, else ``example``'s) and save the program to ``path`` atomically."""
    network = network.eval()
    with torch.no_grad():
        try:
            batch = torch.export.Dim("batch", min=1, max=1024)
            pair = torch.cat([example[:1], example[:1]])  # export specialises a dimension of size 1
            program = torch.export.export(network, (pair,), dynamic_shapes=({0: batch},))
            dynamic = True
        except Exception:  # noqa: BLE001 - some networks specialise on the batch size
            program = torch.export.export(network, (example,))
            dynamic = False
    program._example_inputs = None  # not shared: megabytes of random numbers
    buffer = io.BytesIO()  # saved from memory: the archive's folder is "archive", not the temporary name
    torch.export.save(program, buffer)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    shape = ["batch" if dynamic else example.shape[0], *example.shape[1:]]
    return {"file": Path(path).name, "format": "torch.export", "input_shape": shape, "dtype": "float32"}


#: members a torch.export archive written by :func:`export_network` holds
_PT2_MEMBER = re.compile(
    r"[^/]+/(archive_format|archive_version|byteorder|version|\.data/[^/]+|models/[^/]+\.json"
    r"|data/weights/(weight_\d+|[^/]+_weights_config\.json)|data/constants/[^/]+_constants_config\.json"
    r"|data/sample_inputs/[^/]+\.pt)"
)
#: graph nodes may call only ATen operators and these arithmetic functions (on symbolic sizes)
_PT2_TARGET = re.compile(
    r"torch\.ops\.aten\.\w+\.\w+|_operator\.(add|sub|mul|floordiv|truediv|mod|neg|getitem)"
)
#: names a symbolic size expression may use (torch parses them with sympy, which evaluates them)
_PT2_EXPR_NAMES = {"Symbol", "Integer", "Add", "Mul", "Pow", "FloorDiv", "Max", "Min", "Mod"}
_PT2_EXPR_NAMES |= {"positive", "integer", "True", "False"}


def _plain_expression(expr: str) -> bool:
    rest = re.sub(r"'s\d+'", "", expr)
    names = re.findall(r"[A-Za-z_]\w*", rest)
    return bool(re.fullmatch(r"[\w\s(),=+\-*/]*", rest)) and all(
        n in _PT2_EXPR_NAMES or re.fullmatch(r"s\d+", n) for n in names
    )


def _graph_strings(value, key: str | None = None):
    """(key, string) pairs of a serialised graph, keys of range constraints included."""
    if isinstance(value, dict):
        for k, v in value.items():
            if key == "range_constraints":
                yield "expr_str", k
            yield from _graph_strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _graph_strings(v, key)
    elif isinstance(value, str):
        yield key, value


def check_exported_archive(path: str | os.PathLike) -> None:
    """Refuse a ``.pt2`` archive with anything ``torch.export.load`` could run: members other than
    the graph, raw weights and configs; a pickle (sample inputs) holding more than tensors; pickled
    weights or constants; a graph node calling anything but ATen operators and arithmetic; a symbolic
    size that is not plain arithmetic (torch evaluates it with sympy). Raises :class:`UnsafeFileError`."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                refuse = f"{path}: refused: member {name!r} of the exported program"
                if not _PT2_MEMBER.fullmatch(name):
                    raise UnsafeFileError(f"{refuse} is not one torch.export writes for a network")
                if name.endswith("_config.json") and '"use_pickle": true' in z.read(name).decode():
                    raise UnsafeFileError(f"{refuse} stores pickled tensors")
                if name.endswith(".pt") and z.getinfo(name).file_size:  # empty: nothing torch unpickles
                    try:
                        torch.load(io.BytesIO(z.read(name)), weights_only=True)
                    except Exception as e:  # noqa: BLE001 - whatever it is, torch would unpickle it unsafely
                        raise UnsafeFileError(
                            f"{refuse} is a pickle that holds more than tensors ({e})"
                        ) from None
                if "/models/" in name:
                    for key, value in _graph_strings(json.loads(z.read(name))):
                        if key == "target" and not _PT2_TARGET.fullmatch(value):
                            raise UnsafeFileError(f"{refuse} calls {value!r}")
                        if key == "expr_str" and not _plain_expression(value):
                            raise UnsafeFileError(
                                f"{refuse} has a size expression that is code: {value[:80]!r}"
                            )
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path}: not a torch.export archive ({e})") from None


def load_exported(path: str | os.PathLike) -> torch.nn.Module:
    """The module of a ``torch.export`` program written by :func:`export_network`, after checking that
    :func:`check_exported_archive` passes. ``torch.export.load`` can still run code hidden in a file
    in ways no check foresees: load only programs you made or trust."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: exported program not found")
    check_exported_archive(path)
    return torch.export.load(str(path)).module()


def compare_exported(
    bundle_root: str | os.PathLike,
    network: torch.nn.Module | None = None,
    info: Mapping | None = None,
    path: str | os.PathLike | None = None,
) -> float:
    """Largest difference between the exported program's output and the eager network's (with the
    bundle's weights) on random inputs (a batch of 1, and one of 2 if the program takes any batch
    size, with a sequence missing in one sample), relative to the output range; ``ValueError`` above
    :data:`EXPORT_TOLERANCE`. ``info`` is what :func:`export_network` returned (default: the
    metadata's ``exported_model``); ``path`` the program (default ``models/model.pt2``)."""
    root = Path(bundle_root)
    if info is None:
        info = json.loads((root / "configs" / "metadata.json").read_text()).get("exported_model") or {}
    network = network if network is not None else build_network(root)
    path = Path(path) if path is not None else root / EXPORTED_FILE
    program = load_exported(path)
    dynamic = info.get("input_shape", [1])[0] == "batch"
    second = example_input(root, batch=2 if dynamic else 1, seed=2)
    if second.shape[1] > 1:
        second[0, 0] = 0  # a missing sequence, as the bundle fills it
    worst = 0.0
    with torch.no_grad():
        for x in (example_input(root, batch=1, seed=1), second):
            ref, out = network(x), program(x)
            if out.shape != ref.shape:
                raise ValueError(f"{path}: output shape {tuple(out.shape)}, eager {tuple(ref.shape)}")
            worst = max(worst, float((out - ref).abs().max() / ref.abs().max().clamp(min=1.0)))
    if not worst <= EXPORT_TOLERANCE:
        raise ValueError(
            f"{path}: differs from the eager network by {worst:.2e} (relative), "
            f"more than {EXPORT_TOLERANCE:g}"
        )
    return worst
