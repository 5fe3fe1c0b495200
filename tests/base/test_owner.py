"""``base.owner``: temp directories whose owner's death shows (issue 9, item 6: leftovers).
Owners are real processes: one that is still running, one that was SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from base.owner import OWNER, held_file, owned_dir, reclaim

ROOT = Path(__file__).resolve().parents[2]
_MAKE = ("import sys, time; from base.owner import owned_dir, held_file; d = owned_dir(sys.argv[1], 'x-'); "
         "held_file(sys.argv[1], 'f-'); print(d.path, flush=True); time.sleep(600)")


def _owner_process(parent: Path) -> tuple[subprocess.Popen, Path]:
    p = subprocess.Popen([sys.executable, "-c", _MAKE, str(parent)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return p, Path(p.stdout.readline().strip())


def test_leftovers_reclaim_removes_only_what_a_dead_owner_left(tmp_path):
    live, live_dir = _owner_process(tmp_path)
    dead, dead_dir = _owner_process(tmp_path)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait(10)
        (dead_dir / "ro").mkdir(mode=0o500)  # a read-only directory inside: removed all the same
        mine = owned_dir(tmp_path, "x-")
        kept = owned_dir(tmp_path, "x-")
        kept.disown()
        (tmp_path / "x-norecord").mkdir()
        (tmp_path / "x-link").symlink_to(dead_dir)
        assert reclaim(tmp_path, ["x-"]) == [dead_dir]
        assert not dead_dir.exists()
        assert all(p.is_dir() for p in (live_dir, mine.path, kept.path, tmp_path / "x-norecord"))
        assert (tmp_path / "x-link").is_symlink()
        assert not (kept.path / OWNER).exists()
        mine.release()  # released, not removed: now anyone may reclaim it
        assert reclaim(tmp_path, ["x-"]) == [mine.path]
    finally:
        for p in (live, dead):
            p.kill()
            p.wait(10)
            p.stdout.close()
    assert reclaim(tmp_path, ["x-"]) == [live_dir]


def test_leftovers_held_file_is_held_from_its_first_name(tmp_path):
    import fcntl

    fd, path = held_file(tmp_path / "tmp", "blob-")
    try:
        assert path.name.startswith("blob-") and os.listdir(tmp_path / "tmp") == [path.name]
        other = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("a held file could be taken")
            except BlockingIOError:
                pass
            fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)  # readers share it
        finally:
            os.close(other)
    finally:
        os.close(fd)


def test_leftovers_held_file_has_no_name_until_it_is_held(tmp_path, monkeypatch):
    # a writer killed at any point must leave no temp name that nobody would ever reclaim
    # (the reliability suite's SIGKILL points once hit the old window between a `.new-…`
    # name and its lock): when the lock is taken the file must have no name yet (O_TMPFILE),
    # and afterwards only its held name exists
    import fcntl

    real, at_lock = fcntl.flock, []

    def flock(fd, op):
        at_lock.append(sorted(os.listdir(tmp_path / "tmp")))
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    fd, path = held_file(tmp_path / "tmp", "blob-")
    monkeypatch.undo()
    try:
        assert at_lock == [[]], at_lock  # (the fallback for file systems without O_TMPFILE shows `.new-…` here)
        assert os.listdir(tmp_path / "tmp") == [path.name] and path.name.startswith("blob-")
        os.write(fd, b"data")
        assert path.read_bytes() == b"data"
    finally:
        os.close(fd)
