"""A squashfs image whose data blocks are corrupt (issue 9, item 3: partial images cached
and run). Unprivileged, the image is extracted: a failed extraction is an error naming the
image and unsquashfs's message, and nothing enters the rootfs cache (a second run fails
the same way, not with "no such file" from a partial tree). As root the image is
loop-mounted and the command dies of SIGBUS on the unreadable block: the exit status stays
128+SIGBUS and the message says the image may be corrupt. A conversion of the image fails
the same way, leaving nothing beside the target.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")


def _busybox_range(image: Path, offset: int = 0) -> tuple[int, int]:
    """Where /bin/busybox's compressed blocks lie in ``image`` (start, end), from its inode
    (PySquashfsImage) and the superblock's inode table start (what follows the data)."""
    from base.squashfs import open_image

    with open(image, "rb") as f:
        f.seek(offset + 64)
        (inode_table,) = struct.unpack("<Q", f.read(8))
    with open_image(image, offset) as im:
        starts = [f.inode.start_block for f in im if f.is_file]
        start = im.select("/bin/busybox").inode.start_block
    end = min([s for s in starts if s > start] + [inode_table])
    return offset + start, offset + end


def _corrupt_image(sandbox: Path, out: Path, fmt: str) -> Path:
    """``sandbox`` packed by sbuild's packer as ``out``, then every block of busybox but the
    first (the ELF headers exec reads) overwritten: running any applet touches a bad block."""
    subprocess.run([SBUILD, "build", "--format", fmt, sandbox, out], check=True, capture_output=True,
                   env={**os.environ, "SBUILD_PACKER": "auto"})
    fs_offset = 0
    if fmt == "sif":
        from builder.images.probe import probe

        fs_offset = probe(str(out)).fs_offset
    start, end = _busybox_range(out, fs_offset)
    assert end - start > 4 * 131072, (start, end)  # busybox spans several blocks
    with open(out, "r+b") as f:
        f.seek(start + 131072)
        f.write(bytes(range(256)) * ((end - start - 131072) * 3 // 4 // 256))
    return out


def _user_fuse(profile) -> bool:
    """Unprivileged runs mount with squashfuse (reads fail with EIO: SIGBUS) when the user
    may open /dev/fuse; otherwise they extract the image."""
    if shutil.which("squashfuse") is None or not os.path.exists("/dev/fuse"):
        return False
    st = os.stat("/dev/fuse")
    return bool(st.st_mode & stat.S_IROTH and st.st_mode & stat.S_IWOTH)


def _cache_entries(profile) -> list[str]:
    rootfs = profile.cache / "rootfs"
    return sorted(n for n in os.listdir(rootfs) if n != "index" and not n.endswith(".lock")) if rootfs.is_dir() else []


@pytest.mark.parametrize("fmt", ["squashfs", "sif"])
def test_partial_images_cached_and_run(profile, images, workdir, fmt):
    bad = _corrupt_image(images["sandbox"], workdir / f"bad.{fmt}", fmt)
    profile.own(workdir)
    before = _cache_entries(profile)
    for attempt in (1, 2):
        r = profile.sbuild("exec", bad, "true")
        assert "no such file" not in r.err.lower(), r.err
        if profile.name == "root" or _user_fuse(profile):
            assert r.status == 128 + 7, r.err  # SIGBUS, as a shell reports it
            assert "killed by SIGBUS" in r.err and f"the image {bad} may be corrupt" in r.err, r.err
            continue
        assert r.status == 2, r.err
        # unsquashfs's own words vary with which of its threads hits the bad block first
        # ("failed to read", "gzip uncompress failed"): the status and the image are what count
        assert f"unpacking {bad} with unsquashfs: exit status 1: " in r.err, r.err
        assert _cache_entries(profile) == before, attempt  # no partial tree, no temp dir
    r = profile.sbuild("exec", images["squashfs"], "true")  # the cache still works for a sound image
    assert r.status == 0, r.err


def test_partial_images_converted(profile, images, workdir):
    bad = _corrupt_image(images["sandbox"], workdir / "bad.sif", "sif")
    profile.own(workdir)
    out = workdir / "out"
    r = profile.sbuild("build", "--sandbox", out, bad)
    assert r.status == 2, r.err
    assert f"unpacking {bad} with unsquashfs" in r.err, r.err
    assert sorted(os.listdir(workdir)) == ["bad.sif"]  # no OUT, no temp beside it


def test_partial_images_extracted_without_unsquashfs(tmp_path):
    """The PySquashfsImage fallback: a corrupt block is an ImageError too, not a crash."""
    from base.errors import ImageError
    from base.squashfs import unpack

    (tmp_path / "sb" / "bin").mkdir(parents=True)
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", tmp_path / "sb" / "bin" / "busybox")
    bad = _corrupt_image(tmp_path / "sb", tmp_path / "bad.sqfs", "squashfs")
    with pytest.raises(ImageError, match=f"unpacking {bad} with PySquashfsImage"):
        unpack(bad, tmp_path / "out", rootless=True, use_unsquashfs=False)
