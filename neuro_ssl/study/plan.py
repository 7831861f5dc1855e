"""What a study will do, checked before anything is written: splits, task, methods and draws.

:func:`make_plan` reads the cohort and its subject-level split, resolves the label task on the
training split, checks every method (pretraining options, covariate columns, given encoders
against the test subjects) and draws the labelled subjects of every budget and repeat. Any
problem is one line and leaves no study folder behind.

Draws reuse fine-tuning's own budget rule (:func:`neuro_ssl.evaluation.labels.select_rows`):
``N`` subjects per class from a seeded permutation of each class's training subjects, so with
one draw seed the subjects of budget 5 are the first 5 of budget 10's. Repeat ``d`` uses the
seed :func:`draw_seed` ``(seed, d)``, which also seeds that repeat's fine-tuning: every method
and mode of one repeat sees the same labelled subjects (a paired comparison). Test subjects are
never drawn: draws come from the training split, which shares no subject with the test split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neuro_ssl.errors import ConfigError, ManifestError
from neuro_ssl.study.config import ALL, SCRATCH, StudyConfig

STATE_DIR = ".neuro-ssl-study"
SPLIT_FILES = ("train", "val", "test")


@dataclass
class Method:
    """One representation to fine-tune: random init, pretrained here, or given."""

    name: str
    source: str                 # scratch | pretrain | given
    encoder: Path               # the encoder file (written by the study unless given)
    pretrain: object = None     # PretrainConfig for source == "pretrain"


@dataclass
class Plan:
    config: StudyConfig
    out: Path
    parts: dict                 # "train", "test", "val" (None without one) -> screened manifest rows
    sources: dict               # "manifest", "train", "val", "test" -> file paths (str)
    spec: object                # LabelSpec resolved on the training split
    metric: str
    methods: list
    draws: pd.DataFrame         # budget, draw, seed, class, subject_id
    new_split: dict | None      # parts to write to OUT/splits when the study made the split

    @property
    def state_dir(self) -> Path:
        return self.out / STATE_DIR

    def budget_warnings(self) -> list[str]:
        """One line per budget that asks for more subjects than a class of the training split has
        (its cells then use every subject of that class: the same as ``all`` for it)."""
        from neuro_ssl.evaluation.labels import TARGET, prepare_labels

        spec = self.spec
        labelled, _ = prepare_labels(self.parts["train"], spec.label, spec.task, spec.classes)
        if spec.task == "classification":
            counts = {spec.classes[int(code)]: int(n) for code, n in
                      labelled.groupby(TARGET)["subject_id"].nunique().items()}
        else:
            counts = {ALL: int(labelled["subject_id"].nunique())}
        lines = []
        for budget in self.config.budgets:
            if budget == ALL:
                continue
            short = {name: n for name, n in counts.items() if n < int(budget)}
            if short:
                unit = "per class" if ALL not in counts else "in all"
                have = ", ".join(f"{n} {name}" for name, n in short.items())
                lines.append(f"budget {budget} {unit}: the training split has only {have} labelled subject(s); "
                             f"those cells use all of them")
        return lines


def draw_seed(seed: int, draw: int) -> int:
    """The seed of repeat ``draw``: a stable 31-bit function of (seed, draw)."""
    from neuro_ssl.training.loop import derive_seed

    return derive_seed("study-draw", int(seed), int(draw)) % 2**31


def make_plan(config: StudyConfig, manifest: str | os.PathLike, splits: str | os.PathLike | None,
              out: str | os.PathLike) -> Plan:
    """Check everything a study needs and draw its subjects; writes nothing."""
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.training.config import LOSSES

    config.validate(LOSSES)
    out = Path(out)
    _check_out(out, manifest)
    cohort = read_manifest(manifest)
    parts, sources, new_split = _read_parts(config, cohort, Path(manifest), splits, out)
    spec, metric = _resolve_task(config, parts)
    methods = [_method(config, name, parts, spec, out) for name in config.all_methods]
    draws = draw_table(config, parts["train"], spec)
    return Plan(config, out, parts, sources, spec, metric, methods, draws, new_split)


def _check_out(out: Path, manifest) -> None:
    if Path(manifest).resolve() == out.resolve():
        raise ConfigError(f"--out {out} is the manifest itself; choose a folder")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / STATE_DIR).is_dir():
        raise ConfigError(f"--out {out} is not empty and holds no study: choose a new folder "
                          "(an existing study folder continues where it stopped)")


def _read_parts(config: StudyConfig, cohort: pd.DataFrame, manifest: Path, splits, out: Path):
    """Screened train/val/test rows, the files they come from, and a split to write (or None)."""
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.screening import screen_rows
    from neuro_ssl.data.splits import check_no_leak, make_splits

    skip_bad = bool(config.pretrain.get("skip_bad", False))
    new_split = None
    if splits is None and (out / STATE_DIR).is_dir() and (out / "splits" / "train.csv").is_file():
        splits = out / "splits"  # a continued study keeps the split it made the first time
    if splits is None:
        new_split = make_splits(cohort, test_size=0.2, val_size=0.1, stratify=config.label, seed=config.seed)
        folder = out / "splits"
        raw = {name: new_split[name] for name in SPLIT_FILES if len(new_split[name])}
        for name, part in raw.items():
            part.attrs["source"] = str(folder / f"{name}.csv")
    else:
        folder = Path(splits)
        if not (folder / "train.csv").is_file() or not (folder / "test.csv").is_file():
            raise ManifestError(f"--splits {folder}: needs train.csv and test.csv (val.csv optional), as written by "
                              f"neuro-ssl split {manifest} --out {folder}")
        raw = {name: read_manifest(folder / f"{name}.csv") for name in SPLIT_FILES if _has_rows(folder / f"{name}.csv")}
        for name, part in raw.items():
            _check_in_cohort(part, cohort, manifest)
    check_no_leak(raw)
    parts = {"val": None}
    for name, part in raw.items():
        parts[name], _ = screen_rows(part, used_columns=(config.label,), skip_bad=skip_bad)
    sources = {"manifest": str(manifest.resolve()),
               **{name: str((folder / f"{name}.csv").resolve()) for name in raw}}
    return parts, sources, new_split


def _has_rows(path: Path) -> bool:
    """A split file with at least one row (``split --val-size 0`` writes a header-only val.csv)."""
    if not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as fh:
        return sum(1 for line, _ in zip(fh, range(2)) if line.strip()) > 1


def _check_in_cohort(part: pd.DataFrame, cohort: pd.DataFrame, manifest: Path) -> None:
    known = set(cohort["subject_id"].astype(str))
    subjects = part["subject_id"].astype(str)
    outside = ~subjects.isin(known)
    if outside.any():
        row = outside.idxmax()
        raise ManifestError(f"{part.attrs.get('source', 'split')} row {row}: subject {subjects[row]} is not in {manifest}; "
                            "were these splits made from another manifest?")


def _resolve_task(config: StudyConfig, parts: dict):
    """The LabelSpec on the training split; the test split must hold every class; the metric name."""
    from neuro_ssl.evaluation.evaluate import METRIC_NAMES
    from neuro_ssl.evaluation.labels import check_classes_present, prepare_labels

    train, spec = prepare_labels(parts["train"], config.label, config.task, config.classes)
    check_classes_present(train, spec)
    test, _ = prepare_labels(parts["test"], config.label, spec.task, spec.classes)
    if test.empty:
        raise ManifestError(f"{parts['test'].attrs.get('source', 'test split')}: no row has a usable "
                            f"'{config.label}' ({spec.describe()})")
    check_classes_present(test, spec, what="test")
    if config.use_val and parts["val"] is not None and prepare_labels(parts["val"], config.label, spec.task,
                                                                         spec.classes)[0].empty:
        raise ConfigError(f"{parts['val'].attrs.get('source', 'val split')}: no row has a usable '{config.label}' "
                          f"for early stopping ({spec.describe()}); pass --no-val")
    metric = config.metric or ("auc" if spec.task == "classification" else "mae")
    if metric not in METRIC_NAMES[spec.task]:
        raise ConfigError(f"--metric {metric} is not a {spec.task} metric; choose from {', '.join(METRIC_NAMES[spec.task])}")
    return spec, metric


def _method(config: StudyConfig, name: str, parts: dict, spec, out: Path) -> Method:
    if name in config.encoders:
        return _given(name, Path(config.encoders[name]), parts["test"])
    if name == SCRATCH:  # the same network and preprocessing as the pretrained methods, random weights
        return Method(name, "scratch", out / "encoders" / name / "encoder.pt", _pretrain_config(config, "simclr", ()))
    if name == "supcon" and spec.task != "classification":
        raise ConfigError(f"--methods supcon needs a categorical --label; '{config.label}' is a regression target")
    meta = {"yaware": tuple(config.pretrain.get("meta") or ("age",)), "supcon": (config.label,)}.get(
        name, () if name == "simclr" else tuple(config.pretrain.get("meta") or ()))
    pretrain = _pretrain_config(config, name, meta)
    missing = [c for c in pretrain.meta if c not in parts["train"].columns]
    if missing:
        raise ManifestError(f"{parts['train'].attrs.get('source', 'training split')}: no column '{missing[0]}' "
                            f"for method {name} (--meta)")
    return Method(name, "pretrain", out / "encoders" / name / "encoder.pt", pretrain)


def _pretrain_config(config: StudyConfig, loss: str, meta: tuple):
    from neuro_ssl.training.config import PretrainConfig

    return PretrainConfig.from_dict({**config.pretrain, "loss": loss, "meta": list(meta), "seed": config.seed}).validate()


def _given(name: str, path: Path, test: pd.DataFrame) -> Method:
    """A user's encoder: it must load, carry its preprocessing and never have seen a test subject."""
    from neuro_ssl.errors import CheckpointError
    from neuro_ssl.evaluation.leakage import check_leakage
    from neuro_ssl.models import load_encoder

    if not path.is_file():
        raise CheckpointError(f"--encoders {name}={path}: file not found")
    _, meta = load_encoder(path)
    if "preprocess" not in meta:
        raise CheckpointError(f"{path}: the encoder's meta has no 'preprocess' section")
    check_leakage(meta.get("subjects", []), test["subject_id"], source=str(path),
                  target=test.attrs.get("source", "test split"),
                  remedy="a study scores its test split, so give an encoder pretrained without those subjects "
                         "(pretrain on the training split)")
    return Method(name, "given", path.resolve())


def draw_table(config: StudyConfig, train: pd.DataFrame, spec) -> pd.DataFrame:
    """One row per drawn subject: ``budget, draw, seed, class, subject_id`` (``all``: every labelled one).

    Regression budgets count subjects in all (``class`` is ``all``).
    """
    from neuro_ssl.evaluation.labels import TARGET, select_rows

    rows = []
    for draw in range(int(config.draws)):
        seed = draw_seed(config.seed, draw)
        for budget in config.budgets:
            chosen, _, _, _ = select_rows(train, None, spec.label, spec.task, spec.classes,
                                          0 if budget == ALL else int(budget), seed)
            per_subject = chosen.drop_duplicates(["subject_id", TARGET])
            for subject, code in zip(per_subject["subject_id"].astype(str), per_subject[TARGET]):
                name = spec.classes[int(code)] if spec.task == "classification" else ALL
                rows.append({"budget": str(budget), "draw": draw, "seed": seed, "class": name, "subject_id": subject})
    table = pd.DataFrame(rows, columns=["budget", "draw", "seed", "class", "subject_id"])
    return table.drop_duplicates().sort_values(["draw", "budget", "class", "subject_id"], kind="stable",
                                               key=_budget_order).reset_index(drop=True)


def _budget_order(column: pd.Series) -> pd.Series:
    if column.name != "budget":
        return column
    return column.map(lambda b: float("inf") if b == ALL else float(b))
