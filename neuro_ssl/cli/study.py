"""Label-efficiency study: does pretraining pay off on this cohort, and from how many labels?

For every method (scratch = random initialisation; simclr, yaware, supcon, ... pretrained here on
the training split; or encoders you give) x mode (linear probe, full fine-tuning) x label budget
(labelled subjects per class, drawn by subject and nested: the 5 of a draw are among its 10) x
draw (a new subject draw and seed per repeat), fine-tune on the training split and score on the
held-out test subjects with a 95% subject-bootstrap CI. Per encoder also label-free, on the
test scans: ridge age MAE, kNN accuracy, alignment and uniformity.

Writes DIR/study.csv (one row per method, mode, budget, draw), summary.csv (mean and sd over
draws), label_free.csv, draws.csv (who was labelled), curves.png and report.html. Stopped?
Run the same command again: finished units are skipped, a pretraining resumes. Pretraining and
network options are those of neuro-ssl pretrain, under the same names. See docs/evaluation.md.

examples:
  neuro-ssl study --manifest cohort.csv --splits splits --out study --label diagnosis --classes CN,AD \\
      --methods scratch,simclr,yaware --budgets 5,10,25,all --draws 5 --pretrain-epochs 50 --finetune-epochs 30
  neuro-ssl study --manifest cohort.csv --splits splits --out study_mmse --label MMSE --methods scratch \\
      --encoders big=runs/yaware_big/encoder.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuro_ssl.cli import _common

#: the pipeline runner keeps DIR when it reruns a stopped study step: the study continues in it
CONTINUES_IN_OUT = True
#: a failed study keeps its folder once units are stamped there: a rerun continues from them
KEEP_ON_FAILURE = (".neuro-ssl-study", "checkpoint.pt")
#: pretrain options a study sets itself (per method, or through its own flags)
NOT_FROM_PRETRAIN = frozenset({"manifest", "out", "val_manifest", "resume", "loss", "epochs", "probe_every"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("data and study folder")
    io.add_argument("--manifest", type=Path, required=True, help="the cohort's manifest (any known dialect)")
    io.add_argument("--splits", type=Path, default=None, metavar="DIR",
                    help="subject-level split of --manifest (train.csv, test.csv, val.csv optional) from neuro-ssl "
                         "split; without it the study splits --manifest itself (20%% test, 10%% val, stratified by --label) "
                         "into OUT/splits")
    io.add_argument("--out", type=Path, required=True, metavar="DIR", help="study folder (new, or a study to continue)")

    task = parser.add_argument_group("task")
    task.add_argument("--label", default="diagnosis", help="column to predict (classification, or regression: age, MMSE)")
    task.add_argument("--classes", type=_common.class_list, default=(), help="classes in order, e.g. CN,AD (positive last)")
    task.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                      help="auto: classification for text or --classes, else regression (MAE)")
    task.add_argument("--metric", default=None, help="headline test metric (default: auc, or mae for regression)")

    design = parser.add_argument_group("study design")
    design.add_argument("--methods", type=_common.str_list, default=("scratch", "simclr", "yaware"),
                        help="scratch (random init) and pretraining objectives; yaware uses --meta (default age), "
                             "supcon uses --label on every training subject (not label-free)")
    design.add_argument("--encoders", default=None, metavar="NAME=PATH[,...]",
                        help="given encoders, used instead of pretraining NAME (or added as method NAME)")
    design.add_argument("--modes", type=_common.str_list, default=("linear", "full"), help="linear probe and/or full fine-tuning")
    design.add_argument("--budgets", default="5,10,25,all", help="labelled subjects per class; all = the whole training split")
    design.add_argument("--draws", type=_common.positive_int, default=5, help="repeats per budget, each a new subject draw and seed")
    design.add_argument("--pretrain-epochs", type=_common.positive_int, default=100, metavar="E1",
                        help="pretraining epochs per method")
    design.add_argument("--finetune-epochs", type=_common.positive_int, default=30, metavar="E2",
                        help="fine-tuning epochs per budget and draw (early stopping on val)")
    design.add_argument("--finetune-lr", type=_common.positive_float, default=1e-3,
                        help="fine-tuning learning rate")
    design.add_argument("--finetune-batch-size", type=_common.positive_int, default=8,
                        help="fine-tuning batch size (scans)")
    design.add_argument("--finetune-workers", type=int, default=0,
                        help="DataLoader workers of fine-tuning and evaluation (--workers: pretraining's)")
    design.add_argument("--patience", type=_common.positive_int, default=10, help="epochs without validation gain before stopping")
    design.add_argument("--no-val", dest="use_val", action="store_false",
                        help="train --finetune-epochs without early stopping, so no label outside the budget is used")
    design.add_argument("--n-boot", type=_common.positive_int, default=1000, help="bootstrap resamples (subjects) per cell")
    design.add_argument("--knn-k", type=_common.positive_int, default=5, help="neighbours of the label-free kNN probe")
    design.add_argument("--keep-models", action="store_true", help="keep every cell's model.pt (large)")
    _add_pretrain_arguments(parser)


def _add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    """neuro-ssl pretrain's own option definitions (not copies), minus those a study sets itself."""
    from neuro_ssl.cli import pretrain as pretrain_cli

    source = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pretrain_cli.add_arguments(source)
    for group in source._action_groups:
        actions = [a for a in group._group_actions if a.dest not in NOT_FROM_PRETRAIN]
        if actions:
            target = parser.add_argument_group(f"{group.title} (as in neuro-ssl pretrain)")
            for action in actions:
                target._add_action(action)


def _config(args: argparse.Namespace):
    import dataclasses

    from neuro_ssl.study.config import StudyConfig, parse_budgets, parse_encoders
    from neuro_ssl.training.config import PretrainConfig

    pretrain = {f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)
                if hasattr(args, f.name) and f.name not in NOT_FROM_PRETRAIN}
    pretrain.update(epochs=args.pretrain_epochs, cache_dir=str(args.cache_dir) if args.cache_dir is not None else None)
    return StudyConfig(
        label=args.label, classes=tuple(args.classes), task=args.task, methods=tuple(args.methods),
        encoders=parse_encoders(args.encoders), modes=tuple(args.modes), budgets=parse_budgets(args.budgets),
        draws=args.draws, metric=args.metric, pretrain=pretrain,
        finetune={"epochs": args.finetune_epochs, "lr": args.finetune_lr, "batch_size": args.finetune_batch_size,
                  "patience": args.patience},
        use_val=args.use_val, n_boot=args.n_boot, knn_k=args.knn_k, seed=args.seed, keep_models=args.keep_models,
        finetune_workers=args.finetune_workers)


def run(args: argparse.Namespace) -> int:
    from neuro_ssl.report.plots import plot_label_efficiency
    from neuro_ssl.report.run_report import write_run_report
    from neuro_ssl.study.runner import run_study
    from neuro_ssl.study.tables import format_summary

    config = _config(args)
    result = run_study(config, args.manifest, args.splits, args.out)
    plan, tables = result["plan"], result["tables"]
    what = f"{plan.spec.label}" + (f" ({', '.join(plan.spec.classes)})" if plan.spec.classes else "")
    curves = plot_label_efficiency(tables["study"], Path(args.out) / "curves.png", title=f"{what}: test {plan.metric}")
    report = write_run_report(Path(args.out) / "report.html", title=f"Label-efficiency study: {what}",
                              splits=str(Path(plan.sources["train"]).parent), study=str(args.out))
    print(f"study: {result['ran']} unit(s) ran, {result['current']} current, in {result['seconds']:.0f} s")
    print(format_summary(tables["summary"], tables["label_free"]))
    print(f"tables: {tables['study']}, {tables['summary']}, {tables['label_free']}, {tables['draws']}")
    print(f"figure: {curves}")
    print(f"report: {report}")
    return 0
