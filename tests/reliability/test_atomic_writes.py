"""Atomic writes must not change what a user can do with the files: same permissions as any new file.

``_utils.files.atomic_path`` writes through ``tempfile.mkstemp``, which creates files with mode
0600 whatever the umask, and ``os.replace`` keeps that mode on the final name. On a shared
machine a colleague (or a group-run pipeline) must be able to read a run folder exactly as if
the files had been written with ``open(path, "w")``: mode ``0o666 & ~umask``.
"""

from __future__ import annotations

import os
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_run_folder_files_get_the_permissions_of_any_new_file(reference_run, tmp_path):
    probe = tmp_path / "plain.txt"
    probe.write_text("written with open()")
    expected = 0o666 & ~_umask()
    assert probe.stat().st_mode & 0o777 == expected
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in sorted(Path(reference_run).iterdir()) if p.is_file()}
    wrong = {name: mode for name, mode in modes.items() if int(mode, 8) != expected}
    assert not wrong, f"expected {oct(expected)} (umask {oct(_umask())}), got {wrong}"
