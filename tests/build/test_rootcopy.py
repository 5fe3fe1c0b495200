"""``builder.rootfs.copy`` gives what ``cp -fLr`` and ``cp -a -T`` give on ordinary trees.

The copy that cannot leave the rootfs replaced the two cp calls of ``%files``; on a tree with
no hostile link the results must be the same: contents, modes (setuid, sticky, read-only
directories), owners, times and hard links for the stage copy, dereferenced links for the
host copy, merges into existing directories. Each case runs real cp beside it and compares.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from builder.rootfs.copy import copy_from_host, copy_from_stage


def _tree(top: Path, *, times: bool) -> dict:
    """Everything a user would notice about the tree under ``top``."""
    seen: dict[tuple[int, int], str] = {}
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(top))
            entry = [stat.filemode(st.st_mode), st.st_uid, st.st_gid]
            if stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                entry.append(p.read_bytes())
                entry.append(seen.setdefault((st.st_dev, st.st_ino), rel))  # hard links share the first name
            if times and not stat.S_ISLNK(st.st_mode):
                entry.append(st.st_mtime_ns)
                entry.append({a: os.getxattr(p, a) for a in sorted(os.listxattr(p))})
            out[rel] = entry
    return out


def _source(top: Path) -> Path:
    src = top / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "file").write_text("file\n")
    (src / "suid").write_text("#!/bin/sh\n")
    os.chmod(src / "suid", 0o4755)
    (src / "sub" / "deeper" / "x").write_bytes(b"\0" * 10 + b"x")
    (src / "sticky").mkdir(mode=0o1777)
    os.chmod(src / "sticky", 0o1777)
    (src / "ro").mkdir()
    (src / "ro" / "inside").write_text("ro\n")
    os.chmod(src / "ro", 0o555)
    os.link(src / "file", src / "hard")
    (src / "rel-link").symlink_to("sub/deeper/x")
    (src / "dangling").symlink_to("nowhere")
    os.mkfifo(src / "fifo")
    os.setxattr(src / "file", "user.note", b"kept")
    os.setxattr(src / "sub", "user.note", b"dir")
    os.lchown(src / "sub", 12, 34)
    os.chown(src / "sub" / "deeper" / "x", 56, 78)
    os.utime(src / "file", ns=(1_000_000_000, 1_500_000_000_123))
    os.utime(src / "sub", ns=(2_000_000_000, 2_000_000_000))
    return src


@pytest.fixture
def root_only():
    if os.geteuid() != 0:
        pytest.skip("owners and the cp -a comparison need root")


def _dest(top: Path, name: str) -> Path:
    d = top / name / "opt"
    d.mkdir(parents=True)
    (d / "src").mkdir()
    (d / "src" / "old").write_text("kept\n")
    (d / "src" / "file").write_text("overwritten and longer than the new one\n")
    os.chmod(d / "src" / "file", 0o600)
    for p in (d / "src" / "old", d):
        os.utime(p, ns=(3_000_000_000, 3_000_000_000))
    return top / name


def test_stage_copy_matches_cp_a(tmp_path, root_only):
    src = _source(tmp_path).parent
    os.unlink(src / "src" / "dangling")
    os.unlink(src / "src" / "fifo")  # kept below as their own cases
    ours, theirs = _dest(tmp_path, "ours"), _dest(tmp_path, "theirs")
    copy_from_stage(src, "/src", ours, "/opt/")
    subprocess.run(["cp", "-a", "-T", "--", src / "src", theirs / "opt" / "src"], check=True)
    assert _tree(ours, times=True) == _tree(theirs, times=True)
    assert (ours / "opt" / "src" / "hard").stat().st_ino == (ours / "opt" / "src" / "file").stat().st_ino


def test_stage_copy_keeps_links_fifos_and_dangling_links(tmp_path, root_only):
    src = _source(tmp_path).parent
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir(), theirs.mkdir()
    copy_from_stage(src, "/src", ours, "/copy")
    subprocess.run(["cp", "-a", "-T", "--", src / "src", theirs / "copy"], check=True)
    assert _tree(ours, times=True) == _tree(theirs, times=True)


def test_host_copy_matches_cp_fLr(tmp_path, root_only):
    src = _source(tmp_path)
    os.unlink(src / "dangling")  # cp -L fails on it; so do we (below)
    ours, theirs = _dest(tmp_path, "ours"), _dest(tmp_path, "theirs")
    copy_from_host(str(src), ours, "/opt/")
    subprocess.run(["cp", "-fLr", "--", src, theirs / "opt/"], check=True)
    assert _tree(ours, times=False) == _tree(theirs, times=False)
    assert stat.S_IMODE((ours / "opt" / "src" / "file").stat().st_mode) == 0o600  # an existing file keeps its mode
    assert stat.S_IMODE((ours / "opt" / "src" / "ro").stat().st_mode) == 0o555


def test_host_copy_of_a_file_to_a_new_name_a_dir_and_a_new_dir(tmp_path, root_only):
    src = _source(tmp_path)
    for dst in ("/renamed", "/opt", "/new/dir/"):
        ours, theirs = tmp_path / "ours", tmp_path / "theirs"
        for d in (ours, theirs):
            (d / "opt").mkdir(parents=True)
        copy_from_host(str(src / "file"), ours, dst)
        target = theirs / dst.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if dst.endswith("/"):
            target.mkdir(exist_ok=True)
        subprocess.run(["cp", "-fLr", "--", src / "file", str(target) + ("/" if dst.endswith("/") else "")],
                       check=True)
        assert _tree(ours, times=False) == _tree(theirs, times=False), dst
        subprocess.run(["rm", "-rf", ours, theirs], check=True)


def test_host_copy_fails_on_a_dangling_source_and_a_directory_into_itself(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "dangling").symlink_to("nowhere")
    with pytest.raises(FileNotFoundError):
        copy_from_host(str(src), tmp_path / "rootfs-missing-too", "/x")
    rootfs = src / "rootfs"
    rootfs.mkdir()
    (src / "dangling").unlink()
    with pytest.raises(OSError, match="into itself"):
        copy_from_host(str(src), rootfs, "/")


def test_host_copy_keeps_holes(tmp_path):
    src = tmp_path / "sparse"
    with open(src, "wb") as f:
        f.truncate(1 << 30)
        f.seek(1 << 29)
        f.write(b"data")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    copy_from_host(str(src), rootfs, "/sparse")
    out = rootfs / "sparse"
    assert out.stat().st_size == 1 << 30 and out.stat().st_blocks * 512 < 1 << 20
    with open(out, "rb") as f:
        f.seek(1 << 29)
        assert f.read(4) == b"data"


def test_a_link_loop_or_a_file_in_the_way_is_an_error_naming_the_path(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "opt").mkdir(parents=True)
    (rootfs / "opt" / "loop").symlink_to("loop")
    (rootfs / "opt" / "file").write_text("in the way")
    (tmp_path / "loop").write_text("new")
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError, match="too many levels of symbolic links") as e:
        copy_from_host(str(tmp_path / "loop"), rootfs, "/opt/")
    assert e.value.filename2 == "/opt/loop"
    with pytest.raises(OSError, match="cannot overwrite non-directory with directory"):
        copy_from_host(str(tmp_path / "dir"), rootfs, "/opt/file")
    assert (rootfs / "opt" / "file").read_text() == "in the way"
