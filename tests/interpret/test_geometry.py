"""MUST SHOW: the saliency of a model that looks at one known spot lands on that spot in the file.

The input is a LAS-oriented 1.5 mm NIfTI whose field of view is off-centre and partly cropped by
the model grid (x and z cropped, y padded). A bright cube is planted at known native voxels. The
model's region is found where the cube lands in the *preprocessed* tensor (from the data, not
from any affine), and the model's output depends on that region only (fixed conv + a masking
layer + pooling). After Grad-CAM, trilinear upsampling, mapping back through the preprocessing
affines and writing the NIfTI, the saliency peak must sit inside the planted cube's native voxels
and the written file must have exactly the input's shape and affine (read back with nibabel).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from neuro_ssl.interpret.cohort import SaliencyOptions, explain_cohort

NATIVE_SHAPE = (40, 44, 36)
CUBE = (slice(27, 31), slice(9, 13), slice(23, 27))  # native voxels, off-centre on every axis


def _las_affine() -> np.ndarray:
    affine = np.diag([-1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = (95.0, -20.0, 31.0)  # field of view far from the world origin
    return affine


def _write_scan(path) -> np.ndarray:
    """A smooth ellipsoid 'head' (so foreground z-scoring has tissue) plus the bright cube."""
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in NATIVE_SHAPE], indexing="ij"), axis=-1)
    centre, radii = np.array(NATIVE_SHAPE) / 2, np.array(NATIVE_SHAPE) * 0.45
    head = (((ijk - centre) / radii) ** 2).sum(-1) < 1
    rng = np.random.default_rng(0)
    data = np.where(head, 100.0, 0.0) + rng.normal(0, 2.0, NATIVE_SHAPE)
    data[CUBE] = 400.0
    img = nib.Nifti1Image(data.astype(np.float32), _las_affine())
    img.header.set_sform(_las_affine(), code=1)
    img.header.set_qform(_las_affine(), code=1)
    nib.save(img, str(path))
    return data


class Gate(nn.Module):
    """Multiplies activations by a fixed 0/1 mask: the model sees nothing outside the region."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, a):
        return a * self.mask


class RegionModel(nn.Module):
    """Fixed 3x3x3 mean filter (+ bias) -> ReLU -> gate -> mean inside the region -> 2 logits."""

    def __init__(self, mask: np.ndarray):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0 / 27)
            self.conv.bias.fill_(3.0)
        self.gate = Gate(torch.as_tensor(mask, dtype=torch.float32)[None, None])
        self.n_inside = float(mask.sum())
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        a = self.gate(torch.relu(self.conv(x)))
        return self.fc(a.sum(dim=(2, 3, 4)) / self.n_inside)


def test_saliency_peak_lands_on_the_planted_region_in_native_space(tmp_path):
    from neuro_ssl.data.cache import VolumeCache
    from neuro_ssl.data.transforms import PreprocessConfig

    scan = tmp_path / "sub-01_ses-01_T1w.nii.gz"
    _write_scan(scan)
    config = PreprocessConfig(spacing_mm=(3.0, 3.0, 3.0), shape=(16, 24, 16), normalization="zscore")
    pre = VolumeCache(config, None).get(str(scan))
    assert pre.image.shape == (1, 16, 24, 16)
    # the cube, found in the model input from the data alone
    model_image = pre.image[0]
    region = model_image > 0.5 * (model_image.max() + np.median(model_image[model_image > 0]))
    assert 1 <= region.sum() <= 27, "the cube must survive preprocessing as a small bright spot"
    model = RegionModel(region)

    manifest = pd.DataFrame({"subject_id": ["01"], "session_id": ["01"], "image": [str(scan)], "modality": ["T1w"]},
                            index=[2])
    meta = {"preprocess": config.to_dict(), "classes": ["CN", "AD"], "task": "classification"}
    out = explain_cohort(model, meta, manifest, tmp_path / "out", SaliencyOptions(layer="gate"))
    row = out.summary.iloc[0]
    assert row["predicted"] == "AD"

    written = nib.load(row["saliency"])
    source = nib.load(str(scan))
    assert written.shape == source.shape == NATIVE_SHAPE
    assert np.allclose(written.affine, source.affine)
    saliency = np.asarray(written.dataobj, dtype=np.float32)
    peak = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    assert all(s.start <= p < s.stop for p, s in zip(peak, CUBE)), f"peak {peak} outside the cube {CUBE}"
    assert (row["peak_i"], row["peak_j"], row["peak_k"]) == tuple(int(p) for p in peak)
    # the world position in the table is the native voxel through the file's affine
    expected_mm = _las_affine() @ np.array([*peak, 1.0])
    assert (row["peak_x_mm"], row["peak_y_mm"], row["peak_z_mm"]) == pytest.approx(tuple(expected_mm[:3]))
    # nothing far from the cube: saliency is confined to the region (plus interpolation blur)
    far = np.ones(NATIVE_SHAPE, bool)
    far[tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in CUBE)] = False
    assert saliency[far].max() == 0.0 and saliency.max() > 0
