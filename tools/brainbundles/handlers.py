"""Ignite handlers shared by every bundle: checkpoints while training, weights for inference."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from brainbundles.bundle.weights import load_bundle_weights, load_weights, save_weights
from brainbundles.fileio import atomic_write, write_json_atomic
from brainbundles.transforms.io import collect_volumes

__all__ = ["CaseProgress", "TrainingCheckpoint", "LoadWeights"]

logger = logging.getLogger("brainbundles")


def _is_rank0() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class TrainingCheckpoint:
    """Best and last checkpoints, and resuming a killed training.

    - every ``save_interval`` epochs, ``<ckpt_dir>/last.pt`` holds the network, optimiser, scheduler,
      epoch, iteration and the validator's best metric (written atomically, rank 0 only);
    - when the validator's key metric improves, ``<ckpt_dir>/<model_file>`` holds the network weights
      (a plain state dict, loadable with ``torch.load(weights_only=True)``), and the same weights are
      written beside it as safetensors (``model.safetensors``), the form bundles are shared in;
    - ``training_data`` (the training data fingerprint,
      :func:`brainbundles.bundle.export.training_fingerprint`) is written to
      ``<ckpt_dir>/training_data.json`` when training starts, for ``brainbundles export``;
    - when the trainer starts and ``last.pt`` exists (and ``resume`` is on), all of that state is
      restored and training continues with the next epoch; otherwise, with ``init_weights``, the
      network starts from those weights (a state dict, or a ``last.pt``-style checkpoint): fine-tuning,
      or the second phase of two-phase training.

    Attach it after ``ValidationHandler`` in the trainer's handler list so that the epoch's
    validation has run when the checkpoint is written.
    """

    def __init__(
        self,
        ckpt_dir: str | os.PathLike,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        lr_scheduler=None,
        validator: Engine | None = None,
        save_interval: int = 1,
        resume: bool = True,
        model_file: str = "model.pt",
        last_file: str = "last.pt",
        init_weights: str | os.PathLike | None = None,
        training_data: dict | None = None,
    ) -> None:
        if save_interval < 1:
            raise ValueError(f"save_interval: must be >= 1, got {save_interval}")
        self.ckpt_dir = Path(ckpt_dir)
        self.network = network.module if hasattr(network, "module") else network
        self.optimizer, self.lr_scheduler, self.validator = optimizer, lr_scheduler, validator
        self.save_interval, self.resume = save_interval, resume
        self.model_path = self.ckpt_dir / model_file
        self.last_path = self.ckpt_dir / last_file
        self.init_weights = Path(init_weights) if init_weights else None
        self.training_data = training_data

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def load(self, engine: Engine) -> None:
        if self.training_data is not None and _is_rank0():
            write_json_atomic(self.training_data, self.ckpt_dir / "training_data.json")
        if not (self.resume and self.last_path.is_file()):
            if self.init_weights is not None:  # a fresh run that starts from given weights
                self.network.load_state_dict(load_weights(self.init_weights))
                logger.info("starting from the weights in %s", self.init_weights)
            return
        ckpt = torch.load(self.last_path, map_location="cpu", weights_only=True)
        self.network.load_state_dict(ckpt["network"])
        if self.optimizer is not None and "optimizer" in ckpt:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.lr_scheduler is not None and "lr_scheduler" in ckpt:
            self.lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
        epoch = int(ckpt["epoch"])
        engine.state.epoch = epoch
        engine.state.iteration = epoch * (engine.state.epoch_length or 0)
        if self.validator is not None and ckpt.get("best_metric_epoch", -1) > 0:
            self.validator.state.best_metric = float(ckpt["best_metric"])
            self.validator.state.best_metric_epoch = int(ckpt["best_metric_epoch"])
        logger.info(
            "resumed from %s: epoch %d of %s done (best metric %s)",
            self.last_path,
            epoch,
            engine.state.max_epochs,
            ckpt.get("best_metric"),
        )

    def _improved(self, epoch: int) -> bool:
        if self.validator is None:
            return True
        return int(getattr(self.validator.state, "best_metric_epoch", -1)) == epoch

    def save(self, engine: Engine) -> None:
        if not _is_rank0():
            return
        epoch = engine.state.epoch
        if self._improved(epoch):
            state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
            atomic_write(self.model_path, lambda tmp: torch.save(state, tmp))
            save_weights(state, self.model_path.with_suffix(".safetensors"))
            logger.info("epoch %d: saved best model to %s", epoch, self.model_path)
        if epoch % self.save_interval and epoch != engine.state.max_epochs:
            return
        ckpt = {"network": self.network.state_dict(), "epoch": epoch, "iteration": engine.state.iteration}
        if self.optimizer is not None:
            ckpt["optimizer"] = self.optimizer.state_dict()
        if self.lr_scheduler is not None:
            ckpt["lr_scheduler"] = self.lr_scheduler.state_dict()
        if self.validator is not None:
            ckpt["best_metric"] = float(getattr(self.validator.state, "best_metric", -1))
            ckpt["best_metric_epoch"] = int(getattr(self.validator.state, "best_metric_epoch", -1))
        atomic_write(self.last_path, lambda tmp: torch.save(ckpt, tmp))


class LoadWeights:
    """Load a bundle's trained weights into the network when an engine starts (inference and
    evaluation): ``<ckpt_dir>/model.safetensors``, else ``<ckpt_dir>/model.pt`` (a bundle holding only
    fold models, ``<ckpt_dir>/fold_<k>/``, loads the first; the ensemble inferer loads each) read with
    ``torch.load(weights_only=True)``, which refuses a pickle that would run code
    (:func:`brainbundles.bundle.weights.load_weights`)."""

    def __init__(self, ckpt_dir: str | os.PathLike, network: torch.nn.Module) -> None:
        self.ckpt_dir = Path(ckpt_dir)
        self.network = network.module if hasattr(network, "module") else network

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        load_bundle_weights(self.ckpt_dir, self.network)


class CaseProgress:
    """Inference, after each case: a log line (``case 3 of 10 written: <case> (14.2 s)``) and
    ``<output_dir>/volumes.csv`` rewritten with the volumes of this run's ``cases`` written so far, so
    an interrupted batch leaves a table of what it finished."""

    def __init__(self, output_dir: str | os.PathLike, cases: Sequence[str]) -> None:
        self.output_dir, self.cases = Path(output_dir), list(cases)
        self._since = time.perf_counter()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _start(self, engine: Engine) -> None:
        self._since = time.perf_counter()

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch
        items = batch if isinstance(batch, list) else [batch]
        names = []
        for item in items:
            case = item.get("case") if isinstance(item, dict) else None
            names += list(case) if isinstance(case, list | tuple) else [case] if case is not None else []
        now = time.perf_counter()
        logger.info(
            "case %d of %d written: %s (%.1f s)",
            engine.state.iteration,
            engine.state.epoch_length,
            ", ".join(map(str, names)) or "?",
            now - self._since,
        )
        self._since = now
        collect_volumes(self.output_dir, self.cases)
