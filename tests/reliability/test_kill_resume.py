"""Kill -9 during pretraining (at a random step, and in the middle of a checkpoint write), then --resume.

The pretrainer promises exact resume (``training/pretrain.py``: data order and views are functions
of (seed, epoch, index), and checkpoint.pt carries model, momentum target, queue, optimizer,
scheduler and RNG state), so a killed-and-resumed run must end with the weights, bit for bit, and
the metrics.csv of the uninterrupted ``reference_run``. Checkpoints are written with
``_utils.files.torch_save`` (temporary file, fsync, ``os.replace``), so a kill at any instant
leaves every final name loadable and at worst a ``.tmp-*`` stray.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from .helpers import (PRETRAIN, REPO, assert_same_tensors, check_run_folder, load_state, run_cli, start_cli,
                      subprocess_env)

#: the seed of the random choice of the step to kill at (change it to explore other steps)
KILL_SEED = 20260607
POLL_S = 0.01


def _total_steps(reference_run: Path) -> int:
    return int(pd.read_csv(reference_run / "metrics.csv")["step"].iloc[-1])


def _checkpoint_versions_seen(path: Path, seen: set) -> int:
    """Count distinct versions of ``path`` (each atomic replace is a new inode/mtime pair)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return len(seen)
    seen.add((st.st_ino, st.st_mtime_ns, st.st_size))
    return len(seen)


def _resume_and_compare(cohort, cache_dir, run: Path, reference_run: Path, stopped_at: int) -> None:
    """``--resume`` finishes the run; its weights and metrics equal the uninterrupted run's."""
    result = run_cli(["pretrain", "--manifest", cohort, "--out", run, "--cache-dir", cache_dir, *PRETRAIN, "--resume"])
    assert result.code == 0, result.err[-3000:]
    assert f"step {stopped_at}" in result.err, result.err  # "resuming at epoch E, step S"
    assert (run / "encoder.pt").is_file()
    straight, resumed = load_state(reference_run / "checkpoint.pt"), load_state(run / "checkpoint.pt")
    assert resumed["global_step"] == straight["global_step"]
    for part in ("model", "target", "queue"):
        assert_same_tensors(straight[part], resumed[part], part)
    assert_same_tensors(load_state(reference_run / "encoder.pt")["state_dict"],
                        load_state(run / "encoder.pt")["state_dict"], "encoder.pt")
    a, b = pd.read_csv(reference_run / "metrics.csv"), pd.read_csv(run / "metrics.csv")
    assert b["step"].is_monotonic_increasing and b["step"].is_unique
    pd.testing.assert_frame_equal(a.drop(columns="volumes_per_s"), b.drop(columns="volumes_per_s"))


def test_kill9_at_a_random_step_then_resume_ends_bit_identical(cohort, cache_dir, reference_run, tmp_path):
    total = _total_steps(reference_run)
    kill_after = random.Random(KILL_SEED).randint(1, total - 2)  # leave steps to do after the kill
    run = tmp_path / "run"
    proc = start_cli(["pretrain", "--manifest", cohort, "--out", run, "--cache-dir", cache_dir, *PRETRAIN])
    seen: set = set()
    deadline = time.monotonic() + 300
    try:
        while _checkpoint_versions_seen(run / "checkpoint.pt", seen) < kill_after:
            assert proc.poll() is None, f"pretrain ended before step {kill_after}: {proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "pretrain made no progress"
            time.sleep(POLL_S)
        proc.send_signal(signal.SIGKILL)
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]

    strays = check_run_folder(run)  # every final name parses; only .tmp-* strays may be torn
    assert all(p.name.startswith(".tmp-") for p in strays)
    stopped_at = load_state(run / "checkpoint.pt")["global_step"]
    assert kill_after <= stopped_at < total, (kill_after, stopped_at, total)
    if (run / "metrics.csv").exists():
        assert pd.read_csv(run / "metrics.csv")["step"].max() <= stopped_at
    _resume_and_compare(cohort, cache_dir, run, reference_run, stopped_at)


#: a child that runs ``neuro-ssl pretrain`` but, at the N-th checkpoint write, writes half the bytes
#: to the temporary file, fsyncs them and SIGKILLs itself: a power cut in the middle of a save
_TEARING_DRIVER = textwrap.dedent("""
    import io, os, signal, sys
    from pathlib import Path
    import torch

    tear_at, argv = int(sys.argv[1]), sys.argv[2:]
    real_save, count = torch.save, 0

    def tearing_save(obj, f, *args, **kwargs):
        global count
        if Path(str(f)).name.startswith(".tmp-checkpoint-"):
            count += 1
            if count == tear_at:
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                with open(f, "wb") as fh:
                    fh.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                    fh.flush()
                    os.fsync(fh.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kwargs)

    torch.save = tearing_save
    from neuro_ssl.cli.main import main
    sys.exit(main(argv))
""")


def test_kill_in_the_middle_of_a_checkpoint_write_keeps_the_previous_one(cohort, cache_dir, reference_run, tmp_path):
    total = _total_steps(reference_run)
    tear_at = random.Random(KILL_SEED + 1).randint(2, total - 1)  # one checkpoint per step (--checkpoint-every 1)
    driver = tmp_path / "tearing_driver.py"
    driver.write_text(_TEARING_DRIVER)
    run = tmp_path / "run"
    argv = ["pretrain", "--manifest", cohort, "--out", run, "--cache-dir", cache_dir, *PRETRAIN]
    proc = subprocess.run([sys.executable, str(driver), str(tear_at), *map(str, argv)], env=subprocess_env(),
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    strays = check_run_folder(run)
    torn = [p for p in strays if p.name.startswith(".tmp-checkpoint-")]
    assert len(torn) == 1 and strays == torn, strays
    with pytest.raises(Exception):  # the stray really is the torn half of the write
        load_state(torn[0])
    previous = load_state(run / "checkpoint.pt")
    assert previous["global_step"] == tear_at - 1
    assert load_state(run / "encoder.pt")["meta"]["global_step"] == tear_at - 1
    _resume_and_compare(cohort, cache_dir, run, reference_run, tear_at - 1)
