"""Reconstructions (and samples) of a contrastive autoencoder, written as NIfTI on the model grid.

A run of ``pretrain --loss ae-contrastive`` / ``vae-contrastive`` leaves ``encoder.pt`` (an
ordinary encoder) and ``decoder.pt`` (projection head, VAE log-variance layer, decoder) side by
side. Each scan of a manifest is preprocessed as the encoder was trained (the preprocessing is
read from its meta), encoded, decoded from its latent mean (no sampling), and written with the
affine of its model grid (RAS, the run's spacing, cropped/padded to its shape), so it overlays
the preprocessed scan in any viewer. Voxels outside the scan's brain mask are set to 0, as
preprocessing does (the decoder is trained inside the mask only). Per scan: squared and absolute
error inside the brain mask, in the units of the normalized intensities.

Samples (VAE only): codes drawn from the N(0, I) prior (seeded), decoded, written unmasked with
the model-grid affine of the manifest's first scan.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neuro_ssl.errors import CheckpointError, ConfigError

ERROR_COLUMNS = ("subject_id", "session_id", "image", "reconstruction", "mse", "mae", "brain_voxels", "in_training")


def load_autoencoder(encoder_path: str | Path, decoder_path: str | Path | None = None):
    """``(encoder, latent_decoder, meta)``; ``decoder.pt`` defaults to the one beside ``encoder.pt``.

    Refused (CheckpointError) when there is no decoder, or when the two files are not from the
    same run and step (a decoder only makes sense with the encoder it was trained with).
    """
    from neuro_ssl.models import load_decoder, load_encoder

    encoder_path = Path(encoder_path)
    decoder_path = Path(decoder_path) if decoder_path is not None else encoder_path.parent / "decoder.pt"
    if not encoder_path.is_file():
        raise CheckpointError(f"{encoder_path}: checkpoint not found")
    if not decoder_path.is_file():
        raise CheckpointError(f"{decoder_path}: no decoder beside {encoder_path.name}; reconstruct needs a "
                              f"run of pretrain --loss ae-contrastive or vae-contrastive")
    encoder, meta = load_encoder(encoder_path)
    decoder, decoder_meta = load_decoder(decoder_path)
    same = all(meta.get(k) == decoder_meta.get(k) for k in ("preprocess", "global_step", "seed"))
    if not same or decoder.head.in_features != encoder.out_features:
        raise CheckpointError(f"{decoder_path}: not from the same run and step as {encoder_path} "
                              f"(steps {decoder_meta.get('global_step')} and {meta.get('global_step')})")
    return encoder, decoder, {**meta, "variational": decoder.variational}


def file_stem(subject, session, row: int) -> str:
    """``<subject>_<session>_row<N>``: ASCII-safe, and unique through the manifest row."""
    def safe(text) -> str:
        text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
        return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    parts = [safe(p) for p in (subject, session) if p is not None and not pd.isna(p)]
    return "_".join([p for p in parts if p] + [f"row{row}"])


@torch.no_grad()
def reconstruct_manifest(encoder, decoder, meta: dict, manifest: pd.DataFrame, out_dir: str | Path,
                         cache_dir=None, batch_size: int = 4, device: str = "cpu",
                         skip_bad: bool = False) -> pd.DataFrame:
    """Write ``DIR/<subject>_<session>_row<N>_recon.nii.gz`` per scan; return the error table.

    Columns: ``ERROR_COLUMNS`` (``reconstruction`` relative to ``out_dir``; ``mse``/``mae`` inside
    the brain mask; ``in_training``: the subject was among the encoder's training subjects, whose
    errors are optimistic). ``attrs``: ``skipped`` (rows left out with ``skip_bad``) and
    ``reference_affine`` (the first scan's model grid, for samples).
    """
    from neuro_ssl.data.screening import screen_rows
    from neuro_ssl.evaluation.inference import _progress, make_dataset

    manifest, skipped = screen_rows(manifest, skip_bad=skip_bad)
    dataset = make_dataset(manifest, meta["preprocess"], cache_dir, (), skip_bad)
    network = torch.nn.Sequential(encoder, decoder).to(device).eval()
    trained_on = {str(s) for s in meta.get("subjects", [])}
    rows, bar = [], _progress(len(dataset), "reconstruct")
    for start in range(0, len(dataset), int(batch_size)):
        items = range(start, min(start + int(batch_size), len(dataset)))
        scans = [dataset.preprocessed(i) for i in items]
        x = torch.from_numpy(np.stack([np.asarray(p.image, dtype=np.float32) for p in scans])).to(device)
        mask = (x != 0).any(dim=1, keepdim=True)
        xhat = (network(x) * mask).float().cpu().numpy()
        for k, (i, scan) in enumerate(zip(items, scans)):
            record = dict(manifest.loc[dataset.rows[i][0], ["subject_id", "session_id", "image"]])
            rows.append(_write_one(record, dataset.rows[i][0], scan, xhat[k], x[k].cpu().numpy(),
                                   mask[k, 0].cpu().numpy(), Path(out_dir), trained_on))
        bar.update(len(scans))
    bar.close()
    table = pd.DataFrame(rows, columns=list(ERROR_COLUMNS))
    table.attrs["skipped"] = skipped + list(dataset.skipped)
    table.attrs["reference_affine"] = dataset.preprocessed(0).affine if len(dataset) else None
    return table


def _write_one(record: dict, row, scan, xhat: np.ndarray, x: np.ndarray, inside: np.ndarray, out_dir: Path,
               trained_on: set) -> dict:
    """Save one (C, X, Y, Z) reconstruction with its scan's model-grid affine; its error row."""
    from neuro_ssl.data.io import save_nifti

    name = f"{file_stem(record['subject_id'], record['session_id'], row)}_recon.nii.gz"
    save_nifti(xhat[0] if xhat.shape[0] == 1 else np.moveaxis(xhat, 0, -1), scan.affine, out_dir / name)
    diff = (xhat - x)[:, inside].astype(np.float64)
    return {**record, "subject_id": str(record["subject_id"]), "reconstruction": name,
            "mse": float(np.mean(diff ** 2)) if diff.size else float("nan"),
            "mae": float(np.mean(np.abs(diff))) if diff.size else float("nan"),
            "brain_voxels": int(inside.sum()), "in_training": str(record["subject_id"]) in trained_on}


@torch.no_grad()
def sample_volumes(decoder, n: int, affine: np.ndarray, out_dir: str | Path, seed: int = 0,
                   device: str = "cpu") -> list[Path]:
    """Decode ``n`` codes drawn from N(0, I) into ``DIR/samples/sample_<k>.nii.gz`` (VAE only)."""
    from neuro_ssl.data.io import save_nifti

    if not decoder.variational:
        raise ConfigError("--samples needs a vae-contrastive run: a plain autoencoder has no prior to sample")
    generator = torch.Generator().manual_seed(int(seed))
    volumes = decoder.to(device).eval().sample(int(n), generator).float().cpu().numpy()
    paths = []
    for k, volume in enumerate(volumes):
        data = volume[0] if volume.shape[0] == 1 else np.moveaxis(volume, 0, -1)
        paths.append(save_nifti(data, affine, Path(out_dir) / "samples" / f"sample_{k:03d}.nii.gz"))
    return paths
