"""Montage orientation: the patient's left is drawn on the left (neurological) or right (radiological)."""

from __future__ import annotations

import numpy as np
import pytest

from neuro_ssl.report.montage import canonical, on_grid, render_montage, write_montage


def _las_scan(shape=(30, 36, 28), blob_mm=(-35.0, 10.0, 5.0)):
    """LAS 2 mm grid (voxel i grows toward the patient's LEFT) with a blob in the left hemisphere."""
    affine = np.diag([-2.0, 2.0, 2.5, 1.0])
    affine[:3, 3] = (29.0, -35.0, -35.0)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    image = (50 + 10 * np.sin(ijk[..., 1] / 3.0)).astype(np.float32)
    saliency = np.exp(-((xyz - np.array(blob_mm)) ** 2).sum(-1) / (2 * 5.0 ** 2)).astype(np.float32)
    return image, saliency, affine


def test_canonical_orders_voxels_left_to_right():
    image, saliency, affine = _las_scan()
    ras, sizes = canonical(saliency, affine)
    assert ras.shape == saliency.shape and tuple(sizes) == (2.0, 2.0, 2.5)
    np.testing.assert_array_equal(ras, saliency[::-1])


@pytest.mark.parametrize("radiological", [False, True])
def test_left_blob_is_on_the_expected_side(radiological):
    image, saliency, affine = _las_scan()
    fig = render_montage(image, saliency, affine, radiological=radiological)
    for ax in fig.axes[:2]:  # axial and coronal: columns run across the patient's left-right axis
        overlay = np.ma.filled(ax.images[1].get_array(), 0)
        column = np.argmax(overlay.max(axis=0))
        on_left = column < overlay.shape[1] / 2
        assert on_left != radiological, (ax.get_title(), column)
    captions = " ".join(t.get_text() for t in fig.texts)
    assert ("radiological convention" if radiological else "neurological convention") in captions


def test_write_montage_png_and_grid_check(tmp_path):
    image, saliency, affine = _las_scan()
    png = write_montage(image, saliency, affine, tmp_path / "m" / "x.png", title="x")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="not on one grid"):
        write_montage(image, saliency[:-1], affine, tmp_path / "y.png")


def test_a_map_on_another_grid_is_resampled_onto_the_scans(tmp_path):
    """The map given on its own (RAS, coarser, shifted) grid with its affine lands on the same
    world position as the map drawn on the scan's LAS grid."""
    blob = np.array([-20.0, 10.0, 5.0])
    image, saliency, affine = _las_scan(blob_mm=tuple(blob))
    ras = np.diag([3.0, 3.0, 3.0, 1.0])
    ras[:3, 3] = (-40.0, -36.0, -36.0)
    shape = (28, 26, 26)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    xyz = ijk @ ras[:3, :3].T + ras[:3, 3]
    coarse = np.exp(-((xyz - blob) ** 2).sum(-1) / (2 * 5.0 ** 2)).astype(np.float32)
    moved = on_grid(coarse, ras, image.shape, affine)
    assert moved.shape == image.shape
    peak_moved = affine @ np.array([*np.unravel_index(np.argmax(moved), moved.shape), 1.0])
    assert np.linalg.norm(peak_moved[:3] - blob) <= 2.0
    inside = saliency > 0.2
    assert np.corrcoef(moved[inside], saliency[inside])[0, 1] > 0.98
    png = write_montage(image, coarse, affine, tmp_path / "other_grid.png", saliency_affine=ras)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
