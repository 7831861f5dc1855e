"""Contrastive pretraining of a 3D encoder: SimCLR (NT-Xent), y-Aware InfoNCE, SupCon (+ momentum queue), MoCo, CLIP,
contrastive (variational) autoencoders.

Writes RUN/encoder.pt (+ encoder.yaml; RUN/decoder.pt for the autoencoders), RUN/checkpoint.pt,
RUN/config.yaml, RUN/metrics.csv and TensorBoard events under RUN/. A stopped run continues
exactly with the same command plus --resume (or: --config RUN/config.yaml --resume). See
docs/training.md.

examples:
  neuro-ssl pretrain --manifest train.csv --out runs/simclr --loss simclr --epochs 100
  neuro-ssl pretrain --manifest train.csv --out runs/yaware --loss yaware --meta age --sigma 5 \\
      --val-manifest val.csv --amp bf16
  neuro-ssl pretrain --manifest train.csv --out runs/supcon_q --loss supcon --meta diagnosis --queue 1024
  neuro-ssl pretrain --manifest train.csv --out runs/moco --loss moco --queue 1024 --temperature 0.2
  neuro-ssl pretrain --manifest train.csv --out runs/clip --loss clip --clinical MMSE,CDRSB,ADAS13,APOE4,PTEDUCAT \\
      --val-manifest val.csv          # also writes RUN/retrieval.json (held-out retrieval)
  neuro-ssl pretrain --manifest train.csv --out runs/visits --loss simclr --positives visits
  neuro-ssl pretrain --manifest train.csv --out runs/vae --loss vae-contrastive --kl-weight 0.001
  torchrun --standalone --nproc_per_node 2 -m neuro_ssl pretrain --manifest train.csv --out runs/ddp --norm group
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from neuro_ssl.cli import _common
from neuro_ssl.training.config import (AMP_MODES, ARCHS, FRAMES, LOSSES, MISSING_Y, NORMS, OPTIMIZERS, POSITIVES,
                                         PretrainConfig)

_DEFAULTS = PretrainConfig()


def _mapping(text: str) -> dict:
    """A YAML flow mapping, e.g. ``{cutout: 0.8, crop_scale: [0.7, 1.0]}``."""
    import yaml

    try:
        value = yaml.safe_load(text) if isinstance(text, str) else text
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"expected a YAML mapping, got {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML mapping like '{{cutout: 0.8}}', got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text) if str(text).strip().lstrip("-").isdigit() else None
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    io = parser.add_argument_group("data and run folder")
    io.add_argument("--manifest", type=Path, required=True, help="training manifest (CSV/TSV, any known dialect)")
    io.add_argument("--out", type=Path, required=True, metavar="RUN", help="run folder (must be new or empty unless --resume)")
    io.add_argument("--val-manifest", type=Path, default=None, metavar="V", help="held-out manifest for the online probes")
    io.add_argument("--resume", action="store_true", help="continue the run in RUN from its checkpoint.pt")
    io.add_argument("--skip-bad", action="store_true", help="report and skip unreadable scans instead of stopping")
    io.add_argument("--missing-y", choices=MISSING_Y, default=d.missing_y,
                    help="scans without a --meta value: fail (listing them) or skip (with a count)")
    _common.add_cache_dir(io)

    obj = parser.add_argument_group("objective")
    obj.add_argument("--loss", choices=LOSSES, required=True,
                     help="simclr (no labels), yaware (continuous --meta), supcon (labels), moco (MoCo v2's InfoNCE: "
                          "a query against its momentum key and the --queue negatives only), clip (scans aligned "
                          "with --clinical data), yaware+clip, simclr+clip, ae-contrastive / vae-contrastive (a "
                          "decoder's in-brain reconstruction + NT-Xent, or y-Aware with --meta)")
    obj.add_argument("--meta", type=_common.str_list, default=d.meta, metavar="COL[,COL]",
                     help="covariate column(s) for yaware (e.g. age) or the label column for supcon (e.g. diagnosis)")
    obj.add_argument("--sigma", type=_common.positive_float, default=d.sigma,
                     help="y-Aware kernel width, in the units of --meta (years for age)")
    obj.add_argument("--temperature", type=_common.positive_float, default=d.temperature,
                     help="softmax temperature of the contrastive loss (lower: harder negatives)")
    obj.add_argument("--queue", type=_non_negative_int, default=d.queue, metavar="N",
                     help="momentum queue: the loss compares queries with a momentum encoder's keys and takes "
                          "N past keys as extra candidates (SimCLR/y-Aware/SupCon with extra queue negatives; "
                          "keys are anchors too, in-batch negatives stay: not MoCo's loss); with --loss moco "
                          "the negatives of MoCo's loss. 0: none")
    obj.add_argument("--momentum", type=float, default=d.momentum, help="momentum-encoder EMA coefficient (with --queue)")
    obj.add_argument("--clinical", type=_common.str_list, default=d.clinical, metavar="COL[,COL]",
                     help="clip losses: clinical columns (numbers standardized, others one-hot, missing values kept "
                          "and flagged), e.g. MMSE,CDRSB,ADAS13,APOE4,PTEDUCAT")
    obj.add_argument("--text", default=d.text, metavar="COL", help="clip losses: a free-text column (TF-IDF + MLP)")
    obj.add_argument("--clip-weight", type=_common.positive_float, default=d.clip_weight,
                     help="yaware+clip, simclr+clip: weight of the CLIP term")
    obj.add_argument("--views", type=_common.str_list, default=d.views, metavar="MOD1,MOD2",
                     help="cross-modal positives: view 1 from MOD1, view 2 from MOD2 of the same session")
    obj.add_argument("--positives", choices=POSITIVES, default=d.positives,
                     help="visits: view 2 from another visit of the same subject when it has one (temporal positives)")
    obj.add_argument("--recon-weight", type=_common.positive_float, default=d.recon_weight, metavar="W",
                     help="ae/vae-contrastive: weight of the reconstruction error inside the brain mask")
    obj.add_argument("--kl-weight", type=float, default=d.kl_weight, metavar="B",
                     help="vae-contrastive: weight of the KL divergence to the N(0, I) prior")
    obj.add_argument("--augment", type=_mapping, default=d.augment, metavar="YAML",
                     help="augmentation overrides, e.g. '{cutout: 0.8, crop_scale: [0.7, 1.0]}'")

    net = parser.add_argument_group("network and preprocessing")
    net.add_argument("--arch", choices=ARCHS, default=d.arch,
                     help="3D encoder (MONAI); resnet10 with --width 0.5 is the CPU-friendly choice")
    net.add_argument("--norm", choices=NORMS, default=d.norm, help="group: batch-size independent, works with DDP on CPU")
    net.add_argument("--width", type=_common.positive_float, default=d.width, help="encoder channel multiplier")
    net.add_argument("--proj-dims", type=_common.int_tuple(), default=d.proj_dims, metavar="D1,...,DK",
                     help="projection MLP widths, the last is the embedding size")
    _common.add_preprocess_arguments(net, d.spacing_mm, d.shape, d.normalization, d.modalities, d.mask_background)
    _common.add_frames(net, d.frames)

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=_common.positive_int, default=d.epochs, metavar="E",
                     help="passes over the training scans (an estimate of the run's time is printed after a few steps)")
    opt.add_argument("--batch-size", type=_common.positive_int, default=d.batch_size, metavar="B", help="scans per batch per process")
    opt.add_argument("--lr", type=_common.positive_float, default=d.lr, help="peak learning rate (after --warmup)")
    opt.add_argument("--weight-decay", type=float, default=d.weight_decay,
                     help="weight decay of the conv and linear weights (none on biases and norms)")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                     help="adamw (decoupled weight decay) or adam (L2 in the gradient, as the y-Aware paper)")
    opt.add_argument("--warmup", dest="warmup_epochs", type=float, default=d.warmup_epochs, metavar="EPOCHS",
                     help="linear warmup length in epochs, then cosine decay")
    opt.add_argument("--accumulate", type=_common.positive_int, default=d.accumulate, help="micro-batches per optimizer step")
    opt.add_argument("--amp", choices=AMP_MODES, default=d.amp, help="bf16 autocast (CPU/GPU) or fp16 with a scaler (GPU)")
    opt.add_argument("--channels-last", action="store_true", help="channels_last_3d memory format (measure on GPU first)")
    opt.add_argument("--compile", action="store_true", help="torch.compile the model (slow to start; measure first)")

    run = parser.add_argument_group("running")
    _common.add_seed(run, d.seed)
    run.add_argument("--workers", type=_non_negative_int, default=d.workers, help="DataLoader worker processes")
    run.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    run.add_argument("--checkpoint-every", type=_non_negative_int, default=d.checkpoint_every, metavar="STEPS",
                     help="also checkpoint every N optimizer steps (0: once per epoch)")
    run.add_argument("--probe-every", type=_common.positive_int, default=d.probe_every, metavar="EPOCHS",
                     help="online age/diagnosis probes on --val-manifest every N epochs")
    run.add_argument("--log-every", type=_common.positive_int, default=d.log_every, metavar="STEPS",
                     help="TensorBoard training curves every N steps")


def _config_from_args(args: argparse.Namespace) -> PretrainConfig:
    import dataclasses

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig) if hasattr(args, f.name)}
    values["cache_dir"] = str(args.cache_dir) if args.cache_dir is not None else None
    return PretrainConfig.from_dict(values).validate()


def _probe_text(summary: dict, key: str) -> str:
    """``, probe_dx_auc 0.712`` or, when undefined, the reason (``probe_dx_auc undefined: only CN ...``)."""
    value = summary[key]
    if value == value:  # not NaN
        return f", {key} {value:.3f}"
    note = summary.get(key.replace("_mae", "_note").replace("_auc", "_note"))
    return f", {key} undefined ({note})" if note else f", {key} undefined"


def run(args: argparse.Namespace) -> int:
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.training.pretrain import pretrain

    config = _config_from_args(args)
    _common.refuse_same_path(args.manifest, args.out, "--out")
    manifest = read_manifest(args.manifest)
    val = read_manifest(args.val_manifest) if args.val_manifest is not None else None
    sources = {"manifest": str(Path(args.manifest).resolve())}
    if args.val_manifest is not None:
        sources["val_manifest"] = str(Path(args.val_manifest).resolve())
    summary = pretrain(config, manifest, args.out, val, resume=args.resume, sources=sources)
    if int(os.environ.get("RANK", "0")) == 0:
        probe = "".join(_probe_text(summary, k) for k in ("probe_age_mae", "probe_dx_auc") if k in summary)
        print(f"pretrained {summary['epochs']} epoch(s), {summary['steps']} step(s) on {summary['n_scans']} scan(s); "
              f"final loss {summary['final_loss']:.4f}{probe}")
        for key, entry in summary.get("retrieval", {}).items():
            print(f"held-out {key.replace('_to_', ' -> ')}: recall@5 {entry['recall_at_5']:.3f} "
                  f"(chance {entry['chance_at_5']:.3f}), median rank {entry['median_rank']:.1f} of {entry['n']}")
        from neuro_ssl.report.findings import read_pretraining_flags

        for flag in read_pretraining_flags(Path(summary["run_dir"])):
            print(f"warning: {flag}")
        print(f"encoder: {summary['encoder']}")
        print(f"run folder: {summary['run_dir']} (checkpoint.pt, config.yaml, metrics.csv, TensorBoard events)")
    return 0
