"""Running a bundle's workflows through MONAI's bundle runner, as plain functions: finding and copying a
bundle, training (one process or several with ``torchrun``), evaluation, cross-validation and inference.

The CLI (`brainbundles ...`) only parses arguments and calls these; the demo (:mod:`brainbundles.demo`)
strings them together.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai.bundle import ConfigParser, run

from brainbundles.bundle.download import download_bundle, lookup
from brainbundles.bundle.weights import check_listed_checksum, find_weights, fold_weights
from brainbundles.data.cases import read_datalist
from brainbundles.data.sequences import split_named_input
from brainbundles.errors import ChecksumError, InputError, TrainingProcessError, UnsafeFileError
from brainbundles.fileio import write_json_atomic
from brainbundles.metrics import (
    summarize,
    write_report,
)
from brainbundles.paths import BUNDLE_NAMES, bundles_dir, config_files, is_bundle

__all__ = [
    "resolve_bundle",
    "find_bundle",
    "copy_bundle",
    "run_training",
    "run_evaluation",
    "run_cross_validation",
    "run_inference",
]

logger = logging.getLogger("brainbundles")


def resolve_bundle(bundle: str | os.PathLike) -> Path:
    """A bundle folder from a path, a bundle name in ``bundles/``, or a task name (``tissue``)."""
    p = Path(bundle).expanduser()
    if p.is_dir():
        root = p
    else:
        name = BUNDLE_NAMES.get(str(bundle), str(bundle))
        root = bundles_dir() / name
    if not is_bundle(root):
        known = ", ".join(sorted(BUNDLE_NAMES.values()))
        raise ValueError(
            f"bundle: {bundle} is neither a bundle folder (configs/metadata.json and configs/inference.json) "
            f"nor a known bundle ({known}) or task ({', '.join(BUNDLE_NAMES)})"
        )
    return root.resolve()


def find_bundle(bundle: str | os.PathLike, sha256: str | None = None, trust: bool = False) -> Path:
    """The bundle to run: a bundle folder; a bundle of ``bundles/`` (by name or task) that has trained
    weights; a published bundle of the index (``bundles/model_info.json``); or a download source (URL,
    ``github:``, ``hf:``, a zip). Anything not on disk is downloaded, or taken from the cache, and
    verified first (:func:`brainbundles.bundle.download.download_bundle`)."""
    if Path(bundle).expanduser().is_dir():
        return resolve_bundle(bundle)
    name = BUNDLE_NAMES.get(str(bundle), str(bundle))
    local = bundles_dir() / name
    if is_bundle(local):
        try:
            find_weights(local / "models", folds=True)
            return resolve_bundle(local)
        except FileNotFoundError:
            if lookup(name) is None:  # nothing published either: say the weights are missing
                raise
    if lookup(name) is not None:
        return download_bundle(name, sha256=sha256, trust=trust)
    if re.match(r"[a-z]+:", str(bundle)) or str(bundle).endswith(".zip"):
        return download_bundle(str(bundle), sha256=sha256, trust=trust)
    return resolve_bundle(bundle)


def copy_bundle(
    src: str | os.PathLike, dst: str | os.PathLike, overrides: Mapping[str, object] | None = None
) -> Path:
    """Copy a bundle's files (not its data, weights or outputs) to ``dst`` and write ``overrides``
    (``{"id#sub": value}``) into each of the copy's ``configs/train.json`` and ``configs/inference.json``
    that has the id, so the copy is self-consistent. An id neither has is refused (``ValueError``).
    ``large_files.yml`` is not copied: it lists the checksums of the source's weights, which stay behind."""
    src, dst = resolve_bundle(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for item in ("configs", "docs", "LICENSE"):
        s = src / item
        if s.is_dir():
            shutil.copytree(s, dst / item, dirs_exist_ok=True)
        elif s.is_file():
            shutil.copy2(s, dst / item)
    (dst / "models").mkdir(exist_ok=True)
    if overrides:
        parsers = {}
        for name in ("train.json", "inference.json"):
            path = dst / "configs" / name
            if path.is_file():
                parsers[path] = ConfigParser(json.loads(path.read_text()))
        for k, v in overrides.items():
            owners = [p for p in parsers.values() if k.split("#")[0] in p.config]
            if not owners:
                raise ValueError(
                    f"override {k}: no such id in {src / 'configs'}/train.json or inference.json"
                )
            for parser in owners:
                parser[k] = v
        for path, parser in parsers.items():
            write_json_atomic(parser.get(), path)
    return dst


def _runner_args(overrides: Mapping[str, object]) -> list[str]:
    """Overrides as the bundle runner's command line: Python literals, which its parser (fire) reads back
    (JSON's ``false``/``null`` would arrive as strings, and ``"false"`` is true)."""
    args: list[str] = []
    for k, v in overrides.items():
        args += [f"--{k}", v if isinstance(v, str) else repr(v)]
    return args


def _runner_command(
    root: Path,
    run_id: str,
    files: Sequence[str],
    dataset_dir: str | os.PathLike,
    datalist: str | os.PathLike,
    overrides: Mapping[str, object],
) -> list[str]:
    """``monai.bundle run <run_id> ...`` for the bundle at ``root`` with its config ``files``, data and
    ``overrides`` (to follow ``python -m``)."""
    return [
        "monai.bundle",
        "run",
        run_id,
        "--meta_file",
        str(root / "configs" / "metadata.json"),
        "--config_file",
        json.dumps(list(files)),
        "--logging_file",
        str(root / "configs" / "logging.conf"),
        "--bundle_root",
        str(root),
        "--dataset_dir",
        str(Path(dataset_dir).resolve()),
        "--data_list_file_path",
        str(Path(datalist).resolve()),
    ] + _runner_args(overrides)


def run_evaluation(
    bundle: str | os.PathLike, dataset_dir: str | os.PathLike, datalist: str | os.PathLike, **overrides
) -> Path:
    """Evaluate the trained bundle on its validation fold through the MONAI bundle runner (``monai.bundle
    run evaluating`` with ``configs/evaluate.json``), in a child process; returns the report
    ``<output_dir>/metrics.json`` (``output_dir`` from ``overrides``, else the bundle's ``eval/``)."""
    root = resolve_bundle(bundle)
    cmd = [sys.executable, "-m"] + _runner_command(
        root, "evaluating", config_files(root, "evaluate"), dataset_dir, datalist, overrides
    )
    logger.info("running: %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    return Path(str(overrides.get("output_dir", root / "eval"))) / "metrics.json"


def run_training(
    bundle: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    datalist: str | os.PathLike,
    multi_gpu: bool = False,
    nproc: int = 2,
    phase2: bool = False,
    **overrides,
) -> None:
    """Train through the MONAI bundle runner (``python -m monai.bundle run training``), in a child
    process whose output streams to the console; with ``multi_gpu`` under ``torchrun``. ``phase2``
    runs the bundle's second training phase (``configs/train_phase2.json``: only the output layer
    learns, from the first phase's ``models/model.pt``, on patches drawn without class balance)."""
    root = resolve_bundle(bundle)
    read_datalist(
        datalist, "training", dataset_dir
    )  # a broken datalist is named here, not in a child process
    files = config_files(root, "multi_gpu" if multi_gpu else "training")
    if phase2:
        extra = root / "configs" / "train_phase2.json"
        if not extra.is_file():
            raise FileNotFoundError(f"{extra}: this bundle has no second training phase")
        files.append(str(extra))
    log_dir = root / "eval" / "logs" / "torchrun"
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        + ["--log-dir", str(log_dir), "--tee", "3", "-m"]
        if multi_gpu
        else [sys.executable, "-m"]
    )
    cmd = launcher + _runner_command(root, "training", files, dataset_dir, datalist, overrides)
    logger.info("running: %s", " ".join(cmd))
    started = time.time()
    try:
        subprocess.run(cmd, check=True)
    except subprocess.CalledProcessError as e:
        if not multi_gpu:
            raise
        raise TrainingProcessError(e.returncode, e.cmd, stderr=_process_log_tails(log_dir, started)) from None


def _datalist_folds(datalist: str | os.PathLike) -> list[int]:
    """The fold numbers of a datalist's training items."""
    items, _ = read_datalist(datalist, "training")
    return sorted({int(it["fold"]) for it in items if "fold" in it})


def run_cross_validation(
    bundle: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    datalist: str | os.PathLike,
    folds: int = 5,
    **overrides,
) -> dict:
    """K-fold cross-validation of a bundle through the MONAI bundle runner, resumable.

    Fold ``k`` is a plain ``monai.bundle run training --fold k`` with ``ckpt_dir`` set to
    ``<bundle>/models/fold_<k>`` and ``output_dir`` to ``<bundle>/eval/fold_<k>``, followed by the bundle's
    evaluation of its validation fold (``<bundle>/eval/fold_<k>/metrics.json``). A fold whose report
    exists is done and skipped; an interrupted fold resumes from its ``last.pt``; so a killed run, started
    again, goes on at the unfinished fold. Then ``<bundle>/eval/cv_summary.json`` and ``.csv`` hold each
    fold's mean metrics (per class) and their mean ± sd over the folds (a fold whose mean is NaN is left
    out of that metric and counted in ``n_nan``), which is also returned: ``{"per_fold": {fold: {class:
    {metric: mean}}}, "summary": {class: {metric: {"mean", "sd", "n", "n_nan"}}}}``.
    """
    root = resolve_bundle(bundle)
    if int(folds) < 2:
        raise ValueError(f"folds: cross-validation needs at least 2 folds, got {folds}")
    have = _datalist_folds(datalist)
    missing = [k for k in range(int(folds)) if k not in have]
    if missing:
        raise ValueError(
            f"{datalist}: no training items in fold(s) {missing} of {folds} (the datalist has folds {have}); "
            f"make it with `brainbundles datalist ... --folds {folds}`"
        )
    per_fold: dict[str, dict] = {}
    for k in range(int(folds)):
        ckpt, out = root / "models" / f"fold_{k}", root / "eval" / f"fold_{k}"
        report = out / "metrics.json"
        fold_overrides = {**overrides, "fold": k, "ckpt_dir": str(ckpt), "output_dir": str(out)}
        if report.is_file():
            logger.info("cross-validation: fold %d of %d already done (%s)", k + 1, folds, report)
        else:
            logger.info("cross-validation: fold %d of %d", k + 1, folds)
            run_training(root, dataset_dir, datalist, **fold_overrides)
            eval_overrides = {
                key: v for key, v in fold_overrides.items() if key in ("fold", "ckpt_dir", "output_dir")
            }
            run_evaluation(root, dataset_dir, datalist, **eval_overrides)
        summary = json.loads(report.read_text())["summary"]
        per_fold[f"fold_{k}"] = {  # NaN is stored as null
            c: {m: float("nan") if v["mean"] is None else v["mean"] for m, v in ms.items()}
            for c, ms in summary.items()
        }
    json_path, _ = write_report(per_fold, root / "eval", prefix="cv_summary")
    report = json.loads(json_path.read_text())  # the report's rows are folds here, not cases
    write_json_atomic({"per_fold": report["per_case"], "summary": report["summary"]}, json_path)
    result = {"per_fold": per_fold, "summary": summarize(per_fold)}
    logger.info("cross-validation summary in %s", root / "eval" / "cv_summary.json")
    return result


def _process_log_tails(log_dir: Path, since: float, lines: int = 30) -> str:
    """The last ``lines`` lines of every per-process log `torchrun` wrote under ``log_dir`` after
    ``since`` (epoch seconds)."""
    parts = []
    for f in sorted(log_dir.rglob("*.log")):
        if f.stat().st_mtime >= since and f.stat().st_size:
            tail = f.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {f.relative_to(log_dir)} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(parts)


def _absolute(inp: str | os.PathLike) -> str:
    """An input made absolute; in ``NAME=path`` (a file named with its sequence) only the path part."""
    name, path = split_named_input(inp)
    absolute = os.path.abspath(Path(path).expanduser())  # not resolve(): a link loop is the checks' to report
    return absolute if name is None else f"{name}={absolute}"


def run_inference(
    bundle: str | os.PathLike,
    inputs: Sequence[str | os.PathLike] | None = None,
    output_dir: str | os.PathLike = "./output",
    datalist: str | os.PathLike | None = None,
    dataset_dir: str | os.PathLike | None = None,
    sha256: str | None = None,
    trust: bool = False,
    **overrides,
) -> Path:
    """Run the bundle's ``inference`` workflow in this process on ``inputs`` (files or folders) or on
    the ``testing`` cases of ``datalist``. ``bundle`` is anything :func:`find_bundle` takes (a
    download is verified first; ``sha256`` and ``trust`` are for a URL). Bad cases are reported and
    skipped, the good ones written; then :class:`brainbundles.errors.InputError` is raised if any case
    was bad. A missing bundle file (weights, Nyúl landmarks) raises ``FileNotFoundError`` naming it."""
    out = Path(output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: the output must be a folder, and this is an existing file")
    root = find_bundle(bundle, sha256=sha256, trust=trust)
    for weights in fold_weights(root / "models") or [find_weights(root / "models", folds=True)]:
        check_listed_checksum(weights)  # a corrupted or changed weights file stops here, named
    args: dict[str, object] = {"bundle_root": str(root), "output_dir": str(Path(output_dir).resolve())}
    if inputs:
        args["input_files"] = [_absolute(p) for p in ([inputs] if isinstance(inputs, str) else inputs)]
    elif datalist is not None:
        args["data_list_file_path"] = str(Path(datalist).resolve())
        args["dataset_dir"] = str(Path(dataset_dir or Path(datalist).parent).resolve())
    else:
        raise ValueError("inputs: give input files/folders or a datalist")
    args.update(overrides)
    try:
        run(
            run_id="inference",
            meta_file=str(root / "configs" / "metadata.json"),
            config_file=config_files(root, "inference"),
            logging_file=str(root / "configs" / "logging.conf"),
            **args,
        )
    except RuntimeError as e:  # MONAI wraps errors in config evaluation and transforms: surface ours
        cause: BaseException | None = e
        known = (InputError, FileNotFoundError, UnsafeFileError, ChecksumError)
        while cause is not None and not isinstance(cause, known):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None
    return Path(output_dir)
