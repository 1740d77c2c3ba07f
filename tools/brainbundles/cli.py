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
    ) -> str:
        """Turn a dataset on disk (ibsr18, folder, brats, brats2023, msd_task01, phantom) into a MONAI datalist with folds."""
        from brainbundles.data.datalist import make_datalist

        kwargs = {"channels": list(channels)} if channels else {}
        dl = make_datalist(
            layout, root, out=out, folds=folds, seed=seed, test_fraction=test_fraction, **kwargs
        )
        return f"{out}: {len(dl.get('training', []))} training and {len(dl.get('testing', []))} testing cases"

    def demo(
        self,
        task: str = "tissue",
        out: str | None = None,
        seed: int = 0,
        missing_sequences: bool = True,
        **train_overrides,
    ) -> None:
        """Make phantoms, train the task's bundle on the CPU, infer on held-out phantoms, evaluate
        (for several sequences, also with each one left out unless `--missing_sequences False`)."""
        from brainbundles.workflows import run_demo

        run_demo(
            task, out or f"demo_{task}", seed=seed, missing_sequences=missing_sequences, **train_overrides
        )

    def infer(
        self,
        bundle: str,
        *inputs: str,
        input: Sequence[str] | str | None = None,
        output: str = "output",
        datalist: str | None = None,
        **overrides,
    ) -> None:
        """Segment scans with a bundle (folder or name): `brainbundles infer tissue --input T1.nii.gz --output out`;
        several inputs as positional arguments (`brainbundles infer brats flair=F.nii.gz t1c=C.nii.gz --output out`)."""
        from brainbundles.workflows import run_inference

        files = list(inputs) + ([input] if isinstance(input, str) else list(input or []))
        run_inference(bundle, files or None, output_dir=output, datalist=datalist, **overrides)

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


def main() -> None:
    """Entry point; bad input (a named file and its problem) ends with a one-line error and exit 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire(Commands, name="brainbundles")
    except (ValueError, FileNotFoundError) as e:  # InputError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
