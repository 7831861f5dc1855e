"""Montage orientation: the patient's left is drawn on the left (neurological) or right (radiological)."""

from __future__ import annotations

import numpy as np
import pytest

from neuro_ssl.report.montage import canonical, render_montage, write_montage


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
