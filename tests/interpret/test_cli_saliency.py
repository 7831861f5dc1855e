"""``neuro-ssl saliency`` end to end on a tiny saved model and two tiny scans in different spaces."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from neuro_ssl.cli.main import main

EXPECTED_COLUMNS = [
    "subject_id", "session_id", "image", "saliency", "predicted", "confidence", "coverage_pct",
    "peak_x_mm", "peak_y_mm", "peak_z_mm", "region_everywhere", "region_far_away", "region_truth_region",
    "peak_i", "peak_j", "peak_k", "true_label", "correct", "constant_map", "layer_grid", "outside_brain_share",
]


def _save_tiny_model(run_dir, task="classification", seed=0, classes=("CN", "AD"), spacing_mm=2.0, side=32):
    """A random resnet10 whose first output weighs every (ReLU'd, >= 0) layer4 feature positively:
    Grad-CAM weights for it are all > 0, so its map cannot be all zero (a random head can be)."""
    from neuro_ssl.data.transforms import PreprocessConfig
    from neuro_ssl.models import build_encoder, save_model
    from neuro_ssl.models.heads import SupervisedModel

    torch.manual_seed(seed)
    model = SupervisedModel(build_encoder("resnet10", 1, "group", width=0.25), 2 if task == "classification" else 1)
    with torch.no_grad():
        model.head.weight.abs_()
        model.head.bias.zero_()
        if task == "classification":
            model.head.weight[1].neg_()  # CN (index 0) is predicted, AD evidence is negative
    config = PreprocessConfig(spacing_mm=(spacing_mm,) * 3, shape=(side,) * 3)
    label = "diagnosis" if task == "classification" else "age"
    meta = {"preprocess": config.to_dict(), "task": task, "label": label, "mode": "scratch", "subjects": []}
    if task == "classification":
        meta["classes"] = list(classes)
    return save_model(run_dir / "model.pt", model, meta)


def _region_folder(tmp_path, write_scan):
    """Masks on their own 8 mm RAS grid: one covering every scan, one 1 m away from all of them."""
    folder = tmp_path / "regions"
    affine = np.diag([8.0, 8.0, 8.0, 1.0])
    affine[:3, 3] = -200.0
    write_scan(folder / "everywhere.nii.gz", np.ones((51, 51, 51)), affine, np.uint8)
    far = affine.copy()
    far[:3, 3] = 1000.0
    write_scan(folder / "far_away.nii.gz", np.ones((4, 4, 4)), far, np.uint8)
    return folder


def _manifest(tmp_path, scans, extra_rows=()):
    rows = [{"subject_id": s["subject_id"], "session_id": "bl", "image": str(s["path"].relative_to(tmp_path)),
             "modality": "T1w", "diagnosis": s.get("diagnosis", "AD"), "age": 71.5,
             "truth_region": str(s["region"].relative_to(tmp_path))}
            for s in scans]
    rows += list(extra_rows)
    path = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_cli_writes_maps_in_each_scans_own_space(tmp_path, two_scans, volumes, capsys):
    _save_tiny_model(tmp_path / "run")
    manifest = _manifest(tmp_path, two_scans)
    out = tmp_path / "sal"
    code = main(["saliency", "--run", str(tmp_path / "run"), "--manifest", str(manifest), "--out", str(out),
                 "--regions", str(_region_folder(tmp_path, volumes.write_scan)), "--regions-column", "truth_region",
                 "--cache-dir", "none", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    summary = pd.read_csv(out / "summary.csv", dtype={"subject_id": str})
    assert list(summary.columns) == EXPECTED_COLUMNS
    assert list(summary["subject_id"]) == ["01", "02"]
    for scan, row in zip(two_scans, summary.to_dict("records")):
        written = nib.load(row["saliency"])
        assert row["saliency"].endswith(f"maps/{scan['subject_id']}_bl_T1w_saliency.nii.gz")
        assert written.shape == scan["shape"] and np.allclose(written.affine, scan["affine"])
        assert written.get_data_dtype() == np.float32
        data = np.asarray(written.dataobj)
        assert data.min() >= 0 and data.max() > 0
        assert row["predicted"] in ("CN", "AD") and 0.5 <= row["confidence"] <= 1.0
        assert 0 < row["coverage_pct"] <= 100
        peak = np.unravel_index(int(np.argmax(data)), data.shape)
        assert (row["peak_i"], row["peak_j"], row["peak_k"]) == tuple(int(p) for p in peak)
        assert row["region_everywhere"] == pytest.approx(1.0)
        assert row["region_far_away"] == 0.0
        assert 0.0 <= row["region_truth_region"] <= 1.0
        assert (out / "montages" / f"{scan['subject_id']}_bl_T1w_saliency.png").stat().st_size > 10_000
    regions = pd.read_csv(out / "regions.csv")
    assert list(regions["region"]) == ["everywhere", "far_away", "truth_region"]
    assert {"mean_share", "chance_share", "n_scans"} <= set(regions.columns)
    assert regions.set_index("region").loc["everywhere", "chance_share"] == pytest.approx(1.0)
    assert not (out / "group_mean.nii.gz").exists()  # two native spaces: no voxelwise mean
    # the tiny model predicts CN; both scans are AD; layer4 of a 32^3 input is one voxel
    assert list(summary["true_label"]) == ["AD", "AD"] and list(summary["correct"]) == [False, False]
    assert list(summary["layer_grid"]) == ["1x1x1"] * 2 and summary["constant_map"].all()
    page = (out / "index.html").read_text()
    assert 'id="viewer-0"' in page and 'id="viewer-1"' in page and "loadFromBase64" in page
    assert page.count('<tr class="wrong">') == 2 and "✗ wrong prediction" in page and 'id="warnings"' in page
    printed = capsys.readouterr().out
    assert "2 scan(s)" in printed and "index.html" in printed
    assert "warning: layer encoder.net.layer4 has a 1x1x1 grid" in printed and "encoder.net.layer1 (8x8x8)" in printed
    assert "warning: every map is constant (2 of 2 scans)" in printed
    assert not (out / "checks.json").exists()


def test_group_mean_when_scans_share_a_grid_and_skip_bad(tmp_path, volumes, capsys):
    _save_tiny_model(tmp_path / "run")
    affine = volumes.las_affine(4.0)
    scans = []
    for i in range(2):
        path = volumes.write_scan(tmp_path / "images" / f"s{i}.nii.gz", volumes.head_volume((16, 18, 15), seed=i),
                                  affine)
        scans.append({"subject_id": f"s{i}", "path": path, "region": path})
    missing = {"subject_id": "gone", "session_id": "bl", "image": "images/gone.nii.gz", "modality": "T1w"}
    manifest = _manifest(tmp_path, scans, [missing])
    out = tmp_path / "sal"
    code = main(["saliency", "--run", str(tmp_path / "run" / "model.pt"), "--manifest", str(manifest),
                 "--out", str(out), "--cache-dir", "none", "--skip-bad", "--target", "CN", "--max-viewers", "1"])
    assert code == 0, capsys.readouterr().err
    mean = nib.load(out / "group_mean.nii.gz")
    assert mean.shape == (16, 18, 15) and np.allclose(mean.affine, affine)
    maps = [np.asarray(nib.load(p).dataobj, np.float64) for p in pd.read_csv(out / "summary.csv")["saliency"]]
    expected = np.mean([m / m.max() for m in maps], axis=0)
    np.testing.assert_allclose(np.asarray(mean.dataobj), expected, rtol=1e-5, atol=1e-7)
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped["subject_id"]) == ["gone"] and "not found" in skipped.loc[0, "reason"]
    page = (out / "index.html").read_text()
    assert 'id="viewer-0"' in page and 'id="viewer-1"' not in page and "first 1 of 2" in page


@pytest.mark.parametrize("argv_extra, code, message", [
    (["--target", "MCI"], 2, "--target MCI: not a class of this model (classes: CN, AD)"),
    (["--layer", "encoder.net.layer9"], 2, "--layer encoder.net.layer9: no such layer"),
    (["--regions", "nowhere"], 1, "--regions nowhere: not found"),
    (["--regions-column", "hippocampus"], 1, "--regions-column hippocampus: no such column"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, two_scans, capsys, argv_extra, code, message):
    _save_tiny_model(tmp_path / "run")
    manifest = _manifest(tmp_path, two_scans[:1])
    got = main(["saliency", "--run", str(tmp_path / "run"), "--manifest", str(manifest),
                "--out", str(tmp_path / "sal"), "--cache-dir", "none", *argv_extra])
    err = capsys.readouterr().err.strip()
    assert got == code and len(err.splitlines()) == 1 and message in err, err


def test_missing_model_and_missing_scan_name_the_file_and_row(tmp_path, two_scans, capsys):
    manifest = _manifest(tmp_path, two_scans[:1], [{"subject_id": "x", "image": "images/nope.nii.gz", "modality": "T1w"}])
    assert main(["saliency", "--run", str(tmp_path / "norun"), "--manifest", str(manifest),
                 "--out", str(tmp_path / "sal")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    _save_tiny_model(tmp_path / "run")
    assert main(["saliency", "--run", str(tmp_path / "run"), "--manifest", str(manifest),
                 "--out", str(tmp_path / "sal"), "--cache-dir", "none"]) == 1
    err = capsys.readouterr().err
    assert "manifest.csv row 3" in err and "nope.nii.gz" in err and len(err.strip().splitlines()) == 1


def test_regression_model_explains_its_output(tmp_path, two_scans, capsys):
    _save_tiny_model(tmp_path / "run", task="regression")
    manifest = _manifest(tmp_path, two_scans[:1])
    assert main(["saliency", "--run", str(tmp_path / "run"), "--manifest", str(manifest), "--out",
                 str(tmp_path / "sal"), "--cache-dir", "none", "--method", "integrated-gradients",
                 "--n-steps", "4"]) == 0, capsys.readouterr().err
    row = pd.read_csv(tmp_path / "sal" / "summary.csv").iloc[0]
    assert np.isfinite(float(row["predicted"])) and np.isnan(row["confidence"])
    assert row["true_label"] == 71.5 and np.isnan(row["correct"]) and np.isnan(row["layer_grid"])


def test_two_modality_model_maps_onto_the_first_modalitys_grid(tmp_path, two_scans, volumes):
    """T1w + FDG channels: the map lives on the T1w file's grid; a session missing FDG is an error."""
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.transforms import PreprocessConfig
    from neuro_ssl.interpret.cohort import SaliencyOptions, explain_cohort
    from neuro_ssl.models import build_encoder
    from neuro_ssl.models.heads import SupervisedModel
    from neuro_ssl.errors import ManifestError

    t1 = two_scans[0]
    pet = volumes.write_scan(tmp_path / "images" / "sub-01_FDG.nii.gz", volumes.head_volume((18, 20, 16), 5),
                             volumes.oblique_affine(voxel_mm=(3.5, 3.5, 3.5)))
    rows = [{"subject_id": "01", "session_id": "bl", "image": str(pet), "modality": "FDG"},
            {"subject_id": "01", "session_id": "bl", "image": str(t1["path"]), "modality": "T1w"},
            {"subject_id": "02", "session_id": "bl", "image": str(two_scans[1]["path"]), "modality": "T1w"}]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    manifest = read_manifest(tmp_path / "m.csv")
    torch.manual_seed(1)
    model = SupervisedModel(build_encoder("resnet10", 2, "group", width=0.25), 2).eval()
    config = PreprocessConfig(spacing_mm=(2.0, 2.0, 2.0), shape=(32, 32, 32), modalities=("T1w", "FDG"))
    meta = {"preprocess": config.to_dict(), "classes": ["CN", "AD"], "task": "classification"}
    with pytest.raises(ManifestError, match="row 4: no FDG image"):
        explain_cohort(model, meta, manifest, tmp_path / "out", SaliencyOptions(cache_dir=None))
    result = explain_cohort(model, meta, manifest, tmp_path / "out", SaliencyOptions(cache_dir=None, skip_bad=True))
    assert list(result.summary["subject_id"]) == ["01"]
    assert [s.subject_id for s in result.skipped] == ["02"] and "no FDG image" in result.skipped[0].reason
    written = nib.load(result.summary.loc[0, "saliency"])
    assert result.summary.loc[0, "saliency"].endswith("01_bl_T1w_saliency.nii.gz")
    assert written.shape == t1["shape"] and np.allclose(written.affine, t1["affine"])


def test_region_column_paths_survive_a_manifest_moved_by_split(tmp_path, two_scans, capsys):
    """A manifest rewritten into splits/ (by ``write_manifest``) still finds each scan's region mask."""
    from neuro_ssl.data.manifest import read_manifest, write_manifest

    _save_tiny_model(tmp_path / "run")
    scan = two_scans[0]
    pd.DataFrame([{"subject_id": "01", "session_id": "bl", "image": str(scan["path"].relative_to(tmp_path)),
                   "modality": "T1w", "truth_region": str(scan["region"].relative_to(tmp_path))}]
                 ).to_csv(tmp_path / "manifest.csv", index=False)
    write_manifest(read_manifest(tmp_path / "manifest.csv"), tmp_path / "splits" / "test.csv")
    assert main(["saliency", "--run", str(tmp_path / "run"), "--manifest", str(tmp_path / "splits" / "test.csv"),
                 "--out", str(tmp_path / "sal"), "--cache-dir", "none", "--regions-column", "truth_region",
                 "--max-viewers", "0"]) == 0, capsys.readouterr().err
    share = pd.read_csv(tmp_path / "sal" / "summary.csv").loc[0, "region_truth_region"]
    assert 0.0 <= share <= 1.0


def test_checks_with_colliding_names_on_different_grids_and_a_second_seed(tmp_path, two_scans, capsys):
    """sub-ä1 and sub-ö1 (both 'sub--1' once made safe) on two grids: two maps, each on its scan's
    grid, montages drawn; --checks writes checks.json and the page shows it."""
    import json

    _save_tiny_model(tmp_path / "run", spacing_mm=4.0, side=16)  # 16^3 keeps the 8 maps per scan cheap
    _save_tiny_model(tmp_path / "run_seed1", seed=1, spacing_mm=4.0, side=16)
    two_scans[0]["subject_id"], two_scans[1]["subject_id"] = "sub-ä1", "sub-ö1"
    two_scans[1]["diagnosis"] = "CN"
    out = tmp_path / "sal"
    code = main(["saliency", "--run", str(tmp_path / "run"), "--manifest", str(_manifest(tmp_path, two_scans)),
                 "--out", str(out), "--cache-dir", "none", "--layer", "encoder.net.layer1",
                 "--regions-column", "truth_region", "--checks", "--compare-run", str(tmp_path / "run_seed1")])
    assert code == 0, capsys.readouterr().err
    summary = pd.read_csv(out / "summary.csv")
    names = [p.rsplit("/", 1)[-1] for p in summary["saliency"]]
    assert names == ["sub-a1_bl_T1w_row2_saliency.nii.gz", "sub-o1_bl_T1w_row3_saliency.nii.gz"]
    for scan, row in zip(two_scans, summary.to_dict("records")):
        written = nib.load(row["saliency"])
        assert written.shape == scan["shape"] and np.allclose(written.affine, scan["affine"])
        assert (out / "montages" / row["saliency"].rsplit("/", 1)[-1].replace(".nii.gz", ".png")).is_file()
    assert list(summary["correct"]) == [False, True] and list(summary["layer_grid"]) == ["4x4x4"] * 2
    checks = json.loads((out / "checks.json").read_text())
    assert [e["stage"] for e in checks["randomization"]] == ["head", "layer4", "layer3", "layer2", "layer1", "stem"]
    assert all(set(e) >= {"stage", "spearman", "ssim"} for e in checks["randomization"])
    assert set(checks["localization"]["truth_region"]) >= {"share", "chance", "gain", "auprc"}
    region = checks["localization"]["truth_region"]
    assert region["gain"] == pytest.approx(region["share"] / region["chance"])
    assert list(checks["deletion"]) == ["1", "2", "5", "10", "20"]
    assert all(set(v) == {"salient_drop", "random_drop"} for v in checks["deletion"].values())
    per_scan = checks["repeatability"]["per_scan"]
    assert [r["subject_id"] for r in per_scan] == ["sub-ä1", "sub-ö1"]
    assert -1 <= checks["repeatability"]["mean"] <= 1 and checks["warnings"] == []
    assert set(checks["readings"]) == {"randomization", "localization", "deletion", "repeatability"}
    page = (out / "index.html").read_text()
    assert 'id="checks"' in page and 'id="check-randomization"' in page and 'id="check-repeatability"' in page
    assert checks["readings"]["deletion"].split(":")[0] in page
    printed = capsys.readouterr().out
    assert "sanity checks:" in printed and "randomization:" in printed


@pytest.mark.parametrize("layer", ["head", "avgpool", "encoder.net.avgpool"])
def test_a_layer_without_a_spatial_grid_is_refused_in_one_line(tmp_path, two_scans, capsys, layer):
    _save_tiny_model(tmp_path / "run")
    code = main(["saliency", "--run", str(tmp_path / "run"), "--manifest", str(_manifest(tmp_path, two_scans[:1])),
                 "--out", str(tmp_path / "sal"), "--cache-dir", "none", "--layer", layer])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "no spatial grid" in err and "encoder.net.layer3 (2x2x2)" in err and "encoder.net.layer1 (8x8x8)" in err
    assert not (tmp_path / "sal").exists()


@pytest.mark.parametrize("second, extra, message", [
    (None, [], "--compare-run is part of the sanity checks: add --checks"),
    (("CN", "MCI"), ["--checks"], "its classes (['CN', 'MCI']) differs"),
])
def test_compare_run_mistakes_are_one_line_errors(tmp_path, two_scans, capsys, second, extra, message):
    _save_tiny_model(tmp_path / "run")
    _save_tiny_model(tmp_path / "run2", seed=1, classes=second or ("CN", "AD"))
    code = main(["saliency", "--run", str(tmp_path / "run"), "--manifest", str(_manifest(tmp_path, two_scans[:1])),
                 "--out", str(tmp_path / "sal"), "--cache-dir", "none", "--compare-run", str(tmp_path / "run2"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "sal").exists()


def test_map_file_names_are_unique_readable_and_deterministic():
    from neuro_ssl.interpret.cohort import SaliencyOptions, select_scans

    rows = pd.DataFrame({"subject_id": ["sub-ä1", "sub-ö1", "002_S_0295", "Sub-01", "sub-01", "x/y", "x/y"],
                         "session_id": ["bl"] * 7, "image": [f"/d/{i}.nii.gz" for i in range(7)],
                         "modality": ["T1w"] * 7}, index=range(2, 9))
    names = [s.file_name for s in select_scans(rows, ("T1w",), SaliencyOptions())]
    assert names == ["sub-a1_bl_T1w_row2_saliency.nii.gz", "sub-o1_bl_T1w_row3_saliency.nii.gz",
                     "002_S_0295_bl_T1w_saliency.nii.gz",  # a safe id keeps its plain name
                     "Sub-01_bl_T1w_row5_saliency.nii.gz", "sub-01_bl_T1w_row6_saliency.nii.gz",  # one on a macOS disk
                     "x-y_bl_T1w_row7_saliency.nii.gz", "x-y_bl_T1w_row8_saliency.nii.gz"]
    assert [s.file_name for s in select_scans(rows, ("T1w",), SaliencyOptions(max_scans=2))] == names[:2]
