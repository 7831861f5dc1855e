"""Every command block of README.md and docs/*.md runs as written, on a small synthetic cohort.

Issue 11, point 7: the README's own-cohort sequence pretrained on the full manifest and then
evaluated on its test split, which the leakage guard refuses. Here the docs are the test input.

Which blocks: a ``` fence with no language or ``bash``/``sh``/``shell``/``console`` whose first
command starts with ``neuro-ssl``, ``make``, ``torchrun`` or ``python``; every line of such a
block must then be a command (``#`` comments and blank lines aside; a line ending in ``\\``
continues). A fence tagged ``text`` holds a usage synopsis or sample output and is not run: the
docs use it for lines with ``[OPTIONS]`` placeholders and for printed messages.

How: each Markdown file runs top to bottom in its own copy of one prepared folder (``world``),
every block in order, so a later block may use what an earlier one wrote (as a reader would).
The folder holds the files the docs name, all made from ONE cohort written by
``neuro-ssl synth cohort --subjects 16 --seed 0 --voxel-mm 4``: ``cohort/``, ``manifest.csv``,
``my_cohort.csv``, ``train.csv``/``val.csv``/``test.csv`` and ``splits/``, an IDA-style
``ADNI/`` download with ``ADNIMERGE.csv`` and ``idaSearch.csv``, a ClinicaDL ``CAPS/`` with
``labels.tsv``, a ``BIDS/`` dataset, ``study.csv`` with ``scans/``, a ``pipelines`` link to the
repository's, and ``runs/ad_full`` (a small fine-tuned model for docs/saliency.md).
``neuro-ssl`` lines run in this process (``neuro_ssl.cli.main.main``) and must exit 0.

Sizes (a faithful size-reduced variant, the only change to a documented line): the flags in
``SIZE_FLAGS`` are appended to that command's arguments, and argparse keeps the last value, so
``--epochs 50`` in a doc runs as ``--epochs 1`` on 24^3 voxels of 8 mm with a quarter-width
ResNet10, ``neuro-ssl demo`` runs at ``--size tiny``, ``synth`` writes 6 mm voxels and ``study``
trains one pretraining and one fine-tuning epoch with 2 draws. Everything else is the line as written.

Not run (``EXCLUDED``, each with its reason): ``make test`` (this suite), ``make demo`` (the
default-size demo; the same chain runs here at ``--size tiny`` through docs/quickstart.md and in
tests/e2e/test_demo.py), the torchrun lines of docs/distributed.md (one needs several machines;
the single-machine one is what tests/training/test_pretrain_ddp.py runs on a tiny cohort), the
benchmark (minutes by design) and ``pytest`` (part of this suite).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from neuro_ssl.cli.main import main

REPO = Path(__file__).resolve().parents[2]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PROGRAMS = ("neuro-ssl", "make", "torchrun", "python", ".venv/bin/python")
RUN_FENCES = ("", "bash", "sh", "shell", "console")
_NET = ["--arch", "resnet10", "--width", "0.25", "--spacing", "8", "--shape", "24,24,24"]
SIZE_FLAGS = {
    "pretrain": [*_NET, "--proj-dims", "16,8", "--epochs", "1", "--batch-size", "4", "--workers", "0"],
    "finetune": [*_NET, "--epochs", "1", "--workers", "0", "--n-boot", "20"],
    "evaluate": ["--n-boot", "20"],
    "demo": ["--size", "tiny"],
    "synth": ["--voxel-mm", "6"],
    "study": [*_NET, "--proj-dims", "16,8", "--batch-size", "4", "--workers", "0", "--pretrain-epochs", "1",
              "--finetune-epochs", "1", "--draws", "2", "--n-boot", "20"],
}
#: a command (its start) -> why the test does not run it
EXCLUDED = {
    "make test": "runs this very test suite",
    "make demo": "the default-size demo (minutes); the same chain runs at --size tiny via docs/quickstart.md",
    "torchrun --nnodes": "needs several machines (a rendezvous endpoint HOST)",
    "torchrun --standalone": "two interpreters importing torch and MONAI; tests/training/test_pretrain_ddp.py "
                             "runs this launcher line (torchrun --standalone --nproc_per_node 2 -m neuro_ssl "
                             "pretrain ... --norm group) on a tiny cohort",
    "python benchmarks/": "a benchmark: minutes by design (its --quick mode is its own smoke run)",
    ".venv/bin/python -m pytest": "runs part of this very test suite",
}


@dataclass(frozen=True)
class Command:
    source: str  # file:line
    text: str


def command_blocks(path: Path) -> list[list[Command]]:
    """The runnable fenced blocks of a Markdown file, each as its list of commands."""
    blocks, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^\s*```(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
        commands = _commands(lines[i + 1:end], path, i + 2)
        if fence.group(1) in RUN_FENCES and commands and commands[0].text.startswith(PROGRAMS):
            bad = [c for c in commands if not c.text.startswith(PROGRAMS)]
            assert not bad, f"{bad[0].source}: not a command in a command block (fence it as ```text)"
            blocks.append(commands)
        i = end + 1
    return blocks


def _commands(body: list[str], path: Path, first_line: int) -> list[Command]:
    out, pending, start = [], "", first_line
    for n, line in enumerate(body, start=first_line):
        text = line.strip()
        if not pending and (not text or text.startswith("#")):
            continue
        start = n if not pending else start
        pending += (" " if pending else "") + text.rstrip("\\").strip()
        if not text.endswith("\\"):
            out.append(Command(f"{path.relative_to(REPO)}:{start}", pending))
            pending = ""
    return out


def _excluded(text: str) -> str | None:
    return next((why for start, why in EXCLUDED.items() if text.startswith(start)), None)


def _run(command: Command) -> None:
    argv = shlex.split(command.text, comments=True)[1:]
    argv += SIZE_FLAGS.get(argv[0], []) if argv else []
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == 0, f"{command.source}: `{command.text}` exited {code}:\n{err.getvalue()[-3000:]}"


# ------------------------------------------------------------------------------------ the world

def _cli(*argv) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main([str(a) for a in argv]) == 0, argv


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.link(src, dst)


def _exports(world: Path, cohort: pd.DataFrame) -> None:
    """The cohort as an ADNI download, a CAPS folder, a BIDS dataset and a plain CSV with scans/."""
    adnimerge, ida, labels, participants, study = [], [], [], {}, []
    for k, row in enumerate(cohort.itertuples(index=False)):
        scan, image_id = world / "cohort" / row.image_path, 100000 + k
        _link(scan, world / "ADNI" / row.PTID / "MPRAGE" / f"2020-01-0{1 + k % 9}" / f"I{image_id}"
              / f"ADNI_{row.PTID}_MR_MPRAGE_I{image_id}.nii.gz")
        adnimerge.append({"RID": int(row.PTID[-4:]), "PTID": row.PTID, "VISCODE": row.VISCODE, "AGE": row.AGE,
                          "Years_bl": row.Years_bl, "PTGENDER": row.PTGENDER, "DX": row.DX, "DX_bl": row.DX_bl,
                          "SITE": row.SITE, "IMAGEUID": image_id})
        ida.append({"Image Data ID": f"I{image_id}", "Subject": row.PTID, "Group": row.DX, "Sex": row.PTGENDER[0],
                    "Age": round(row.AGE + row.Years_bl, 1), "Visit": row.VISCODE, "Modality": "MRI",
                    "Description": "MPRAGE"})
        sub, ses = f"sub-{row.PTID.replace('_', '')}", f"ses-{row.VISCODE}"
        _link(scan, world / "CAPS" / "subjects" / sub / ses / "t1_linear" / f"{sub}_{ses}_T1w.nii.gz")
        _link(scan, world / "BIDS" / sub / ses / "anat" / f"{sub}_{ses}_T1w.nii.gz")
        labels.append({"participant_id": sub, "session_id": ses, "diagnosis": row.DX,
                       "age": round(row.AGE + row.Years_bl, 1), "sex": row.PTGENDER})
        participants.setdefault(sub, {"participant_id": sub, "age": row.AGE, "sex": row.PTGENDER, "group": row.DX_bl})
        _link(scan, world / "scans" / Path(row.image_path).name)
        study.append({"ID": row.PTID, "visit": row.VISCODE, "scan": Path(row.image_path).name,
                      "AgeYears": round(row.AGE + row.Years_bl, 1), "DX": row.DX})
    pd.DataFrame(adnimerge).to_csv(world / "ADNIMERGE.csv", index=False)
    pd.DataFrame(ida).to_csv(world / "idaSearch.csv", index=False)
    pd.DataFrame(labels).to_csv(world / "labels.tsv", sep="\t", index=False)
    pd.DataFrame(list(participants.values())).to_csv(world / "BIDS" / "participants.tsv", sep="\t", index=False)
    pd.DataFrame(study).to_csv(world / "study.csv", index=False)


#: each document's test runs for seconds to minutes (docs/federated.md: Flower runs); building the
#: world once per pytest-xdist worker costs seconds, so the documents are spread over the workers
SPREAD_ACROSS_WORKERS = True


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from neuro_ssl.data.manifest import read_manifest, write_manifest

    world = tmp_path_factory.mktemp("docs_world")
    _cli("synth", world / "cohort", "--subjects", 16, "--seed", 0, "--voxel-mm", 4)
    canonical = read_manifest(world / "cohort" / "manifest.csv")
    for name in ("manifest.csv", "my_cohort.csv"):
        write_manifest(canonical, world / name)
    _cli("split", world / "cohort" / "manifest.csv", "--out", world / "splits", "--seed", 0)
    for part in ("train", "val", "test"):
        write_manifest(read_manifest(world / "splits" / f"{part}.csv"), world / f"{part}.csv")
    _exports(world, pd.read_csv(world / "cohort" / "manifest.csv", dtype={"PTID": str, "SITE": str}))
    os.symlink(REPO / "pipelines", world / "pipelines")
    _cli("finetune", "--manifest", world / "splits" / "train.csv", "--out", world / "runs" / "ad_full",
         "--mode", "scratch", "--classes", "CN,AD", *SIZE_FLAGS["finetune"])
    return world


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOC_FILES, ids=[str(p.relative_to(REPO)) for p in DOC_FILES])
def test_every_command_block_runs_as_written(doc, world, tmp_path, monkeypatch):
    blocks = command_blocks(doc)
    folder = tmp_path / "here"
    shutil.copytree(world, folder, symlinks=True, copy_function=os.link)
    monkeypatch.chdir(folder)
    for block in blocks:
        for command in block:
            if _excluded(command.text) is None:
                _run(command)


def test_the_documented_flows_are_found_and_every_skip_has_a_reason():
    """The extraction sees the blocks the issue is about; nothing is left out without a reason."""
    found = {p.name: [c.text for block in command_blocks(p) for c in block] for p in DOC_FILES}
    readme = found["README.md"]
    assert any(t.startswith("neuro-ssl pretrain --manifest study/splits/train.csv") for t in readme), readme
    assert any(t.startswith("neuro-ssl evaluate --run runs/ad_cn --manifest study/splits/test.csv") for t in readme)
    assert sum(t.startswith("neuro-ssl demo") for t in found["quickstart.md"]) >= 2
    run = [t for texts in found.values() for t in texts if _excluded(t) is None]
    skipped = [t for texts in found.values() for t in texts if _excluded(t) is not None]
    assert all(t.startswith("neuro-ssl ") for t in run), [t for t in run if not t.startswith("neuro-ssl ")]
    assert len(run) >= 25 and all(_excluded(t) for t in skipped)
