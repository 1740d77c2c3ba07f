"""Checks that a bundle folder is complete, consistent and safe to run (``brainbundles verify``).

A bundle's configs are code: MONAI evaluates every ``$`` expression with ``eval``, instantiates
every ``_target_`` and imports some values by name. :func:`check_config_code` therefore compares them
(and ``logging.conf``) with those of the bundles that ship with brainbundles, so that a downloaded
bundle runs nothing new unless the user trusts it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from monai.bundle import verify_metadata as monai_verify_metadata
from monai.bundle import verify_net_in_out as monai_verify
from monai.bundle.reference_resolver import ReferenceResolver

from brainbundles import networks
from brainbundles.bundle.configs import build_network, parse_bundle
from brainbundles.bundle.program import check_exported_archive, compare_exported
from brainbundles.bundle.weights import find_weights, fold_weights, load_weights
from brainbundles.data.labels import LABEL_CONVENTIONS
from brainbundles.errors import UnsafeFileError
from brainbundles.fileio import sha256_file
from brainbundles.paths import EXPORTED_FILE, META_SCHEMA, PICKLE_SUFFIXES, WORKFLOWS, bundles_dir

__all__ = [
    "verify_metadata",
    "verify_configs",
    "verify_net_in_out",
    "verify_checksums",
    "check_pickles",
    "config_code",
    "check_config_code",
    "verify_ensemble",
    "verify_bundle",
]


def verify_metadata(bundle_root: str | os.PathLike) -> None:
    """Validate ``configs/metadata.json`` against the model-zoo fields with MONAI's ``verify_metadata``
    (the schema is the package's copy, so nothing is downloaded)."""
    monai_verify_metadata(
        meta_file=str(Path(bundle_root) / "configs" / "metadata.json"), filepath=str(META_SCHEMA)
    )


def _references(value, found: set[str]) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _references(v, found)
    elif isinstance(value, list):
        for v in value:
            _references(v, found)
    elif isinstance(value, str):
        found.update(r.replace("::", "#") for r in ReferenceResolver.match_refs_pattern(value))


def verify_configs(bundle_root: str | os.PathLike) -> dict[str, list[str]]:
    """Every workflow's configs parse, every JSON is valid, and every ``@id`` reference names an id
    that exists. Returns the ids referenced per workflow; raises ``ValueError`` listing missing ones."""
    root = Path(bundle_root)
    for f in sorted((root / "configs").glob("*.json")):
        try:
            json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: invalid JSON ({e})") from e
    out: dict[str, list[str]] = {}
    for wf, (files, run_id) in WORKFLOWS.items():
        if not all((root / "configs" / f).is_file() for f in files):
            continue
        parser = parse_bundle(root, wf)
        refs: set[str] = set()
        _references(parser.get(), refs)
        missing = sorted(r for r in refs if r not in parser)
        if missing:
            raise ValueError(f"{root} workflow {wf}: references to missing ids {missing}")
        if run_id not in parser:
            raise ValueError(f"{root} workflow {wf}: no '{run_id}' id to run")
        out[wf] = sorted(refs)
    return out


def verify_net_in_out(bundle_root: str | os.PathLike, **overrides) -> None:
    """MONAI's ``verify_net_in_out`` on the bundle's network and metadata (on the CPU)."""
    root = Path(bundle_root)
    args = {f"network_def#{k}": v for k, v in overrides.items()}
    monai_verify(
        net_id="network_def",
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=str(root / "configs" / "inference.json"),
        device="cpu",
        bundle_root=str(root),
        **args,
    )


def verify_checksums(bundle_root: str | os.PathLike, strict: bool = False) -> int:
    """Every file in the metadata's ``files_sha256`` exists and has that sha256; with ``strict`` (a
    downloaded bundle), no other file is present either (hidden files aside). Returns the number of
    files checked; raises ``ValueError`` naming the first bad file. A bundle that was never exported
    has no checksums: 0."""
    root = Path(bundle_root)
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    sums = meta.get("files_sha256")
    if not sums:
        if strict:
            raise ValueError(
                f"{root / 'configs' / 'metadata.json'}: no files_sha256 (the bundle was not exported)"
            )
        return 0
    for rel, expected in sorted(sums.items()):
        path = root / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise ValueError(f"{root}: files_sha256 names a path outside the bundle: {rel!r}")
        if not path.is_file():
            raise ValueError(f"{path}: listed in files_sha256 but missing")
        if sha256_file(path) != expected:
            raise ValueError(f"{path}: sha256 differs from the metadata's (the file changed after export)")
    if strict:
        present = {
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        }
        extra = sorted(present - set(sums) - {"configs/metadata.json"})
        if extra:
            raise ValueError(f"{root}: files not covered by the metadata's checksums: {extra}")
    return len(sums)


def check_pickles(bundle_root: str | os.PathLike) -> list[str]:
    """Every pickle in the bundle (``.pt``, ``.pth``, ...) holds only tensors: each is opened with
    ``torch.load(weights_only=True)``, which refuses one that would import or call anything, so nothing
    of it runs. Returns the files checked; raises :class:`UnsafeFileError` naming a bad one."""
    root = Path(bundle_root)
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in PICKLE_SUFFIXES)
    for p in found:
        load_weights(p)
    return [p.relative_to(root).as_posix() for p in found]


#: a string MONAI could import and call: a dotted path or a bare name (a builtin, e.g. ``open``)
_NAME_LIKE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _code(value, found: set[str], key: str | None = None, names: bool = True) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _code(v, found, k, names)
    elif isinstance(value, list):
        for v in value:
            _code(v, found, None, names)
    elif isinstance(value, str) and (
        key == "_target_" or value.startswith(("$", "%")) or (names and _NAME_LIKE.fullmatch(value))
    ):
        found.add(value)


def config_code(bundle_root: str | os.PathLike) -> dict[str, set[str]]:
    """What in a bundle's configs could name code, per file: ``$`` expressions, ``%`` macros,
    ``_target_``s, and every other string shaped like a Python name (MONAI imports some values, such
    as a reader's name, and calls them), metadata aside; ``logging.conf`` (Python's logging set-up,
    which can write files) is there whole."""
    root = Path(bundle_root)
    out: dict[str, set[str]] = {}
    for f in sorted((root / "configs").glob("*.json")):
        found: set[str] = set()
        try:
            # metadata values are never instantiated: only expressions and targets count there
            _code(json.loads(f.read_text()), found, names=f.name != "metadata.json")
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: invalid JSON ({e})") from e
        out[f.name] = found
    if (root / "configs" / "logging.conf").is_file():
        out["logging.conf"] = {(root / "configs" / "logging.conf").read_text()}
    return out


def _known_code() -> set[str]:
    """The code of the bundles shipped with brainbundles, every network of the package, and the
    label conventions (names a config may set)."""
    known = {f"brainbundles.networks.{n}" for n in networks.__all__} | set(LABEL_CONVENTIONS)
    for b in sorted(bundles_dir().glob("*/configs")):
        for found in config_code(b.parent).values():
            known |= found
    return known


def check_config_code(bundle_root: str | os.PathLike) -> None:
    """Refuse a bundle whose configs could run code that the bundles shipped with brainbundles do
    not (:func:`config_code`): MONAI would run it with ``eval`` or import and call it. Numbers, lists,
    paths, ``@`` references and known names may differ freely. Raises :class:`UnsafeFileError`."""
    known = _known_code()
    for name, found in config_code(bundle_root).items():
        new = sorted(found - known)
        if name == "logging.conf" and new:
            raise UnsafeFileError(
                f"{Path(bundle_root) / 'configs' / name}: differs from brainbundles' own logging set-up, "
                "which every run applies (it can write to any file). "
                "Pass --trust only if you trust whoever wrote this bundle."
            )
        if new:
            shown = ", ".join(repr(c if len(c) <= 80 else c[:77] + "...") for c in new[:3])
            raise UnsafeFileError(
                f"{Path(bundle_root) / 'configs' / name}: holds code, or names of code, that brainbundles' "
                f"own bundles do not ({shown}{' and more' if len(new) > 3 else ''}); MONAI would run it "
                "with eval or import it. Pass --trust only if you trust whoever wrote this bundle."
            )


def verify_ensemble(bundle_root: str | os.PathLike) -> list[Path]:
    """The bundle's fold models (:func:`brainbundles.bundle.weights.fold_weights`, the ensemble that
    inference averages), after checking that they are the members the metadata's ``ensemble`` lists, in
    order, and that each exists; an exported bundle (``files_sha256``) with folds must list them. Empty for
    a single-model bundle. Raises ``ValueError``."""
    root = Path(bundle_root)
    meta_path = root / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    listed = list((meta.get("ensemble") or {}).get("members") or [])
    for rel in listed:
        if not isinstance(rel, str) or not (root / rel).is_file():
            raise ValueError(f"{root / str(rel)}: listed in the metadata's ensemble but missing")
    members = fold_weights(root / "models")
    found = [m.relative_to(root).as_posix() for m in members]
    if (listed or "files_sha256" in meta) and listed != found:
        raise ValueError(
            f"{meta_path}: the ensemble lists {listed or 'no members'}, but the fold models that inference "
            f"uses are {found or 'none'}; export the bundle again"
        )
    return members


def verify_bundle(
    bundle_root: str | os.PathLike,
    trust: bool = False,
    strict: bool = False,
    run_exported: bool | None = None,
    log=print,
) -> dict[str, object]:
    """``brainbundles verify``: metadata schema, config code (unless ``trust``), config references,
    pickles, file checksums (``strict``, for a download: no unlisted files either), the network's
    input/output shapes, and the exported program (``models/model.pt2``): its archive is always
    checked (:func:`brainbundles.bundle.program.check_exported_archive`), and with ``run_exported``
    it is loaded and compared with the eager network. A bundle with fold models is checked as the
    ensemble that inference runs (:func:`verify_ensemble`): every member's weights are loaded into the
    network, and its program (``models/fold_<k>/model.pt2``) is checked the same way.
    ``torch.export.load`` can run code hidden in a file, so by default that happens only for a bundle
    that is not a download (``strict``) or is trusted. Raises on the first failure (``ValueError``; :class:`UnsafeFileError` for something
    unsafe); returns what was checked."""
    root = Path(bundle_root)
    report: dict[str, object] = {"bundle": str(root)}
    verify_metadata(root)
    log(f"{root}: metadata matches the model-zoo schema")
    if trust:
        log("config code: not checked (--trust)")
    else:
        check_config_code(root)
        log("config code: only brainbundles' own expressions, targets and logging set-up")
    report["workflows"] = sorted(verify_configs(root))
    log(f"configs: every reference resolves in {', '.join(report['workflows'])}")
    report["pickles"] = check_pickles(root)
    if report["pickles"]:
        log(f"pickles hold only tensors: {', '.join(report['pickles'])}")
    report["checksums"] = verify_checksums(root, strict=strict)
    log(
        f"checksums: {report['checksums']} files match"
        if report["checksums"]
        else "checksums: none (not exported)"
    )
    verify_net_in_out(root)
    log("network: input and output shapes match the metadata")
    members = verify_ensemble(root)
    try:
        find_weights(root / "models")
        report["weights"] = True
    except FileNotFoundError:
        report["weights"] = bool(members)
    run = run_exported if run_exported is not None else (trust or not strict)
    if members:
        report["ensemble"] = [m.relative_to(root).as_posix() for m in members]
        differences, network = [], build_network(root, weights=False)
        for m in members:  # each member's weights must fit the network, and its program agree with them
            try:
                network.load_state_dict(load_weights(m))
            except RuntimeError as e:
                raise ValueError(f"{m}: does not fit the bundle's network_def ({str(e).strip()})") from None
            program = m.with_name(Path(EXPORTED_FILE).name)
            if program.is_file():
                check_exported_archive(program)
                if run:
                    differences.append(compare_exported(root, network, path=program))
        log(f"ensemble: {len(members)} members fit the network: {', '.join(report['ensemble'])}")
        if differences:
            report["exported_difference"] = max(differences)
            log(
                f"exported programs of the {len(members)} members agree with the eager network "
                f"(max relative difference {report['exported_difference']:.1e})"
            )
        elif any(m.with_name(Path(EXPORTED_FILE).name).is_file() for m in members):
            log("exported programs: archives checked, not loaded (a download; --trust to compare them)")
    elif (root / EXPORTED_FILE).is_file():
        check_exported_archive(root / EXPORTED_FILE)
        if report["weights"] and run:
            report["exported_difference"] = compare_exported(root)
            log(
                "exported program agrees with the eager network "
                f"(max relative difference {report['exported_difference']:.1e})"
            )
        else:
            log("exported program: archive checked, not loaded (a download; --trust to compare it)")
    return report
