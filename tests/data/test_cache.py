"""The disk cache: hits, invalidation by file and config, corruption rebuilt, concurrent fillers."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from neuro_ssl.data.cache import VolumeCache, array_checksum, default_cache_dir
from neuro_ssl.data.transforms import PreprocessConfig

CONFIG = PreprocessConfig(spacing_mm=4.0, shape=(12, 14, 12))


def write_volume(path: Path, seed: int, scale: float = 100.0) -> Path:
    """A small bright ellipsoid with noise, LAS with 3 mm voxels."""
    rng = np.random.default_rng(seed)
    x, y, z = np.indices((16, 18, 16)) - np.array([7.5, 8.5, 7.5])[:, None, None, None]
    data = scale * ((x / 6) ** 2 + (y / 7) ** 2 + (z / 6) ** 2 < 1) + rng.normal(5, 1, (16, 18, 16))
    affine = np.diag([-3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [24.0, -27.0, -24.0]
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))
    return path


@pytest.fixture
def volume(tmp_path) -> Path:
    return write_volume(tmp_path / "sub-01.nii.gz", seed=0)


def entry_files(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.rglob("*") if p.is_file())


def assert_same(a, b):
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.affine, b.affine)
    np.testing.assert_array_equal(a.native_affine, b.native_affine)
    assert a.native_shape == b.native_shape


def test_miss_then_hit_gives_the_same_volume(tmp_path, volume):
    cache = VolumeCache(CONFIG, tmp_path / "cache")
    first = cache.get(volume)
    second = cache.get(str(volume))
    assert cache.cache_stats() == {"hits": 1, "misses": 1, "corrupt": 0, "write_errors": 0}
    assert_same(first, second)
    uncached = VolumeCache(CONFIG, None).get(volume)
    assert_same(first, uncached)
    assert first.image.shape == (1, 12, 14, 12) and first.native_shape == (16, 18, 16)
    files = entry_files(tmp_path / "cache")
    assert sorted(p.suffix for p in files) == [".json", ".npy"]
    meta = json.loads(files[0].read_text())
    assert meta["crc32"] == array_checksum(np.load(files[1], allow_pickle=False))
    assert meta["sources"] == [str(volume)]


def test_no_cache_dir_writes_nothing(tmp_path, volume):
    cache = VolumeCache(CONFIG, None)
    cache.get(volume)
    cache.get(volume)
    assert cache.cache_stats()["misses"] == 2 and cache.cache_stats()["hits"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["sub-01.nii.gz"]


def test_rewritten_file_is_preprocessed_again_and_a_touched_one_is_not(tmp_path, volume):
    cache = VolumeCache(CONFIG, tmp_path / "cache")
    before = cache.get(volume)
    write_volume(volume, seed=0, scale=300.0)  # same path, new content
    after = cache.get(volume)
    assert cache.stats["misses"] == 2
    assert not np.array_equal(before.image, after.image)
    np.testing.assert_array_equal(after.image, VolumeCache(CONFIG).get(volume).image)
    st = volume.stat()
    os.utime(volume, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touch: same bytes, same volume
    cache.get(volume)
    assert cache.stats["misses"] == 2 and cache.stats["hits"] == 1


def write_uncompressed(path: Path, seed: int) -> Path:
    """An uncompressed NIfTI: its size depends only on shape and dtype, whatever the voxels hold."""
    img = nib.load(str(write_volume(path.with_name(f"{path.name}.tmp.nii.gz"), seed=seed)))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) * (1 + seed), img.affine), str(path))
    path.with_name(f"{path.name}.tmp.nii.gz").unlink()
    return path


@pytest.mark.parametrize("same_process", [True, False])
def test_cp_p_rewrite_with_same_size_and_restored_mtime_is_seen(tmp_path, same_process):
    """``cp -p other scan.nii`` (same size, mtime restored, same inode) must not return the old volume."""
    import shutil

    scan, other = write_uncompressed(tmp_path / "scan.nii", 0), write_uncompressed(tmp_path / "other.nii", 1)
    assert scan.stat().st_size == other.stat().st_size
    st = scan.stat()
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))  # cp -p carries this mtime over
    cache = VolumeCache(CONFIG, tmp_path / "cache")
    old = cache.get(scan)
    shutil.copy2(other, scan)  # content and mtime, written into the same inode, as cp -p does
    after = scan.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    new = (cache if same_process else VolumeCache(CONFIG, tmp_path / "cache")).get(scan)
    truth = VolumeCache(CONFIG, None).get(other)
    np.testing.assert_array_equal(new.image, truth.image)
    assert not np.array_equal(new.image, old.image)


def test_content_hash_off_keys_on_size_and_mtime(tmp_path, volume):
    """``content_hash=False``: no read, but blind to a same-size rewrite that restores the mtime."""
    plain = VolumeCache(CONFIG, tmp_path / "c1", content_hash=False)
    hashed = VolumeCache(CONFIG, tmp_path / "c2")
    key_plain, key_hashed = plain.key([str(volume)]), hashed.key([str(volume)])
    st = volume.stat()
    raw = bytearray(volume.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # the middle of the file: a head/tail hash would miss it too
    volume.write_bytes(bytes(raw))
    os.utime(volume, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert plain.key([str(volume)]) == key_plain
    assert hashed.key([str(volume)]) != key_hashed


def corrupt_truncate(npy: Path, sidecar: Path):
    npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])


def corrupt_flip_byte(npy: Path, sidecar: Path):
    raw = bytearray(npy.read_bytes())
    raw[-17] ^= 0x40  # inside the data, same size: only the checksum can tell
    npy.write_bytes(bytes(raw))


def corrupt_sidecar(npy: Path, sidecar: Path):
    sidecar.write_text('{"shape": [1, 12')


def corrupt_pickled(npy: Path, sidecar: Path):
    np.save(npy, np.array([{"evil": 1}], dtype=object), allow_pickle=True)


def corrupt_empty(npy: Path, sidecar: Path):
    npy.write_bytes(b"")


@pytest.mark.parametrize("damage", [corrupt_truncate, corrupt_flip_byte, corrupt_sidecar, corrupt_pickled, corrupt_empty])
def test_corrupt_entry_is_detected_deleted_and_rebuilt(tmp_path, volume, damage):
    cache = VolumeCache(CONFIG, tmp_path / "cache")
    good = cache.get(volume)
    npy, sidecar = cache.entry_paths(cache.key([str(volume)]))
    damage(npy, sidecar)
    again = cache.get(volume)
    assert cache.stats["corrupt"] == 1 and cache.stats["hits"] == 0 and cache.stats["misses"] == 2
    assert_same(good, again)
    third = cache.get(volume)  # the rebuilt entry is whole again
    assert cache.stats["hits"] == 1
    assert_same(good, third)


def test_unwritable_cache_warns_once_and_still_works(tmp_path, volume):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = VolumeCache(CONFIG, blocker)
    with pytest.warns(RuntimeWarning, match="not writable"):
        result = cache.get(volume)
    assert result.image.shape == (1, 12, 14, 12)
    cache.get(volume)
    assert cache.stats["write_errors"] == 2


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURO_SSL_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("NEURO_SSL_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "neuro-ssl"


def _fill(cache_dir: str, paths: list[str], barrier, queue) -> None:
    """One of two processes filling the same cache at the same moment."""
    import torch

    torch.set_num_threads(1)  # as DataLoader workers do
    cache = VolumeCache(CONFIG, Path(cache_dir))
    barrier.wait()
    sums = [array_checksum(cache.get(p).image) for p in paths]
    queue.put((sums, cache.cache_stats()))


def test_two_processes_fill_one_cache_correctly(tmp_path):
    paths = [str(write_volume(tmp_path / f"s{i}.nii.gz", seed=i)) for i in range(4)]
    expected = [array_checksum(VolumeCache(CONFIG).get(p).image) for p in paths]
    ctx = mp.get_context("fork")  # real processes, as DataLoader workers are; no 5 s re-import of MONAI
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_fill, args=(str(tmp_path / "cache"), order, barrier, queue))
               for order in (paths, list(paths))]  # same order: both write the same entries at once
    for w in workers:
        w.start()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert sorted(results[0][0]) == sorted(expected) and sorted(results[1][0]) == sorted(expected)
    assert all(r[1]["corrupt"] == 0 and r[1]["misses"] >= 1 for r in results)
    files = entry_files(tmp_path / "cache")
    assert not [f for f in files if f.name.startswith(".tmp-")]  # no half-written leftovers
    assert len(files) == 2 * len(paths)
    reader = VolumeCache(CONFIG, tmp_path / "cache")
    assert [array_checksum(reader.get(p).image) for p in paths] == expected
    assert reader.cache_stats()["hits"] == len(paths) and reader.cache_stats()["corrupt"] == 0


def test_the_brain_mask_file_is_part_of_the_key(tmp_path, volume):
    """A scan's mask file takes part in the key (edit it, the entry is rebuilt); Preprocessed.mask
    is the masked preprocessing's support, the same from a fresh entry and from the disk."""
    cache = VolumeCache(CONFIG, tmp_path / "cache")
    mask_path = tmp_path / "mask.nii.gz"
    affine = np.diag([-3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [24.0, -27.0, -24.0]
    small = np.zeros((16, 18, 16), dtype=np.uint8)
    small[5:11, 6:12, 5:11] = 1
    nib.save(nib.Nifti1Image(small, affine), str(mask_path))
    auto, masked = cache.get(volume), cache.get(volume, mask=mask_path)
    assert cache.key([str(volume)]) != cache.key([str(volume)], mask=str(mask_path))
    assert masked.mask.sum() < auto.mask.sum()
    again = cache.get(volume, mask=mask_path)
    assert cache.cache_stats()["hits"] == 1
    np.testing.assert_array_equal(again.mask, masked.mask)
    np.testing.assert_array_equal(masked.mask, (masked.image != 0).any(0))
    small[:] = 0
    small[7:9, 8:10, 7:9] = 1
    nib.save(nib.Nifti1Image(small, affine), str(mask_path))
    os.utime(mask_path, ns=(1, 1))  # a new mtime whatever the clock's resolution
    smaller = cache.get(volume, mask=mask_path)
    assert smaller.mask.sum() < masked.mask.sum()
    plain = VolumeCache(PreprocessConfig(spacing_mm=4.0, shape=(12, 14, 12), mask_background=False), None)
    unmasked = plain.get(volume, mask=mask_path)
    assert unmasked.mask is None and plain.key([str(volume)]) == plain.key([str(volume)], mask=str(mask_path))
