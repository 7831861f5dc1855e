"""The pipelines in pipelines/ load, check against the real commands and dry-run; launchers run."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from neuro_ssl.cli.main import main
from neuro_ssl.errors import ConfigError
from neuro_ssl.pipeline import load_pipeline, run_pipeline
from neuro_ssl.pipeline.runner import build_argv, check_steps

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


@pytest.mark.parametrize("name, n_steps", [
    ("demo.yaml", 12), ("adni_ad_vs_cn.yaml", 22), ("adni_fdg.yaml", 22),
    ("adni_ad_vs_cn_multigpu.yaml", 22), ("brain_age.yaml", 14), ("label_efficiency.yaml", 5), ("clip.yaml", 9),
    ("adni_pmci_vs_smci.yaml", 8),
])
def test_shipped_pipeline_checks_and_dry_runs(tmp_path, capsys, name, n_steps):
    code = main(["run", str(PIPELINES / name), "--dry-run", "--set", f"out={tmp_path}/run"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == n_steps and all(": would run (never run): " in line for line in lines)
    assert not (tmp_path / "run").exists()  # a dry run writes nothing, not even stamps


def test_adni_budgets_pair_with_label_counts_and_all_means_zero():
    pipeline = load_pipeline(PIPELINES / "adni_ad_vs_cn.yaml", overrides={"out": "R"})
    actions = check_steps(pipeline)
    finetune = {s.name: s for s in pipeline.steps if s.base == "finetune"}
    assert list(finetune) == [f"finetune[{b},{m}]" for b in (5, 10, 25, "all") for m in ("linear", "full")]
    argv = build_argv(finetune["finetune[10,full]"], actions["finetune[10,full]"])
    assert argv[argv.index("--labels-per-class") + 1] == "10" and argv[argv.index("--mode") + 1] == "full"
    assert argv[argv.index("--out") + 1] == "R/finetune/full_10"
    argv = build_argv(finetune["finetune[all,linear]"], actions["finetune[all,linear]"])
    assert argv[argv.index("--labels-per-class") + 1] == "0"
    assert "--cache-dir" not in argv  # cache_dir: null leaves the option out
    saliency = next(s for s in pipeline.steps if s.name == "saliency")
    assert saliency.options["run"] == "R/finetune/full_all"
    pretrain = next(s for s in pipeline.steps if s.name == "pretrain")
    assert pretrain.launcher == "inprocess" and pretrain.options["manifest"] == "R/splits/train.csv"


def test_multigpu_and_fdg_variants_inherit_the_steps(capsys, tmp_path):
    gpu = load_pipeline(PIPELINES / "adni_ad_vs_cn_multigpu.yaml")
    pretrain = next(s for s in gpu.steps if s.name == "pretrain")
    assert (pretrain.launcher, pretrain.nproc, pretrain.options["amp"]) == ("torchrun", 4, "bf16")
    assert [s.name for s in gpu.steps] == [s.name for s in load_pipeline(PIPELINES / "adni_ad_vs_cn.yaml").steps]
    main(["run", str(PIPELINES / "adni_ad_vs_cn_multigpu.yaml"), "--dry-run", "--only", "pretrain",
          "--set", f"out={tmp_path}", "gpus=8"])
    line = next(l for l in capsys.readouterr().out.splitlines() if "pretrain: would run" in l)
    assert "torchrun --standalone --nproc_per_node 8 -m neuro_ssl pretrain" in line and "--amp bf16" in line
    fdg = load_pipeline(PIPELINES / "adni_fdg.yaml")
    pretrain = next(s for s in fdg.steps if s.name == "pretrain")
    assert pretrain.options["normalization"] == "suvr" and pretrain.options["modalities"] == ["FDG"]
    assert fdg.vars["out"] == "runs/adni_fdg" and fdg.vars["images"] == "/path/to/ADNI_FDG"


def test_extends_cycle_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="forms a cycle"):
        load_pipeline(tmp_path / "a.yaml")


def _manifest(folder: Path, n_subjects: int = 12) -> Path:
    """A canonical manifest (split reads no image), 12 subjects x 2 visits, CN/MCI/AD."""
    rows = []
    for i in range(n_subjects):
        dx = ("CN", "MCI", "Dementia")[i % 3]
        for visit, years in (("bl", 0), ("m12", 1)):
            rows.append({"subject_id": f"{i:03d}", "session_id": visit, "image": f"img/{i:03d}_{visit}.nii.gz",
                         "modality": "T1w", "age": 70 + i % 7 + years, "sex": "MF"[i % 2], "diagnosis": dx})
    path = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_select_builtin_keeps_the_rows_of_one_group(tmp_path):
    manifest = _manifest(tmp_path)
    pipeline_file = tmp_path / "p.yaml"
    pipeline_file.write_text(textwrap.dedent(f"""\
        vars: {{out: {tmp_path}/out}}
        steps:
          - name: pick
            command: select
            foreach: {{group: [CN, AD]}}
            options: {{manifest: {manifest}, out: "${{out}}/${{group}}.csv", column: diagnosis, values: ["${{group}}"]}}
            outputs: ["${{out}}/${{group}}.csv"]
        """))
    run_pipeline(load_pipeline(pipeline_file), echo=lambda _: None)
    ad = pd.read_csv(tmp_path / "out/AD.csv", dtype=str)
    assert set(ad["diagnosis"]) == {"AD"} and len(ad) == 8  # read as AD (Dementia is its alias)
    assert len(pd.read_csv(tmp_path / "out/CN.csv")) == 8
    bad = pipeline_file.read_text().replace("[CN, AD]", "[XX]")
    pipeline_file.write_text(bad)
    with pytest.raises(Exception, match="no row has diagnosis in XX"):
        run_pipeline(load_pipeline(pipeline_file), echo=lambda _: None)


@pytest.mark.parametrize("launcher", ["subprocess", "torchrun"])
def test_subprocess_and_torchrun_launchers_run_a_real_command(tmp_path, launcher):
    manifest = _manifest(tmp_path)
    pipeline_file = tmp_path / "p.yaml"
    pipeline_file.write_text(textwrap.dedent(f"""\
        vars: {{out: {tmp_path}/out}}
        steps:
          - name: split
            command: split
            launcher: {launcher}
            nproc: 1
            args: [{manifest}]
            options: {{out: "${{out}}/splits", test-size: 0.25, val-size: 0.25, seed: 0}}
            outputs: ["${{out}}/splits/train.csv", "${{out}}/splits/test.csv"]
        """))
    lines: list[str] = []
    report = run_pipeline(load_pipeline(pipeline_file), echo=lines.append)
    assert report.steps[0].status == "ran"
    parts = [set(pd.read_csv(tmp_path / f"out/splits/{p}.csv", dtype=str)["subject_id"]) for p in ("train", "val", "test")]
    assert sum(map(len, parts)) == 12 and not (parts[0] & parts[2])
    assert run_pipeline(load_pipeline(pipeline_file), echo=lines.append).steps[0].status == "current"
