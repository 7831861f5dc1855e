"""Atomic writers: readable by colleagues, nothing half-written under a final name."""

import os
import stat

import pytest

from neuro_ssl._utils.files import atomic_path, write_text


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_failed_write_leaves_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "m.csv"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]


def test_worker_errors_lose_torch_traceback():
    from neuro_ssl.cli._common import one_line

    exc = RuntimeError(
        "Caught ImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nneuro_ssl.errors.ImageError: m.csv row 3: a.nii.gz: NaN voxels\n'
    )
    assert one_line(exc) == "m.csv row 3: a.nii.gz: NaN voxels"
