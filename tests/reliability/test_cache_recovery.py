"""The preprocessing cache: damaged entries are detected (checksum) and rebuilt; concurrent fillers agree.

User-level: a pretraining run over a cache whose every entry was damaged (truncated, a flipped
byte, an empty or pickled array, a broken or missing sidecar) must end bit-identical to the
reference run, which means no damaged voxel reached the network, and must leave every entry
whole again. Two processes filling one cold cache at once (the same scans in the same order)
must write correct entries that a later ``embed`` reads to the same bits as no cache at all.
(``tests/data/test_cache.py`` covers ``VolumeCache`` alone.)
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
from pathlib import Path

import numpy as np

from .helpers import PRETRAIN, assert_same_tensors, load_state, run_cli


def _entries(cache: Path, sources: set[str] | None = None) -> list[tuple[Path, Path]]:
    """(array, sidecar) of every cache entry (only those built from ``sources`` files, if given)."""
    arrays = sorted(npy for npy in cache.rglob("*.npy") if not npy.name.startswith(".tmp-"))
    entries = [(npy, npy.with_suffix(".json")) for npy in arrays]
    if sources is None:
        return entries
    return [(npy, side) for npy, side in entries if set(json.loads(side.read_text())["sources"]) <= sources]


def _truncate(npy: Path, sidecar: Path) -> None:
    npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])


def _flip_exponent_byte(npy: Path, sidecar: Path) -> None:
    """Same size, valid header: only the checksum can tell (the middle voxel's exponent byte flips)."""
    raw = bytearray(npy.read_bytes())
    n_values = int(np.prod(json.loads(sidecar.read_text())["shape"]))
    offset = len(raw) - 4 * n_values + 4 * (n_values // 2) + 3  # little-endian float32: byte 3 holds the exponent
    raw[offset] ^= 0x40
    npy.write_bytes(bytes(raw))


def _empty_array(npy: Path, sidecar: Path) -> None:
    npy.write_bytes(b"")


def _pickled_array(npy: Path, sidecar: Path) -> None:
    np.save(npy, np.array([{"evil": 1}], dtype=object), allow_pickle=True)


def _broken_sidecar(npy: Path, sidecar: Path) -> None:
    sidecar.write_text(sidecar.read_text()[:40])


def _array_gone(npy: Path, sidecar: Path) -> None:
    npy.unlink()


DAMAGE = [_truncate, _flip_exponent_byte, _empty_array, _pickled_array, _broken_sidecar, _array_gone]


def _assert_entries_whole(cache: Path, expected: int, sources: set[str] | None = None) -> None:
    from neuro_ssl.data.cache import array_checksum

    entries = _entries(cache, sources)
    assert len(entries) == expected
    for npy, sidecar in entries:
        meta = json.loads(sidecar.read_text())
        assert array_checksum(np.load(npy, allow_pickle=False)) == meta["crc32"], npy
    assert not [p for p in cache.rglob(".tmp-*")], "half-written cache files left behind"


def test_a_run_over_damaged_cache_entries_rebuilds_them_and_matches_the_reference(cohort, cache_dir, reference_run,
                                                                                 tmp_path):
    from neuro_ssl.data.manifest import read_manifest

    damaged = tmp_path / "cache"
    shutil.copytree(cache_dir, damaged)  # other tests may have added entries of their own files
    scans = set(read_manifest(cohort)["image"])
    entries = _entries(damaged, scans)
    assert len(entries) == len(scans) >= len(DAMAGE)  # the reference run cached every scan once
    for i, (npy, sidecar) in enumerate(entries):
        DAMAGE[i % len(DAMAGE)](npy, sidecar)

    run = tmp_path / "run"
    result = run_cli(["pretrain", "--manifest", cohort, "--out", run, "--cache-dir", damaged, *PRETRAIN])
    assert result.code == 0, result.err[-3000:]
    reference, after = load_state(reference_run / "checkpoint.pt"), load_state(run / "checkpoint.pt")
    assert_same_tensors(reference["model"], after["model"], "weights after a run over a damaged cache")
    _assert_entries_whole(damaged, len(scans), scans)


def _fill(manifest: str, cache: str, barrier, queue) -> None:
    """One of two processes preprocessing every scan of the cohort into one cache at the same moment."""
    import torch

    from neuro_ssl.data.cache import array_checksum
    from neuro_ssl.data.datasets import ManifestDataset
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.transforms import PreprocessConfig

    torch.set_num_threads(1)  # as DataLoader workers do
    dataset = ManifestDataset(read_manifest(manifest), PreprocessConfig((8.0,) * 3, (16, 16, 16)), Path(cache))
    barrier.wait()
    queue.put([array_checksum(dataset[i]["image"].numpy()) for i in range(len(dataset))])


def test_two_processes_filling_one_cache_at_once_write_correct_entries(cohort, tmp_path):
    from neuro_ssl.data.cache import array_checksum
    from neuro_ssl.data.datasets import ManifestDataset
    from neuro_ssl.data.manifest import read_manifest
    from neuro_ssl.data.transforms import PreprocessConfig

    cache = tmp_path / "shared_cache"
    uncached = ManifestDataset(read_manifest(cohort), PreprocessConfig((8.0,) * 3, (16, 16, 16)), None)
    expected = [array_checksum(uncached[i]["image"].numpy()) for i in range(len(uncached))]
    ctx = mp.get_context("fork")  # real processes, as DataLoader workers and parallel jobs are
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_fill, args=(str(cohort), str(cache), barrier, queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert results == [expected, expected]
    _assert_entries_whole(cache, len(expected))

    # a user-level command over the cache the two filled gives the same bits as no cache at all
    outputs = {}
    for name, cache_arg in (("cached", cache), ("uncached", "none")):
        out = tmp_path / f"{name}.csv"
        result = run_cli(["embed", "--encoder", _encoder(tmp_path), "--manifest", cohort, "--out", out,
                          "--device", "cpu", "--cache-dir", cache_arg])
        assert result.code == 0, result.err[-2000:]
        outputs[name] = out.read_bytes()
    assert outputs["cached"] == outputs["uncached"]


def _encoder(tmp_path: Path) -> Path:
    """A random tiny encoder with the preprocessing the two fillers used (8 mm, 16^3)."""
    path = tmp_path / "encoder.pt"
    if not path.exists():
        import torch

        from neuro_ssl.data.transforms import PreprocessConfig
        from neuro_ssl.models import build_encoder, save_encoder

        torch.manual_seed(0)
        encoder = build_encoder("resnet10", 1, "batch", width=0.125)
        preprocess = PreprocessConfig((8.0,) * 3, (16, 16, 16)).to_dict()
        save_encoder(path, encoder, {"preprocess": preprocess, "subjects": []})
    return path
