"""Forward a network over a manifest, in manifest order, without gradients.

Shared by fine-tuning (frozen features of a linear probe, validation outputs), ``evaluate``
(predictions) and ``embed`` (features). Items come from a
:class:`~neuro_ssl.data.datasets.ManifestDataset` (one per session; ``"index"`` = the manifest
row the item was built from), so every output row can be traced back to its subject and session.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from neuro_ssl.data.transforms import PreprocessConfig


def make_dataset(manifest: pd.DataFrame, preprocess: PreprocessConfig | dict, cache_dir=None,
                 columns: Sequence[str] = (), skip_bad: bool = False):
    """A ManifestDataset for ``manifest`` with the run's preprocessing, screened up front.

    ``cache_dir``: None -> the default cache folder ($NEURO_SSL_CACHE or ~/.cache/neuro-ssl),
    ``"none"`` -> no disk cache, else that folder (the same rule as pretraining).
    Callers screen the rows first (:func:`~neuro_ssl.data.screening.screen_rows`, before label
    selection drops any); here every item is preprocessed once before any work starts: without
    ``skip_bad`` the first unusable scan stops the command with its file and row; with it, those
    rows are left out and kept in ``dataset.skipped`` (:class:`~neuro_ssl.data.screening.SkippedRow`).
    """
    from neuro_ssl.data.cache import resolve_cache_dir
    from neuro_ssl.data.datasets import ManifestDataset
    from neuro_ssl.data.screening import screen_items

    if isinstance(preprocess, dict):
        preprocess = PreprocessConfig.from_dict(preprocess)
    cache_dir = resolve_cache_dir(cache_dir)
    dataset = ManifestDataset(manifest, preprocess, cache_dir=cache_dir, columns=tuple(columns))
    bad_rows, bad_items = screen_items(len(dataset), dataset.preprocessed, lambda i: list(dataset.rows[i]),
                                       manifest, skip_bad=skip_bad)
    if bad_rows:
        kept = manifest.drop(index=bad_rows)
        kept.attrs = dict(manifest.attrs)
        dataset = ManifestDataset(kept, preprocess, cache_dir=cache_dir, columns=tuple(columns))
    dataset.skipped = bad_items
    return dataset


def item_rows(dataset) -> list:
    """Manifest row label (line number) of every item, without loading any volume."""
    return [rows[0] for rows in dataset.rows]


def _collate(items: list[dict]) -> dict:
    return {"image": torch.stack([item["image"] for item in items]),
            "index": torch.as_tensor([int(item["index"]) for item in items])}


@torch.no_grad()
def forward_dataset(module: torch.nn.Module | Callable, dataset, batch_size: int = 8,
                    device: str | torch.device = "cpu", workers: int = 0, desc: str | None = None,
                    amp: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """``(outputs (N, D) float64, manifest row index (N,))`` for every item of ``dataset``, in order.

    ``module`` runs in eval mode (BatchNorm uses its running statistics); its training flag is
    restored afterwards.
    """
    device = torch.device(device)
    was_training = getattr(module, "training", False)
    if isinstance(module, torch.nn.Module):
        module.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=workers, collate_fn=_collate)
    outputs, rows = [], []
    bar = _progress(len(dataset), desc)
    try:
        for batch in loader:
            with _autocast(amp, device):
                out = module(batch["image"].to(device))
            outputs.append(out.float().cpu())
            rows.append(batch["index"])
            bar.update(len(batch["index"]))
    finally:
        bar.close()
        if isinstance(module, torch.nn.Module):
            module.train(was_training)
    if not outputs:
        return np.zeros((0, 0)), np.zeros(0, dtype=int)
    return torch.cat(outputs).numpy().astype(np.float64), torch.cat(rows).numpy().astype(int)


def _autocast(amp: str, device: torch.device):
    """bf16/fp16 autocast for inference, or nothing (training.loop has the training-side twin)."""
    import contextlib

    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _progress(total: int, desc: str | None):
    """Progress on stderr when ``desc`` is given (``neuro_ssl._utils.progress``; silent with NEURO_SSL_QUIET=1)."""
    from neuro_ssl._utils.progress import progress

    return progress(total=total, desc=desc, unit="scan", enabled=desc is not None)
