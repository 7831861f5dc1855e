"""Reconstructions of a contrastive autoencoder as NIfTI on the model grid, and samples from a VAE.

--encoder is RUN/encoder.pt of `pretrain --loss ae-contrastive` or `vae-contrastive`; its
decoder (RUN/decoder.pt) is read from beside it. Each scan of --manifest is preprocessed as in
pretraining, encoded and decoded from its latent mean: DIR/<subject>_<session>_row<N>_recon.nii.gz
with the affine of the scan's model grid (background 0), and DIR/errors.csv (subject_id,
session_id, image, reconstruction, mse, mae inside the brain mask, brain_voxels, in_training).
--samples N (VAE only) decodes N codes drawn from the N(0, I) prior: DIR/samples/sample_<k>.nii.gz.

examples:
  neuro-ssl reconstruct --encoder runs/ae/encoder.pt --manifest test.csv --out recon
  neuro-ssl reconstruct --encoder runs/vae/encoder.pt --manifest test.csv --out recon --samples 8 --seed 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuro_ssl.cli import _common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", type=Path, required=True, metavar="RUN/encoder.pt",
                        help="encoder of an ae-contrastive / vae-contrastive pretraining run")
    parser.add_argument("--decoder", type=Path, default=None, metavar="RUN/decoder.pt",
                        help="its decoder (default: decoder.pt beside the encoder)")
    parser.add_argument("--manifest", type=Path, required=True, help="scans to reconstruct")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--samples", type=int, default=0, metavar="N", help="also decode N samples of the VAE prior")
    parser.add_argument("--batch-size", type=_common.positive_int, default=4, help="scans per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--skip-bad", action="store_true", help="report and skip unusable scans instead of stopping")
    _common.add_seed(parser)
    _common.add_cache_dir(parser)


def run(args: argparse.Namespace) -> int:
    from neuro_ssl._utils.files import write_csv
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.errors import ConfigError
    from neuro_ssl.evaluation.reconstruct import load_autoencoder, reconstruct_manifest, sample_volumes
    from neuro_ssl.training.loop import resolve_device

    if args.samples < 0:
        raise ConfigError(f"--samples must be >= 0, got {args.samples}")
    _common.refuse_same_path(args.manifest, args.out, "--out")
    device = str(resolve_device(args.device))
    encoder, decoder, meta = load_autoencoder(args.encoder, args.decoder)
    if args.samples and not meta["variational"]:
        raise ConfigError(f"--samples needs a vae-contrastive run; {args.encoder} is a plain autoencoder (no prior)")
    manifest = read_manifest(args.manifest)
    table = reconstruct_manifest(encoder, decoder, meta, manifest, args.out, cache_dir=args.cache_dir,
                                 batch_size=args.batch_size, device=device, skip_bad=args.skip_bad)
    write_csv(Path(args.out) / "errors.csv", table)
    if table.attrs["skipped"]:
        from neuro_ssl.data.screening import write_skipped

        print(f"skipped {len(table.attrs['skipped'])} row(s), listed in {write_skipped(args.out, table.attrs['skipped'])}")
    print(f"{len(table)} reconstruction(s) in {args.out}; in-brain MSE mean {table['mse'].mean():.4f} "
          f"(median {table['mse'].median():.4f}); errors.csv")
    if args.samples and table.attrs["reference_affine"] is not None:
        paths = sample_volumes(decoder, args.samples, table.attrs["reference_affine"], args.out, args.seed, device)
        print(f"{len(paths)} sample(s) of the prior in {Path(args.out) / 'samples'}")
    return 0
