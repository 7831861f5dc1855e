"""The subject draws of a study: different across repeats, nested across budgets, never a test subject,
and exactly the subjects fine-tuning draws itself with the same budget and seed."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest

from neuro_ssl.data.manifest import write_manifest, read_manifest
from neuro_ssl.data.splits import make_splits
from neuro_ssl.errors import ConfigError
from neuro_ssl.study.config import StudyConfig, parse_budgets, parse_encoders
from neuro_ssl.study.plan import draw_seed, make_plan

CLASSES = ("CN", "AD")


def _cohort(folder: Path, n_subjects: int = 90) -> Path:
    """A canonical manifest of 1-3 visits per subject; image files exist (empty: the plan reads none)."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_subjects):
        dx = ("CN", "MCI", "Dementia")[i % 3]
        for visit in range(1 + i % 3):
            image = folder / "img" / f"{i:03d}_{visit}.nii.gz"
            image.touch()
            rows.append({"subject_id": f"S{i:03d}", "session_id": f"m{12 * visit:02d}", "image": str(image),
                         "modality": "T1w", "age": 65 + i % 20 + visit, "sex": "MF"[i % 2], "diagnosis": dx})
    path = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("draws")
    manifest = _cohort(folder)
    for name, part in make_splits(read_manifest(manifest), test_size=0.3, val_size=0.1, seed=0).items():
        write_manifest(part, folder / "splits" / f"{name}.csv")
    return manifest, folder / "splits"


def _subjects(draws: pd.DataFrame, budget: str, draw: int, klass: str | None = None) -> set[str]:
    rows = draws[(draws["budget"] == budget) & (draws["draw"] == draw)]
    return set(rows[rows["class"] == klass]["subject_id"] if klass else rows["subject_id"])


@pytest.mark.parametrize("seed", range(5))
def test_draws_differ_nest_and_never_touch_the_test_split(cohort, tmp_path, seed):
    manifest, splits = cohort
    config = StudyConfig(classes=CLASSES, methods=("scratch",), budgets=(2, 5, 10, "all"), draws=5, seed=seed)
    plan = make_plan(config, manifest, splits, tmp_path / "study")
    assert not (tmp_path / "study").exists()  # planning writes nothing
    draws = plan.draws
    train = set(plan.parts["train"]["subject_id"].astype(str))
    test = set(plan.parts["test"]["subject_id"].astype(str))
    pool = {c: set(plan.parts["train"].loc[plan.parts["train"]["diagnosis"] == c, "subject_id"]) for c in CLASSES}
    assert set(draws["subject_id"]) <= train and not set(draws["subject_id"]) & test
    for draw in range(5):
        for small, large in itertools.pairwise(["2", "5", "10", "all"]):
            for klass in CLASSES:
                assert _subjects(draws, small, draw, klass) <= _subjects(draws, large, draw, klass)
        for klass in CLASSES:
            assert _subjects(draws, "all", draw, klass) == pool[klass]
            for budget in ("2", "5", "10"):
                assert len(_subjects(draws, budget, draw, klass)) == min(int(budget), len(pool[klass]))
    for budget in ("2", "5", "10"):
        drawn = [frozenset(_subjects(draws, budget, d)) for d in range(5)]
        assert len(set(drawn)) == 5, f"budget {budget}: repeats drew the same subjects"
    assert draws.groupby("draw")["seed"].nunique().eq(1).all()
    assert sorted(draws.drop_duplicates("draw")["seed"]) == sorted(draw_seed(seed, d) for d in range(5))


def test_finetuning_draws_the_same_subjects(cohort, tmp_path):
    """Each cell's FinetuneConfig (budget, seed) selects exactly the plan's subjects, through
    fine-tuning's own selection (evaluation.labels.select_rows)."""
    from neuro_ssl.evaluation.labels import select_rows
    from neuro_ssl.study.units import finetune_config

    manifest, splits = cohort
    config = StudyConfig(classes=CLASSES, methods=("scratch",), budgets=(3, "all"), draws=3)
    plan = make_plan(config, manifest, splits, tmp_path / "study")
    for draw, budget, mode in itertools.product(range(3), (3, "all"), ("linear", "full")):
        cell = finetune_config(plan, plan.methods[0], mode, budget, draw)
        rows, _, _, _ = select_rows(plan.parts["train"], None, cell.label, cell.task, cell.classes,
                                    cell.labels_per_class, cell.seed)
        assert set(rows["subject_id"]) == _subjects(plan.draws, str(budget), draw)
        assert cell.mode == ("scratch" if mode == "full" else "linear")  # scratch x full trains from random weights


def test_regression_budgets_count_subjects_in_all(cohort, tmp_path):
    manifest, splits = cohort
    plan = make_plan(StudyConfig(label="age", methods=("scratch",), budgets=(4, 8), draws=2), manifest, splits,
                     tmp_path / "study")
    assert plan.spec.task == "regression" and plan.metric == "mae"
    assert set(plan.draws["class"]) == {"all"}
    for draw in range(2):
        assert len(_subjects(plan.draws, "4", draw)) == 4 and _subjects(plan.draws, "4", draw) <= _subjects(plan.draws, "8", draw)


def test_budget_and_encoder_parsing():
    assert parse_budgets("25,5,all,10,5") == (5, 10, 25, "all")
    assert parse_budgets(["all"]) == ("all",)
    with pytest.raises(ConfigError, match="positive integers"):
        parse_budgets("5,0")
    assert parse_encoders("a=x/encoder.pt, b=y.pt") == {"a": "x/encoder.pt", "b": "y.pt"}
    with pytest.raises(ConfigError, match="NAME=PATH"):
        parse_encoders("justapath.pt")


def test_a_budget_above_a_class_size_is_said(tmp_path):
    """Budget 50 on a split with a handful of subjects per class: the study runs (those cells use
    every subject, as the budget rule says) but says so, instead of a '50 per class' column that
    silently equals 'all'."""
    from types import SimpleNamespace

    import pandas as pd

    from neuro_ssl.evaluation.labels import prepare_labels
    from neuro_ssl.study.plan import Plan

    train = pd.DataFrame({"subject_id": ["a", "b", "c", "d", "e", "e"], "diagnosis": ["CN", "CN", "CN", "AD", "AD", "AD"],
                          "image_path": ["x"] * 6})
    _, spec = prepare_labels(train, "diagnosis", "classification", ("CN", "AD"))
    plan = Plan(config=SimpleNamespace(budgets=(1, 2, 3, "all")), out=tmp_path, parts={"train": train}, sources={},
                spec=spec, metric="auc", methods=[], draws=pd.DataFrame(), new_split=None)
    lines = plan.budget_warnings()
    assert lines == ["budget 3 per class: the training split has only 2 AD labelled subject(s); those cells use all of them"]
