"""A static PNG per scan: axial, coronal and sagittal slices through the saliency peak.

The scan is drawn in gray and the map in ``hot`` (only voxels above ``threshold`` x its peak,
semi-transparent). A map on another grid than the scan (given with its own affine) is first
resampled onto the scan's grid through the two affines (trilinear, zero outside the map). Both are first put in the closest RAS voxel order (a flip/permutation of
axes, no resampling), so anatomy is upright whatever the file's orientation; an oblique scan is
shown in its own voxel planes. Voxel sizes set the aspect ratio. The caption states the display
convention: neurological (patient's left on the left of the picture) by default, radiological
(patient's right on the left) on request.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neuro_ssl._utils.files import atomic_path

VIEWS = ("axial", "coronal", "sagittal")


def canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``data`` flipped/transposed to the closest RAS voxel order, and its voxel sizes (mm)."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    out = nib.orientations.apply_orientation(np.asarray(data), ornt)
    sizes = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
    return out, sizes[ornt[:, 0].astype(int)]


def slices_through(volume: np.ndarray, ijk) -> dict[str, np.ndarray]:
    """The three orthogonal planes of a RAS-ordered volume through voxel ``ijk``, ready for
    ``imshow(origin="lower")``: rows run inferior->superior (or posterior->anterior for axial),
    columns left->right (posterior->anterior for sagittal)."""
    i, j, k = (int(v) for v in ijk)
    return {
        "axial": volume[:, :, k].T,
        "coronal": volume[:, j, :].T,
        "sagittal": volume[i, :, :].T,
    }


def _aspects(sizes) -> dict[str, float]:
    x, y, z = (float(s) for s in sizes)
    return {"axial": y / x, "coronal": z / x, "sagittal": z / y}


def render_montage(image: np.ndarray, saliency: np.ndarray, affine: np.ndarray, threshold: float = 0.5,
                   radiological: bool = False, title: str = "", alpha: float = 0.6):
    """A matplotlib Figure (Agg, no pyplot state) with the three planes through the peak."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image_c, sizes = canonical(image, affine)
    saliency_c, _ = canonical(saliency, affine)
    peak_value = float(saliency_c.max())
    ijk = np.unravel_index(int(np.argmax(saliency_c)), saliency_c.shape) if peak_value > 0 else \
        tuple(s // 2 for s in saliency_c.shape)
    finite = image_c[np.isfinite(image_c)]
    vmin, vmax = (float(v) for v in np.percentile(finite, (0.5, 99.5))) if finite.size else (0.0, 1.0)
    gray, hot, aspects = slices_through(image_c, ijk), slices_through(saliency_c, ijk), _aspects(sizes)

    fig = Figure(figsize=(10.5, 3.9), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, gridspec_kw={"wspace": 0.05})
    for ax, view in zip(axes, VIEWS):
        flip = radiological and view != "sagittal"
        plane, overlay = (np.fliplr(gray[view]), np.fliplr(hot[view])) if flip else (gray[view], hot[view])
        ax.imshow(plane, cmap="gray", vmin=vmin, vmax=vmax, origin="lower", aspect=aspects[view],
                  interpolation="nearest")
        if peak_value > 0:
            shown = np.ma.masked_less_equal(overlay, threshold * peak_value)
            mappable = ax.imshow(shown, cmap="hot", vmin=threshold * peak_value, vmax=peak_value,
                                 origin="lower", aspect=aspects[view], alpha=alpha, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(view, color="white", fontsize=10)
        _side_labels(ax, view, radiological)
    if peak_value > 0:
        bar = fig.colorbar(mappable, ax=list(axes), fraction=0.02, pad=0.01)
        bar.ax.tick_params(colors="white", labelsize=7)
    convention = ("radiological convention: the patient's right is on the left of each picture" if radiological
                  else "neurological convention: the patient's left is on the left of each picture")
    fig.suptitle(title, color="white", fontsize=11)
    fig.text(0.5, 0.02, f"slices through the saliency peak (voxel {tuple(int(v) for v in ijk)} in RAS order); "
             f"map shown above {threshold:g} x peak; {convention}", color="#bbbbbb", ha="center", fontsize=7.5)
    return fig


def _side_labels(ax, view: str, radiological: bool) -> None:
    if view == "sagittal":
        left, right = "P", "A"
    else:
        left, right = ("R", "L") if radiological else ("L", "R")
    style = {"color": "#ffd24a", "fontsize": 9, "fontweight": "bold", "transform": ax.transAxes, "va": "center"}
    ax.text(0.02, 0.5, left, ha="left", **style)
    ax.text(0.98, 0.5, right, ha="right", **style)


def on_grid(volume: np.ndarray, volume_affine: np.ndarray, shape, affine: np.ndarray) -> np.ndarray:
    """``volume`` (on ``volume_affine``) sampled at every voxel of the grid (shape, affine):
    trilinear, 0 outside; returned as is when the grids already agree."""
    from scipy import ndimage

    volume = np.asarray(volume)
    if volume.shape == tuple(shape) and np.allclose(volume_affine, affine, atol=1e-4):
        return volume
    vox = np.linalg.inv(np.asarray(volume_affine, dtype=np.float64)) @ np.asarray(affine, dtype=np.float64)
    return ndimage.affine_transform(volume.astype(np.float64), vox[:3, :3], offset=vox[:3, 3],
                                    output_shape=tuple(int(s) for s in shape), order=1, mode="constant",
                                    cval=0.0).astype(np.float32)


def write_montage(image: np.ndarray, saliency: np.ndarray, affine: np.ndarray, out_png: str | os.PathLike,
                  threshold: float = 0.5, radiological: bool = False, title: str = "",
                  saliency_affine: np.ndarray | None = None) -> Path:
    """Render the montage of a scan and its saliency map to a PNG.

    The map lies on the scan's grid (``affine``), or on its own grid ``saliency_affine``, which
    is then resampled onto the scan's; without ``saliency_affine`` the shapes must agree
    (ValueError otherwise).
    """
    if saliency_affine is not None:
        saliency = on_grid(saliency, saliency_affine, np.shape(image), affine)
    if np.shape(image) != np.shape(saliency):
        raise ValueError(f"scan {np.shape(image)} and saliency {np.shape(saliency)} are not on one grid")
    fig = render_montage(image, saliency, affine, threshold=threshold, radiological=radiological, title=title)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", facecolor=fig.get_facecolor())
    return out_png
