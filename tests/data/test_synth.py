"""The synthetic cohort: real NIfTI files, the manifest contract, the planted effects, the CLI.

Geometry is checked with nibabel's own resampler (an independent implementation), effects by
simple image measurements that know nothing about how the images were made.
"""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.processing import resample_from_to
from scipy import ndimage

from neuro_ssl.data import _synth_anatomy as anatomy
from neuro_ssl.data import synth
from neuro_ssl.data.manifest import read_manifest
from neuro_ssl.errors import ConfigError


@pytest.fixture(scope="module")
def cohort(tiny_cohort) -> pd.DataFrame:
    """The shared 12-subject, 4 mm, T1w + FDG cohort, read as a canonical manifest."""
    return read_manifest(tiny_cohort)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_whatever_the_threads(tmp_path):
    a = synth.make_cohort(tmp_path / "a", n_subjects=3, seed=3, pet=True, voxel_mm=8.0, visits=(1, 2), jobs=1)
    b = synth.make_cohort(tmp_path / "b", n_subjects=3, seed=3, pet=True, voxel_mm=8.0, visits=(1, 2), jobs=3)
    c = synth.make_cohort(tmp_path / "c", n_subjects=3, seed=4, pet=True, voxel_mm=8.0, visits=(1, 2), jobs=2)
    files_a, files_b, files_c = _digest(a.parent), _digest(b.parent), _digest(c.parent)
    assert files_a == files_b
    images_a = {files_a[n] for n in files_a if n.startswith("images/")}
    images_c = {files_c[n] for n in files_c if n.startswith("images/")}
    assert images_a and images_c and not images_a & images_c  # another seed, other images
    assert not [n for n in files_a if ".tmp-" in n]  # atomic writes leave no temporary files


def test_manifest_reads_as_adni_with_age_at_visit(cohort, tiny_cohort):
    raw = pd.read_csv(tiny_cohort, dtype=str)
    assert {"PTID", "VISCODE", "AGE", "Years_bl", "PTGENDER", "DX", "DX_bl", "SITE", "modality",
            "image_path", "MMSE", "true_atrophy", "truth_region"} <= set(raw.columns)
    assert all(re.fullmatch(r"\d{3}_S_\d{4}", s) for s in cohort["subject_id"])
    assert cohort["subject_id"].map(type).eq(str).all() and cohort["subject_id"].str.startswith("0").any()
    expected_age = raw["AGE"].astype(float).to_numpy() + raw["Years_bl"].astype(float).to_numpy()
    np.testing.assert_allclose(cohort["age"].to_numpy(), expected_age)
    assert cohort["age"].between(50, 100).all()
    assert set(cohort["sex"]) <= {"M", "F"} and set(cohort["diagnosis"]) <= {"CN", "MCI", "AD"}
    assert set(cohort["modality"]) == {"T1w", "FDG"}
    assert all(Path(p).is_file() for p in cohort["image"])
    # one FDG per T1w session; visits bl, m12, m24 with Years_bl about 0, 1, 2
    sessions = cohort.groupby(["subject_id", "session_id"])["modality"].apply(sorted)
    assert all(m == ["FDG", "T1w"] for m in sessions)
    t1 = cohort[cohort["modality"] == "T1w"]
    for _, visits in t1.groupby("subject_id"):
        n = len(visits)
        assert 1 <= n <= 3
        assert list(visits["session_id"]) == ["bl", "m12", "m24"][:n]
        np.testing.assert_allclose(visits["Years_bl"], np.arange(n), atol=0.2)
        assert visits["age_bl"].nunique() == 1 and visits["sex"].nunique() == 1
        assert visits["true_atrophy"].is_monotonic_increasing  # disease progresses, never heals
    by_dx = t1.groupby("diagnosis")[["MMSE", "true_atrophy"]].mean()
    assert by_dx.loc["AD", "MMSE"] < by_dx.loc["MCI", "MMSE"] < by_dx.loc["CN", "MMSE"]
    assert by_dx.loc["CN", "true_atrophy"] == 0 < by_dx.loc["MCI", "true_atrophy"] < by_dx.loc["AD", "true_atrophy"]


def test_classes_are_balanced_even_for_tiny_cohorts(cohort):
    for n in range(1, 200):
        counts = synth.diagnosis_counts(n)
        assert sum(counts.values()) == n and min(counts.values()) >= 0
        if n >= 2:
            assert counts["CN"] >= 1 and counts["AD"] >= 1
    baseline = cohort[(cohort["session_id"] == "bl") & (cohort["modality"] == "T1w")]
    groups = baseline["diagnosis_bl"].replace({"EMCI": "MCI", "LMCI": "MCI"}).value_counts()
    assert groups["CN"] >= 3 and groups["AD"] >= 3
    # age and disease are related but separable: AD older on average, ages overlap
    # (the planned gap is 2.5 years; at 2000 subjects seeds 0-4 give 3.40, 1.87, 2.76, 2.55, 2.62)
    plans = synth.plan_cohort(2000, seed=0)
    ages = {g: np.array([p.age_bl for p in plans if p.group == g]) for g in ("CN", "AD")}
    assert 1.0 < ages["AD"].mean() - ages["CN"].mean() < 5.0
    assert ages["AD"].min() < np.median(ages["CN"]) < ages["AD"].max()


def test_files_are_nifti_with_the_sites_orientations(cohort):
    t1 = cohort[cohort["modality"] == "T1w"]
    seen = {}
    for _, row in t1.iterrows():
        img = nib.load(row["image"])
        assert img.shape == (44, 52, 44) and img.get_data_dtype() == np.int16
        np.testing.assert_allclose(img.header.get_zooms(), (4.0, 4.0, 4.0), atol=1e-5)
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
        np.testing.assert_allclose(img.get_qform(), img.affine, atol=1e-4)
        seen[row["site"]] = img.affine
    assert len(seen) == len(synth.SITES)
    for site in synth.SITES:
        affine = seen[site.code]
        assert "".join(nib.aff2axcodes(affine)) == site.axes
        oblique_deg = np.rad2deg(nib.affines.obliquity(affine)).max()
        assert (oblique_deg > 5.0) == any(site.oblique_deg), (site.code, oblique_deg)
    assert {"RAS", "LAS", "LPS"} <= {s.axes for s in synth.SITES}


def test_realistic_voxel_sizes_per_site(tmp_path):
    for site in synth.SITES:
        shape, affine = synth.scanner.site_grid(site, site.voxel_mm)
        np.testing.assert_allclose(nib.affines.voxel_sizes(affine), site.voxel_mm)
        assert np.all(np.array(shape) * site.voxel_mm >= np.array(synth.scanner.FOV_MM) - 1e-6)
    manifest = synth.make_cohort(tmp_path / "one", n_subjects=1, seed=0, visits=(1, 1))
    img = nib.load(manifest.parent / pd.read_csv(manifest)["image_path"][0])
    site = next(s for s in synth.SITES if s.code == f"{pd.read_csv(manifest, dtype=str)['SITE'][0]}")
    np.testing.assert_allclose(img.header.get_zooms(), site.voxel_mm, atol=1e-5)


@pytest.mark.parametrize("voxel_mm", [8.0, 3.0], ids=["direct", "fine-grid-shortcut"])
@pytest.mark.parametrize("site", synth.SITES, ids=lambda s: s.orientation)
def test_resampling_onto_a_site_grid_matches_nibabel(site, voxel_mm):
    """Our native grids, sampled through a head pose, agree with nibabel's resampler.

    Coarse grids are sampled directly: voxel for voxel on any volume. Grids much finer than the
    source take a shortcut (every other voxel, then linear along the native axes): exact on a
    linear ramp, within a small fraction of the range on a smooth random volume.
    """
    rng = np.random.default_rng(0)
    ramp = np.einsum("a,a...->...", [0.3, 0.2, -0.1], np.indices((30, 36, 30), dtype=np.float32)) + 10.0
    smooth = ndimage.gaussian_filter(rng.random((30, 36, 30)), 2) * 10
    source_affine = np.diag([6.0, 6.0, 6.0, 1.0])
    source_affine[:3, 3] = (-87.0, -123.0, -81.0)
    pose = synth.scanner.head_pose(rng, head_scale=1.05)
    shape, affine = synth.scanner.site_grid(site, (voxel_mm,) * 3)
    for name, source in (("ramp", ramp), ("smooth", smooth)):
        source = source.astype(np.float32)  # asymmetric in every axis: a flipped axis cannot pass
        ours = synth.scanner.resample_to_grid(source, source_affine, pose, shape, affine, blur=False)
        # the same subject seen by nibabel: the source placed in the scanner by the head pose
        expected = resample_from_to(nib.Nifti1Image(source, pose @ source_affine), (shape, affine), order=1).get_fdata()
        inside = ndimage.binary_erosion(expected > 0, iterations=2)  # edges differ only by zero padding
        assert inside.sum() > 1000
        if voxel_mm == 8.0 or name == "ramp":
            np.testing.assert_allclose(ours[inside], expected[inside], rtol=1e-4, atol=1e-4)
        else:
            error = np.abs(ours[inside] - expected[inside]) / np.ptp(expected[inside])
            assert error.mean() < 0.01 and np.percentile(error, 99) < 0.03, (error.mean(), np.percentile(error, 99))


def test_linear_upsampling_matches_map_coordinates():
    coarse = np.random.default_rng(1).random((5, 6, 7)).astype(np.float32)
    fine = synth.scanner._upsample2(coarse, (9, 11, 13))
    half_steps = np.meshgrid(*(np.arange(n) / 2 for n in (9, 11, 13)), indexing="ij")
    expected = ndimage.map_coordinates(coarse.astype(np.float64), half_steps, order=1)
    np.testing.assert_allclose(fine, expected, atol=1e-6)


def test_scans_land_on_the_template_in_world_space(cohort):
    """nibabel's resampler puts each T1w scan on the MNI template; a flipped axis fits worse."""
    from nilearn.datasets import load_mni152_template

    template = load_mni152_template(resolution=2)
    brain = nib.load(Path(cohort["image"].iloc[0]).parents[1] / "truth" / "brain_mask.nii.gz").get_fdata() > 0
    reference = ndimage.gaussian_filter(template.get_fdata(), 1.0)[brain]
    for _, row in cohort[cohort["modality"] == "T1w"].groupby("site").head(1).iterrows():
        on_mni = ndimage.gaussian_filter(resample_from_to(nib.load(row["image"]), template, order=1).get_fdata(), 1.0)
        fit = np.corrcoef(on_mni[brain], reference)[0, 1]
        flipped = [np.corrcoef(np.flip(on_mni, axis)[brain], reference)[0, 1] for axis in (1, 2)]
        assert fit > 0.45 and fit > max(flipped) + 0.08, (row["site"], fit, flipped)


def test_truth_masks_in_mni_and_in_each_scan(cohort):
    root = Path(cohort["image"].iloc[0]).parents[1]
    from nilearn.datasets import load_mni152_template

    mni = load_mni152_template(resolution=2)
    for name in ("medial_temporal", "diagnosis_region", "pet_region", "ventricles", "brain_mask"):
        img = nib.load(root / "truth" / f"{name}.nii.gz")
        assert img.shape == mni.shape and np.allclose(img.affine, mni.affine)
        assert name in (root / "truth" / "README.txt").read_text()
        assert img.get_fdata().sum() > 0
    centroids = {}
    for name in ("diagnosis_region", "pet_region"):
        img = nib.load(root / "truth" / f"{name}.nii.gz")
        mask = img.get_fdata() > 0
        centroids[name] = nib.affines.apply_affine(img.affine, np.argwhere(mask).mean(axis=0))
        assert mask.sum() * 8e-3 > 10  # ml
    for _, row in cohort.iterrows():
        image, region = nib.load(row["image"]), nib.load(root / row["truth_region"])
        assert region.shape == image.shape and np.allclose(region.affine, image.affine)
        mask = np.asarray(region.dataobj) > 0
        assert region.get_data_dtype() == np.uint8 and mask.any()
        kind = "diagnosis_region" if row["modality"] == "T1w" else "pet_region"
        assert ("medial_temporal" if row["modality"] == "T1w" else "pet_region") in row["truth_region"]
        centre_mm = nib.affines.apply_affine(region.affine, np.argwhere(mask).mean(axis=0))
        assert np.linalg.norm(centre_mm - centroids[kind]) < 15.0, (row["image"], centre_mm)


def _region_ratio(row, root: Path) -> float:
    data = nib.load(row["image"]).get_fdata()
    mask = np.asarray(nib.load(root / row["truth_region"]).dataobj) > 0
    foreground = data > 0.3 * np.percentile(data, 99)
    return data[mask].mean() / np.percentile(data[foreground], 90)


def test_disease_darkens_the_planted_region(cohort):
    root = Path(cohort["image"].iloc[0]).parents[1]
    for modality in ("T1w", "FDG"):
        scans = cohort[cohort["modality"] == modality]
        ratio = scans.apply(_region_ratio, axis=1, root=root)
        ad, cn = ratio[scans["diagnosis"] == "AD"], ratio[scans["diagnosis"] == "CN"]
        assert len(ad) >= 3 and len(cn) >= 3
        pooled_sd = np.sqrt((ad.var() + cn.var()) / 2)
        assert cn.mean() - ad.mean() > 0.1 and (cn.mean() - ad.mean()) / pooled_sd > 2.0, (modality, ad, cn)
        mci = ratio[scans["diagnosis"] == "MCI"]
        assert ad.mean() < mci.mean() < cn.mean()


def test_ventricles_grow_with_age(cohort):
    """Dark voxels (CSF) around the ventricles, against local tissue: a volume measure."""
    root = Path(cohort["image"].iloc[0]).parents[1]
    truth = nib.load(root / "truth" / "ventricles.nii.gz")
    ventricles = truth.get_fdata() > 0
    inner = ndimage.binary_dilation(ventricles, iterations=6)
    outer = ndimage.binary_dilation(ventricles, iterations=12)
    labels = nib.Nifti1Image(outer.astype(np.float32) + inner, truth.affine)
    t1 = cohort[cohort["modality"] == "T1w"]
    dark_ml = []
    for _, row in t1.iterrows():
        img = nib.load(row["image"])
        data = img.get_fdata()
        on_scan = resample_from_to(labels, img, order=0).get_fdata()  # 2 near the ventricles, 1 the shell around
        dark = data[on_scan == 2] < 0.6 * np.median(data[on_scan == 1])
        dark_ml.append(dark.sum() * np.prod(img.header.get_zooms()) / 1000)
    assert np.corrcoef(t1["age"], dark_ml)[0, 1] > 0.5
    controls = (t1["diagnosis"] == "CN").to_numpy()  # ageing alone, without the disease's share
    assert np.corrcoef(t1["age"][controls], np.array(dark_ml)[controls])[0, 1] > 0.5
    assert np.corrcoef(t1["true_ventricle_ml"], dark_ml)[0, 1] > 0.5
    assert np.corrcoef(t1["age"], t1["true_ventricle_ml"])[0, 1] > 0.5


def test_rerun_replaces_the_cohort_and_refuses_foreign_folders(tmp_path):
    out = tmp_path / "cohort"
    synth.make_cohort(out, n_subjects=3, seed=0, voxel_mm=8.0, visits=(2, 2))
    synth.make_cohort(out, n_subjects=2, seed=0, voxel_mm=8.0, visits=(1, 1))
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 2
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(Path(p).name for p in manifest["image_path"])
    assert len(list((out / "truth" / "regions").iterdir())) == 2
    assert not (out / "truth" / "pet_region.nii.gz").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        synth.make_cohort(foreign, n_subjects=2)
    for bad in ({"n_subjects": 0}, {"voxel_mm": 30.0}, {"visits": (3, 1)}, {"jobs": 0}):
        with pytest.raises(ConfigError):
            synth.make_cohort(tmp_path / "bad", **bad)


def test_template_comes_from_nilearn_package_without_network(monkeypatch):
    """The template loaders read nilearn's packaged files; any connection attempt fails the test."""
    import inspect

    from nilearn import datasets

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for load in (datasets.load_mni152_template, datasets.load_mni152_gm_template,
                 datasets.load_mni152_wm_template, datasets.load_mni152_brain_mask):
        assert load(resolution=1).shape == (197, 233, 189)
    source = inspect.getsource(anatomy)
    assert "fetch_" not in source and "urllib" not in source and "requests" not in source
    template = anatomy.mni_template()
    assert template.shape == (99, 117, 95)
    assert 10 < template.ventricles.sum() * 8e-3 < 60  # ml of ventricles in the template


def test_cli_writes_a_cohort_and_reports_errors_in_one_line(tmp_path, capsys):
    from neuro_ssl.cli.main import main

    out = tmp_path / "cli"
    assert main(["synth", str(out), "--subjects", "4", "--voxel-mm", "6"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "manifest.csv") in printed and "4 subjects" in printed
    assert len(read_manifest(out / "manifest.csv")) >= 4
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    assert main(["synth", str(tmp_path / "other"), "--subjects", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neuro-ssl synth: error:")
    assert main(["synth", str(out), "--subjects", "0"]) == 2


def test_sites_are_balanced_against_diagnosis():
    """Each diagnosis is dealt round the sites: no site holds a group's subjects out of proportion."""
    plans = synth.plan_cohort(100, seed=0)
    table = pd.crosstab([p.group for p in plans], [p.site.code for p in plans])
    assert (table.max(axis=1) - table.min(axis=1)).max() <= 1
    for seed in range(5):  # a plan with the option is the same people
        plain, confounded = synth.plan_cohort(40, seed=seed), synth.plan_cohort(40, seed=seed, confound="scanner")
        assert [(p.ptid, p.group, p.age_bl) for p in plain] == [(p.ptid, p.group, p.age_bl) for p in confounded]
        assert {p.scanner for p in plain} == {""} and {p.scanner for p in confounded} == {"A", "B"}


def test_the_disease_acts_only_where_its_truth_masks_say():
    """Severity changes tissue only inside the planted regions: the medial temporal region alone
    by default; with global effects also cortex and ventricles, each inside its own truth mask."""
    tpl = anatomy.working_template(4.0)
    for global_effects in (False, True):
        states = [anatomy.VisitState(age_years=74.0, severity=s, brain_age_gap_years=0.0, ventricle_offset_mm=0.0,
                                     global_ad_effects=global_effects) for s in (0.0, 1.0)]
        cn, ad = (anatomy.tissue_at_visit(tpl, s) for s in states)
        change = np.abs(ad["gm"] - cn["gm"]) + np.abs(ad["wm"] - cn["wm"])
        medial_temporal = tpl.diagnosis_profile > 0
        if not global_effects:
            assert change.sum() > 0 and not (change[~medial_temporal] > 1e-6).any()
        else:  # nearly all of the change (tissue lost) lies in the truth masks, grown by one voxel
            truth = medial_temporal | (tpl.gm >= anatomy.CORTEX_GM_FRACTION) | (ad["ventricle"] >= 0.5)
            inside = change[ndimage.binary_dilation(truth, iterations=1)].sum() / change.sum()
            assert change[~medial_temporal].sum() > change[medial_temporal].sum()  # global effects are large
            assert inside > 0.9, inside


def test_global_effects_write_a_truth_mask_per_effect_and_their_union(tmp_path):
    manifest = synth.make_cohort(tmp_path / "g", n_subjects=2, seed=1, voxel_mm=8.0, visits=(1, 1),
                                 global_ad_effects=True)
    table = pd.read_csv(manifest, dtype=str)
    root = manifest.parent
    for _, row in table.iterrows():
        masks = {c: np.asarray(nib.load(root / row[c]).dataobj) > 0
                 for c in ("truth_region", "truth_medial_temporal", "truth_cortex", "truth_ventricles")}
        union = masks["truth_medial_temporal"] | masks["truth_cortex"] | masks["truth_ventricles"]
        np.testing.assert_array_equal(masks["truth_region"], union)
        assert masks["truth_cortex"].sum() > 5 * masks["truth_medial_temporal"].sum()
    default = pd.read_csv(synth.make_cohort(tmp_path / "d", n_subjects=2, seed=1, voxel_mm=8.0, visits=(1, 1)))
    assert "truth_cortex" not in default.columns
    assert (default["truth_region"] == default["truth_medial_temporal"]).all()


def test_scanner_confound_is_planted_in_the_images(tmp_path):
    """Same seed, same people: scanner A's scans are byte for byte the unconfounded cohort's, scanner
    B's are the same heads with less white/grey contrast (lower 90th / higher 25th percentile)."""
    args = dict(n_subjects=6, seed=2, voxel_mm=8.0, visits=(1, 1))
    plain = read_manifest(synth.make_cohort(tmp_path / "plain", **args)).set_index("subject_id")
    confounded = read_manifest(synth.make_cohort(tmp_path / "conf", confound="scanner", **args)).set_index("subject_id")
    assert set(confounded["scanner"]) == {"A", "B"}
    for subject, row in confounded.iterrows():
        ours, theirs = nib.load(row["image"]).get_fdata(), nib.load(plain.loc[subject, "image"]).get_fdata()
        if row["scanner"] == "A":
            np.testing.assert_array_equal(ours, theirs)
            continue
        brain = theirs > 0.3 * np.percentile(theirs, 99)
        ratio = [np.percentile(v[brain], 25) / np.percentile(v[brain], 90) for v in (ours, theirs)]
        assert ratio[0] > ratio[1] + 0.03, (subject, ratio)


def test_the_cohort_is_an_adni_download(tiny_cohort, tmp_path):
    """ADNIMERGE.csv and idaSearch.csv import with the ADNI importer as a real export does."""
    from neuro_ssl.data.importers.adni import import_adni

    root = tiny_cohort.parent
    plain = read_manifest(tiny_cohort)
    by_merge = import_adni(root / "images", root / "ADNIMERGE.csv")
    t1 = plain[plain["modality"] == "T1w"]
    assert len(by_merge.manifest) == len(t1) and by_merge.n_unmatched_rows == 0
    assert by_merge.n_unmatched_images == int((plain["modality"] == "FDG").sum())  # PET is not in ADNIMERGE
    assert set(by_merge.manifest["modality"]) == {"T1w"}
    merged = by_merge.manifest.set_index("image").sort_index()
    t1 = t1.set_index("image").sort_index()
    np.testing.assert_allclose(merged["age"].to_numpy(), t1["age"].to_numpy(), atol=1e-9)
    assert list(merged["diagnosis"]) == list(t1["diagnosis"])
    for column in ("MMSE", "CDRSB", "ADAS13", "APOE4", "PTEDUCAT"):
        pd.testing.assert_series_equal(merged[column].astype(float), t1[column].astype(float), check_names=False)
    by_ida = import_adni(root / "images", root / "idaSearch.csv")
    assert by_ida.n_unmatched_images == 0 and by_ida.n_unmatched_rows == 0
    assert sorted(by_ida.manifest["modality"]) == sorted(plain["modality"])
    ida = pd.read_csv(root / "idaSearch.csv", dtype=str)
    assert ida["Image Data ID"].str.fullmatch(r"I\d+").all()
    assert ida["Acq Date"].str.fullmatch(r"\d{1,2}/\d{2}/\d{4}").all()
    assert all(re.search(r"_I\d+\.nii\.gz$", Path(p).name) for p in plain["image"])


def test_clinical_scores_follow_the_disease_and_go_missing_sometimes():
    from neuro_ssl.data import _synth_export as export

    rng = np.random.default_rng(0)
    draws = {sev: [export.clinical_scores(sev, 72.0, rng) for _ in range(400)] for sev in (0.0, 0.5, 1.0)}
    means = {sev: pd.DataFrame(rows).astype(float).mean() for sev, rows in draws.items()}
    for score, direction in (("MMSE", -1), ("CDRSB", 1), ("ADAS13", 1)):
        values = [direction * means[sev][score] for sev in (0.0, 0.5, 1.0)]
        assert values == sorted(values) and values[2] - values[0] > 3, (score, values)
    missing = pd.DataFrame(draws[1.0]).isna().mean()
    assert 0.0 < missing["MMSE"] < 0.15 and 0.0 < missing["ADAS13"] < 0.2
    carriers = {g: np.mean([(export.subject_draws(g, rng)["apoe4"] or 0) > 0 for _ in range(400)]) for g in ("CN", "AD")}
    assert carriers["AD"] > carriers["CN"] + 0.2
