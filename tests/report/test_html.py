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
