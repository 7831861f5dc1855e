"""Does y-Aware pretraining put age into the embedding? The covariate's path, end to end.

A synthetic cohort at 4 mm (48 subjects, one T1w scan each), preprocessed at 8 mm to 24^3. One
y-Aware run (age kernel, sigma = 5 years) pretrains on every scan; the probe is the online one:
ridge regression of age on frozen encoder features, cross-validated over subjects, on those same
scans. Asserted: the y-Aware embedding predicts age more than a year better than the untrained
encoder the run started from (same seed, same weights before training). This is what the age
covariate does in the loss: if ages reached the loss misaligned with their scans (a row-order
bug, a wrong column, NaN dropped on one side only), the kernel would pull together scans of
unrelated ages and the margin would vanish.

Measured with this file's protocol (``ordering_maes``) for seeds 0-4 (cohort seed 11 + seed,
training seed = seed; OMP_NUM_THREADS=2 on CPU-2, 2026-11-29), ridge MAE in years, untrained ->
y-Aware: 6.75 -> 2.76, 6.26 -> 3.47, 6.51 -> 3.22, 6.26 -> 2.85, 7.08 -> 1.96.
The smallest gap, 2.79 years, is well above the 1-year margin asserted.

Not asserted (issue 11, point 9): anything about held-out subjects or SimCLR. The earlier version
of this test asserted that SimCLR's and y-Aware's embeddings beat the untrained encoder on 112
held-out subjects; at this scale those differences are a few tenths of a year either way and
flip with the seed and the CPU thread count (a fresh clone failed with SimCLR 5.44 vs untrained
5.20; rerun here at seed 0, on the synthetic cohort before its 0.2 rewrite: y-Aware 5.32 vs
untrained 5.20 on held-out subjects, while on its own scans y-Aware reached 2.51 against 5.79).
benchmarks/representation_quality.py measures the held-out question at a scale where it has an
answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neuro_ssl._utils.seeding import seed_everything
from neuro_ssl.data.manifest import read_manifest
from neuro_ssl.models import build_encoder, load_encoder
from neuro_ssl.training.config import PretrainConfig
from neuro_ssl.training.pretrain import pretrain
from neuro_ssl.training.pretrain_data import build_probe_data
from neuro_ssl.training.probes import embed_dataset, ridge_age_mae

SEED = 0
N_SUBJECTS = 48
COHORT_SEED = 11
MARGIN_YEARS = 1.0
#: intensity views and cutout only: the resampling steps (crop, affine) cost most of the data time
LIGHT_VIEWS = {"crop_scale": [1.0, 1.0], "affine": 0.0, "bias_field": 0.0, "blur": 0.0}
SETTINGS = dict(arch="resnet10", width=0.25, norm="batch", proj_dims=(64, 32), spacing_mm=(8.0, 8.0, 8.0),
                shape=(24, 24, 24), batch_size=8, epochs=20, lr=1e-3, warmup_epochs=1.0, temperature=0.1,
                sigma=5.0, augment=LIGHT_VIEWS, workers=1)


def ordering_maes(work: Path, seed: int = SEED) -> dict[str, float]:
    """Ridge age MAE (years) of the untrained encoder and of y-Aware after pretraining, on the same scans."""
    from neuro_ssl.data.synth import make_cohort

    manifest = read_manifest(make_cohort(work / "cohort", n_subjects=N_SUBJECTS, seed=COHORT_SEED + seed,
                                         voxel_mm=4.0, visits=(1, 1)))
    config = dict(SETTINGS, seed=seed, cache_dir=str(work / "cache"))
    probe = build_probe_data(manifest, PretrainConfig(**config))
    seed_everything(seed)  # the very network the run starts from
    untrained = build_encoder("resnet10", 1, "batch", 0.25)
    pretrain(PretrainConfig(**config, loss="yaware", meta=("age",)), manifest, work / "yaware")
    yaware = load_encoder(work / "yaware" / "encoder.pt")[0]
    ages, subjects = probe.manifest["age"].to_numpy(float), probe.manifest["subject_id"].to_numpy()
    return {name: ridge_age_mae(embed_dataset(encoder, probe.dataset, batch_size=16), ages, subjects)
            for name, encoder in (("untrained", untrained), ("yaware", yaware))}


def test_yaware_pretraining_puts_age_into_the_embedding(tmp_path):
    mae = ordering_maes(tmp_path)
    print("ridge age MAE (years):", {k: round(v, 2) for k, v in mae.items()})
    assert np.isfinite(mae["untrained"]) and np.isfinite(mae["yaware"])
    assert mae["yaware"] < mae["untrained"] - MARGIN_YEARS
