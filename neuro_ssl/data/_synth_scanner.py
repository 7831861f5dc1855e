"""Synthetic acquisition: sites, their voxel grids and orientations, head pose, bias, noise, files.

A scan is the subject's warped MNI-space image seen through a site's grid: each native voxel
centre is mapped (native affine -> scanner mm -> inverse head pose -> template voxel) and the
template-space image sampled there trilinearly in one ``affine_transform`` call. Sites differ in
voxel size, axis order and signs (RAS / LAS / LPS, one oblique), tissue contrast, intensity
scale, bias-field strength and noise, as real scanners do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from neuro_ssl._utils.files import atomic_path
from neuro_ssl.data._synth_anatomy import cosine_basis

#: every site's field of view (mm), centred on the brain: about 45 x 55 x 45 voxels at 4 mm.
FOV_MM = (176.0, 208.0, 176.0)
#: MNI point at the centre of the field of view (the brain's centre).
FOV_CENTRE_MM = (0.0, -18.0, 6.0)
_AXIS_SIGNS = {"RAS": (1.0, 1.0, 1.0), "LAS": (-1.0, 1.0, 1.0), "LPS": (-1.0, -1.0, 1.0)}


@dataclass(frozen=True)
class Site:
    """One acquisition site: its grid, contrast and imperfections."""

    code: str                            # ADNI-style three-digit site number
    axes: str                            # RAS, LAS or LPS (before any oblique rotation)
    voxel_mm: tuple[float, float, float]  # T1w voxel size
    pet_voxel_mm: tuple[float, float, float]
    oblique_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # rotation of the slab about x, y, z
    t1_means: tuple[float, float, float] = (0.66, 0.88, 0.28)   # GM, WM, CSF
    t1_scale: float = 1000.0             # raw units of white matter
    noise_fraction: float = 0.02         # Rician sigma / white matter
    bias_log_sd: float = 0.08            # spread of the log bias field inside the head
    pet_scale: float = 8000.0            # raw units of grey-matter uptake

    @property
    def orientation(self) -> str:
        return f"{self.axes} oblique" if any(self.oblique_deg) else self.axes


SITES = (
    Site("002", "RAS", (1.0, 1.0, 1.0), (2.0, 2.0, 2.0), t1_means=(0.66, 0.88, 0.28),
         t1_scale=1000.0, noise_fraction=0.02, bias_log_sd=0.06, pet_scale=8000.0),
    Site("011", "LAS", (1.2, 1.2, 1.2), (2.0, 2.0, 2.0), t1_means=(0.62, 0.86, 0.22),
         t1_scale=2600.0, noise_fraction=0.03, bias_log_sd=0.10, pet_scale=12500.0),
    Site("023", "LPS", (1.0, 1.0, 1.2), (1.5, 1.5, 1.5), t1_means=(0.69, 0.90, 0.31),
         t1_scale=420.0, noise_fraction=0.025, bias_log_sd=0.08, pet_scale=5200.0),
    Site("941", "RAS", (1.5, 1.5, 1.5), (2.5, 2.5, 2.5), oblique_deg=(12.0, 0.0, 4.0),
         t1_means=(0.64, 0.87, 0.25), t1_scale=1800.0, noise_fraction=0.035, bias_log_sd=0.14,
         pet_scale=20000.0),
)


def rotation(degrees_xyz) -> np.ndarray:
    """3x3 rotation: about x, then y, then z (degrees)."""
    ax, ay, az = np.deg2rad(np.asarray(degrees_xyz, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def site_grid(site: Site, voxel_mm: tuple[float, float, float]) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and 4x4 affine of a site's grid: its axes, obliquity and voxel size, centred on the brain."""
    shape = tuple(int(np.ceil(f / v - 1e-6)) for f, v in zip(FOV_MM, voxel_mm))
    linear = rotation(site.oblique_deg) @ np.diag(np.asarray(_AXIS_SIGNS[site.axes]) * np.asarray(voxel_mm))
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = np.asarray(FOV_CENTRE_MM) - linear @ ((np.asarray(shape) - 1) / 2.0)
    return shape, affine


def head_pose(rng: np.random.Generator, head_scale: float) -> np.ndarray:
    """MNI mm -> scanner mm for one session: the subject's size, a small tilt and shift."""
    centre = np.asarray(FOV_CENTRE_MM)
    linear = rotation(rng.normal(0.0, 3.0, 3)) * head_scale
    pose = np.eye(4)
    pose[:3, :3] = linear
    pose[:3, 3] = centre + rng.normal(0.0, 3.0, 3) - linear @ centre
    return pose


def resample_to_grid(volume: np.ndarray, template_affine: np.ndarray, pose: np.ndarray,
                     shape, affine: np.ndarray, order: int = 1, blur: bool = True,
                     allow_coarse: bool = True) -> np.ndarray:
    """Sample a template-grid volume at every voxel centre of a native grid (one affine map).

    Only the native box that can see the volume's non-zero voxels is computed. With ``blur``,
    a volume sampled onto coarser voxels is first smoothed to that resolution, so partial-volume
    averaging looks like a real coarse acquisition rather than aliasing.
    """
    spacing_mm = float(np.sqrt((template_affine[:3, 0] ** 2).sum()))
    voxel_mm = np.sqrt((affine[:3, :3] ** 2).sum(axis=0)) / np.linalg.det(pose[:3, :3]) ** (1 / 3)
    extra_mm = np.sqrt(max(float(voxel_mm.mean()) ** 2 - spacing_mm ** 2, 0.0))
    if blur and extra_mm > 0.25 * spacing_mm:
        volume = ndimage.gaussian_filter(volume, extra_mm / 2.3548 / spacing_mm, mode="constant")
    if allow_coarse and order == 1 and voxel_mm.max() <= 0.7 * spacing_mm:
        # Much finer than the template: sample every other voxel, then interpolate linearly along
        # the native axes (same trilinear result to within the template's own resolution, 4x faster).
        coarse_shape = tuple(n // 2 + 1 for n in shape)
        coarse_affine = affine @ np.diag([2.0, 2.0, 2.0, 1.0])
        coarse = resample_to_grid(volume, template_affine, pose, coarse_shape, coarse_affine, order=1, blur=False)
        return _upsample2(coarse, shape)
    native_to_template = np.linalg.inv(template_affine) @ np.linalg.inv(pose) @ affine
    lo, hi = _native_box(volume, native_to_template, shape)
    out = np.zeros(tuple(shape), dtype=np.float32)
    if np.any(hi <= lo):
        return out
    linear = native_to_template[:3, :3]
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = ndimage.affine_transform(
        volume, linear, offset=linear @ lo + native_to_template[:3, 3], output_shape=tuple(hi - lo),
        order=order, mode="constant", cval=0.0, output=np.float32, prefilter=False,
    )
    return out


def _upsample2(coarse: np.ndarray, shape) -> np.ndarray:
    """Linear 2x upsampling: fine voxel 2i is coarse voxel i, 2i+1 the mean of i and i+1."""
    out = coarse
    for axis, n in enumerate(shape):
        def along(part: slice) -> tuple:
            return tuple(part if a == axis else slice(None) for a in range(3))

        fine = np.empty(out.shape[:axis] + (n,) + out.shape[axis + 1:], dtype=np.float32)
        fine[along(slice(0, None, 2))] = out[along(slice(0, (n + 1) // 2))]
        odd = fine[along(slice(1, None, 2))]
        np.add(out[along(slice(0, n // 2))], out[along(slice(1, n // 2 + 1))], out=odd)
        odd *= np.float32(0.5)
        out = fine
    return out


def _native_box(volume: np.ndarray, native_to_template: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """Native index bounds [lo, hi) of the voxels that map into the volume's non-zero box."""
    bounds = []
    for axis in range(3):
        used = np.flatnonzero(volume.any(axis=tuple(a for a in range(3) if a != axis)))
        if used.size == 0:
            return np.zeros(3, dtype=int), np.zeros(3, dtype=int)
        bounds.append((used[0] - 1.0, used[-1] + 1.0))
    corners = np.array(np.meshgrid(*bounds, indexing="ij")).reshape(3, -1)
    template_to_native = np.linalg.inv(native_to_template)
    native = template_to_native[:3, :3] @ corners + template_to_native[:3, 3:4]
    lo = np.clip(np.floor(native.min(axis=1)).astype(int), 0, shape)
    hi = np.clip(np.ceil(native.max(axis=1)).astype(int) + 1, 0, shape)
    return lo, hi


def bias_field(shape, rng: np.random.Generator, log_sd: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth multiplicative field exp(gx(x) + gy(y) + gz(z)), as three broadcastable factors.

    Each g is a random low-frequency cosine sum; the log field has sd ``log_sd``. Being separable,
    it costs three passes over the volume instead of a full 3D expansion.
    """
    logs = [rng.standard_normal(2) @ cosine_basis(n, (1, 2)) for n in shape]
    scale = log_sd / max(float(np.sqrt(sum(g.var() for g in logs))), 1e-6)
    x, y, z = (np.exp(scale * g).astype(np.float32) for g in logs)
    return x[:, None, None], y[None, :, None], z[None, None, :]


def rician(volume: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """|signal + complex Gaussian noise|: MRI magnitude noise (Rayleigh where there is no signal)."""
    real = rng.standard_normal(volume.shape, dtype=np.float32)
    real *= np.float32(sigma)
    real += volume
    np.square(real, out=real)
    imag = rng.standard_normal(volume.shape, dtype=np.float32)
    imag *= np.float32(sigma)
    np.square(imag, out=imag)
    real += imag
    return np.sqrt(real, out=real)


def acquire_t1(volume: np.ndarray, template_affine, pose, site: Site, voxel_mm, rng) -> tuple[np.ndarray, np.ndarray]:
    """A T1w scan on the site's grid, as int16 raw units: resample, bias, Rician noise, scale."""
    shape, affine = site_grid(site, voxel_mm)
    native = resample_to_grid(volume, template_affine, pose, shape, affine)
    for factor in bias_field(shape, rng, site.bias_log_sd):
        native *= factor
    native = rician(native, site.noise_fraction * site.t1_means[1], rng)
    native *= np.float32(site.t1_scale)
    np.rint(native, out=native)
    np.clip(native, 0, np.iinfo(np.int16).max, out=native)
    return native.astype(np.int16), affine


def acquire_pet(volume: np.ndarray, template_affine, pose, site: Site, voxel_mm, rng) -> tuple[np.ndarray, np.ndarray]:
    """An FDG scan on the site's PET grid, float32: resample, Gaussian noise, scale, non-negative."""
    shape, affine = site_grid(site, voxel_mm)
    native = resample_to_grid(volume, template_affine, pose, shape, affine)
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= np.float32(0.02)
    native += noise
    np.maximum(native, 0.0, out=native)
    native *= np.float32(site.pet_scale)
    return native, affine


def region_on_grid(profile: np.ndarray, template_affine, pose, shape, affine) -> np.ndarray:
    """A planted region (a warped [0, 1] weight on the template grid) as a uint8 mask on a scan's grid."""
    native = resample_to_grid(profile, template_affine, pose, shape, affine, blur=False, allow_coarse=False)
    return (native >= 0.5).astype(np.uint8)


def write_nifti(data: np.ndarray, affine: np.ndarray, path: Path, code: int = 1, dtype=None) -> Path:
    """Write a NIfTI-1 file atomically with qform and sform set (code 1 scanner, 4 MNI), mm units.

    ``dtype`` stores floats as scaled integers (``scl_slope``), as many scanners export them.
    """
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    img.set_qform(affine, code=code)
    img.set_sform(affine, code=code)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return Path(path)
