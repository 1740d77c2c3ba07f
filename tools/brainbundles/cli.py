"""The `brainbundles` command: thin wrappers over the package's functions (python-fire)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import fire

__all__ = ["main"]


def _tuple(value, n: int = 3, name: str = "value") -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise ValueError(f"{name}: expected {n} numbers, got {value}")
    return value


class Commands:
    """Brain MRI segmentation bundles: phantoms, datalists, training demo and inference."""

    def phantom(
        self,
        task: str = "tissue",
        out: str = "phantoms",
        cases: int = 10,
        seed: int = 0,
        test_cases: int = 0,
        shape: Sequence[int] = (96, 112, 96),
        spacing: Sequence[float] = (1.5, 1.5, 1.5),
        orientation: str = "RAS",
        folds: int = 5,
        dtype: str = "float32",
    ) -> str:
        """Write synthetic brain phantoms in a real dataset's layout, with a datalist.json."""
        from brainbundles.data.phantom import write_phantom_dataset

        path = write_phantom_dataset(
            task,
            out,
            cases=cases,
            seed=seed,
            test_cases=test_cases,
            shape=_tuple(shape, name="shape"),
            spacing=_tuple(spacing, name="spacing"),
            orientation=orientation,
            folds=folds,
            dtype=dtype,
        )
        return f"wrote {cases + test_cases} {task} phantoms and {path}/datalist.json"

    def datalist(
        self,
        layout: str,
        root: str,
        out: str = "datalist.json",
        folds: int = 5,
        seed: int = 0,
        test_fraction: float = 0.0,
        channels: Sequence[str] | None = None,
        **layout_options,
    ) -> str:
        """Turn a dataset on disk (ibsr18, folder, brats, brats2023, msd_task01, wmh, isbi2015, msseg2016,
        ms_open, phantom) into a MONAI datalist with folds; other options go to the layout
        (`brainbundles datalist isbi2015 --root R --rater consensus`)."""
        from brainbundles.data.datalist import make_datalist

        kwargs = {"channels": list(channels)} if channels else {}
        dl = make_datalist(
            layout,
            root,
            out=out,
            folds=folds,
            seed=seed,
            test_fraction=test_fraction,
            **kwargs,
            **layout_options,
        )
        return f"{out}: {len(dl.get('training', []))} training and {len(dl.get('testing', []))} testing cases"

    def demo(
        self,
        task: str = "tissue",
        out: str | None = None,
        seed: int = 0,
        missing_sequences: bool = True,
        quick: bool = False,
        **train_overrides,
    ) -> None:
        """Make phantoms, train the task's bundle on the CPU, infer on held-out phantoms, evaluate
        (for several sequences, also with each one left out unless `--missing_sequences False`).
        `--quick`: fewer, coarser phantoms and a narrower network, about a minute (lower scores)."""
        from brainbundles.workflows import run_demo

        run_demo(
            task,
            out or f"demo_{task}",
            seed=seed,
            missing_sequences=missing_sequences,
            quick=quick,
            **train_overrides,
        )

    def infer(
        self,
        bundle: str,
        *inputs: str,
        input: Sequence[str] | str | None = None,
        output: str = "output",
        datalist: str | None = None,
        sha256: str | None = None,
        trust: bool = False,
        **overrides,
    ) -> None:
        """Segment scans with a bundle: a folder, a name, or a URL (downloaded, verified, cached):
        `brainbundles infer tissue --input T1.nii.gz --output out`; several inputs as positional
        arguments (`brainbundles infer brats flair=F.nii.gz t1c=C.nii.gz --output out`)."""
        from brainbundles.workflows import run_inference

        files = list(inputs) + ([input] if isinstance(input, str) else list(input or []))
        run_inference(
            bundle,
            files or None,
            output_dir=output,
            datalist=datalist,
            sha256=sha256,
            trust=trust,
            **overrides,
        )

    def train(
        self,
        bundle: str,
        dataset_dir: str,
        datalist: str,
        multi_gpu: bool = False,
        nproc: int = 2,
        phase2: bool = False,
        **overrides,
    ) -> None:
        """Train a bundle through the MONAI bundle runner (resumes from models/last.pt if present);
        `--phase2` then retrains only the output layer (two-phase training, Havaei et al. 2017)."""
        from brainbundles.workflows import run_training

        run_training(
            bundle, dataset_dir, datalist, multi_gpu=multi_gpu, nproc=nproc, phase2=phase2, **overrides
        )

    def train_cv(self, bundle: str, dataset_dir: str, datalist: str, folds: int = 5, **overrides) -> str:
        """K-fold cross-validation (`brainbundles train-cv BUNDLE --dataset_dir D --datalist F --folds K`):
        each fold trained through the MONAI bundle runner into models/fold_<k>/ and evaluated into
        eval/fold_<k>/, then eval/cv_summary.json/.csv with mean ± sd over the folds; run it again after
        an interruption and it goes on at the unfinished fold."""
        from brainbundles.workflows import resolve_bundle, run_cross_validation

        result = run_cross_validation(bundle, dataset_dir, datalist, folds=folds, **overrides)
        lines = [
            f"{c} {m}: {v['mean']:.4f} ± {v['sd']:.4f} (n={v['n']})"
            for c, ms in result["summary"].items()
            for m, v in ms.items()
        ]
        return "\n".join(lines + [f"summary in {resolve_bundle(bundle) / 'eval' / 'cv_summary.json'}"])

    def export(
        self,
        bundle: str,
        version: str | None = None,
        changelog: str | None = None,
        metrics: str | None = None,
    ) -> str:
        """Export a trained bundle for sharing: models/model.safetensors, models/model.pt2 (torch.export,
        checked against the eager network), or each fold model's for a fold ensemble (train-cv),
        large_files.yml, metadata.json with a new version, the measured metrics (--metrics, default
        <bundle>/eval/metrics.json), the ensemble's members, the training data fingerprint and checksums."""
        from brainbundles.bundle.export import export_bundle
        from brainbundles.workflows import resolve_bundle

        root = resolve_bundle(bundle)
        meta = export_bundle(root, version=version, changelog=changelog, metrics=metrics)
        exported = meta["exported_model"].get("file") or f"none ({meta['exported_model']['reason']})"
        if isinstance(exported, list):  # a fold ensemble: one program per member
            exported = f"{len(exported)} ensemble members ({', '.join(exported)})"
        return (
            f"{root}: version {meta['version']}; exported program: {exported}; "
            f"eval_metrics: {meta['eval_metrics'] or 'none'}; {len(meta['files_sha256'])} files checksummed"
        )

    def package(self, bundle: str, out: str | None = None, name: str | None = None) -> str:
        """Zip an exported bundle (model-zoo layout, `<name>/...`) and write FILE.zip.sha256 beside it."""
        from brainbundles.bundle.package import package_bundle
        from brainbundles.workflows import resolve_bundle

        path, digest = package_bundle(resolve_bundle(bundle), out, name=name)
        return f"{path}\nsha256 {digest}"

    def publish(self, zip: str, source: str | None = None, index: str | None = None) -> str:
        """Without --source: print how to upload the zip (GitHub release or Hugging Face Hub). With
        --source (where it is now downloadable): add it to the index of published bundles."""
        from brainbundles.bundle.download import index_path, publish_bundle

        if source is None:
            return _PUBLISH_HELP.format(zip=zip, name=zip.rsplit("/", 1)[-1])
        key, entry = publish_bundle(zip, source, index=index)
        return f"{index or index_path()}: {key} -> {entry['source']} (sha256 {entry['checksum']}); commit it"

    def download(
        self, source: str, sha256: str | None = None, dir: str | None = None, trust: bool = False
    ) -> str:
        """Download a bundle by name (from the index) or URL / github:... / hf:... / zip, with --sha256
        (or --trust); checked, unpacked and verified before it is moved into place."""
        from brainbundles.bundle.download import download_bundle

        return str(download_bundle(source, sha256=sha256, dir=dir, trust=trust))

    def verify(self, bundle: str, trust: bool = False, strict: bool | None = None) -> str:
        """Check a bundle: metadata schema, config code and references, pickles, checksums, network
        input/output shapes, exported program vs eager network (strict: no unlisted files; the
        default for a downloaded bundle)."""
        from brainbundles.bundle.download import SOURCE_FILE
        from brainbundles.bundle.verify import verify_bundle
        from brainbundles.workflows import resolve_bundle

        root = resolve_bundle(bundle)
        strict = (root / SOURCE_FILE).is_file() if strict is None else strict
        verify_bundle(root, trust=trust, strict=strict)
        return f"{root}: verified"


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


def main() -> None:
    """Entry point; bad input (a named file and its problem) ends with a one-line error and exit 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire(Commands, name="brainbundles")
    except (ValueError, FileNotFoundError) as e:  # InputError and UnsafeFileError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
