"""Contrastive pretraining: two augmented views -> encoder -> projection head -> the ``--loss`` objective.

``pretrain(config, manifest_df, out_dir)`` runs the whole job and writes the run folder:
``encoder.pt`` (+ ``encoder.yaml``), ``checkpoint.pt``, ``config.yaml``, ``metrics.csv`` and
TensorBoard events. Exactness is by construction: the data order is a function of (seed, epoch)
and each view of each scan a function of (seed, epoch, index) (see ``loop.SeededItems``), so a
run stopped at any checkpoint and resumed ends with the same weights, bit for bit on CPU, as a
run that never stopped. The manifest checks (columns, missing covariates, batch count, shapes)
live in ``pretrain_data.py``; what each ``--loss`` computes per micro-batch lives in
``objectives.py`` (one class per objective over this shared loop).
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from neuro_ssl._utils.files import write_yaml
from neuro_ssl.data.screening import write_skipped
from neuro_ssl._utils.seeding import seed_everything
from neuro_ssl.errors import ConfigError
from neuro_ssl.models import ContrastiveModel, ProjectionHead, build_encoder, save_encoder, unwrap
from neuro_ssl.models.encoders import check_input_shape
from neuro_ssl.training import crossmodal, loop
from neuro_ssl.training.config import PretrainConfig
from neuro_ssl.training.objectives import Step, build_objective
from neuro_ssl.training.pretrain_data import PretrainData, build_probe_data, build_train_data
from neuro_ssl.training.run_time import RunTimeEstimate

#: config fields a resumed run may change (they do not alter what is computed)
RESUMABLE_CHANGES = frozenset({"epochs", "workers", "device", "cache_dir", "checkpoint_every", "probe_every",
                               "log_every", "skip_bad"})


def pretrain(config: PretrainConfig | Mapping[str, Any], manifest_df, out_dir, val_manifest_df=None,
             resume: bool = False, *, sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Pretrain an encoder; returns a summary dict (paths, steps, final loss, probe metrics).

    ``sources`` (e.g. ``{"manifest": path, "val_manifest": path}``) is recorded in config.yaml so
    the run can be repeated with ``neuro-ssl pretrain --config RUN/config.yaml``.
    Under torchrun (WORLD_SIZE > 1) each rank calls this; only rank 0 writes files.
    """
    if not isinstance(config, PretrainConfig):
        config = PretrainConfig.from_dict(config)
    config.validate()
    info = loop.init_distributed(config.device)
    try:
        trainer = Pretrainer(config, Path(out_dir), info, resume)
        return trainer.fit(manifest_df, val_manifest_df, dict(sources or {}))
    finally:
        loop.shutdown_distributed(info)


class Pretrainer:
    """One pretraining run: state (model, optimizer, queue, counters) and the loop over it."""

    def __init__(self, config: PretrainConfig, run_dir: Path, info: loop.DistInfo, resume: bool):
        self.config, self.run_dir, self.info, self.resume = config, run_dir, info, resume
        self.device = loop.resolve_device(config.device, info.local_rank)
        loop.check_amp(config.amp, self.device)
        self.checkpoint_path = run_dir / "checkpoint.pt"
        verdict = None
        if info.is_main and not resume and run_dir.is_dir() and not _never_started(run_dir):
            verdict = f"{run_dir} is not empty: pass --resume to continue the run in it, or choose a new --out"
        verdict = loop.broadcast_object(info, verdict)  # every rank stops, or none does
        if verdict:
            raise ConfigError(verdict)
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.loss_sum, self.loss_count, self.epoch_seconds, self.epoch_volumes = 0.0, 0, 0.0, 0
        self._proximal: tuple[float, dict[str, torch.Tensor]] | None = None  # FedProx (see train_from)
        self.log_sums: dict[str, float] = {}  # the objective's extra scalars, summed over the epoch's steps
        self.step_logs: dict[str, float] = {}  # ... and their values at the last optimizer step

    # ---- setup --------------------------------------------------------------------------------
    def _build(self, data: PretrainData) -> None:
        cfg = self.config
        seed_everything(cfg.seed)
        encoder = build_encoder(cfg.arch, cfg.in_channels, cfg.norm, cfg.width)
        self.model = ContrastiveModel(encoder, ProjectionHead(encoder.out_features, cfg.proj_dims))
        objective = build_objective(cfg, data)
        self.target = self.queue = None
        if objective.needs_target(cfg):
            from neuro_ssl.losses import MemoryQueue

            self.target = copy.deepcopy(self.model).requires_grad_(False).to(self.device)
            self.queue = MemoryQueue(cfg.queue, cfg.proj_dims[-1], data.y_dim).to(self.device)
        self.model.extras["objective"] = objective
        self.model = self.model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
            if self.target is not None:
                self.target = self.target.to(memory_format=torch.channels_last_3d)
        self.objective = objective
        self.net = self.model
        if self.info.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.sampler = loop.EpochBatchSampler(data.n_items, cfg.batch_size, cfg.seed, self.info.rank,
                                              self.info.world_size)
        self.micro_per_epoch = len(self.sampler)
        self.steps_per_epoch = math.ceil(self.micro_per_epoch / cfg.accumulate)
        total = self.steps_per_epoch * cfg.epochs
        self.optimizer = loop.build_optimizer(self.model, cfg.optimizer, cfg.lr, cfg.weight_decay)
        self.scheduler = loop.build_scheduler(self.optimizer, total, round(cfg.warmup_epochs * self.steps_per_epoch))
        self.scaler = loop.make_grad_scaler(cfg.amp, self.device)
        self.loader = torch.utils.data.DataLoader(
            data.dataset, batch_sampler=self.sampler, num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda", persistent_workers=cfg.workers > 0,
            prefetch_factor=4 if cfg.workers > 0 else None)

    # ---- checkpoints --------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(), "world_size": self.info.world_size,
            "model": unwrap(self.model).state_dict(),
            "target": self.target.state_dict() if self.target is not None else None,
            "queue": self.queue.state_dict() if self.queue is not None else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": loop.rng_state(),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "loss_sum": self.loss_sum, "loss_count": self.loss_count, "log_sums": dict(self.log_sums),
            "epoch_seconds": self.epoch_seconds, "epoch_volumes": self.epoch_volumes,
        }

    def _save(self, data: PretrainData) -> None:
        if self.info.is_main:
            loop.save_checkpoint(self.checkpoint_path, self._state())
            save_encoder(self.run_dir / "encoder.pt", self.model.encoder, self._encoder_meta(data))
            self.objective.export(self.run_dir, self.model, self._encoder_meta(data))
        loop.barrier(self.info)

    def _restore(self) -> int | None:
        """Load checkpoint.pt when resuming; returns the step it was taken at (None: fresh start)."""
        if not (self.resume and self.checkpoint_path.exists()):
            return None
        state = loop.load_checkpoint(self.checkpoint_path)
        self._check_compatible(state)
        self.model.load_state_dict(state["model"])
        if self.target is not None:
            self.target.load_state_dict(state["target"])
            self.queue.load_state_dict(state["queue"])
        self.optimizer.load_state_dict(state["optimizer"])
        loop.optimizer_to(self.optimizer, self.device)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scheduler.lr_lambdas[0].total_steps = self.steps_per_epoch * self.config.epochs
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        loop.set_rng_state(state["rng"])
        for key in ("epoch", "step_in_epoch", "global_step", "loss_sum", "loss_count",
                    "epoch_seconds", "epoch_volumes"):
            setattr(self, key, state[key])
        self.log_sums = dict(state.get("log_sums", {}))
        return self.global_step

    def _check_compatible(self, state: dict) -> None:
        saved, now, default = state["config"], self.config.to_dict(), PretrainConfig().to_dict()
        # an option added after the checkpoint was written reads as its default
        differ = [k for k in now if k not in RESUMABLE_CHANGES and _norm(saved.get(k, default[k])) != _norm(now[k])]
        if state.get("world_size", 1) != self.info.world_size:
            differ.append(f"world size ({state.get('world_size', 1)} -> {self.info.world_size})")
        if differ:
            raise ConfigError(
                f"{self.checkpoint_path} was made with other options ({', '.join(differ[:6])}): resume with "
                f"the same options (e.g. --config {self.run_dir / 'config.yaml'} --resume) or start a new --out")

    def _encoder_meta(self, data: PretrainData) -> dict[str, Any]:
        cfg = self.config
        return {"preprocess": cfg.preprocess_dict(), "subjects": data.subjects, "loss": cfg.loss,
                "meta_columns": list(cfg.meta), "sigma": cfg.sigma, "temperature": cfg.temperature,
                "queue": cfg.queue, "views": list(cfg.views), "positives": cfg.positives, "epochs_done": self.epoch,
                "global_step": self.global_step, "seed": cfg.seed}

    # ---- training -----------------------------------------------------------------------------
    def fit(self, manifest_df, val_manifest_df, sources: dict[str, str]) -> dict[str, Any]:
        cfg = self.config
        check_input_shape(cfg.arch, cfg.norm, cfg.in_channels, (cfg.in_channels, *cfg.shape))
        data = build_train_data(manifest_df, cfg, self.info, log=self._say)
        loop.count_batches_or_fail(data.n_items, cfg.batch_size, self.info.world_size,
                                   manifest_df.attrs.get("source", "the manifest"))
        probe = build_probe_data(val_manifest_df, cfg) if val_manifest_df is not None else None
        self._build(data)
        if probe is not None:
            crossmodal.check_held_out(getattr(self.objective, "alignment", None), probe.manifest)
        resumed_at = self._restore()
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if resumed_at is None:
                _clear_never_started(self.run_dir)
            write_yaml(self.run_dir / "config.yaml", {**cfg.to_dict(), **{k: str(v) for k, v in sources.items()}})
            write_skipped(self.run_dir, data.skipped_rows)
        self.logger = loop.MetricsLogger(self.run_dir, enabled=self.info.is_main, resume_step=resumed_at)
        if resumed_at is not None:
            self._say(f"resuming at epoch {self.epoch + 1}, step {self.global_step}")
        self.estimate = RunTimeEstimate(self.steps_per_epoch * cfg.epochs, self.global_step, self.device.type,
                                        self._say, "online probes and checkpoints" if probe else "checkpoints")
        last_probe: dict[str, Any] = {}
        try:
            while self.epoch < cfg.epochs:
                row = self._train_epoch(data)
                if probe is not None and (self.epoch % cfg.probe_every == 0 or self.epoch == cfg.epochs):
                    last_probe = self._probe(probe)
                    row.update(last_probe)
                self.logger.log(row)
                self._save(data)
        finally:
            self.logger.close()
        cross_modal = self._cross_modal(probe) if probe is not None else {}
        return {**self._summary(data, last_probe), **cross_modal}

    def _train_epoch(self, data: PretrainData) -> dict[str, Any]:
        cfg = self.config
        self.sampler.set_epoch(self.epoch, self.step_in_epoch * cfg.accumulate)
        self.net.train()
        if self.target is not None:
            self.target.train()
        bar = loop.progress_bar(self.steps_per_epoch, f"epoch {self.epoch + 1}/{cfg.epochs}",
                                self.info.is_main, initial=self.step_in_epoch)
        group: list = []
        tick = time.perf_counter()
        for micro, batch in enumerate(self.loader, start=self.step_in_epoch * cfg.accumulate):
            group.append(batch)
            if len(group) < self._group_size(micro):
                continue
            loss = self._optimizer_step(group, data)
            self.epoch_volumes += sum(b["view1"].shape[0] for b in group) * self.info.world_size
            group = []
            self.epoch_seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            rate = self.epoch_volumes / max(self.epoch_seconds, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", vol_s=f"{rate:.1f}")
            self.estimate.step()
            if self.global_step % cfg.log_every == 0:
                scalars = {"loss": loss, "lr": self._lr(), **self.step_logs}
                self.logger.scalars(self.global_step, scalars, prefix="train/")
            if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0 \
                    and self.step_in_epoch < self.steps_per_epoch:
                self._save(data)
                tick = time.perf_counter()
        bar.close()
        row = {"epoch": self.epoch + 1, "step": self.global_step,
               "loss": self.loss_sum / max(self.loss_count, 1), "lr": self._lr(),
               "volumes_per_s": self.epoch_volumes / max(self.epoch_seconds, 1e-9),
               **{k: v / max(self.loss_count, 1) for k, v in self.log_sums.items()}}
        self.epoch += 1
        self.step_in_epoch = self.loss_count = self.epoch_volumes = 0
        self.loss_sum = self.epoch_seconds = 0.0
        self.log_sums = {}
        return row

    def _group_size(self, micro: int) -> int:
        """Micro-batches in the optimizer step that ``micro`` belongs to (the last one may be short)."""
        start = (micro // self.config.accumulate) * self.config.accumulate
        return min(self.config.accumulate, self.micro_per_epoch - start)

    def _optimizer_step(self, group: list, data: PretrainData) -> float:
        total, self.step_logs = 0.0, {}
        group_keys = []  # every micro-batch's keys join the queue, not only the last one's
        for j, batch in enumerate(group):
            sync = j == len(group) - 1 or not self.info.distributed
            with (self.net.no_sync() if not sync and hasattr(self.net, "no_sync") else contextlib.nullcontext()):
                loss, keys, y, logs = self._loss(batch, data)
                scaled = loss * self.info.world_size / len(group)  # DDP averages; the loss is already global
                if self._proximal is not None:
                    scaled = scaled + self.proximal_penalty() / len(group)
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            total += float(loss.detach()) / len(group)
            for name, value in logs.items():
                self.step_logs[name] = self.step_logs.get(name, 0.0) + float(value) / len(group)
            group_keys.append((keys, y))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.target is not None:
            _momentum_update(self.model, self.target, self.config.momentum)
            for keys, y in group_keys:
                if keys is not None:
                    self.queue.enqueue(keys, y if data.y_dim else None)
        self.global_step += 1
        self.step_in_epoch += 1
        self.loss_sum += total
        self.loss_count += 1
        for name, value in self.step_logs.items():
            self.log_sums[name] = self.log_sums.get(name, 0.0) + value
        if not math.isfinite(total):
            raise ConfigError(f"the loss became {total} at step {self.global_step}: lower --lr or use --amp none")
        return total

    def _loss(self, batch: dict, data: PretrainData):
        """The objective on one micro-batch: ``(loss, keys to enqueue, their y, extra scalars)``."""
        memory = torch.channels_last_3d if self.config.channels_last else torch.contiguous_format
        views = torch.cat([batch["view1"], batch["view2"]]).to(self.device, non_blocking=True,
                                                                 memory_format=memory)
        step = Step(batch=batch, views=views, y=data.batch_y(batch, self.device), net=self.net,
                    target=self.target, queue=self.queue, amp=self.config.amp, device=self.device)
        out = self.objective(step)
        return out.loss, out.keys, out.keys_y, out.logs

    def _probe(self, probe) -> dict[str, Any]:
        from neuro_ssl.training.probes import run_probes

        metrics: dict[str, Any] = {}
        if self.info.is_main:
            channel = 0 if self.config.views else None  # --views: probe the first view's modality
            metrics = run_probes(self.model.encoder, probe.dataset, probe.manifest, self.config.batch_size,
                                 self.device, self.config.amp, self.config.seed, channel)
        loop.barrier(self.info)
        return metrics

    # ---- federated local update (neuro_ssl.federated) -----------------------------------------
    def train_from(self, data: PretrainData, weights: Mapping[str, torch.Tensor], epochs: int,
                   start_epoch: int = 0, proximal_mu: float = 0.0) -> tuple[dict[str, torch.Tensor], list[dict]]:
        """One site's local update: load ``weights``, train ``epochs`` epochs, return the new state.

        ``weights`` maps ``ContrastiveModel`` state-dict names to tensors; names it leaves out
        (e.g. normalization layers kept per site, FedBN) keep this model's own values, unknown
        names are refused. The optimizer starts fresh (FedAvg, McMahan et al., AISTATS 2017); the
        data order, views and learning-rate schedule continue from epoch ``start_epoch`` of
        ``config.epochs`` (the rounds x local epochs of the whole federated run). With
        ``proximal_mu > 0`` the local objective adds FedProx's ``mu/2 ||w - w_global||^2`` over the
        trainable parameters named in ``weights`` (Li et al., MLSys 2020). Writes no files.
        Returns the model's state dict (CPU copies) and one metrics row per epoch.
        """
        self._build(data)
        model = unwrap(self.model)
        own = model.state_dict()
        unknown = sorted(set(weights) - set(own))
        if unknown:
            raise ConfigError(f"the weights name {len(unknown)} tensor(s) this model lacks (first: {unknown[0]}): "
                              f"the sites and the server must use the same --arch, --width, --norm and --proj-dims")
        model.load_state_dict({**own, **{k: torch.as_tensor(v) for k, v in weights.items()}})
        self.epoch, self.global_step = int(start_epoch), int(start_epoch) * self.steps_per_epoch
        self.scheduler.last_epoch = self.global_step  # LambdaLR: lr = base * factor(steps taken)
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas):
            group["lr"] = base * factor(self.global_step)
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        self._proximal = (float(proximal_mu), {k: torch.as_tensor(weights[k]).detach().clone().to(self.device)
                                               for k in weights if k in trainable}) if proximal_mu > 0 else None
        self.logger = loop.MetricsLogger(self.run_dir, enabled=False)
        self.estimate = RunTimeEstimate(0, 0, self.device.type, self._say)  # a site's round: no run-time line
        rows = [self._train_epoch(data) for _ in range(int(epochs))]
        self._proximal = None
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, rows

    def proximal_penalty(self) -> torch.Tensor:
        """FedProx's term for the parameters given to :meth:`train_from` (see :func:`proximal_term`)."""
        mu, reference = self._proximal
        return proximal_term(unwrap(self.model).named_parameters(), reference, mu)

    def _cross_modal(self, probe) -> dict[str, Any]:
        """Held-out retrieval (CLIP runs, --views) -> RUN/retrieval.json; {} for other runs."""
        alignment = getattr(self.objective, "alignment", None)
        if not crossmodal.is_cross_modal(self.config, alignment):
            return {}
        retrieval: dict[str, Any] = {}
        if self.info.is_main:
            retrieval, prototypes = crossmodal.cross_modal_metrics(
                self.model, alignment, self.config, probe.dataset, probe.manifest, self.device,
                self.config.batch_size, self.config.amp)
            crossmodal.write_cross_modal(self.run_dir, retrieval, prototypes)
        loop.barrier(self.info)
        return {"retrieval": retrieval}

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _say(self, message: str) -> None:
        if self.info.is_main:
            print(f"neuro-ssl pretrain: {message}", file=sys.stderr)

    def _summary(self, data: PretrainData, probe: dict) -> dict[str, Any]:
        rows = self.logger.rows
        return {"run_dir": str(self.run_dir), "encoder": str(self.run_dir / "encoder.pt"),
                "epochs": self.epoch, "steps": self.global_step, "n_scans": data.n_items,
                "n_subjects": len(data.subjects), "skipped": data.skipped,
                "final_loss": rows[-1]["loss"] if rows else float("nan"),
                "volumes_per_s": rows[-1]["volumes_per_s"] if rows else float("nan"), **probe}


#: what a run writes before its first checkpoint; a folder holding only these never started
#: (killed in its first epoch) and is started over without --resume
_BEFORE_FIRST_CHECKPOINT = ("config.yaml", "skipped.csv", "events.out.tfevents.*", ".tmp-*")


def _never_started(run_dir: Path) -> bool:
    import fnmatch

    return all(p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in _BEFORE_FIRST_CHECKPOINT)
               for p in run_dir.iterdir())


def _clear_never_started(run_dir: Path) -> None:
    """Remove a never-started run's leftovers (its TensorBoard events would mix with this run's)."""
    if any(run_dir.iterdir()) and _never_started(run_dir):
        for path in run_dir.iterdir():
            path.unlink(missing_ok=True)


def proximal_term(named_parameters, reference: Mapping[str, torch.Tensor], mu: float) -> torch.Tensor:
    """FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020)::

        mu / 2 * sum_k || w_k - w_global_k ||^2     over the parameters named in ``reference``

    Its gradient is ``mu * (w - w_global)``. Returns a scalar tensor (0 when nothing is named).
    """
    terms = [((p - reference[name].to(p.device)) ** 2).sum() for name, p in named_parameters if name in reference]
    return 0.5 * float(mu) * torch.stack(terms).sum() if terms else torch.zeros(())


def _momentum_update(model: ContrastiveModel, target: ContrastiveModel, m: float) -> None:
    """MoCo's EMA of the encoder and projection head (the objective's own modules stay online only)."""
    from neuro_ssl.losses import momentum_update

    for part in ("encoder", "head"):
        momentum_update(getattr(model, part), getattr(target, part), m)


def _norm(value):
    return [_norm(v) for v in value] if isinstance(value, (list, tuple)) else value
