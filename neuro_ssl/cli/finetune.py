"""Train a classifier or regressor on an encoder: linear probe, full fine-tune, or from scratch.

Writes RUN/model.pt (+ model.yaml), RUN/checkpoint.pt, RUN/config.yaml and RUN/metrics.csv.
The preprocessing comes from the encoder's meta; with --mode scratch and no --encoder it comes
from --arch/--spacing/--shape. --labels-per-class N draws N subjects per class (seeded).
--folds K instead runs K subject-level cross-validation rounds (fine-tune + evaluate each) and
writes RUN/folds.csv with mean +- sd. See docs/evaluation.md.

examples:
  neuro-ssl finetune --manifest train.csv --val-manifest val.csv --encoder runs/yaware/encoder.pt \\
      --out runs/ad_linear --mode linear --label diagnosis --classes CN,AD --labels-per-class 10
  neuro-ssl finetune --manifest train.csv --out runs/ad_scratch --mode scratch --classes CN,AD \\
      --arch resnet18 --spacing 2 --shape 96,112,96
  neuro-ssl finetune --manifest train.csv --encoder runs/yaware/encoder.pt --out runs/brain_age \\
      --mode full --label age
  neuro-ssl finetune --manifest unseen.csv --encoder runs/yaware/encoder.pt --out runs/cv --mode linear \\
      --classes CN,AD --folds 5     # unseen.csv: subjects the encoder was not pretrained on
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuro_ssl.cli import _common

MODES = ("linear", "full", "scratch")
TASKS = ("auto", "classification", "regression")
ARCHS = ("resnet10", "resnet18", "resnet34", "resnet50", "densenet121")


def _non_negative_int(text: str) -> int:
    if not str(text).strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("data and run folder")
    io.add_argument("--manifest", type=Path, required=True, help="training manifest (CSV/TSV, any known dialect)")
    io.add_argument("--out", type=Path, required=True, metavar="RUN", help="run folder")
    io.add_argument("--val-manifest", type=Path, default=None, metavar="VAL", help="validation manifest (early stopping)")
    io.add_argument("--encoder", type=Path, default=None, metavar="RUN/encoder.pt", help="pretrained encoder")
    io.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt (same options)")
    io.add_argument("--skip-bad", action="store_true", help="report and skip unusable scans instead of stopping")
    _common.add_cache_dir(io)

    task = parser.add_argument_group("task")
    task.add_argument("--mode", choices=MODES, required=True, help="linear: frozen encoder; full: all layers; scratch: random init")
    task.add_argument("--label", default="diagnosis", help="column to predict (any manifest column)")
    task.add_argument("--task", choices=TASKS, default="auto", help="auto: classification for text or --classes, else regression")
    task.add_argument("--classes", type=_common.class_list, default=(), metavar="A,B",
                      help="classes in order; the second is the positive class of a binary task (CN,AD); "
                           "default: every value of the label, sorted")
    task.add_argument("--labels-per-class", type=_non_negative_int, default=0, metavar="N",
                      help="label budget: N subjects per class drawn from the training manifest (0: all)")
    task.add_argument("--folds", type=_non_negative_int, default=0, metavar="K",
                      help="K-fold subject-level cross-validation over --manifest (0: off)")
    task.add_argument("--n-boot", type=_common.positive_int, default=1000, help="bootstrap resamples per fold (--folds)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=_common.positive_int, default=30, metavar="E",
                     help="passes over the training scans (fewer with --patience and a validation manifest)")
    opt.add_argument("--batch-size", type=_common.positive_int, default=8, help="scans per optimizer step")
    opt.add_argument("--lr", type=_common.positive_float, default=1e-3, help="head learning rate")
    opt.add_argument("--encoder-lr-factor", type=_common.positive_float, default=0.1,
                     help="--mode full: encoder lr = factor x --lr")
    opt.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay of the weights (not biases)")
    opt.add_argument("--patience", type=_common.positive_int, default=10, help="epochs without validation gain before stopping")
    opt.add_argument("--no-class-weights", dest="class_weighting", action="store_false",
                     help="do not weight the loss by inverse class frequency")
    opt.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none",
                     help="mixed precision: bf16 autocast (CPU/GPU) or fp16 (GPU)")

    net = parser.add_argument_group("network and preprocessing (--mode scratch without --encoder)")
    net.add_argument("--arch", choices=ARCHS, default="resnet18", help="3D encoder (MONAI) for --mode scratch")
    net.add_argument("--norm", choices=("batch", "group", "instance"), default="batch",
                     help="normalization layers of the encoder for --mode scratch")
    net.add_argument("--width", type=_common.positive_float, default=1.0, help="encoder channel multiplier")
    _common.add_preprocess_arguments(net)
    _common.add_frames(net)

    run_group = parser.add_argument_group("running")
    _common.add_seed(run_group)
    run_group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    run_group.add_argument("--workers", type=_non_negative_int, default=0, help="DataLoader worker processes")


def _config(args: argparse.Namespace):
    import dataclasses

    from neuro_ssl.training.finetune import FinetuneConfig

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(FinetuneConfig) if hasattr(args, f.name)}
    values["encoder"] = str(args.encoder) if args.encoder is not None else None
    values["cache_dir"] = str(args.cache_dir) if args.cache_dir is not None else None
    return FinetuneConfig.from_dict(values).validate()


def run(args: argparse.Namespace) -> int:
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.errors import ConfigError

    config = _config(args)
    _common.refuse_same_path(args.manifest, args.out, "--out")
    if args.folds == 1:
        raise ConfigError("--folds must be >= 2 (or 0 for no cross-validation)")
    manifest = read_manifest(args.manifest)
    if args.folds:
        return _cross_validate(args, config, manifest)
    from neuro_ssl.training.finetune import finetune

    val = read_manifest(args.val_manifest) if args.val_manifest is not None else None
    sources = {"manifest": Path(args.manifest).resolve()}
    if args.val_manifest is not None:
        sources["val_manifest"] = Path(args.val_manifest).resolve()
    summary = finetune(config, manifest, args.out, val_df=val, resume=args.resume, sources=sources)
    budget = ", ".join(f"{c} {n}" for c, n in summary["label_budget"].items())
    print(f"fine-tuned ({config.mode}) {summary['labels']}")
    print(f"trained on {summary['n_train_scans']} scan(s) of {summary['n_train_subjects']} subject(s)"
          + (f"; {summary['left_out']}" if summary.get("left_out") else "")
          + (f"; label budget (subjects): {budget}" if budget else ""))
    if val is not None:
        print(f"best epoch {summary['best_epoch']} of {summary['epochs_run']} by {summary['monitor']}")
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} row(s), listed in {Path(args.out) / 'skipped.csv'}")
    print(f"model: {Path(args.out) / 'model.pt'}")
    return 0


def _cross_validate(args, config, manifest) -> int:
    """K rounds of fine-tune + evaluate on subject-level folds; RUN/folds.csv with mean +- sd."""
    import dataclasses

    from neuro_ssl._utils.files import write_csv
    from neuro_ssl.cli.evaluate import render_figures
    from neuro_ssl.errors import ConfigError
    from neuro_ssl.evaluation import crossval
    from neuro_ssl.evaluation.evaluate import evaluate_run
    from neuro_ssl.evaluation.labels import TARGET, prepare_labels
    from neuro_ssl.training.finetune import finetune
    from neuro_ssl.training.loop import resolve_device

    if args.val_manifest is not None:
        raise ConfigError("--folds takes its validation folds from --manifest; drop --val-manifest")
    labelled, spec = prepare_labels(manifest, config.label, config.task, config.classes)
    config = dataclasses.replace(config, task=spec.task, classes=tuple(spec.classes))  # same classes every round
    labelled = labelled.drop(columns=[TARGET])
    fold_of = crossval.subject_folds(labelled, args.folds, config.seed, stratify=config.label)
    rows = []
    for i in range(args.folds):
        train, val, test = crossval.fold_round(labelled, fold_of, i, args.folds)
        run_dir = Path(args.out) / f"fold_{i + 1}"
        finetune(config, train, run_dir, val_df=val, resume=args.resume)
        metrics = evaluate_run(run_dir, test, run_dir / "eval", n_boot=args.n_boot, seed=config.seed,
                               cache_dir=config.cache_dir, skip_bad=config.skip_bad, batch_size=config.batch_size,
                               device=str(resolve_device(config.device)), workers=config.workers)
        render_figures(run_dir / "eval", metrics)
        rows.append(crossval.fold_row(i + 1, metrics))
        print(f"fold {i + 1}/{args.folds}: {metrics['n']} test scan(s) of {metrics['n_subjects']} subject(s)", flush=True)
    table = crossval.summarize_folds(rows)
    write_csv(Path(args.out) / "folds.csv", table)
    print(f"{args.folds}-fold cross-validation ({config.mode}), mean +- sd over folds:")
    print(crossval.format_folds(table))
    print(f"table: {Path(args.out) / 'folds.csv'}")
    return 0
