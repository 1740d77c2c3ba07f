"""The `brainbundles` command: thin wrappers over the package's functions (argparse).

Every command takes ``--help`` (help, no work); an unknown option is an error naming it; ``-i/--input``
(repeatable) and ``-o/--output`` mean the same in every command; a bundle's config values are changed
with ``--set KEY=VALUE`` only (repeatable; the value is JSON or a Python literal, else a string), and a
key the bundle's configs do not have is an error naming it. Each command ends with one line saying
what it wrote and where.

python-fire (used before) could not give this: it takes ``--help`` after config overrides as the
override ``help=True``, and it accepts any ``--name value`` when a command takes ``**overrides``.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "check_overrides", "main", "parse_set"]


def parse_set(items: Sequence[str] | None) -> dict[str, object]:
    """``["epochs=12", "patch_size=[96,96,96]"]`` -> ``{"epochs": 12, "patch_size": [96, 96, 96]}``: each
    value read as JSON, else as a Python literal, else kept as the string."""
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE (e.g. --set epochs=12)")
        value: object
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = text
        out[key.strip()] = value
    return out


def check_overrides(bundle_root: str | Path, workflow: str, overrides: dict[str, object]) -> None:
    """Raise ``ValueError`` naming each override key that the bundle's ``workflow`` configs do not have
    (a typo would otherwise add a new, unused key silently), with the closest existing keys."""
    from monai.bundle import ConfigParser

    from brainbundles.paths import config_files

    if not overrides:
        return
    parser = ConfigParser()
    parser.read_config(config_files(bundle_root, workflow))
    unknown = [k for k in overrides if k not in parser]
    if unknown:
        known = list(parser.get().keys())
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k.split("#")[0], known, n=3)
            hints.append(f"{k}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ValueError(
            f"{bundle_root}: --set of a key its {workflow} configs do not have: {'; '.join(hints)}"
        )


def _numbers(text: str, n: int = 3) -> tuple[float, ...]:
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) == 1:
        parts = parts * n
    if len(parts) != n:
        raise argparse.ArgumentTypeError(f"expected {n} numbers separated by commas, got {text!r}")
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers, got {text!r}") from None


def _one_input(args: argparse.Namespace, what: str) -> str:
    if not args.input or len(args.input) != 1:
        raise ValueError(f"-i/--input: give exactly one {what}, got {len(args.input or [])}")
    return args.input[0]


# --- the commands: each returns the one line printed at its end -----------------------------------


def _phantom(args: argparse.Namespace) -> str:
    from brainbundles.data.phantom import write_phantom_dataset

    path = write_phantom_dataset(
        args.task,
        args.output,
        cases=args.cases,
        seed=args.seed,
        test_cases=args.test_cases,
        shape=tuple(int(v) for v in args.shape),
        spacing=args.spacing,
        orientation=args.orientation,
        folds=args.folds,
        dtype=args.dtype,
    )
    return f"wrote {args.cases + args.test_cases} {args.task} phantoms and their datalist to {path}/datalist.json"


def _datalist(args: argparse.Namespace) -> str:
    from brainbundles.data.datalist import make_datalist

    options = {
        k: v
        for k, v in {
            "rater": args.rater,
            "label": args.label,
            "images_dir": args.images_dir,
            "labels_dir": args.labels_dir,
            "labels": json.loads(args.labels) if args.labels else None,
        }.items()
        if v is not None
    }
    if args.channels:
        options["channels"] = list(args.channels)
    dl = make_datalist(
        args.layout,
        _one_input(args, "data set folder"),
        out=args.output,
        folds=args.folds,
        seed=args.seed,
        test_fraction=args.test_fraction,
        **options,
    )
    return (
        f"wrote {args.output}: {len(dl.get('training', []))} training and "
        f"{len(dl.get('testing', []))} testing cases"
    )


def _isbi_consensus(args: argparse.Namespace) -> str:
    from brainbundles.data.datalist import write_isbi_consensus

    root = _one_input(args, "data set folder")
    n = len(write_isbi_consensus(root))
    where = "<subject>/masks/<time point>_consensus.nii.gz"
    return f"wrote {n} consensus mask{'' if n == 1 else 's'} ({where}) under {root}"


def _demo(args: argparse.Namespace) -> str:
    from brainbundles.demo import run_demo
    from brainbundles.paths import BUNDLE_NAMES
    from brainbundles.workflows import resolve_bundle

    overrides = parse_set(args.set)
    if args.task in BUNDLE_NAMES:
        check_overrides(resolve_bundle(args.task), "training", overrides)
    out = Path(args.output or f"demo_{args.task}")
    run_demo(
        args.task,
        out,
        seed=args.seed,
        missing_sequences=not args.no_missing_sequences,
        quick=args.quick,
        **overrides,
    )
    return f"wrote the demo to {out}: trained bundle in {out / 'bundle'}, scores in {out / 'metrics.json'}"


def _infer(args: argparse.Namespace) -> str:
    from brainbundles.workflows import find_bundle, run_inference

    if not args.input and not args.datalist:
        raise ValueError("give the scans with -i/--input (files or folders) or a --datalist")
    overrides = parse_set(args.set)
    root = find_bundle(args.bundle, sha256=args.sha256, trust=args.trust)
    check_overrides(root, "inference", overrides)
    out = run_inference(root, args.input or None, output_dir=args.output, datalist=args.datalist, **overrides)
    written = sorted(Path(out).glob("*_seg.nii.gz"))
    n = len(written)
    return f"wrote {n} label map{'' if n == 1 else 's'} with {'its' if n == 1 else 'their'} volumes and overlay{'' if n == 1 else 's'} to {out}"


def _train(args: argparse.Namespace) -> str:
    from brainbundles.workflows import resolve_bundle, run_training

    overrides = parse_set(args.set)
    root = resolve_bundle(args.bundle)
    workflow = "train_phase2" if args.phase2 else "multi_gpu" if args.multi_gpu else "training"
    check_overrides(root, workflow, overrides)
    if args.output:
        overrides["ckpt_dir"] = str(Path(args.output).resolve() / "models")
        overrides["output_dir"] = str(Path(args.output).resolve() / "eval")
    dataset = _one_input(args, "data set folder")
    run_training(
        root,
        dataset,
        args.datalist,
        multi_gpu=args.multi_gpu,
        nproc=args.nproc,
        phase2=args.phase2,
        **overrides,
    )
    models = overrides.get("ckpt_dir", root / "models")
    return f"wrote the trained weights to {models} (best: model.pt; last state: last.pt)"


def _train_cv(args: argparse.Namespace) -> str:
    from brainbundles.workflows import resolve_bundle, run_cross_validation

    overrides = parse_set(args.set)
    root = resolve_bundle(args.bundle)
    check_overrides(root, "training", overrides)
    dataset = _one_input(args, "data set folder")
    result = run_cross_validation(root, dataset, args.datalist, folds=args.folds, **overrides)
    for c, ms in result["summary"].items():
        for m, v in ms.items():
            print(f"{c} {m}: {v['mean']:.4f} ± {v['sd']:.4f} (n={v['n']})")
    summary = root / "eval" / "cv_summary.json"
    return f"wrote {args.folds} fold models to {root / 'models'} and the summary to {summary}"


def _export(args: argparse.Namespace) -> str:
    from brainbundles.bundle.export import export_bundle
    from brainbundles.workflows import resolve_bundle

    root = resolve_bundle(args.bundle)
    meta = export_bundle(root, version=args.version, changelog=args.changelog, metrics=args.metrics)
    exported = meta["exported_model"].get("file") or f"none ({meta['exported_model']['reason']})"
    if isinstance(exported, list):  # a fold ensemble: one program per member
        exported = f"{len(exported)} ensemble members ({', '.join(exported)})"
    return (
        f"wrote {root}: version {meta['version']}; exported program: {exported}; "
        f"eval_metrics: {meta['eval_metrics'] or 'none'}; {len(meta['files_sha256'])} files checksummed"
    )


def _package(args: argparse.Namespace) -> str:
    from brainbundles.bundle.package import package_bundle
    from brainbundles.workflows import resolve_bundle

    path, digest = package_bundle(resolve_bundle(args.bundle), args.output, name=args.name)
    return f"wrote {path} (sha256 {digest}) and {path}.sha256"


def _publish(args: argparse.Namespace) -> str:
    from brainbundles.bundle.download import publish_bundle
    from brainbundles.paths import index_file

    if args.source is None:
        print(_PUBLISH_HELP.format(zip=args.zip, name=args.zip.rsplit("/", 1)[-1]))
        return "wrote nothing: upload the zip, then run this command again with --source"
    key, entry = publish_bundle(args.zip, args.source, index=args.index)
    return f"wrote {args.index or index_file()}: {key} -> {entry['source']} (sha256 {entry['checksum']}); commit it"


def _download(args: argparse.Namespace) -> str:
    from brainbundles.bundle.download import download_bundle

    path = download_bundle(args.source, sha256=args.sha256, dir=args.output, trust=args.trust)
    return f"wrote the verified bundle to {path}"


def _generate_configs(args: argparse.Namespace) -> str:
    from brainbundles.bundle.generate import generate_configs

    changed = generate_configs(args.output, check=args.check)
    if args.check:
        if changed:
            raise ValueError(
                f"{len(changed)} config file(s) differ from the source: {', '.join(map(str, changed))}; "
                "run brainbundles generate-configs"
            )
        return "every bundle's configs match the source (wrote nothing)"
    return f"wrote {len(changed)} config file(s)" + (f": {', '.join(map(str, changed))}" if changed else "")


def _verify(args: argparse.Namespace) -> str:
    from brainbundles.bundle.download import SOURCE_FILE
    from brainbundles.bundle.verify import verify_bundle
    from brainbundles.workflows import resolve_bundle

    root = resolve_bundle(args.bundle)
    strict = (root / SOURCE_FILE).is_file() if args.strict is None else args.strict
    verify_bundle(root, trust=args.trust, strict=strict)
    return f"{root}: verified (wrote nothing)"


_PUBLISH_HELP = """To publish {zip} (its sha256 is in {zip}.sha256):

GitHub release asset (with the GitHub CLI, in the repository that hosts it):
    gh release create TAG {zip} {zip}.sha256      # or: gh release upload TAG {zip} {zip}.sha256
    brainbundles publish {zip} --source github:OWNER/REPO/TAG/{name}

Hugging Face Hub (with the huggingface_hub CLI, logged in):
    huggingface-cli upload OWNER/REPO {zip} {name}
    brainbundles publish {zip} --source hf:OWNER/REPO/{name}

`brainbundles publish --source` adds the bundle, its URL and sha256 to bundles/model_info.json;
commit that file. The zip is uploaded whole (not unpacked, as MONAI's push_to_hf_hub would) so that
a download can be checked against one sha256 before anything in it is extracted."""


# --- the parser ----------------------------------------------------------------------------------


def _opt(p, name: str, **kw) -> None:
    """An option spelt with hyphens, also accepted with underscores (``--test-cases``, ``--test_cases``)."""
    names = [name] + (["--" + name[2:].replace("-", "_")] if "-" in name[2:] else [])
    p.add_argument(*names, **kw)


def _input(p: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    p.add_argument("-i", "--input", action="append", required=required, metavar="PATH", help=help)


def _output(p: argparse.ArgumentParser, help: str, default: str | None = None) -> None:
    p.add_argument("-o", "--output", default=default, metavar="PATH", help=help)


def _set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="change a value of the bundle's configs (repeatable): --set epochs=12 --set patch_size=[96,96,96]",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``brainbundles`` argument parser: one sub-command per job."""
    top = argparse.ArgumentParser(
        prog="brainbundles",
        allow_abbrev=False,
        description="Brain MRI segmentation bundles: phantoms, datalists, training, inference and sharing.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, fn, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, allow_abbrev=False)
        p.set_defaults(func=fn)
        return p

    p = command(
        "phantom",
        _phantom,
        "Write synthetic brain phantoms in a real dataset's layout, with a datalist.json.",
    )
    p.add_argument("task", nargs="?", default="tissue", help="tissue, tumour, wmh or ms (default tissue)")
    _output(p, "the data set folder to write (default phantoms)", "phantoms")
    p.add_argument("--cases", type=int, default=10, help="labelled (training) cases (default 10)")
    _opt(p, "--test-cases", type=int, default=0, help="extra cases listed for testing (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", type=_numbers, default=(96, 112, 96), help="voxels, e.g. 96,112,96")
    p.add_argument("--spacing", type=_numbers, default=(1.5, 1.5, 1.5), help="mm, e.g. 1.5 or 1,1,1")
    p.add_argument("--orientation", default="RAS", help="axis codes of the written files (default RAS)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=("float32", "int16"))

    p = command(
        "datalist",
        _datalist,
        "Turn a data set on disk (ibsr18, folder, brats, brats2023, msd_task01, wmh, isbi2015, msseg2016, "
        "ms_open, phantom) into a MONAI datalist with folds.",
    )
    p.add_argument("layout", help="the data set's layout")
    _input(p, "the data set folder", required=True)
    _output(p, "the datalist file to write (default datalist.json)", "datalist.json")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    _opt(p, "--test-fraction", type=float, default=0.0, help="labelled cases moved to testing (0 <= f < 1)")
    p.add_argument("--channels", nargs="+", help="channel names (default: the layout's)")
    p.add_argument("--rater", help="isbi2015: mask1, mask2 or consensus (written first by isbi-consensus)")
    p.add_argument("--label", help="ibsr18: which label files (default auto)")
    _opt(p, "--images-dir", help="folder layout: the images' subfolder (default images)")
    _opt(p, "--labels-dir", help="folder layout: the labels' subfolder (default labels)")
    p.add_argument("--labels", help='folder layout: label names as JSON, e.g. \'{"1": "lesion"}\'')

    p = command(
        "isbi-consensus",
        _isbi_consensus,
        "Write the ISBI 2015 raters' consensus masks (the voxels both marked) next to their masks, for "
        "datalist isbi2015 --rater consensus.",
    )
    _input(p, "the ISBI 2015 data set folder", required=True)

    p = command(
        "demo",
        _demo,
        "Make phantoms, train the task's bundle on the CPU, infer on held-out phantoms and evaluate.",
    )
    p.add_argument("task", nargs="?", default="tissue", help="tissue, tumour, wmh or ms (default tissue)")
    _output(p, "the demo's folder (default demo_<task>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick", action="store_true", help="fewer, coarser phantoms, a narrower network: about a minute"
    )
    _opt(
        p,
        "--no-missing-sequences",
        action="store_true",
        help="do not also segment with each sequence left out",
    )
    _set(p)

    p = command("infer", _infer, "Segment scans with a bundle (a folder, a task name or a URL).")
    p.add_argument("bundle", help="bundle folder, task name (tissue, tumour, wmh, ms) or URL")
    _input(p, "a scan, a folder of scans, or for several sequences NAME=FILE (flair=F.nii.gz); repeatable")
    _output(p, "the folder to write into (default output)", "output")
    p.add_argument("--datalist", help="segment the testing cases of this datalist instead of --input")
    p.add_argument("--sha256", help="expected sha256 of a downloaded bundle")
    p.add_argument("--trust", action="store_true", help="run a downloaded bundle without a checksum")
    _set(p)

    for name, fn, help in (
        ("train", _train, "Train a bundle through the MONAI bundle runner (resumes from models/last.pt)."),
        ("train-cv", _train_cv, "K-fold cross-validation: each fold trained and evaluated, then mean ± sd."),
    ):
        p = command(name, fn, help)
        p.add_argument("bundle", help="bundle folder or task name")
        _input(p, "the data set folder", required=True)
        p.add_argument("--datalist", required=True, help="the datalist (brainbundles datalist)")
        _set(p)
        if name == "train":
            _output(p, "a run folder for models/ and eval/ (default: the bundle's own)")
            _opt(p, "--multi-gpu", action="store_true", help="one process per GPU under torchrun")
            p.add_argument("--nproc", type=int, default=2, help="processes with --multi-gpu (default 2)")
            p.add_argument(
                "--phase2", action="store_true", help="retrain only the output layer (Havaei et al.)"
            )
        else:
            p.add_argument("--folds", type=int, default=5)

    p = command(
        "export", _export, "Export a trained bundle for sharing (weights, program, checksums, metadata)."
    )
    p.add_argument("bundle")
    p.add_argument("--version", help="the new version (default: the patch number + 1)")
    p.add_argument("--changelog", help="the changelog line of the new version")
    p.add_argument("--metrics", help="metrics.json to record (default <bundle>/eval/metrics.json)")

    p = command("package", _package, "Zip an exported bundle (model-zoo layout) and write its sha256.")
    p.add_argument("bundle")
    _output(p, "the zip file to write (default <name>_v<version>.zip)")
    p.add_argument("--name", help="the bundle's name in the zip (default its folder name)")

    p = command("publish", _publish, "Print how to upload a zip; with --source, add it to the index.")
    p.add_argument("zip")
    p.add_argument("--source", help="where the zip is now downloadable (URL, github:..., hf:...)")
    p.add_argument("--index", help="the index file (default the package's model_info.json)")

    p = command("download", _download, "Download a bundle by name or URL; checked, unpacked and verified.")
    p.add_argument("source", help="a name from the index, a URL, github:..., hf:... or a zip")
    p.add_argument("--sha256")
    p.add_argument("--trust", action="store_true", help="accept a download without a checksum")
    _output(p, "the folder to download into (default the cache)")

    p = command(
        "generate-configs",
        _generate_configs,
        "Write every bundle's configs from the one source (tools/brainbundles/bundle/config_source).",
    )
    _output(p, "the folder holding the bundles (default the package's bundles)")
    p.add_argument("--check", action="store_true", help="write nothing; fail if a file differs")

    p = command("verify", _verify, "Check a bundle: metadata, config code, pickles, checksums, shapes.")
    p.add_argument("bundle")
    p.add_argument("--trust", action="store_true")
    strict = p.add_mutually_exclusive_group()
    strict.add_argument(
        "--strict", dest="strict", action="store_true", default=None, help="no unlisted files"
    )
    _opt(strict, "--no-strict", dest="strict", action="store_false")
    return top


def _unknown_message(parser: argparse.ArgumentParser, args: argparse.Namespace, unknown: list[str]) -> str:
    """The error for arguments the command does not take: each named, with a hint."""
    command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        args.command
    ]
    options = [o for o in command._option_string_actions if o.startswith("--")]
    hints: list[str] = []
    words: list[str] = []  # an unknown option with the value after it is one word
    for u in unknown:
        if (
            words
            and words[-1].startswith("-")
            and "=" not in words[-1]
            and " " not in words[-1]
            and not u.startswith("-")
        ):
            words[-1] += f" {u}"
        else:
            words.append(u)
    for w in words:
        if w.startswith("-"):
            flag = w.split("=")[0].split(" ")[0]
            close = [o for o in options if o.startswith(flag)][:1] or difflib.get_close_matches(
                flag, options, n=1, cutoff=0.8
            )
            if close:
                hints.append(f"{w} (did you mean {close[0]}?)")
            elif hasattr(args, "set"):
                hints.append(f"{w} (a config value? use --set {flag.lstrip('-')}=VALUE)")
            else:
                hints.append(w)
        elif hasattr(args, "input"):
            hints.append(f"{w} (an input? use -i {w})")
        else:
            hints.append(w)
    return f"{args.command}: unknown argument{'s' if len(hints) > 1 else ''}: {', '.join(hints)}"


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point; bad input (a named file and its problem) ends with a one-line error and exit 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(_unknown_message(parser, args, unknown))
    try:
        line = args.func(args)
    except (ValueError, FileNotFoundError) as e:  # InputError and UnsafeFileError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(line)


if __name__ == "__main__":
    main()
