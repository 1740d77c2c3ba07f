"""The fast path every bundle runs its network through: precision, memory format and window choice.

- **Precision** (``precision`` in a bundle's ``inference.json`` and ``train.json``): ``"auto"`` uses AMP (float16 autocast) on
  CUDA, bfloat16 autocast on CPUs with AMX, and float32 elsewhere; ``"fp32"``, ``"bf16"`` and ``"fp16"``
  force one. On a CPU with AVX-512 BF16 but no AMX, oneDNN's bfloat16 3D convolutions measured 1.3-1.8×
  *slower* than float32 (2-core Xeon, PyTorch 2.13; ``benchmarks/inference.py --precision bf16`` shows it
  for a bundle), so ``"auto"`` keeps float32 there.
- **Channels-last** (``channels_last``): 3D convolutions run in ``torch.channels_last_3d``, 1.0-1.5× faster
  in float32 on the CPU and what tensor cores want on CUDA.
- **One window** (``max_window_voxels``): an image (already cropped to the brain by the preprocessing)
  whose padded size fits is run as one window, padded only to the network's divisor: no overlap and no
  window blending. A larger image goes through MONAI's sliding window with ``roi_size`` and ``overlap``.
  The bundles allow one window up to twice a training patch's voxels: group and instance normalisation
  take statistics over the window, and a window much larger than the training patches measurably
  changed (worsened) the segmentation.

The brain crop itself is the preprocessing's ``CropForegroundd`` (``crop_to_brain``, through
:func:`brainbundles.transforms.brain_selector`): the probabilities are pasted back into the full volume
by ``Invertd``. The measurements behind these defaults are in the repository README ("Speed").
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.engines.utils import IterationEvents
from monai.inferers import Inferer, sliding_window_inference
from monai.utils import convert_to_dst_type

from brainbundles.bundle.weights import check_listed_checksum, fold_weights, load_weights

__all__ = [
    "PRECISIONS",
    "EnsembleInferer",
    "FastInferer",
    "Prefetch",
    "autocast_dtype",
    "cpu_has_amx",
    "cuda_amp",
    "ensemble_members",
    "to_channels_last",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_amx: bool | None = None


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles that PyTorch can use (bfloat16 matrix units: Sapphire Rapids on)."""
    global _amx
    if _amx is None:
        init = getattr(getattr(torch._C, "_cpu", None), "_init_amx", None)
        try:
            _amx = bool(init()) if init is not None else False
        except RuntimeError:
            _amx = False
    return _amx


def autocast_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: one of {', '.join(PRECISIONS)}, got {precision!r}")
    kind = torch.device(device).type
    if precision == "fp32" or kind not in ("cpu", "cuda"):
        return None
    if precision == "auto":
        if kind == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_amx() else None
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision: this GPU has no bfloat16 support; use 'fp16' or 'auto'")
    return _DTYPES[precision]


def cuda_amp(device: torch.device | str, precision: str = "auto") -> bool:
    """Whether a MONAI engine should run with ``amp=True`` (CUDA float16: autocast with a gradient scaler)."""
    return torch.device(device).type == "cuda" and autocast_dtype(device, precision) == torch.float16


def to_channels_last(network: torch.nn.Module) -> torch.nn.Module:
    """Put the 3D convolution weights of ``network`` in ``torch.channels_last_3d``, in place (the parameters
    stay the same objects, so an optimizer holding them is unaffected); 2D weights (slice-wise networks) are
    left as they are. Cheap once done."""
    fmt = torch.channels_last_3d
    for p in network.parameters():
        if p.dim() == 5 and not p.is_contiguous(memory_format=fmt):
            p.data = p.data.contiguous(memory_format=fmt)
    return network


class FastInferer(Inferer):
    """Run a network on a (B, C, *spatial) image with the fast path (see the module docstring).

    Args:
        roi_size: the sliding window's size; None runs the network on the whole input as given (training).
        sw_batch_size, overlap, mode: MONAI ``sliding_window_inference``'s, for images too big for one window.
        max_window_voxels: run an image whose size, padded to the network's divisor, has at most this many
            voxels as one window; 0 always slides windows of ``roi_size``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see :func:`autocast_dtype`).
        channels_last: run 3D inputs and the network in ``torch.channels_last_3d``.
        cudnn_benchmark: on CUDA, let cuDNN pick the fastest convolution algorithms.

    The output is float32 and has the input's spatial shape (and its metadata for a ``MetaTensor``).
    """

    def __init__(
        self,
        roi_size: Sequence[int] | None = None,
        sw_batch_size: int = 1,
        overlap: float = 0.25,
        mode: str = "gaussian",
        max_window_voxels: int = 0,
        precision: str = "auto",
        channels_last: bool = True,
        cudnn_benchmark: bool = True,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision: one of {', '.join(PRECISIONS)}, got {precision!r}")
        if max_window_voxels < 0:
            raise ValueError(f"max_window_voxels: must be >= 0, got {max_window_voxels}")
        self.roi_size = None if roi_size is None else tuple(int(s) for s in roi_size)
        self.sw_batch_size = sw_batch_size
        self.overlap = overlap
        self.mode = mode
        self.max_window_voxels = int(max_window_voxels)
        self.precision = precision
        self.channels_last = channels_last
        self.cudnn_benchmark = cudnn_benchmark

    def _forward(self, network: Callable, dtype: torch.dtype | None, device: torch.device) -> Callable:
        channels_last = self.channels_last

        def run(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            if channels_last and x.dim() == 5:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
            with ctx:
                y = network(x, *args, **kwargs)
            # float32 and contiguous: what losses, blending and the postprocessing expect
            return y.to(torch.float32, memory_format=torch.contiguous_format)

        return run

    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs) -> torch.Tensor:
        device = inputs.device
        dtype = autocast_dtype(device, self.precision)
        if self.channels_last and inputs.dim() == 5 and isinstance(network, torch.nn.Module):
            to_channels_last(network)
        if device.type == "cuda" and self.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        run = self._forward(network, dtype, device)
        x = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        spatial = tuple(x.shape[2:])
        divisor = int(getattr(getattr(network, "module", network), "divisor", 1))  # also under DDP
        padded = tuple(math.ceil(s / divisor) * divisor for s in spatial)
        if self.roi_size is None or (self.max_window_voxels and math.prod(padded) <= self.max_window_voxels):
            before = [(p - s) // 2 for s, p in zip(spatial, padded, strict=True)]
            if padded != spatial:  # zero padding: the background of a z-scored, brain-cropped image
                pairs = [(b, p - s - b) for b, s, p in zip(before, spatial, padded, strict=True)]
                x = F.pad(x, [n for pair in reversed(pairs) for n in pair])  # F.pad: last dimension first
            out = run(x, *args, **kwargs)
            if padded != spatial:
                out = out[
                    (..., *(slice(b, b + s) for b, s in zip(before, spatial, strict=True)))
                ].contiguous()
        else:
            out = sliding_window_inference(
                x, self.roi_size, self.sw_batch_size, run, self.overlap, self.mode, *args, **kwargs
            )
        if isinstance(inputs, MetaTensor):  # the input's metadata, as MONAI's inferers give it
            out = convert_to_dst_type(out, inputs)[0]
        return out


def ensemble_members(ckpt_dir: str | os.PathLike) -> list[Path]:
    """The members of a bundle's fold ensemble: :func:`brainbundles.bundle.weights.fold_weights`."""
    return fold_weights(ckpt_dir)


def _views(spatial_dims: int, flip_axes: Sequence[int], rot90: bool) -> list[tuple[tuple[int, ...], int]]:
    """Test-time views as ``(flipped spatial axes, quarter turns in the plane of spatial axes 0 and 1)``:
    every combination of the ``flip_axes`` (the identity first), each also turned by 1-3 quarters with
    ``rot90``."""
    axes = sorted({int(a) for a in flip_axes})
    if any(not 0 <= a < spatial_dims for a in axes):
        raise ValueError(f"flip_axes: spatial axes in 0..{spatial_dims - 1}, got {list(flip_axes)}")
    flips = [tuple(a for i, a in enumerate(axes) if m >> i & 1) for m in range(2 ** len(axes))]
    return [(f, k) for f in flips for k in (range(4) if rot90 else (0,))]


class EnsembleInferer(Inferer):
    """Mean class probabilities over ensemble members and test-time views, as logits.

    Each member (a weights file, :func:`ensemble_members`) is loaded in turn into the network; each view
    of the input (mirrored along ``flip_axes``, every combination, and with ``rot90`` also turned by a
    quarter, half and three quarters in the plane of spatial axes 0 and 1, the axial plane in RAS) goes
    through ``inferer`` and is mapped back; the ``activation`` (``"softmax"`` over channels or
    ``"sigmoid"``) of each output is averaged. The mean ``p`` is returned as ``log p`` (softmax) or
    ``logit p`` (sigmoid), so the bundle's usual activation in its postprocessing gives ``p`` exactly.
    With no member and no augmentation the wrapped inferer's output is returned unchanged.
    """

    def __init__(
        self,
        inferer: Callable,
        members: Sequence[str | os.PathLike] = (),
        activation: str = "softmax",
        flip_axes: Sequence[int] = (),
        rot90: bool = False,
        eps: float = 1e-6,
    ) -> None:
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"activation: 'softmax' or 'sigmoid', got {activation!r}")
        self.inferer, self.members, self.activation = inferer, [Path(m) for m in members], activation
        self.flip_axes, self.rot90, self.eps = tuple(flip_axes), bool(rot90), float(eps)
        self._states: list[dict] | None = None

    def _member_states(self) -> list[dict]:
        if self._states is None:
            for m in self.members:
                check_listed_checksum(m)
            self._states = [load_weights(m) for m in self.members]
        return self._states

    def __call__(self, inputs: torch.Tensor, network: Callable, *args, **kwargs) -> torch.Tensor:
        views = _views(inputs.dim() - 2, self.flip_axes, self.rot90)
        if not self.members and len(views) == 1:
            return self.inferer(inputs, network, *args, **kwargs)
        net = getattr(network, "module", network)
        total, n = None, 0
        for state in self._member_states() or [None]:
            if state is not None:
                net.load_state_dict(state)
            for flips, turns in views:
                dims = [2 + a for a in flips]
                x = torch.flip(inputs, dims) if dims else inputs
                x = torch.rot90(x, turns, (2, 3)) if turns else x
                out = self.inferer(x, network, *args, **kwargs)
                out = torch.rot90(out, -turns, (2, 3)) if turns else out
                out = torch.flip(out, dims) if dims else out
                prob = (
                    torch.softmax(out.float(), 1)
                    if self.activation == "softmax"
                    else torch.sigmoid(out.float())
                )
                total = prob if total is None else total + prob
                n += 1
        mean = (total / n).clamp(self.eps, 1 - self.eps)
        return torch.log(mean) if self.activation == "softmax" else torch.log(mean) - torch.log1p(-mean)


class Prefetch:
    """Iterate over ``loader`` (e.g. a ``DataLoader`` of cases) with the next item loaded in a background
    thread: reading, decompressing and preprocessing the next scan overlap the single-threaded
    postprocessing and writing of this one. Attached to an engine (as one of its handlers), the next
    item is loaded only once the network has run on the current one (``FORWARD_COMPLETED``): loading
    beside the network measured slower than not prefetching at all, since the network uses every core.
    An exception raised while loading an item is raised by the iteration at that item (the items before
    it are delivered first). ``enabled=False`` iterates ``loader`` directly. ``len()`` is the loader's."""

    _END = object()

    def __init__(self, loader: Iterable, enabled: bool = True) -> None:
        self.loader, self.enabled = loader, bool(enabled)
        self._gate: threading.Event | None = None

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def attach(self, engine) -> None:
        """Load each next item once ``engine``'s network has run on the current one."""
        self._gate = threading.Event()
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, lambda _: self._gate.set())

    def __iter__(self) -> Iterator:
        if not self.enabled:
            yield from self.loader
            return
        items: queue.Queue = queue.Queue(maxsize=1)
        stop, gate = threading.Event(), self._gate
        if gate is not None:
            gate.clear()

        def wait(event: threading.Event) -> bool:
            while not stop.is_set():
                if event.wait(timeout=0.1):
                    return True
            return False

        def put(value: object) -> bool:
            while not stop.is_set():
                try:
                    items.put(value, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                for i, item in enumerate(self.loader):
                    if not put((item, None)):
                        return
                    if gate is not None and i + 1 < len(self):  # the next one once the network is done
                        if not wait(gate):
                            return
                        gate.clear()
            except BaseException as e:  # handed to the consumer, raised there
                put((None, e))
                return
            put((self._END, None))

        thread = threading.Thread(target=work, name="brainbundles-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item, error = items.get()
                if error is not None:
                    raise error
                if item is self._END:
                    return
                yield item
        finally:  # also when the consumer stops early: the thread ends and nothing is left running
            stop.set()
            thread.join()
