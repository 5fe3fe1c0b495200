"""Hostile layers that used to crash sbuild with an internal error (issue 9, item 4): each is
built in memory and applied as root and rootless; it either applies or fails with a
``LayerError`` that names the entry, and a canary directory beside the rootfs is untouched."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import images as I
import pytest

from base.errors import ImageError
from base.fsutil import remove_tree
from builder.images.sqfs_pack import pack_directory
from builder.sources.oci import LayerApplier
from builder.sources.oci.errors import LayerError
from builder.sources.oci.stream import decompressed
from builder.steps.checks import tree_size

ROOT = Path(__file__).resolve().parents[2]
MODES = pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])


@pytest.fixture
def canary(tmp_path: Path):
    """A directory beside the rootfs ``tmp_path/r``, checked unchanged after the test; the
    rootfs is removed then (pytest's own clean-up recurses, and a deep tree stops it)."""
    c = tmp_path / "canary"
    (c / "dir").mkdir(parents=True)
    (c / "dir" / "file").write_text("keep")
    before = I.file_tree(c)
    yield c
    remove_tree(tmp_path / "r")
    assert I.file_tree(c) == before


def apply(root: Path, *layers: bytes, rootless: bool = False) -> Path:
    applier = LayerApplier(root, rootless=rootless)
    for layer in layers:
        applier.apply(io.BytesIO(layer))
    applier.finish()
    return root


def _levels(root: Path) -> int:
    """Directory levels below ``root`` along its first subdirectories (a loop, by fds)."""
    fd, levels = os.open(root, os.O_RDONLY | os.O_DIRECTORY), 0
    while subdirs := _subdirs(fd):
        child = os.open(subdirs[0], os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd, levels = child, levels + 1
    os.close(fd)
    return levels


def _subdirs(fd: int) -> list[str]:
    with os.scandir(fd) as it:
        return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))


@MODES
def test_entry_1500_levels_deep_applies_packs_and_is_removed(tmp_path, canary, rootless):
    deep = "/".join(["a"] * 1500)
    root = apply(tmp_path / "r", I.tar_bytes([I.f(deep + "/f", "bottom", mode=0o400)]), rootless=rootless)
    assert _levels(root) == 1500 and tree_size(root) > 1500 * 4096
    assert (root / deep / "f").read_text() == "bottom"
    pack_directory(root, tmp_path / "deep.sqfs")  # 1500 levels of a short name fit a squashfs
    out = subprocess.run(["unsquashfs", "-lc", str(tmp_path / "deep.sqfs")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.rstrip().endswith(deep + "/f"), out.stderr[-500:]
    remove_tree(root)
    assert not root.exists()


@MODES
def test_deep_tree_whited_out_by_a_later_layer(tmp_path, canary, rootless):
    deep = "/".join(["d"] * 1500)
    root = apply(tmp_path / "r", I.tar_bytes([I.f("top/" + deep + "/f", "x"), I.f("keep", "k")]),
                 I.tar_bytes([I.wh("top")]), rootless=rootless)
    assert sorted(os.listdir(root)) == ["keep"]


@MODES
def test_entry_deeper_than_path_max_is_refused_with_its_name(tmp_path, canary, rootless):
    deep = "/".join(["a"] * 2500) + "/f"
    with pytest.raises(LayerError, match=r"applying layer entry 'a/a/a.*…(/a)+/f' \(5001 characters, "
                                         r"2501 levels\): .*exceed this host's PATH_MAX") as info:
        apply(tmp_path / "r", I.tar_bytes([I.f(deep, "x")]), rootless=rootless)
    assert len(str(info.value)) < 400  # the name is shortened, not 5000 characters long


@pytest.mark.slow
@MODES
def test_thousands_of_nested_directory_entries(tmp_path, canary, rootless):
    entries = [I.d("/".join(["n"] * i), mode=0o555) for i in range(1, 1801)]
    root = apply(tmp_path / "r", I.tar_bytes(entries), rootless=rootless)
    assert _levels(root) == 1800 and tree_size(root) == 1800 * 4096  # the space check walks it
    pack_directory(root, tmp_path / "nested.sqfs")
    out = subprocess.run(["unsquashfs", "-l", str(tmp_path / "nested.sqfs")], capture_output=True, text=True)
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 1801, out.stderr[-500:]
    remove_tree(root)  # read-only directories 1800 levels deep
    assert not root.exists()


def _pax(entry, **records):
    entry[0].pax_headers = records
    return entry


def _gnu_number(tar: bytes, offset: int, width: int, value: int) -> bytes:
    """``tar`` (one GNU header first) with the field at ``offset`` set to ``value`` in base-256
    (0x80 positive, 0xff two's complement) and the checksum redone."""
    raw = (bytes([0x80]) + value.to_bytes(width - 1, "big") if value >= 0
           else bytes([0xFF]) + (value + (1 << (8 * width - 8))).to_bytes(width - 1, "big"))
    out = bytearray(tar)
    out[offset:offset + width] = raw
    out[148:156] = b" " * 8
    out[148:156] = b"%06o\0 " % sum(out[:512])
    return bytes(out)


def _gnu(entry) -> bytes:
    return I.tar_bytes([entry], fmt=tarfile.GNU_FORMAT)


REFUSED = {
    "nul-in-pax-path": (lambda: I.tar_bytes([_pax(I.f("a", "x"), path="etc/x\0y")]),
                        r"pax record 'path' of entry 'a' holds a NUL byte"),
    "nul-in-pax-link-target": (lambda: I.tar_bytes([_pax(I.sym("l", "t"), linkpath="/etc\0/passwd")]),
                               r"pax record 'linkpath' of entry 'l' holds a NUL byte"),
    "nul-in-pax-hardlink-target": (lambda: I.tar_bytes([I.f("t", "x"), _pax(I.hard("h", "t"), linkpath="t\0")]),
                                   r"pax record 'linkpath' of entry 'h' holds a NUL byte"),
    "negative-pax-uid": (lambda: I.tar_bytes([_pax(I.f("a", "x"), uid="-5")]), r"entry 'a': uid -5 out of range"),
    "pax-gid-over-2^32": (lambda: I.tar_bytes([_pax(I.f("a", "x"), gid=str(1 << 32))]),
                          r"entry 'a': gid 4294967296 out of range 0\.\.4294967294"),
    "pax-uid-2^32-1": (lambda: I.tar_bytes([_pax(I.f("a", "x"), uid=str((1 << 32) - 1))]),
                       r"entry 'a': uid 4294967295 out of range"),
    "negative-base256-uid": (lambda: _gnu_number(_gnu(I.f("a", "x")), 108, 8, -7), r"entry 'a': uid -7 out of range"),
    "base256-device-major-2^40": (lambda: _gnu_number(_gnu(I.chardev("c", 1, 3)), 329, 8, 1 << 40),
                                  r"entry 'c': device major 1099511627776 out of range"),
    "negative-base256-device-minor": (lambda: _gnu_number(_gnu(I.chardev("c", 1, 3)), 337, 8, -1),
                                      r"entry 'c': device minor -1 out of range"),
}


@MODES
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_out_of_range_or_nul_header_is_refused_naming_the_entry(tmp_path, canary, name, rootless):
    layer, message = REFUSED[name]
    with pytest.raises(LayerError, match=message):
        apply(tmp_path / "r", layer(), rootless=rootless)


@MODES
@pytest.mark.parametrize("how", ["pax", "base256"])
def test_mtime_beyond_64_bit_nanoseconds_is_clamped(tmp_path, canary, rootless, how):
    huge = 1 << 80  # seconds
    layer = (I.tar_bytes([_pax(I.f("a", "x"), mtime=str(huge))]) if how == "pax"
             else _gnu_number(_gnu(I.f("a", "x")), 136, 12, huge))
    root = apply(tmp_path / "r", layer, rootless=rootless)
    assert (root / "a").read_text() == "x"
    assert os.stat(root / "a").st_mtime > 4e9  # clamped to the latest time the filesystem holds


TB = 1 << 40
_PACK = "import sys; from builder.images.sqfs_pack import pack_directory; pack_directory(sys.argv[1], sys.argv[2])"


def _pax_sparse_layer(name: str, realsize: int, regions: list[tuple[int, bytes]]) -> bytes:
    """A layer with one GNU sparse 1.0 member (pax): the map, then the regions' bytes."""
    lines = [str(len(regions))] + [f"{n}" for off, data in regions for n in (off, len(data))]
    sparse_map = ("\n".join(lines) + "\n").encode()
    body = sparse_map + bytes(-len(sparse_map) % 512) + b"".join(data for _, data in regions)
    ti, _ = I.f(f"GNUSparseFile.0/{name}", body)
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                      "GNU.sparse.realsize": str(realsize)}
    return I.tar_bytes([(ti, body)])


@pytest.mark.slow
@MODES
def test_1tb_sparse_claim_in_a_1kb_layer_packs_at_once_and_extracts_sparse(tmp_path, canary, rootless):
    regions = [(5 << 30, b"hello"), (TB - 3, b"end")]
    layer = _pax_sparse_layer("huge", TB, regions)
    assert len(I.gz(layer)) < 1024
    root = apply(tmp_path / "r", layer, I.tar_bytes([I.f("plain", b"p" * 300000)]), rootless=rootless)
    image = tmp_path / "huge.sqfs"
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", _PACK, root, image], check=True, timeout=60, cwd=ROOT)
    assert time.monotonic() - started < 20  # ~0.3 s of packing; it read 1 TB of zeros for hours
    assert image.stat().st_size < 1 << 20
    out = tmp_path / "out"
    subprocess.run(["unsquashfs", "-q", "-d", out, image], check=True, capture_output=True, timeout=120)
    for tree in (root, out):
        with open(tree / "huge", "rb") as fh:
            st = os.fstat(fh.fileno())
            assert st.st_size == TB and st.st_blocks * 512 < 4 << 20  # holes, not a terabyte
            assert [os.pread(fh.fileno(), len(d), off) for off, d in regions] == [b"hello", b"end"]
            assert os.pread(fh.fileno(), 16, 77 << 30) == bytes(16)
    assert (out / "plain").read_bytes() == b"p" * 300000
    if os.geteuid() == 0:  # the kernel reads the same file
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        subprocess.run(["mount", "-o", "loop,ro", image, mnt], check=True, capture_output=True)
        try:
            with open(mnt / "huge", "rb") as fh:
                assert os.fstat(fh.fileno()).st_size == TB
                assert [os.pread(fh.fileno(), len(d), off) for off, d in regions] == [b"hello", b"end"]
                assert os.pread(fh.fileno(), 16, (TB >> 1) + 7) == bytes(16)
        finally:
            subprocess.run(["umount", mnt], check=True)


def test_sparse_file_and_its_written_out_twin_are_stored_once(tmp_path):
    """A hole found by SEEK_DATA and zeros read from disk make the same blocks and the same
    digest, so identical contents are still stored once whatever their layout."""
    root = tmp_path / "r"
    root.mkdir()
    data = os.urandom(200000)
    with open(root / "sparse", "wb") as fh:
        fh.truncate(3 << 20)
        fh.seek(1 << 20)
        fh.write(data)
    (root / "dense").write_bytes(bytes(1 << 20) + data + bytes((3 << 20) - (1 << 20) - len(data)))
    pack_directory(root, tmp_path / "twins.sqfs")
    (root / "dense").unlink()
    pack_directory(root, tmp_path / "one.sqfs")
    assert abs((tmp_path / "twins.sqfs").stat().st_size - (tmp_path / "one.sqfs").stat().st_size) < 4096
    listing = subprocess.run(["unsquashfs", "-lls", tmp_path / "twins.sqfs"], capture_output=True, text=True,
                             check=True).stdout
    assert listing.count(str(3 << 20)) == 2


@pytest.fixture
def small_fs(tmp_path):
    """A 64 MiB tmpfs (root only), unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt], check=True)


@MODES
@pytest.mark.parametrize("shape", ["one-file", "many-files"])
def test_gzip_bomb_stops_with_room_left_on_the_disk(small_fs, canary, rootless, shape):
    zeros = bytes(40 << 20)
    entries = ([I.f("bomb", zeros)] if shape == "one-file"
               else [I.f(f"bomb{i:02d}", zeros[:1 << 20]) for i in range(40)])
    blob = I.gz(I.tar_bytes(entries))
    assert len(blob) < (40 << 20) // 500  # inflates more than 500:1
    applier = LayerApplier(small_fs / "rootfs", rootless=rootless)
    with pytest.raises(LayerError, match=r"applying layer entry 'bomb\d*': stopped with \d+ MiB left free on "
                                         r"the rootfs filesystem after \d+ MiB written .*decompression bomb"):
        applier.apply(decompressed(io.BytesIO(blob)))
    st = os.statvfs(small_fs)
    assert st.f_bavail * st.f_frsize > 24 << 20  # the disk was not filled


def test_tree_deeper_than_path_max_is_a_clear_pack_error(tmp_path, canary):
    """A tree deeper than PATH_MAX (a %post can make one through relative paths): the packer
    names the path, shortened, instead of printing 5000 characters."""
    root = tmp_path / "r"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(2500):
        os.mkdir("a", dir_fd=fd)
        child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    with pytest.raises(ImageError, match=r"packing: reading .*/r/a/a.*…(/a)+ \(\d+ characters\): File name too long "
                                         r"\(the path is longer than this host's PATH_MAX\)") as info:
        pack_directory(root, tmp_path / "too-deep.sqfs")
    assert len(str(info.value)) < 400


_AS_USER = r"""
import io, os, sys
sys.path.insert(0, "tests/registry")
import images as I
from base.fsutil import remove_tree
from builder.images.sqfs_pack import pack_directory
from builder.sources.oci import LayerApplier
from builder.steps.checks import tree_size

work = sys.argv[1]
deep = "/".join(["n"] * 1500)
applier = LayerApplier(work + "/r")  # rootless: the euid is not 0
applier.apply(io.BytesIO(I.tar_bytes([I.d("/".join(["n"] * i), mode=0o555) for i in range(1, 1501)]
                                     + [I.f(deep + "/f", "x", mode=0o400), I.d("gone", mode=0o500),
                                        I.d("gone/" + deep, mode=0o500)])))
applier.apply(io.BytesIO(I.tar_bytes([I.wh("gone")])))
applier.finish()
assert tree_size(work + "/r") > 1500 * 4096 and not os.path.lexists(work + "/r/gone")
pack_directory(work + "/r", work + "/r.sqfs")
remove_tree(work + "/r")
print("removed" if not os.path.lexists(work + "/r") else "left")
"""


@pytest.mark.slow
def test_unprivileged_user_applies_packs_and_removes_a_deep_read_only_tree(unprivileged_user, canary):
    work = Path(tempfile.mkdtemp(prefix="sbuild-hostile-", dir="/tmp"))
    try:
        work.chmod(0o755)
        unprivileged_user.chown(work)
        r = unprivileged_user.run(sys.executable, "-c", _AS_USER, work, cwd=str(ROOT))
        assert r.returncode == 0 and r.stdout == "removed\n", r.stderr[-2000:]
        listing = subprocess.run(["unsquashfs", "-l", work / "r.sqfs"], capture_output=True, text=True, check=True)
        assert listing.stdout.rstrip().endswith("/".join(["n"] * 1500) + "/f")
    finally:
        remove_tree(work)
