"""The review page's content without a browser: self-contained, volumes in the scan's world space."""

from __future__ import annotations

import base64
import gzip
import re

import nibabel as nib
import numpy as np
import pytest

from neuro_ssl.data.io import load_volume
from neuro_ssl.report.html import niivue_version, viewer_volumes, write_review_page


def _world(affine, shape):
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)


def _oblique():
    affine = np.eye(4)
    t = np.deg2rad(15)
    affine[:3, :3] = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]) @ np.diag([-1.2, 1.0, 1.5])
    affine[:3, 3] = (40.0, -60.0, -30.0)
    return affine


def _decode(blob: bytes):
    return nib.Nifti1Image.from_bytes(gzip.decompress(blob))


def test_viewer_volumes_keep_the_world_space_when_block_averaged():
    affine, shape = _oblique(), (24, 20, 16)
    world = _world(affine, shape)
    ramp = (world[..., 0] * 0.5 + world[..., 1] - 0.25 * world[..., 2]).astype(np.float32)
    saliency = ramp - ramp.min()
    scan_gz, map_gz, factor = viewer_volumes(ramp, saliency, affine, max_voxels=24 * 20 * 16 // 8)
    assert factor == 2
    scan, smap = _decode(scan_gz), _decode(map_gz)
    assert scan.shape == smap.shape == (12, 10, 8) and scan.get_data_dtype() == np.uint8
    # block means of a linear function equal the function at the block centre's world position
    block_world = _world(scan.affine, scan.shape)
    expected = block_world[..., 0] * 0.5 + block_world[..., 1] - 0.25 * block_world[..., 2]
    expected = expected - ramp.min()
    got = np.asarray(smap.dataobj, dtype=np.float64) / 255.0  # the map is scaled to its (block) peak
    np.testing.assert_allclose(got, expected / expected.max(), atol=0.5 / 255 + 1e-6)


def test_small_volumes_are_not_resampled():
    affine, shape = _oblique(), (10, 12, 8)
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    saliency = np.zeros(shape, np.float32)
    saliency[3, 4, 5] = 7.0
    scan_gz, map_gz, factor = viewer_volumes(image, saliency, affine)
    smap = _decode(map_gz)
    assert factor == 1 and np.allclose(smap.affine, affine) and smap.shape == shape
    data = np.asarray(smap.dataobj)
    assert data[3, 4, 5] == 255 and data.sum() == 255


def _row(tmp_path, name, affine, shape=(12, 14, 10)):
    image = np.random.default_rng(1).random(shape).astype(np.float32) * 100
    saliency = np.zeros(shape, np.float32)
    saliency[5, 6, 4] = 1.0
    nib.save(nib.Nifti1Image(image, affine), str(tmp_path / f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image(saliency, affine), str(tmp_path / f"{name}_sal.nii.gz"))
    peak = affine @ np.array([5, 6, 4, 1.0])
    return {"subject_id": name, "session_id": "bl", "image": str(tmp_path / f"{name}.nii.gz"),
            "saliency": str(tmp_path / f"{name}_sal.nii.gz"), "predicted": "AD", "confidence": 0.75,
            "coverage_pct": 1.5, "peak_x_mm": peak[0], "peak_y_mm": peak[1], "peak_z_mm": peak[2],
            "region_hippocampus": 0.25}


def test_page_is_self_contained_and_embeds_the_scans(tmp_path):
    rows = [_row(tmp_path, f"s{i}", _oblique()) for i in range(3)]
    page = write_review_page(tmp_path / "out", rows, load_volume, title="T <1>", notes=["note & more"], max_viewers=2)
    text = page.read_text()
    assert "<title>T &lt;1&gt;</title>" in text and "note &amp; more" in text
    assert f"NiiVue {niivue_version()}" in text and niivue_version().startswith("@niivue/niivue 0.69")
    # no external resource is loaded: every src is inline data (montages) or absent
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?:', text)
    assert "default-src 'none'" in text
    assert 'id="viewer-0"' in text and 'id="viewer-1"' in text and 'id="viewer-2"' not in text
    assert "first 2 of 3 scans" in text
    assert "hippocampus share" in text and "0.250" in text
    assert 'href="../s2_sal.nii.gz"' in text  # relative links: the folder can move as a whole
    blob = re.search(r'id="viewer-1-map">([^<]+)<', text).group(1)
    embedded = _decode(base64.b64decode(blob))
    assert np.allclose(embedded.affine, _oblique()) and np.asarray(embedded.dataobj)[5, 6, 4] == 255


def test_page_without_rows_or_viewers_still_renders(tmp_path):
    rows = [_row(tmp_path, "s0", np.eye(4))]
    text = write_review_page(tmp_path, rows, load_volume, max_viewers=0).read_text()
    assert 'class="viewer"' not in text and "no montage" in text and "first 0 of 1" in text


@pytest.mark.parametrize("radiological, left_label", [(False, "neurological"), (True, "radiological")])
def test_convention_is_stated(tmp_path, radiological, left_label):
    text = write_review_page(tmp_path, [_row(tmp_path, "s0", np.eye(4))], load_volume, radiological=radiological).read_text()
    assert f"{left_label} convention" in text
    assert f'"radiological": {"true" if radiological else "false"}' in text


CHECKS = {
    "n_scans": 2, "method": "gradcam", "layer": "encoder.net.layer3", "seed": 0,
    "randomization": [{"stage": "head", "spearman": 0.61, "ssim": 0.5, "constant_maps": 0},
                      {"stage": "stem", "spearman": 0.04, "ssim": 0.1, "constant_maps": 1}],
    "localization": {"truth_region": {"share": 0.06, "chance": 0.02, "gain": 3.0, "auprc": 0.08, "n_scans": 2}},
    "deletion": {"5": {"salient_drop": 0.12, "random_drop": 0.01}},
    "repeatability": {"compare_run": "r2", "per_scan": [{"subject_id": "s0", "session_id": "bl", "spearman": 0.7}],
                      "mean": 0.7},
    "readings": {"randomization": "Reading <one>.", "deletion": "Reading two."},
}


def test_true_label_wrong_predictions_warnings_and_checks(tmp_path):
    rows = [dict(_row(tmp_path, "s0", np.eye(4)), true_label="CN", correct="false"),
            dict(_row(tmp_path, "s1", np.eye(4)), true_label="AD", correct=True),
            dict(_row(tmp_path, "s2", np.eye(4)), true_label=float("nan"), correct=float("nan"))]
    text = write_review_page(tmp_path, rows, load_volume, warnings=["every map is constant <x>"], checks=CHECKS,
                             max_viewers=0).read_text()
    assert "<th>true label</th>" in text
    assert text.count('<tr class="wrong">') == 1 and text.count("✗ wrong prediction") == 1
    assert 'class="scan wrong" id="scan-0"' in text and 'class="scan" id="scan-1"' in text
    assert "· true CN" in text and "✓ correct" in text
    assert 'id="warnings"' in text and "every map is constant &lt;x&gt;" in text
    checks = text[text.index('id="checks"'):text.index("<h2>Scans</h2>")]
    assert "Reading &lt;one&gt;." in checks and "Reading two." in checks
    for part in ("check-randomization", "check-localization", "check-deletion", "check-repeatability"):
        assert f'id="{part}"' in checks
    assert "0.040" in checks and "3.00" in checks and "0.12<" in checks and "mean 0.700" in checks
    assert 'id="checks"' not in write_review_page(tmp_path, rows, load_volume, file_name="b.html").read_text()


def test_a_map_on_another_grid_is_shown_on_the_scans_grid(tmp_path):
    row = _row(tmp_path, "s0", _oblique())
    coarse = np.diag([2.0, 2.0, 2.0, 1.0])
    coarse[:3, 3] = (_oblique() @ [5, 6, 4, 1.0])[:3] - 2.0
    saliency = np.zeros((3, 3, 3), np.float32)
    saliency[1, 1, 1] = 1.0  # this voxel sits at the world position of the scan's voxel (5, 6, 4)
    nib.save(nib.Nifti1Image(saliency, coarse), str(tmp_path / "coarse.nii.gz"))
    row["saliency"] = str(tmp_path / "coarse.nii.gz")
    text = write_review_page(tmp_path, [row], load_volume).read_text()
    embedded = _decode(base64.b64decode(re.search(r'id="viewer-0-map">([^<]+)<', text).group(1)))
    data = np.asarray(embedded.dataobj)
    assert np.allclose(embedded.affine, _oblique()) and embedded.shape == (12, 14, 10)
    assert data[5, 6, 4] == 255 and (data == 255).sum() == 1
