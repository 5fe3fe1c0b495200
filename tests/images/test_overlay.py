"""`sbuild image.create` / `sbuild overlay create`: ext3 with a journal, upper/ and work/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder.images.probe import probe

from .conftest import need, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shared_tmp(nobody):
    """A directory the unprivileged user 'nobody' can write (pytest's tmp_path is root-only)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="sbuild-test-", dir="/tmp"))
    d.chmod(0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_unreachable_target_is_an_image_error(shared_tmp: Path) -> None:
    locked = shared_tmp / "locked"
    locked.mkdir(mode=0o700)
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
           "builder.cli", "image.create", str(locked / "o.img")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 2 and "Permission denied" in proc.stderr, proc.stderr


def _features(img: Path) -> str:
    out = run(need("dumpe2fs"), "-h", img).stdout
    return re.search(r"Filesystem features:\s*(.*)", out).group(1)


def _ls(img: Path, path: str) -> dict[str, tuple[str, str, str]]:
    """name -> (mode, uid, gid) from debugfs ``ls -l``."""
    out = run(need("debugfs"), "-R", f"ls -l {path}", img).stdout
    entries = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 9 and f[-1] not in (".", ".."):
            entries[f[-1]] = (f[1], f[3], f[4])
    return entries


@pytest.mark.parametrize("words", [["image.create"], ["overlay", "create"]])
def test_default_overlay(tmp_path: Path, sbuild, words: list[str]) -> None:
    img = tmp_path / "data.img"
    r = sbuild(*words, img)
    assert r.status == 0, r.err
    assert img.stat().st_size == 64 << 20
    assert img.stat().st_mode & 0o777 == 0o600
    assert os.stat(img).st_blocks * 512 >= 60 << 20  # not sparse
    assert "has_journal" in _features(img)
    top = _ls(img, "/")
    assert top["upper"] == ("40755", str(os.getuid()), str(os.getgid()))
    assert top["work"] == ("40755", str(os.getuid()), str(os.getgid()))
    info = probe(img)
    assert (info.kind, info.fstype) == ("ext3", "ext3")


def test_sparse_size_and_create_dir(tmp_path: Path, sbuild) -> None:
    img = tmp_path / "o.img"
    r = sbuild("overlay", "create", "--size", "128", "--sparse", "--create-dir", "data/deep", img)
    assert r.status == 0, r.err
    assert img.stat().st_size == 128 << 20
    assert os.stat(img).st_blocks * 512 < 16 << 20
    assert "data" in _ls(img, "/upper") and "deep" in _ls(img, "/upper/data")


def test_refuses_to_overwrite_without_force(tmp_path: Path, sbuild) -> None:
    img = tmp_path / "o.img"
    img.write_bytes(b"precious")
    r = sbuild("image.create", "--sparse", img)
    assert r.status == 2 and "already exists" in r.err and "--force" in r.err
    assert img.read_bytes() == b"precious"
    r = sbuild("image.create", "--sparse", "--force", img)
    assert r.status == 0 and probe(img).kind == "ext3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.img"]


def test_too_small_and_bad_create_dir(tmp_path: Path, sbuild) -> None:
    r = sbuild("image.create", "--size", "8", tmp_path / "o.img")
    assert r.status == 2 and "minimum 64" in r.err
    r = sbuild("image.create", "--sparse", "--create-dir", "../escape", tmp_path / "o.img")
    assert r.status == 2 and "'..'" in r.err
    assert list(tmp_path.iterdir()) == []


def test_missing_directory(tmp_path: Path, sbuild) -> None:
    r = sbuild("image.create", tmp_path / "no" / "o.img")
    assert r.status == 2 and "does not exist" in r.err


def test_unprivileged_caller_owns_upper_and_work(shared_tmp: Path) -> None:
    setpriv = shutil.which("setpriv")
    img = shared_tmp / "user.img"
    cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
           "builder.cli", "overlay", "create", "--sparse", str(img)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stderr
    top = _ls(img, "/")
    assert top["upper"][1:] == ("65534", "65534") and top["work"][1:] == ("65534", "65534")
    assert "has_journal" in _features(img)
