"""rbda.atomic: complete files appear under their final name, failures leave nothing."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rbda.atomic import _temporary_prefix, atomic_path, check_output_path, sweep_stale_temporaries, write_json
from rbda.errors import SettingError


def test_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("data")
        assert not target.exists()
    assert target.read_text() == "data"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_failure_leaves_no_file(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_mode_follows_umask_not_mkstemp(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_write_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "a.json", {"x": float("nan")})
    assert list(tmp_path.iterdir()) == []


# --- temporaries left by a process killed hard are swept by the next write -------------------

def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporary_of_a_dead_process_is_swept_by_the_next_write(tmp_path):
    target = tmp_path / "store.parquet"
    pid = dead_pid()
    stale = tmp_path / f"{_temporary_prefix(target, pid)}abcd_123.parquet.tmp"
    stale.write_bytes(b"half a file")
    live = tmp_path / f"{_temporary_prefix(target, os.getppid())}efgh_456.parquet.tmp"  # a running process
    live.write_bytes(b"being written")
    other_target = tmp_path / f"{_temporary_prefix(tmp_path / 'other.parquet', pid)}ijkl_789.parquet.tmp"
    other_target.write_bytes(b"not this target's")
    other_host = tmp_path / f".store.parquet.rbda-someotherhost-{pid}-mnop_000.parquet.tmp"
    other_host.write_bytes(b"another node's")
    lookalike = tmp_path / f".store.parquet.{pid}.tmp"
    lookalike.write_bytes(b"a user's file")
    with atomic_path(target, suffix=".parquet.tmp") as tmp:
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert not stale.exists()
    assert all(p.exists() for p in (live, other_target, other_host, lookalike))


KILLED_WRITER = """
import os, sys, time
from rbda.atomic import atomic_path
with atomic_path(sys.argv[1], suffix=".parquet.tmp") as tmp:
    tmp.write_bytes(b"partial")
    print(tmp, flush=True)
    time.sleep(60)
"""


def test_writer_killed_mid_write_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    target = tmp_path / "out.parquet"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        tmp = Path(child.stdout.readline().strip())
        assert tmp.exists() and tmp.parent == tmp_path
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert tmp.exists() and not target.exists()  # SIGKILL skips every clean-up
    assert sweep_stale_temporaries(target) == [tmp]
    assert list(tmp_path.iterdir()) == []


# --- output paths checked before any work ---------------------------------------------------

def test_output_equal_to_an_input_is_refused_by_any_name(tmp_path):
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(b"raw data")
    alias = tmp_path / "alias.pkl"
    alias.symlink_to(raw)
    for output in (raw, alias, tmp_path / "." / "raw.pkl"):
        with pytest.raises(SettingError, match=r"--output.*is the input"):
            check_output_path(output, "--output", inputs=[raw])
    assert raw.read_bytes() == b"raw data"


def test_output_inside_an_input_folder_is_refused(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(SettingError, match=r"--output.*is inside the input"):
        check_output_path(tmp_path / "raw" / "sub" / "new.parquet", "--output", inputs=[tmp_path / "raw"])
    assert check_output_path(tmp_path / "rawer.parquet", "--output", inputs=[tmp_path / "raw"])


def test_output_folder_file_parent_and_unwritable_place_are_refused(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(SettingError, match=r"--report.*existing folder"):
        check_output_path(tmp_path / "folder", "--report")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SettingError, match=r"--output.*'.*file' is a file"):
        check_output_path(tmp_path / "file" / "deeper" / "out.parquet", "--output")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: no unwritable folder to test with")
def test_output_in_an_unwritable_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(SettingError, match="not writable"):
            check_output_path(locked / "out.parquet", "--output")
    finally:
        locked.chmod(0o700)
