"""Training machinery shared by pretraining and fine-tuning.

Everything here is independent of the objective, so ``pretrain.py`` and ``finetune.py`` build
their loops from the same parts:

- devices and AMP: :func:`resolve_device`, :func:`check_amp`, :func:`autocast`, :func:`make_grad_scaler`
- optimisation: :func:`build_optimizer` (no weight decay on biases and norms),
  :class:`WarmupCosine` / :func:`build_scheduler` (per-step linear warmup then cosine)
- reproducible data: :func:`derive_seed`, :class:`EpochBatchSampler` (order = f(seed, epoch),
  sharded by rank, resumable mid-epoch), :class:`SeededItems` (augmentation = f(seed, epoch, index)),
  so a resumed or multi-worker run sees exactly the same batches without any sampler state
- RNG and checkpoints: :func:`rng_state` / :func:`set_rng_state`, :func:`save_checkpoint` /
  :func:`load_checkpoint` (atomic, ``weights_only``)
- logging: :class:`MetricsLogger` (metrics.csv + TensorBoard, truncated on resume), :func:`progress_bar`
- distributed: :class:`DistInfo`, :func:`init_distributed`, :func:`barrier`
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from neuro_ssl._utils.files import torch_save, write_csv
from neuro_ssl.errors import ConfigError, ManifestError
from neuro_ssl.models.checkpoints import read_checkpoint

TRAIN_CHECKPOINT_FORMAT = "neuro-ssl-train-checkpoint/1"


# ---- devices and AMP ----------------------------------------------------------------------------

def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's CUDA device when present, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif name == "cuda" and torch.cuda.is_available():
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for, but no CUDA device is available")
    return device


def check_amp(amp: str, device: torch.device) -> None:
    """fp16 needs a GPU (its GradScaler is CUDA-only here); bf16 runs on CPU and GPU."""
    if amp not in ("none", "bf16", "fp16"):
        raise ConfigError(f"--amp must be none, bf16 or fp16, got '{amp}'")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device; use --amp bf16 on CPU")


def autocast(amp: str, device: torch.device):
    """Context manager for the forward pass: bf16/fp16 autocast, or nothing with ``none``."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(amp: str, device: torch.device):
    """A GradScaler for fp16 (underflow protection); None otherwise (bf16 has fp32's range)."""
    if amp == "fp16":
        return torch.amp.GradScaler(device.type)
    return None


# ---- optimisation -------------------------------------------------------------------------------

def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW or Adam over the trainable parameters; biases and norm weights (1-D) get no decay."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": float(weight_decay)},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "adam":  # Adam's weight decay is L2 in the gradient, as in the y-Aware paper
        return torch.optim.Adam(groups, lr=lr)
    raise ConfigError(f"--optimizer must be adamw or adam, got '{name}'")


class WarmupCosine:
    """LR factor at optimizer step s: linear warmup ``(s+1)/warmup`` then half-cosine to ``min_ratio``.

    A plain object (ints and floats only) so ``LambdaLR.state_dict()`` stores it and a resumed
    schedule continues where it stopped.
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0):
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(min(int(warmup_steps), self.total_steps), 0)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                    min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step warmup + cosine; call ``scheduler.step()`` after each ``optimizer.step()``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_ratio))


# ---- reproducible data --------------------------------------------------------------------------

def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a stable function of ``parts`` (same on every machine and process)."""
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(epoch, index)`` pairs; the order is a function of (seed, epoch) only.

    Every rank takes the same permutation and keeps batches ``rank, rank + world, ...`` of the
    global batch list, so ranks see disjoint scans and equal batch counts. The last incomplete
    batch is dropped (a contrastive batch of 1 has no negatives, and ranks must agree).
    ``set_epoch(epoch, start_batch)`` skips the first ``start_batch`` batches (mid-epoch resume).
    """

    def __init__(self, n_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, drop_last: bool = True):
        self.n_items, self.batch_size, self.seed = int(n_items), int(batch_size), int(seed)
        self.rank, self.world_size, self.shuffle, self.drop_last = rank, world_size, shuffle, drop_last
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def batches_per_epoch(self) -> int:
        per_round = self.batch_size * self.world_size
        full, rest = divmod(self.n_items, per_round)
        return full + (1 if rest and not self.drop_last and rest >= self.world_size else 0)

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n_items)
        return np.random.default_rng(derive_seed("order", self.seed, self.epoch)).permutation(self.n_items)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self._order()
        n_batches = self.batches_per_epoch()
        for b in range(self.start_batch, n_batches):
            chunk = order[b * self.batch_size * self.world_size:(b + 1) * self.batch_size * self.world_size]
            mine = chunk[self.rank::self.world_size]
            yield [(self.epoch, int(i)) for i in mine]

    def __len__(self) -> int:
        return max(self.batches_per_epoch() - self.start_batch, 0)


class SeededItems(torch.utils.data.Dataset):
    """Wraps a dataset so item ``(epoch, index)`` is drawn as a pure function of (seed, epoch, index).

    A dataset with ``set_epoch`` (``TwoViewDataset``) is told the epoch of every item, carried in
    the key itself, so persistent DataLoader workers need no notice of a new epoch. Python, numpy
    and torch global RNGs are seeded from (seed, epoch, index) around the fetch and restored
    afterwards, so transforms drawing from them are reproducible too and the caller's streams are
    untouched. Random views then depend on neither the worker count nor the order of earlier
    draws: that is what makes resumed and multi-worker runs exact.
    """

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        saved = rng_state()
        try:
            _seed_all(derive_seed("item", self.seed, epoch, index))
            return self.dataset[index]
        finally:
            set_rng_state(saved)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---- RNG state and checkpoints ------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU + CUDA) RNG states as ``weights_only``-loadable values."""
    np_state = np.random.get_state()
    state = {
        "python": _to_lists(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(obj):
    return [_to_lists(v) for v in obj] if isinstance(obj, (tuple, list)) else obj


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically write a training checkpoint (plain dict of tensors / state_dicts / numbers)."""
    torch_save({"format": TRAIN_CHECKPOINT_FORMAT, **state}, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True``; CheckpointError if unusable."""
    return read_checkpoint(path, TRAIN_CHECKPOINT_FORMAT)


def optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move optimizer state tensors (loaded on CPU) to ``device``."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)


# ---- logging ------------------------------------------------------------------------------------

class MetricsLogger:
    """Rows to ``RUN/metrics.csv`` (rewritten atomically) and scalars to TensorBoard under ``RUN/``.

    ``resume_step``: keep only the rows logged at or before that step and purge later TensorBoard
    events, so a resumed run's logs read as one uninterrupted run. Disabled (no files) on ranks > 0.
    """

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True, resume_step: int | None = None,
                 tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.csv"
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        self.writer = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            import pandas as pd

            old = pd.read_csv(self.path)
            self.rows = [r for r in old.to_dict("records") if r.get("step", 0) <= resume_step]
        if tensorboard:
            self.writer = _summary_writer(Path(run_dir), resume_step)

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        """TensorBoard only (per-step curves)."""
        if self.writer is not None:
            for key, value in values.items():
                if value is not None and np.isfinite(value):
                    self.writer.add_scalar(f"{prefix}{key}", float(value), step)

    def log(self, row: dict[str, Any], prefix: str = "epoch/") -> None:
        """Append a row to metrics.csv (rewritten atomically) and its numbers to TensorBoard."""
        if not self.enabled:
            return
        import pandas as pd

        self.rows.append(dict(row))
        write_csv(self.path, pd.DataFrame(self.rows))
        numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k not in ("epoch", "step")}
        self.scalars(int(row.get("step", 0)), numbers, prefix)
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _summary_writer(run_dir: Path, resume_step: int | None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; stay usable without it
        print("neuro-ssl: tensorboard not installed; curves go to metrics.csv only", file=sys.stderr)
        return None
    purge = resume_step + 1 if resume_step is not None else None
    return SummaryWriter(log_dir=str(run_dir), purge_step=purge)


def progress_bar(total: int, desc: str, enabled: bool = True, initial: int = 0):
    """Progress of an epoch on stderr (a tqdm bar in a terminal, a line per 10 % or per minute in a
    log: ``neuro_ssl._utils.progress``); silent when NEURO_SSL_QUIET=1 or on ranks > 0."""
    from neuro_ssl._utils.progress import progress

    return progress(total=total, initial=initial, desc=desc, unit="step", enabled=enabled)


# ---- distributed --------------------------------------------------------------------------------

@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # True when init_distributed created the process group (and so ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        use_cuda = torch.cuda.is_available() and device_name != "cpu"
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, owns_group=owns)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. an error message, so all ranks stop together)."""
    if not info.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown_distributed(info: DistInfo) -> None:
    """End the process group if :func:`init_distributed` started it (a caller's own group is left alone)."""
    if info.distributed and info.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def count_batches_or_fail(n_items: int, batch_size: int, world_size: int, what: str) -> int:
    """Optimizer-free check that at least one full batch exists; ManifestError (exit 1) otherwise."""
    if n_items < batch_size * world_size:
        per = f"{batch_size} x {world_size} ranks" if world_size > 1 else f"{batch_size}"
        raise ManifestError(f"{what} has {n_items} usable scan(s), fewer than one batch of {per}: "
                          f"lower --batch-size or add scans")
    return n_items // (batch_size * world_size)


def mean_of(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")
