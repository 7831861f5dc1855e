"""Counting: over a manifest of N good and M bad rows, with --skip-bad, nothing is lost and nothing leaks.

The chain a study runs (validate -> pretrain -> finetune -> evaluate -> embed -> saliency), every
command with ``--skip-bad`` on one manifest whose bad rows are every broken volume of the corpus
plus a duplicate row and a non-numeric age. Every good row must be accounted for in each
command's outputs (exactly once), and every bad row must be in each command's skip report with
its row number and file. A command's skip report is the file it writes for that purpose when it
has one, else what it prints: saliency ``DIR/skipped.csv``; evaluate ``rows_skipped`` in
``metrics.json``; pretrain and finetune ``RUN/*skipped*.csv``; embed ``<out stem>*skipped*.csv``
beside its table (in a CSV, a ``row`` column counts as the row number). All shortfalls are
collected and reported together.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from .corpus import bad_image_row, make_bad_files, write_good, write_manifest
from .helpers import NET, run_cli


@dataclass
class Row:
    line: int
    subject: str
    session: str
    image: str
    diagnosis: str
    bad: str | None  # why the row is bad; None for a good row


@pytest.fixture(scope="module")
def study(good_rows, tmp_path_factory) -> tuple[Path, list[Row]]:
    """The manifest (good rows and bad rows shuffled together) and what each of its rows is."""
    root = tmp_path_factory.mktemp("counting")
    tagged = [(row.to_frame().T, None) for _, row in good_rows.iterrows()]
    for i, bad in enumerate(make_bad_files(root / "bad")):
        tagged.append((bad_image_row(good_rows, bad.path, f"BAD_S_{i:04d}", "CN" if i % 2 else "AD"), bad.name))
    tagged.append((good_rows.iloc[[0]].copy(), "duplicate_row"))
    age = bad_image_row(good_rows, write_good(root / "age_text.nii.gz", seed=5), "AGE_S_0001", "CN")
    age["age"] = "seventy"
    tagged.append((age, "non_numeric_age"))
    head, rest = tagged[:1], tagged[1:]  # the first good row stays first, so the duplicate is the later one
    random.Random(0).shuffle(rest)
    tagged = head + rest
    table = pd.concat([frame for frame, _ in tagged], ignore_index=True)
    manifest = write_manifest(root / "study.csv", table)
    rows = [Row(i + 2, r["subject_id"], r["session_id"], r["image"], r["diagnosis"], why)
            for i, ((_, r), (_, why)) in enumerate(zip(table.iterrows(), tagged))]
    return manifest, rows


def _keys(rows, with_image=False) -> Counter:
    return Counter((r.subject, r.session) + ((r.image,) if with_image else ()) for r in rows)


def _compare(problems: list, what: str, got: Counter, want: Counter) -> None:
    missing, extra = want - got, got - want
    if missing or extra:
        problems.append(f"{what}: good rows missing {sorted(missing)[:4]} ({sum(missing.values())}), "
                        f"unexpected rows {sorted(extra)[:4]} ({sum(extra.values())})")


#: bad rows whose problem is in the manifest row itself: the report must name the row, not necessarily the image
ROW_PROBLEMS = ("duplicate_row", "non_numeric_age")


def _reported(problems: list, what: str, report: list[str], bad_rows: list[Row]) -> None:
    """Each bad row must appear in one entry of the report, with its row number and (broken volumes) its file."""
    def names(entry: str, r: Row) -> bool:
        return bool(re.search(rf"\brow {r.line}\b", entry)) and (r.bad in ROW_PROBLEMS or Path(r.image).name in entry)

    unreported = [r for r in bad_rows if not any(names(entry, r) for entry in report)]
    if unreported:
        problems.append(f"{what}: {len(unreported)} of {len(bad_rows)} bad rows not in the skip report "
                        f"(row and file), e.g. " + ", ".join(f"row {r.line} ({r.bad})" for r in unreported[:4]))


class _Chain:
    """One study's commands, each with --skip-bad; every shortfall goes to ``problems``."""

    def __init__(self, manifest: Path, rows: list[Row], cache_dir: Path, out: Path):
        self.manifest, self.out = manifest, out
        self.good = [r for r in rows if r.bad is None]
        self.bad = [r for r in rows if r.bad is not None]
        self.task = [r for r in self.good if r.diagnosis in ("CN", "AD")]  # the rows an AD-vs-CN model uses
        self.common = ["--cache-dir", cache_dir, "--device", "cpu", "--skip-bad"]
        self.problems: list[str] = []

    def run(self, command: str, *argv) -> bool:
        self.result = run_cli([command, *argv, *self.common])
        if self.result.code != 0:
            self.problems.append(f"{command} --skip-bad exited {self.result.code}: {self.result.err.strip()[-600:]}")
        return self.result.code == 0

    def validate(self) -> None:
        report = json.loads(run_cli(["validate", self.manifest, "--json"]).out)
        if report["bad_rows"] != sorted(r.line for r in self.bad):
            self.problems.append(f"validate: bad_rows {report['bad_rows']} != {sorted(r.line for r in self.bad)}")

    def pretrain(self, run: Path) -> None:
        if not self.run("pretrain", "--manifest", self.manifest, "--out", run, "--loss", "simclr", *NET,
                        "--proj-dims", "16,8", "--epochs", "1", "--batch-size", "4", "--workers", "0"):
            return
        if f"on {len(self.good)} scan(s)" not in self.result.out:
            self.problems.append(f"pretrain: trained on other than the {len(self.good)} good scans: "
                                 f"{self.result.out.splitlines()[0]}")
        printed = (self.result.err + self.result.out).split("; ")
        _reported(self.problems, "pretrain", _report_files(run) or printed, self.bad)

    def finetune(self, encoder: Path, run: Path) -> None:
        if not self.run("finetune", "--manifest", self.manifest, "--encoder", encoder, "--out", run, "--mode", "linear",
                        "--classes", "CN,AD", "--epochs", "2", "--batch-size", "4"):
            return
        if f"trained on {len(self.task)} scan(s)" not in self.result.out:
            self.problems.append(f"finetune: trained on other than the {len(self.task)} good CN/AD scans: "
                                 f"{self.result.out[:300]}")
        _reported(self.problems, "finetune", _report_files(run) or self.result.out.splitlines(), self.bad)

    def evaluate(self, model: Path, out: Path) -> None:
        if not self.run("evaluate", "--run", model, "--manifest", self.manifest, "--out", out, "--allow-overlap",
                        "--n-boot", "20"):
            return
        predictions = pd.read_csv(out / "predictions.csv", dtype=str)
        _compare(self.problems, "evaluate predictions.csv",
                 Counter(zip(predictions["subject_id"], predictions["session_id"])), _keys(self.task))
        metrics = json.loads((out / "metrics.json").read_text())
        skipped = [str(item) for key, value in metrics.items() if "skipped" in key and isinstance(value, list)
                   for item in value]  # rows_skipped, and any other list of skipped rows
        _reported(self.problems, "evaluate metrics.json rows_skipped", skipped, self.bad)

    def saliency(self, model: Path, out: Path) -> None:
        if not self.run("saliency", "--run", model, "--manifest", self.manifest, "--out", out,
                        "--layer", "encoder.net.layer2", "--max-viewers", "0"):
            return
        summary = pd.read_csv(out / "summary.csv", dtype=str)
        _compare(self.problems, "saliency summary.csv",
                 Counter(zip(summary["subject_id"], summary["session_id"], summary["image"])),
                 _keys(self.good, with_image=True))
        _reported(self.problems, "saliency skipped.csv", _csv_entries(out / "skipped.csv"), self.bad)

    def embed(self, encoder: Path, out: Path) -> None:
        if not self.run("embed", "--encoder", encoder, "--manifest", self.manifest, "--out", out):
            return
        table = pd.read_csv(out, dtype=str)
        _compare(self.problems, "embed embeddings.csv", Counter(zip(table["subject_id"], table["session_id"])),
                 _keys(self.good))
        printed = self.result.out.splitlines()
        _reported(self.problems, "embed", _report_files(out.parent, out.stem) or printed, self.bad)


def test_every_good_row_is_in_the_outputs_and_every_bad_row_in_the_report(study, cache_dir, tmp_path):
    chain = _Chain(*study, cache_dir, tmp_path)
    assert len(chain.good) >= 10 and len(chain.bad) >= 12 and chain.task
    chain.validate()
    chain.pretrain(tmp_path / "pretrain")
    encoder = tmp_path / "pretrain" / "encoder.pt"
    if encoder.exists():
        chain.embed(encoder, tmp_path / "embeddings.csv")
        chain.finetune(encoder, tmp_path / "finetune")
    if (tmp_path / "finetune" / "model.pt").exists():
        chain.evaluate(tmp_path / "finetune", tmp_path / "evaluate")
        chain.saliency(tmp_path / "finetune", tmp_path / "saliency")
    assert not chain.problems, "\n".join(chain.problems)


def _report_files(folder: Path, stem: str = "") -> list[str]:
    """Entries of any skip report a command wrote beside its outputs (``*skipped*.csv``)."""
    return [entry for path in sorted(folder.glob(f"{stem}*skipped*.csv")) for entry in _csv_entries(path)]


def _csv_entries(path: Path) -> list[str]:
    """One text per row of a skip report; a ``row`` column reads as ``row N`` (the manifest line)."""
    if not path.exists():
        return []
    table = pd.read_csv(path, dtype=str).fillna("")
    return [(f"row {record['row']} " if "row" in record else "") + " ".join(record.values())
            for record in table.to_dict("records")]


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory) -> tuple[Path, list[Row]]:
    """A cohort large enough for the demo's three-way split (10 subjects), plus every bad row."""
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.synth import make_cohort

    from .corpus import COLUMNS

    root = tmp_path_factory.mktemp("demo_study")
    good = read_manifest(make_cohort(root / "cohort", n_subjects=10, seed=1, voxel_mm=6.0))[list(COLUMNS)]
    good = good.assign(age=good["age"].map(lambda a: f"{a:.2f}")).astype(str).reset_index(drop=True)
    tagged = [(row.to_frame().T, None) for _, row in good.iterrows()]
    for i, bad in enumerate(make_bad_files(root / "bad")):  # MCI: outside the demo's CN-vs-AD task
        tagged.append((bad_image_row(good, bad.path, f"BAD_S_{i:04d}", "MCI"), bad.name))
    tagged.append((good.iloc[[0]].copy(), "duplicate_row"))
    table = pd.concat([frame for frame, _ in tagged], ignore_index=True)
    manifest = write_manifest(root / "study.csv", table)
    rows = [Row(i + 2, r["subject_id"], r["session_id"], r["image"], r["diagnosis"], why)
            for i, ((_, r), (_, why)) in enumerate(zip(table.iterrows(), tagged))]
    return manifest, rows


def test_the_demo_pipeline_with_skip_bad_accounts_for_every_row(demo_study, tmp_path):
    """``neuro-ssl demo --manifest M --skip-bad`` is demo.yaml with the vars ``demo_overrides`` gives; it
    runs here through ``neuro-ssl run`` at test sizes. Bad rows: each in validation.json and on
    report.html (and skipped by saliency when in the test split). Good rows: each in one split, and
    the test split's in both evaluations, the embeddings and the saliency summary."""
    manifest, rows = demo_study
    good, bad = [r for r in rows if r.bad is None], [r for r in rows if r.bad is not None]
    out = tmp_path / "demo"
    result = _run_demo(manifest, out)
    assert result.code == 0, result.err[-3000:] + result.out[-3000:]
    problems: list[str] = []
    _check_demo_report(problems, out, bad)
    _check_demo_outputs(problems, out, good, bad)
    assert not problems, "\n".join(problems)


def _run_demo(manifest: Path, out: Path):
    from neuro_ssl.pipeline.demo import DEMO_YAML, demo_overrides

    sizes = {"spacing": 8, "shape": "[16,16,16]", "width": 0.125, "pretrain_batch": 4, "pretrain_epochs": 1,
             "finetune_epochs": 1, "saliency_layer": "encoder.net.layer2"}
    variables = {**demo_overrides(out, 0, manifest, skip_bad=True), **sizes}
    sets = [f"{k}={_yaml_scalar(v)}" for k, v in variables.items()]
    return run_cli(["run", DEMO_YAML, "--preset", "tiny", "--set", *sets])


def _yaml_scalar(value) -> str:
    """How ``--set NAME=VALUE`` spells a Python value (values are read as YAML)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _check_demo_report(problems: list, out: Path, bad: list[Row]) -> None:
    import html

    validation = json.loads((out / "validation.json").read_text())
    if validation["bad_rows"] != sorted(r.line for r in bad):
        problems.append(f"validation.json: bad_rows {validation['bad_rows']} != {sorted(r.line for r in bad)}")
    page = (out / "report.html").read_text()
    unlisted = [r for r in bad if html.escape(Path(r.image).name) not in page]
    if unlisted or f"{len(bad)} error(s)" not in page:
        problems.append(f"report.html: does not list {len(bad)} errors; missing {[r.bad for r in unlisted]}")


def _check_demo_outputs(problems: list, out: Path, good: list[Row], bad: list[Row]) -> None:
    parts = {name: pd.read_csv(out / "splits" / f"{name}.csv", dtype=str) for name in ("train", "val", "test")}
    placed: dict[tuple, set] = {}
    for name, table in parts.items():
        for key in zip(table["subject_id"], table["session_id"]):
            placed.setdefault(key, set()).add(name)
    misplaced = {key: sorted(placed.get(key, ())) for key in _keys(good) if len(placed.get(key, ())) != 1}
    if misplaced:
        problems.append(f"splits: good rows not in exactly one split: {misplaced}")
    test = set(zip(parts["test"]["subject_id"], parts["test"]["session_id"]))
    test_good = [r for r in good if (r.subject, r.session) in test]
    for mode in ("linear", "full"):
        table = pd.read_csv(out / f"evaluate_{mode}" / "predictions.csv", dtype=str)
        _compare(problems, f"evaluate_{mode}/predictions.csv", Counter(zip(table["subject_id"], table["session_id"])),
                 _keys([r for r in test_good if r.diagnosis in ("CN", "AD")]))
    for name, path in (("embeddings.csv", out / "embeddings" / "embeddings.csv"),
                       ("saliency/summary.csv", out / "saliency" / "summary.csv")):
        table = pd.read_csv(path, dtype=str)
        _compare(problems, name, Counter(zip(table["subject_id"], table["session_id"])), _keys(test_good))
    broken_in_test = {r.image for r in bad if r.subject.startswith("BAD_S_") and (r.subject, r.session) in test}
    skipped = out / "saliency" / "skipped.csv"
    listed = set(pd.read_csv(skipped, dtype=str)["image"]) if skipped.exists() else set()
    if broken_in_test - listed:
        problems.append(f"saliency/skipped.csv: misses {sorted(Path(p).name for p in broken_in_test - listed)}")
