"""CLIP pretraining end to end on real NIfTI files: retrieval.json at the end of pretraining, the same numbers
from ``evaluate-retrieval`` (featurization read back from the run), MRI <-> PET with --views, free text,
missing clinical values kept, and the refusals."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from neuro_ssl.cli.main import main
from neuro_ssl.data.manifest import read_manifest, write_manifest
from neuro_ssl.losses import CLIPLoss, YAwareInfoNCE
from neuro_ssl.training.config import PretrainConfig
from neuro_ssl.training.objectives import OBJECTIVES, Step

ENTRY_KEYS = {"recall_at_1", "recall_at_5", "recall_at_10", "median_rank", "chance_at_5", "n"}
TINY = ["--arch", "resnet10", "--width", "0.25", "--spacing", "6", "--shape", "32,32,32", "--proj-dims", "32,16",
        "--epochs", "1", "--batch-size", "4", "--lr", "1e-3", "--workers", "0", "--seed", "0"]
CLINICAL = "MMSE,CDRSB,ADAS13,APOE4,PTEDUCAT,sex"
REPORT = {"CN": "no memory complaints, normal scan", "MCI": "mild memory complaints",
          "AD": "memory loss, hippocampal atrophy"}


@pytest.fixture(scope="module")
def splits(tiny_cohort, tmp_path_factory):
    """Train on 8 subjects, hold out 4; a free-text report; one training MMSE removed on purpose."""
    df = read_manifest(tiny_cohort)
    df["report"] = df["diagnosis"].map(REPORT)
    subjects = sorted(df["subject_id"].unique())
    train, val = df[df["subject_id"].isin(subjects[:8])].copy(), df[df["subject_id"].isin(subjects[8:])].copy()
    first_t1w = train.index[train["modality"] == "T1w"][0]
    train.loc[first_t1w, "MMSE"] = np.nan
    folder = tmp_path_factory.mktemp("clip-splits")
    write_manifest(train, folder / "train.csv")
    write_manifest(val, folder / "val.csv")
    return SimpleNamespace(train=folder / "train.csv", val=folder / "val.csv", frame=train, val_frame=val)


@pytest.fixture(scope="module")
def clip_run(splits, tmp_path_factory):
    run = tmp_path_factory.mktemp("clip") / "run"
    args = ["pretrain", "--manifest", str(splits.train), "--val-manifest", str(splits.val), "--out", str(run),
            "--loss", "clip", "--clinical", CLINICAL, *TINY]
    return run, args


def test_clip_run_writes_retrieval_and_keeps_rows_with_missing_values(clip_run, splits, capfd):
    run, args = clip_run
    assert main(args) == 0
    out, err = capfd.readouterr()
    n_train = int((splits.frame["modality"] == "T1w").sum())
    assert f"on {n_train} scan(s)" in out  # the row without MMSE is trained on, not dropped
    assert "missing clinical values are kept" in err and "MMSE in " in err
    retrieval = json.loads((run / "retrieval.json").read_text())
    assert set(retrieval) == {"image_to_clinical", "clinical_to_image"}
    n_val = int((splits.val_frame["modality"] == "T1w").sum())
    for entry in retrieval.values():
        assert set(entry) == ENTRY_KEYS and entry["n"] == n_val and entry["chance_at_5"] == pytest.approx(5 / n_val)
        assert 0 <= entry["recall_at_1"] <= entry["recall_at_5"] <= entry["recall_at_10"] <= 1
    prototypes = json.loads((run / "prototype_classification.json").read_text())
    assert prototypes["classes"] == ["CN", "AD"] and prototypes["label"] == "diagnosis"
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    extra = state["extras.objective.alignment._extra_state"]
    assert extra["featurizer"]["columns"] == CLINICAL.split(",") and extra["featurizer"]["kinds"]["sex"] == "categorical"
    assert all(torch.isfinite(v).all() for k, v in state.items() if isinstance(v, torch.Tensor))


def test_evaluate_retrieval_reads_the_run_and_repeats_its_numbers(clip_run, splits, tmp_path, capsys):
    run, _ = clip_run
    if not (run / "retrieval.json").exists():
        pytest.fail("needs the run of test_clip_run_writes_retrieval_and_keeps_rows_with_missing_values")
    out = tmp_path / "eval"
    assert main(["evaluate-retrieval", "--run", str(run), "--manifest", str(splits.val), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert "image -> clinical: recall@1" in capsys.readouterr().out
    again, first = json.loads((out / "retrieval.json").read_text()), json.loads((run / "retrieval.json").read_text())
    for key in first:
        for name in ENTRY_KEYS:
            assert again[key][name] == pytest.approx(first[key][name], abs=1e-9), (key, name)
    assert (out / "prototype_classification.json").is_file()
    code = main(["evaluate-retrieval", "--run", str(run), "--manifest", str(splits.train), "--out", str(tmp_path / "x")])
    assert code == 1 and "were used to train, validate or pretrain" in capsys.readouterr().err
    code = main(["evaluate-retrieval", "--run", str(run), "--manifest", str(splits.val), "--out", str(tmp_path / "y"),
                 "--classes", "CN,FTD"])
    assert code == 2 and "prototypes exist for AD, CN, MCI" in capsys.readouterr().err


def test_views_text_and_hybrid_give_mri_pet_and_clinical_retrieval(splits, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "--manifest", str(splits.train), "--val-manifest", str(splits.val), "--out", str(run),
                 "--loss", "simclr+clip", "--clip-weight", "0.5", "--views", "T1w,FDG", "--clinical", "MMSE",
                 "--text", "report", *TINY]) == 0
    printed = capsys.readouterr().out
    retrieval = json.loads((run / "retrieval.json").read_text())
    assert set(retrieval) == {"image_to_clinical", "clinical_to_image", "T1w_to_FDG", "FDG_to_T1w"}
    assert all(set(e) == ENTRY_KEYS for e in retrieval.values()) and "held-out T1w -> FDG: recall@5" in printed
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["probe_n"].iloc[0] == retrieval["T1w_to_FDG"]["n"]  # online probes run on the T1w channel
    vocabulary = torch.load(run / "checkpoint.pt", weights_only=True)["model"][
        "extras.objective.alignment._extra_state"]["featurizer"]["vocabulary"]
    assert {"memory", "complaints", "hippocampal"} <= set(vocabulary)


def test_hybrid_loss_is_the_pair_loss_plus_weight_times_clip(splits):
    config = PretrainConfig(loss="yaware+clip", meta=("age",), clinical=("MMSE", "sex"), clip_weight=0.3,
                            proj_dims=(8,)).validate()
    frame = splits.frame[splits.frame["modality"] == "T1w"]
    objective = OBJECTIVES["yaware+clip"](config, SimpleNamespace(frame=frame))
    torch.manual_seed(0)
    net = torch.nn.Linear(10, 8)
    views = torch.randn(8, 10)
    rows = torch.tensor(list(frame.index[:4]))
    ages = torch.tensor(frame["age"].iloc[:4].to_numpy(), dtype=torch.float64)[:, None]
    step = Step(batch={"index": rows}, views=views, y=ages, net=lambda x: (x, net(x)), target=None, queue=None,
                amp="none", device=torch.device("cpu"))
    out = objective(step)
    z = net(views)
    alignment = objective.alignment
    clinical = alignment.embed_clinical(alignment.featurizer.transform(frame.loc[rows.tolist()]))
    image = alignment.embed_image(z)
    groups = torch.tensor(pd.factorize(frame.loc[rows.tolist(), "subject_id"])[0])
    clip = CLIPLoss()
    expected_clip = 0.5 * (clip(image[:4], clinical, groups=groups) + clip(image[4:], clinical, groups=groups))
    expected = YAwareInfoNCE(5.0, 0.1)(z[:4], z[4:], ages) + 0.3 * expected_clip
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    out.loss.backward()
    assert alignment.clinical_encoder.fill.grad is not None and alignment.loss_fn.log_scale.grad is not None


@pytest.mark.parametrize("extra, code, message", [
    (["--loss", "clip"], 2, "--loss clip needs --clinical"),
    (["--loss", "simclr", "--clinical", "MMSE"], 2, "--loss simclr would ignore them"),
    (["--loss", "yaware+clip", "--clinical", "MMSE"], 2, "--loss yaware+clip needs --meta"),
    (["--loss", "clip", "--clinical", "MMSE", "--queue", "8"], 2, "takes no --queue"),
    (["--loss", "clip", "--clinical", "MMSE,NOPE"], 1, "no column 'NOPE' for --clinical"),
])
def test_refusals_are_one_line_and_leave_no_run_folder(splits, tmp_path, capsys, extra, code, message):
    run = tmp_path / "run"
    assert main(["pretrain", "--manifest", str(splits.train), "--out", str(run), *extra, *TINY]) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not run.exists()
