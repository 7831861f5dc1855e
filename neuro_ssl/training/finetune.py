"""Fine-tuning: a classifier or regressor on an encoder, as a linear probe, in full, or from scratch.

Modes (every comparison is one flag away, on the same network and preprocessing):

- ``linear``: the pretrained encoder is frozen; its features are computed once (eval mode) and
  only a Linear head is trained, on standardized features (the standardization is folded into
  the saved head, so ``model.pt`` is an ordinary SupervisedModel);
- ``full``: encoder and head train together, the encoder at ``encoder_lr_factor`` x lr (0.1);
- ``scratch``: the same network with random weights (architecture and preprocessing from
  ``--encoder`` if given, otherwise from the flags).

Classification uses class-weighted cross-entropy (weights n / (K n_k)); regression trains on the
standardized target with MSE and folds the scale back into the head (outputs are in the label's
unit). With a validation manifest the best epoch (AUC, else loss; MAE for regression) is kept
and training stops after ``patience`` epochs without improvement. A checkpoint is written every
epoch and ``resume`` continues from it. Same seed, same weights, bit for bit on CPU.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from neuro_ssl._utils.files import write_yaml
from neuro_ssl._utils.seeding import seed_everything
from neuro_ssl.data.transforms import PreprocessConfig
from neuro_ssl.errors import CheckpointError, ConfigError, ManifestError
from neuro_ssl.data.screening import screen_rows, write_skipped
from neuro_ssl.evaluation.inference import forward_dataset, item_rows, make_dataset
from neuro_ssl.evaluation.labels import TARGET, LabelSpec, select_rows
from neuro_ssl.evaluation.metrics import mae, roc_auc
from neuro_ssl.models import SupervisedModel, build_encoder, load_encoder, save_model
from neuro_ssl.training import loop
from neuro_ssl.training.run_time import RunTimeEstimate

MODES = ("linear", "full", "scratch")
CHECKPOINT_KIND = "finetune"
#: options a resumed run may change (they do not change what is computed)
RESUMABLE_CHANGES = frozenset({"epochs", "workers", "device", "cache_dir", "skip_bad"})


@dataclass
class FinetuneConfig:
    """Every fine-tuning option; saved as RUN/config.yaml (the resolved task, classes, preprocessing
    and label budget are in the model's meta, RUN/model.yaml)."""

    label: str = "diagnosis"
    classes: tuple[str, ...] = ()
    task: str = "auto"
    mode: str = "linear"
    encoder: str | None = None
    labels_per_class: int = 0            # 0: every labelled subject of the training manifest
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    encoder_lr_factor: float = 0.1       # full mode: encoder lr = factor x lr
    weight_decay: float = 1e-4
    patience: int = 10                   # epochs without validation improvement before stopping
    class_weighting: bool = True
    # network and preprocessing for --mode scratch without --encoder
    arch: str = "resnet18"
    norm: str = "batch"
    width: float = 1.0
    spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)
    shape: tuple[int, int, int] = (96, 112, 96)
    normalization: str = "auto"
    modalities: tuple[str, ...] = ("T1w",)
    mask_background: bool = True
    # running
    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    workers: int = 0
    cache_dir: str | None = None
    skip_bad: bool = False
    frames: str = "single"               # preprocessing for --mode scratch without --encoder (4D: mean of frames)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FinetuneConfig":
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k not in names]
        if unknown:
            raise ConfigError(f"unknown fine-tuning option(s): {', '.join(map(str, unknown))}")
        return cls(**{k: tuple(v) if isinstance(names[k].default, tuple) and v is not None else v
                      for k, v in data.items()})

    def validate(self) -> "FinetuneConfig":
        if self.mode not in MODES:
            raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.mode in ("linear", "full") and not self.encoder:
            raise ConfigError(f"--mode {self.mode} needs --encoder RUN/encoder.pt (or use --mode scratch)")
        for name in ("epochs", "batch_size", "patience"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.classes and len(self.classes) < 2:
            raise ConfigError(f"--classes needs two or more classes (e.g. CN,AD), got '{','.join(self.classes)}'")
        if int(self.labels_per_class) < 0:
            raise ConfigError(f"--labels-per-class must be >= 0 (0: every label), got {self.labels_per_class}")
        if not (self.lr > 0 and self.encoder_lr_factor > 0 and self.weight_decay >= 0):
            raise ConfigError("--lr and --encoder-lr-factor must be > 0 and --weight-decay >= 0")
        return self


@dataclass
class _Network:
    """The model to train plus what the run's meta must say about where it came from."""

    model: SupervisedModel
    preprocess: PreprocessConfig
    pretrain_subjects: list[str]
    encoder_meta: dict


def build_network(config: FinetuneConfig, n_outputs: int) -> _Network:
    """Encoder (loaded, or random for scratch) + head; preprocessing from the encoder when there is one."""
    if config.encoder:
        encoder, meta = load_encoder(config.encoder)
        if "preprocess" not in meta:
            raise CheckpointError(f"{config.encoder}: the encoder's meta has no 'preprocess' section")
        preprocess = PreprocessConfig.from_dict(meta["preprocess"])
        if config.mode == "scratch":  # same network, fresh weights, and it has seen nobody
            encoder = build_encoder(encoder.arch, encoder.in_channels, encoder.norm, encoder.width)
            pretrain_subjects = []
        else:
            pretrain_subjects = [str(s) for s in meta.get("subjects", [])]
    else:
        preprocess = PreprocessConfig(config.spacing_mm, config.shape, config.normalization, config.modalities,
                                      config.mask_background, frames=config.frames)
        encoder = build_encoder(config.arch, len(preprocess.modalities), config.norm, config.width)
        meta, pretrain_subjects = {}, []
    encoder.check_input_shape((len(preprocess.modalities), *preprocess.shape))
    return _Network(SupervisedModel(encoder, n_outputs), preprocess, pretrain_subjects, dict(meta))


def finetune(config: FinetuneConfig | Mapping, train_df: pd.DataFrame, out_dir, val_df: pd.DataFrame | None = None,
             resume: bool = False, *, sources: Mapping[str, str] | None = None) -> dict:
    """Train and write RUN/model.pt, checkpoint.pt, config.yaml, metrics.csv; returns a summary.

    ``sources`` (e.g. ``{"manifest": path, "val_manifest": path}``) joins the options in
    config.yaml, so ``neuro-ssl finetune --config RUN/config.yaml --out NEW`` repeats the run.
    """
    config = (config if isinstance(config, FinetuneConfig) else FinetuneConfig.from_dict(config)).validate()
    out_dir = Path(out_dir)
    seed_everything(config.seed)
    train_df, skipped = screen_rows(train_df, used_columns=(config.label,), skip_bad=config.skip_bad)
    if val_df is not None:
        val_df, val_skipped = screen_rows(val_df, used_columns=(config.label,), skip_bad=config.skip_bad)
        skipped += val_skipped
    train, val, spec, budget = select_rows(train_df, val_df, config.label, config.task, config.classes,
                                           int(config.labels_per_class), config.seed)
    n_outputs = len(spec.classes) if spec.task == "classification" else 1
    net = build_network(config, n_outputs)
    config = _with_network_of(config, net)
    device = loop.resolve_device(config.device)
    loop.check_amp(config.amp, device)
    trainer = _Trainer(config, spec, net, train, val, device, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: a run refused while checking its inputs leaves no folder
    history = trainer.fit(resume)
    skipped += list(trainer.train_set.skipped) + list(trainer.val_set.skipped if trainer.val_set else [])
    write_skipped(out_dir, skipped)
    write_yaml(out_dir / "config.yaml", {**config.to_dict(), **{k: str(v) for k, v in (sources or {}).items()}})
    save_model(out_dir / "model.pt", trainer.export_model(), _model_meta(config, spec, net, train, val, budget, trainer))
    return {"run": str(out_dir), "task": spec.task, "classes": list(spec.classes), "labels": spec.describe(),
            "n_train_scans": trainer.n_train, "n_train_subjects": int(train["subject_id"].nunique()),
            "label_budget": budget, "best_epoch": trainer.best_epoch, "epochs_run": len(history),
            "best_score": trainer.best_score[0] if trainer.best_score else None, "monitor": trainer.monitor,
            "skipped": [s.reason for s in skipped], "left_out": trainer.train_set.left_out()}


def _with_network_of(config: FinetuneConfig, net: _Network) -> FinetuneConfig:
    """The config with the network and preprocessing actually used (from the encoder, if any)."""
    encoder, pre = net.model.encoder, net.preprocess
    return dataclasses.replace(config, arch=encoder.arch, norm=encoder.norm, width=float(encoder.width),
                               spacing_mm=tuple(pre.spacing_mm), shape=tuple(pre.shape),
                               normalization=pre.normalization, modalities=tuple(pre.modalities),
                               mask_background=pre.mask_background, frames=pre.frames)


def _model_meta(config, spec: LabelSpec, net: _Network, train, val, budget, trainer) -> dict:
    finetune_subjects = sorted(set(train["subject_id"].astype(str)))
    val_subjects = sorted(set(val["subject_id"].astype(str))) if val is not None else []
    return {
        "task": spec.task, "label": spec.label, "classes": list(spec.classes), "mode": config.mode,
        "preprocess": net.preprocess.to_dict(),
        # the leakage guard refuses all of these: trained on, selected on, or pretrained on
        "subjects": sorted(set(net.pretrain_subjects) | set(finetune_subjects) | set(val_subjects)),
        "finetune_subjects": finetune_subjects, "val_subjects": val_subjects,
        "n_pretrain_subjects": len(set(net.pretrain_subjects)),
        "encoder_path": str(config.encoder) if config.encoder else None,
        "encoder_loss": net.encoder_meta.get("loss"), "labels_per_class": int(config.labels_per_class),
        "label_budget": budget, "seed": int(config.seed), "best_epoch": trainer.best_epoch,
        "target_mean": trainer.target_mean, "target_sd": trainer.target_sd, "rows": spec.describe(),
    }


class _Trainer:
    """One fine-tuning run: data, optimisation, validation, early stopping, checkpoints."""

    def __init__(self, config: FinetuneConfig, spec: LabelSpec, net: _Network, train, val, device, out_dir: Path):
        self.config, self.spec, self.net, self.device, self.out_dir = config, spec, net, device, out_dir
        self.model = net.model.to(device)
        self.regression = spec.task == "regression"
        self.monitor = "val_mae" if self.regression else "val_auc"
        self.best_score, self.best_epoch, self.best_state, self.bad_epochs = None, -1, None, 0
        self.train_set = make_dataset(train, net.preprocess, config.cache_dir, (TARGET,), config.skip_bad)
        self.val_set = make_dataset(val, net.preprocess, config.cache_dir, (TARGET,), config.skip_bad) if val is not None else None
        self.y_train = self._targets(self.train_set, train)
        self.y_val = self._targets(self.val_set, val) if val is not None else None
        self.n_train = len(self.y_train)
        if self.n_train < 2:
            raise ManifestError(f"{train.attrs.get('source', 'training manifest')}: {self.n_train} usable labelled scan(s); "
                              "fine-tuning needs at least 2")
        self.target_mean, self.target_sd = 0.0, 1.0
        if self.regression:
            self.target_mean, self.target_sd = float(self.y_train.mean()), float(self.y_train.std()) or 1.0
        self.linear = config.mode == "linear"
        if self.linear:
            self._prepare_features()
        self.loss_fn = self._loss()
        self.batch_size = min(int(config.batch_size), self.n_train)
        self.sampler = loop.EpochBatchSampler(self.n_train, self.batch_size, seed=config.seed, drop_last=True)
        self.optimizer = self._optimizer()
        total = self.sampler.batches_per_epoch() * config.epochs
        warmup = 0 if self.linear else self.sampler.batches_per_epoch()
        self.scheduler = loop.build_scheduler(self.optimizer, total, warmup)

    # ---- data ------------------------------------------------------------------------------
    def _targets(self, dataset, rows: pd.DataFrame) -> np.ndarray:
        """Target per dataset item (one item per session), read from the item's manifest row."""
        return rows.loc[item_rows(dataset), TARGET].to_numpy(float)

    def _prepare_features(self) -> None:
        """Linear probe: frozen features once, standardized with the training mean and sd (floored at
        a tenth of the mean sd: a nearly constant feature must not become huge on a held-out scan,
        :func:`~neuro_ssl.training.probes.floored_scale`)."""
        from neuro_ssl.training.probes import floored_scale

        encoder = self.model.encoder
        encoder.requires_grad_(False)
        feats, _ = forward_dataset(encoder, self.train_set, self.config.batch_size, self.device,
                                   self.config.workers, "features", self.config.amp)
        self.feat_mean = feats.mean(axis=0)
        self.feat_sd = floored_scale(feats.std(axis=0))
        self.train_features = torch.as_tensor((feats - self.feat_mean) / self.feat_sd, dtype=torch.float32)
        if self.val_set is not None:
            val_feats, _ = forward_dataset(encoder, self.val_set, self.config.batch_size, self.device,
                                           self.config.workers, None, self.config.amp)
            self.val_features = torch.as_tensor((val_feats - self.feat_mean) / self.feat_sd, dtype=torch.float32)

    def _batches(self, epoch: int):
        """(inputs, targets) per batch; the order is a function of (seed, epoch) only."""
        self.sampler.set_epoch(epoch)
        if self.linear:
            for batch in self.sampler:
                indices = [i for _, i in batch]
                yield self.train_features[indices].to(self.device), self._target_tensor(self.y_train[indices]).to(self.device)
            return
        loader = torch.utils.data.DataLoader(loop.SeededItems(self.train_set, self.config.seed), batch_sampler=self.sampler,
                                             num_workers=self.config.workers, collate_fn=_stack_images)
        for images, targets in loader:
            yield images.to(self.device), self._target_tensor(targets).to(self.device)

    def _target_tensor(self, y: np.ndarray) -> torch.Tensor:
        if self.regression:
            return torch.as_tensor((y - self.target_mean) / self.target_sd, dtype=torch.float32)
        return torch.as_tensor(y, dtype=torch.long)

    # ---- optimisation ----------------------------------------------------------------------
    def _loss(self) -> nn.Module:
        if self.regression:
            return nn.MSELoss()
        counts = np.bincount(self.y_train.astype(int), minlength=len(self.spec.classes))
        weights = len(self.y_train) / (len(counts) * np.maximum(counts, 1)) if self.config.class_weighting else np.ones(len(counts))
        return nn.CrossEntropyLoss(weight=torch.as_tensor(weights, dtype=torch.float32).to(self.device))

    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        parts = [(self.model.head, c.lr)]
        if c.mode != "linear":
            parts.append((self.model.encoder, c.lr * (c.encoder_lr_factor if c.mode == "full" else 1.0)))
        groups = []
        for module, lr in parts:
            params = [p for p in module.parameters() if p.requires_grad]
            groups.append({"params": [p for p in params if p.ndim > 1], "lr": lr, "weight_decay": c.weight_decay})
            groups.append({"params": [p for p in params if p.ndim <= 1], "lr": lr, "weight_decay": 0.0})
        return torch.optim.AdamW([g for g in groups if g["params"]])

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with loop.autocast(self.config.amp, self.device):
            out = self.model.head(x) if self.linear else self.model(x)
        return out.float().squeeze(1) if self.regression else out.float()

    # ---- the loop --------------------------------------------------------------------------
    def fit(self, resume: bool) -> list[dict]:
        start_epoch = self._resume() if resume else 0
        self.estimate = RunTimeEstimate(
            self.sampler.batches_per_epoch() * self.config.epochs, self.sampler.batches_per_epoch() * start_epoch,
            self.device.type, lambda text: print(f"neuro-ssl finetune: {text}", file=sys.stderr),
            "validation and checkpoints" if self.val_set is not None else "checkpoints")
        if self.linear:  # the frozen features are computed; the head's steps take milliseconds
            self.estimate.finished = True
        logger = loop.MetricsLogger(self.out_dir, resume_step=start_epoch if resume else None, tensorboard=False)
        try:
            for epoch in range(start_epoch, self.config.epochs):
                started = time.perf_counter()
                train_loss = self._train_epoch(epoch)
                row = {"epoch": epoch + 1, "step": epoch + 1, "train_loss": train_loss,
                       **self._validate(), "lr": self.optimizer.param_groups[0]["lr"]}
                improved = self._update_best(row, epoch)
                row["elapsed_s"] = round(time.perf_counter() - started, 3)
                logger.log(row)
                self._save_checkpoint(epoch)
                if not improved and self.bad_epochs >= self.config.patience:
                    break
        finally:
            logger.close()
        return logger.rows

    def _train_epoch(self, epoch: int) -> float:
        if not self.linear:
            self.model.train()
        losses = []
        for x, y in self._batches(epoch):
            loss = self.loss_fn(self._forward(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            losses.append(float(loss.detach()))
            self.estimate.step()
        return loop.mean_of(losses)

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        if self.val_set is None:
            return {}
        if self.linear:
            out = self.model.head(self.val_features.to(self.device)).float().cpu()
        else:
            raw, _ = forward_dataset(self.model, self.val_set, self.config.batch_size, self.device,
                                     self.config.workers, None, self.config.amp)
            out = torch.as_tensor(raw, dtype=torch.float32)
        y_val = self.y_val
        if self.regression:
            out = out.squeeze(1)
            loss = self.loss_fn(out, self._target_tensor(y_val))
            return {"val_loss": float(loss), "val_mae": mae(y_val, out.numpy() * self.target_sd + self.target_mean)}
        loss = nn.functional.cross_entropy(out, self._target_tensor(y_val))
        return {"val_loss": float(loss), "val_auc": roc_auc(y_val.astype(int), torch.softmax(out, 1).numpy())}

    def _update_best(self, row: dict, epoch: int) -> bool:
        """Keep the weights of the best validation epoch (the last epoch without validation).

        Classification ranks epochs by AUC, ties (AUC saturates at 1 on easy data) broken by the
        lower validation loss; regression by MAE.
        """
        if "val_loss" not in row:
            score = (float(epoch), 0.0)
        elif self.regression:
            score = (-row["val_mae"], -row["val_loss"])
        else:
            auc = row.get("val_auc", float("nan"))
            score = (auc if np.isfinite(auc) else -math.inf, -row["val_loss"])
        improved = self.best_score is None or score > self.best_score
        row["best"] = improved
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = score, epoch + 1, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.bad_epochs += 1
        return improved

    # ---- checkpoints -----------------------------------------------------------------------
    def _save_checkpoint(self, epoch: int) -> None:
        loop.save_checkpoint(self.out_dir / "checkpoint.pt", {
            "kind": CHECKPOINT_KIND, "epoch": epoch, "config": self.config.to_dict(),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "best_state": self.best_state,
            "best_score": list(self.best_score) if self.best_score else None,
            "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "rng": loop.rng_state(),
        })

    def _resume(self) -> int:
        path = self.out_dir / "checkpoint.pt"
        if not path.exists():
            return 0
        state = loop.load_checkpoint(path)
        mine = {k: v for k, v in self.config.to_dict().items() if k not in RESUMABLE_CHANGES}
        theirs = {k: v for k, v in dict(state.get("config", {})).items() if k not in RESUMABLE_CHANGES}
        if state.get("kind") != CHECKPOINT_KIND or mine != theirs:
            changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ConfigError(f"{path}: --resume with different options ({', '.join(changed) or 'not a fine-tuning run'}); "
                              "use a new --out or the same options")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        loop.optimizer_to(self.optimizer, self.device)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scheduler.lr_lambdas[0].total_steps = self.sampler.batches_per_epoch() * self.config.epochs
        self.best_state = state["best_state"]
        self.best_score = tuple(state["best_score"]) if state["best_score"] is not None else None
        self.best_epoch, self.bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])
        loop.set_rng_state(state["rng"])
        return int(state["epoch"]) + 1

    # ---- the saved model -------------------------------------------------------------------
    def export_model(self) -> SupervisedModel:
        """The best weights on CPU, with feature standardization and target scale folded into the head."""
        model = self.model.cpu()
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        weight, bias = model.head.weight.detach().double(), model.head.bias.detach().double()
        if self.linear:
            mean = torch.as_tensor(self.feat_mean, dtype=torch.float64)
            sd = torch.as_tensor(self.feat_sd, dtype=torch.float64)
            weight = weight / sd
            bias = bias - weight @ mean
        if self.regression:
            weight, bias = weight * self.target_sd, bias * self.target_sd + self.target_mean
        with torch.no_grad():
            model.head.weight.copy_(weight.float())
            model.head.bias.copy_(bias.float())
        model.encoder.requires_grad_(True)
        return model.eval()


def _stack_images(items: list[dict]) -> tuple[torch.Tensor, np.ndarray]:
    """Collate: images stacked, and each item's target (the dataset reads the ``_target`` column)."""
    return torch.stack([item["image"] for item in items]), np.array([item[TARGET] for item in items])
