"""The units of work of a study and what each one runs, through the library's public entry points.

- ``encoder[scratch]``: a randomly initialised encoder (the study's network and preprocessing),
  saved so the linear probe on random features and training from scratch start from a file;
- ``pretrain[METHOD]``: :func:`neuro_ssl.training.pretrain.pretrain` on the training split;
- ``label_free[METHOD]``: :func:`neuro_ssl.study.label_free.label_free_metrics` on the test split;
- ``finetune[METHOD,MODE,BUDGET,DRAW]``: :func:`neuro_ssl.training.finetune.finetune` with that
  budget and the draw's seed, then :func:`neuro_ssl.evaluation.evaluate.evaluate_run` on the test
  split. ``scratch`` x ``full`` is fine-tuning mode ``scratch`` (the whole network from random
  weights at the full learning rate); every other cell is mode ``linear`` or ``full``.

A unit's ``options`` are what it computes: they are hashed into its stamp, and the files they
name (manifests, encoders) are its tracked inputs (:mod:`neuro_ssl.pipeline.stamps`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from neuro_ssl._utils.files import write_json
from neuro_ssl.study.config import ALL, RUNNING, SCRATCH
from neuro_ssl.study.plan import Method, Plan, draw_seed

#: unit kind -> the ``command`` recorded in its stamp
KINDS = ("encoder", "pretrain", "label_free", "finetune")


@dataclass
class Unit:
    """One stamped piece of work: its name, folder, outputs, hashed options and dependencies."""

    name: str
    kind: str
    folder: Path
    outputs: list[Path]
    options: dict[str, Any]
    work: Callable[[bool], str]          # resume -> one-line result
    deps: list[str] = field(default_factory=list)
    resumable: bool = False              # a killed unit continues from folder/checkpoint.pt
    cell: dict = field(default_factory=dict)  # finetune units: method, mode, budget, draw

    def step(self):
        """The unit as a pipeline :class:`~neuro_ssl.pipeline.spec.Step`, for the stamp functions."""
        from neuro_ssl.pipeline.spec import Step

        return Step(name=self.name, base=self.kind, command=f"study-{self.kind}", options=self.options,
                    outputs=[str(p) for p in self.outputs])

    def clear(self) -> None:
        """Remove what an earlier, unfinished or outdated attempt left in the unit's own folder."""
        if self.folder.is_dir():
            shutil.rmtree(self.folder)


def build_units(plan: Plan) -> list[Unit]:
    """Encoders first, then label-free metrics, then fine-tuning draw by draw (a stopped study
    has complete curves for its first draws)."""
    units: list[Unit] = []
    encoder_unit: dict[str, str | None] = {}
    for method in plan.methods:
        unit = _encoder_unit(plan, method)
        encoder_unit[method.name] = unit.name if unit else None
        units += [unit] if unit else []
    for method in plan.methods:
        units.append(_label_free_unit(plan, method, encoder_unit[method.name]))
    for draw in range(int(plan.config.draws)):
        for budget in plan.config.budgets:
            for method in plan.methods:
                for mode in plan.config.modes:
                    units.append(_finetune_unit(plan, method, mode, budget, draw, encoder_unit[method.name]))
    return units


def finetune_folder(plan: Plan, method: str, mode: str, budget, draw: int) -> Path:
    return plan.out / "runs" / method / mode / str(budget) / f"draw_{draw}"


def _hashed(options: dict) -> dict:
    return {k: v for k, v in options.items() if k not in RUNNING}


# ---------------------------------------------------------------- encoders

def _encoder_unit(plan: Plan, method: Method) -> Unit | None:
    if method.source == "given":
        return None
    folder = method.encoder.parent
    if method.source == "scratch":
        cfg = method.pretrain
        options = {"arch": cfg.arch, "norm": cfg.norm, "width": cfg.width, "in_channels": cfg.in_channels,
                   "preprocess": cfg.preprocess_dict(), "seed": plan.config.seed}
        return Unit(f"encoder[{SCRATCH}]", "encoder", folder, [method.encoder], options,
                    lambda resume: _save_random_encoder(plan, method))
    options = {**_hashed(method.pretrain.to_dict()), "train": plan.sources["train"]}
    return Unit(f"pretrain[{method.name}]", "pretrain", folder, [method.encoder, folder / "metrics.csv"], options,
                lambda resume: _pretrain(plan, method, resume), resumable=True)


def _save_random_encoder(plan: Plan, method: Method) -> str:
    import torch

    from neuro_ssl.models import build_encoder, save_encoder
    from neuro_ssl.training.loop import derive_seed

    cfg = method.pretrain
    torch.manual_seed(derive_seed("study-scratch", plan.config.seed))
    encoder = build_encoder(cfg.arch, cfg.in_channels, cfg.norm, cfg.width)
    save_encoder(method.encoder, encoder, {"preprocess": cfg.preprocess_dict(), "subjects": [], "loss": None,
                                           "seed": int(plan.config.seed), "note": "random initialisation"})
    return f"random {cfg.arch} (width {cfg.width}) saved"


def _pretrain(plan: Plan, method: Method, resume: bool) -> str:
    from neuro_ssl.training.pretrain import pretrain

    summary = pretrain(method.pretrain, plan.parts["train"], method.encoder.parent, resume=resume,
                       sources={"manifest": plan.sources["train"]})
    return f"{summary['epochs']} epoch(s) on {summary['n_scans']} scans, final loss {summary['final_loss']:.4f}"


# ---------------------------------------------------------------- label-free metrics

def _label_free_unit(plan: Plan, method: Method, dep: str | None) -> Unit:
    folder = plan.out / "label_free" / method.name
    augment = dict(plan.config.pretrain.get("augment") or {})
    options = {"encoder": str(method.encoder), "test": plan.sources["test"], "label": plan.spec.label,
               "task": plan.spec.task, "classes": list(plan.spec.classes), "augment": augment,
               "knn_k": int(plan.config.knn_k), "seed": int(plan.config.seed)}
    return Unit(f"label_free[{method.name}]", "label_free", folder, [folder / "label_free.json"], options,
                lambda resume: _label_free(plan, method, folder, augment), deps=[dep] if dep else [])


def _label_free(plan: Plan, method: Method, folder: Path, augment: dict) -> str:
    from neuro_ssl.models import load_encoder
    from neuro_ssl.study.label_free import label_free_metrics
    from neuro_ssl.training.loop import resolve_device

    run = plan.config.running()
    encoder, meta = load_encoder(method.encoder)
    metrics = label_free_metrics(
        encoder, meta, plan.parts["test"], plan.spec, augment=augment, seed=plan.config.seed,
        knn_k=plan.config.knn_k, cache_dir=run.get("cache_dir"), batch_size=int(plan.config.pretrain.get("batch_size", 8)),
        device=str(resolve_device(run.get("device", "auto"))), workers=int(run.get("workers", 0)),
        skip_bad=bool(run.get("skip_bad", False)))
    write_json(folder / "label_free.json", {"method": method.name, "source": method.source,
                                            "encoder": str(method.encoder), **metrics})
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))


# ---------------------------------------------------------------- fine-tuning and evaluation

def finetune_config(plan: Plan, method: Method, mode: str, budget, draw: int):
    """The FinetuneConfig of one cell (its seed is the draw's, so the draw and the training agree)."""
    from neuro_ssl.training.finetune import FinetuneConfig

    spec, run = plan.spec, plan.config.running()
    ft_mode = "scratch" if (method.source == "scratch" and mode == "full") else mode
    return FinetuneConfig(
        label=spec.label, classes=tuple(spec.classes), task=spec.task, mode=ft_mode, encoder=str(method.encoder),
        labels_per_class=0 if budget == ALL else int(budget), seed=draw_seed(plan.config.seed, draw),
        **plan.config.finetune, **run).validate()


def _finetune_unit(plan: Plan, method: Method, mode: str, budget, draw: int, dep: str | None) -> Unit:
    folder = finetune_folder(plan, method.name, mode, budget, draw)
    config = finetune_config(plan, method, mode, budget, draw)
    options = {**_hashed(config.to_dict()), "train": plan.sources["train"], "val": plan.sources.get("val")
               if plan.config.use_val else None, "test": plan.sources["test"], "n_boot": int(plan.config.n_boot),
               "bootstrap_seed": int(plan.config.seed)}
    name = f"finetune[{method.name},{mode},{budget},{draw}]"
    return Unit(name, "finetune", folder, [folder / "eval" / "metrics.json", folder / "model.yaml"], options,
                lambda resume: _finetune_and_evaluate(plan, config, folder), deps=[dep] if dep else [],
                cell={"method": method.name, "mode": mode, "budget": str(budget), "draw": int(draw)})


def _finetune_and_evaluate(plan: Plan, config, folder: Path) -> str:
    from neuro_ssl.evaluation.evaluate import evaluate_run
    from neuro_ssl.training.finetune import finetune
    from neuro_ssl.training.loop import resolve_device

    val = plan.parts["val"] if plan.config.use_val else None
    finetune(config, plan.parts["train"], folder, val_df=val, sources={"manifest": plan.sources["train"]})
    metrics = evaluate_run(folder, plan.parts["test"], folder / "eval", n_boot=int(plan.config.n_boot),
                           seed=int(plan.config.seed), cache_dir=config.cache_dir, skip_bad=config.skip_bad,
                           batch_size=config.batch_size, device=str(resolve_device(config.device)),
                           workers=config.workers)
    (folder / "checkpoint.pt").unlink(missing_ok=True)  # optimizer state: tens of MB per cell, no use after
    if not plan.config.keep_models:
        (folder / "model.pt").unlink(missing_ok=True)
    entry = metrics.get(plan.metric) or {}
    return f"{plan.metric} {_fmt(entry.get('value'))} [{_fmt(entry.get('ci_low'))}, {_fmt(entry.get('ci_high'))}]"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"
