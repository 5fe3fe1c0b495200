"""Hostile and unusual inputs: escaping symlinks, rootless unpack, PySquashfsImage fallback,
legacy writable images, unreadable files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from base.errors import BuildError
from builder.images.convert import extract_image, write_image
from builder.images.probe import probe
from builder.images.reader import open_tree
from builder.images.squashfs import PackOptions, unpack

from .conftest import need, run

ROOT = Path(__file__).resolve().parents[2]
EPOCH = PackOptions(source_date_epoch=1700000000)


@pytest.fixture
def shared_tmp(nobody):
    """A directory the unprivileged user 'nobody' can use (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="sbuild-test-", dir="/tmp"))
    d.chmod(0o1777)
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


def _as_nobody(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"]})


def test_symlinks_never_leave_the_image(tmp_path: Path, rootfs: Path) -> None:
    """A runscript linking to /etc/passwd reads the image's file, never the host's."""
    sd = rootfs / ".singularity.d"
    (sd / "runscript").unlink()
    (sd / "runscript").symlink_to("../../../../../../etc/hello.txt")
    (sd / "test").symlink_to("/etc/passwd")
    (sd / "loop").symlink_to("loop")
    write_image(rootfs, tmp_path / "a.simg", "simg", options=EPOCH)
    for image in (rootfs, tmp_path / "a.simg"):
        with open_tree(image) as tree:
            assert tree.read_text("/.singularity.d/runscript") == "hello from the image\n"
            assert tree.read_bytes("/.singularity.d/test") is None  # no /etc/passwd in the image
            assert tree.read_bytes("/.singularity.d/loop") is None
            assert tree.read_bytes("/../../etc/hostname") is None


def test_pysquashfsimage_fallback_gives_same_tree(tmp_path: Path, rootfs: Path) -> None:
    (rootfs / "etc" / "link").symlink_to("hello.txt")
    os.link(rootfs / "etc" / "hello.txt", rootfs / "etc" / "hard")
    write_image(rootfs, tmp_path / "a.simg", "simg", options=EPOCH)
    info = probe(tmp_path / "a.simg")
    unpack(info.path, tmp_path / "py", offset=info.fs_offset, use_unsquashfs=False)
    unpack(info.path, tmp_path / "us", offset=info.fs_offset)
    diff = subprocess.run(["diff", "-r", "--no-dereference", tmp_path / "py", tmp_path / "us"],
                          capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout
    st = os.stat(tmp_path / "py" / "etc" / "hard")
    assert st.st_nlink == 2 and st.st_ino == os.stat(tmp_path / "py" / "etc" / "hello.txt").st_ino


def test_lz4_image_readable(tmp_path: Path, rootfs: Path) -> None:
    pytest.importorskip("lz4", reason="the lz4 module is not installed (pip install lz4)")
    write_image(rootfs, tmp_path / "a.sqfs", "squashfs", options=PackOptions(mksquashfs_args=("-comp", "lz4")))
    with open_tree(tmp_path / "a.sqfs") as tree:
        assert tree.read_text("/etc/hello.txt") == "hello from the image\n"


def test_rootless_extract_skips_devices(shared_tmp: Path, rootfs: Path) -> None:
    os.mknod(rootfs / "dev" / "null", 0o666 | 0o020000, os.makedev(1, 3))
    image = shared_tmp / "a.sif"
    write_image(rootfs, image, "sif", options=EPOCH)
    dest = shared_tmp / "sb"
    proc = _as_nobody(f"from builder.images import extract_image; extract_image({str(image)!r}, {str(dest)!r})")
    assert proc.returncode == 0, proc.stderr
    assert (dest / "etc" / "hello.txt").read_text() == "hello from the image\n"
    assert (dest / "dev").is_dir() and list((dest / "dev").iterdir()) == []
    assert (dest / "etc" / "hello.txt").stat().st_uid == 65534


def test_rootless_pack_is_all_root_and_refuses_unreadable(shared_tmp: Path, rootfs: Path) -> None:
    src = shared_tmp / "rootfs"
    shutil.copytree(rootfs, src, symlinks=True)
    subprocess.run(["chown", "-R", "65534:65534", str(src)], check=True)
    code = (f"from builder.images import write_image; "
            f"write_image({str(src)!r}, {str(shared_tmp / 'a.sqfs')!r}, 'squashfs')")
    proc = _as_nobody(code)
    assert proc.returncode == 0, proc.stderr
    listing = run(need("unsquashfs"), "-lln", shared_tmp / "a.sqfs").stdout
    assert "65534" not in listing and "0/0" in listing
    secret = src / "etc" / "secret"
    secret.write_text("s")
    secret.chmod(0o600)  # owned by root: nobody cannot read it
    code = (f"from builder.images import write_image; "
            f"write_image({str(src)!r}, {str(shared_tmp / 'b.sqfs')!r}, 'squashfs')")
    proc = _as_nobody(code)
    assert proc.returncode != 0 and "could not read 1 file" in proc.stderr
    assert not (shared_tmp / "b.sqfs").exists()
    secret.unlink()
    locked = src / "opt" / "locked"
    locked.mkdir(parents=True)
    (locked / "data").write_text("d")
    locked.chmod(0o700)  # owned by root: mksquashfs skips the directory and exits 0
    code = code.replace("b.sqfs", "c.sqfs")
    proc = _as_nobody(code)
    assert proc.returncode != 0 and "could not read 1 file" in proc.stderr and "locked" in proc.stderr
    assert not (shared_tmp / "c.sqfs").exists()


def test_unreadable_file_fails_the_pack(tmp_path: Path, rootfs: Path) -> None:
    """mksquashfs stores unreadable files empty and exits 0; we do not."""
    if os.geteuid() == 0:
        pytest.skip("root reads everything; covered by the rootless test")
    (rootfs / "etc" / "secret").write_text("s")
    (rootfs / "etc" / "secret").chmod(0)
    with pytest.raises(BuildError, match="could not read"):
        write_image(rootfs, tmp_path / "a.sqfs", "squashfs")


def test_legacy_writable_ext3_simg(tmp_path: Path, rootfs: Path) -> None:
    """Singularity 2.x --writable images: launch line + ext3."""
    write_image(rootfs, tmp_path / "fs.ext3", "ext3")
    legacy = tmp_path / "legacy.img"
    legacy.write_bytes(b"#!/usr/bin/env run-singularity\n" + (tmp_path / "fs.ext3").read_bytes())
    info = probe(legacy)
    assert (info.kind, info.fstype, info.fs_offset) == ("ext3", "ext3", 31)
    extract_image(legacy, tmp_path / "sb")
    assert (tmp_path / "sb" / "etc" / "hello.txt").read_text() == "hello from the image\n"
    assert os.readlink(tmp_path / "sb" / "bin" / "sh") == "busybox"
