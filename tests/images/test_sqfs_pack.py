"""sbuild's own squashfs packer against mksquashfs, unsquashfs, the kernel and PySquashfsImage.

One tree holds every case the format has (all file types, sizes around the block size,
holes, duplicates, hard links across directories, xattrs, a directory whose listing needs
an extended inode and many headers, deep nesting, owners, setuid, old and future times).
Our image must list, extract and mount to exactly what mksquashfs's image of the same tree
gives and what the tree holds.
"""

from __future__ import annotations

import os
import random
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from base.errors import ImageError
from builder.images.sqfs_pack import SquashOptions, pack_directory

from .conftest import need, run

BS = 131072
IS_ROOT = os.geteuid() == 0


def _tree(root: Path) -> Path:
    rnd = random.Random(7)
    root.mkdir()
    files = root / "files"
    files.mkdir()
    text = b"".join(b"line %d of a compressible file\n" % i for i in range(20000))
    for name, size in (("empty", 0), ("one", 1), ("below", BS - 1), ("exact", BS), ("above", BS + 1),
                       ("three", 3 * BS + 17)):
        (files / name).write_bytes((text * 2)[:size])
    (files / "random-small").write_bytes(rnd.randbytes(5000))
    (files / "random-large").write_bytes(rnd.randbytes(2 * BS + 5))
    (files / "holes").write_bytes(text[:BS] + bytes(2 * BS) + text[:BS // 2])
    (files / "zeros").write_bytes(bytes(3 * BS))
    with open(files / "sparse", "wb") as fh:
        fh.truncate(5 * BS + 3)  # a real sparse file
    dup = root / "dup"
    dup.mkdir()
    for i in range(3):
        (dup / f"small-{i}").write_bytes(b"same small contents\n")
        (dup / f"large-{i}").write_bytes(text[:2 * BS + 100])
    (dup / "large-other").write_bytes(text[1:2 * BS + 101])
    links = root / "links"
    (links / "a").mkdir(parents=True)
    (links / "a" / "target").write_bytes(b"linked\n")
    os.link(links / "a" / "target", links / "second")
    os.link(links / "a" / "target", root / "third")
    (links / "rel").symlink_to("a/target")
    (links / "abs").symlink_to("/etc/passwd")
    (links / "dangling").symlink_to("nowhere/at/all")
    (links / "long").symlink_to("x" * 4000)
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "socket"))
    sock.close()
    big = root / "big-dir"
    big.mkdir()
    for i in range(1500):
        (big / f"entry-with-a-long-name-to-fill-the-listing-{i:05d}").write_bytes(b"%d\n" % (i % 7))
    deep = root
    for i in range(120):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "bottom").write_text("deep\n")
    (root / "modes").mkdir()
    for name, mode in (("setuid", 0o4755), ("setgid", 0o2711), ("sticky", 0o1777), ("none", 0)):
        p = root / "modes" / name
        p.write_text(name)
        p.chmod(mode)
    (root / "modes" / "private-dir").mkdir(mode=0o700)
    os.utime(root / "files" / "one", (0, 0))
    os.utime(root / "files" / "below", (4102444800, 4102444800))  # 2100
    os.setxattr(root / "files" / "one", "user.comment", b"hello")
    os.setxattr(root / "files" / "three", "user.big", bytes(range(256)) * 8)
    os.setxattr(root / "links" / "a", "user.dir", b"d")
    if IS_ROOT:
        os.setxattr(root / "files" / "above", "trusted.t", b"t")
        os.setxattr(root / "files" / "above", "security.capability",
                    bytes.fromhex("0100000200200000000000000000000000000000"))
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(root / "disk", stat.S_IFBLK | 0o660, os.makedev(259, 300000))
        for i, p in enumerate(sorted((root / "files").iterdir())):
            os.lchown(p, 1000 + i, 2000 + i % 3)
        os.lchown(root / "links" / "abs", 4242, 4343)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return _tree(tmp_path_factory.mktemp("sqfs") / "tree")


def _nlink(path: str, st: os.stat_result) -> int:
    """The link count squashfs gives ``path``: its own for files, 2 + subdirectories for a
    directory (whatever the source filesystem says: btrfs counts 1)."""
    if not stat.S_ISDIR(st.st_mode):
        return st.st_nlink
    return 2 + sum(1 for e in os.scandir(path) if e.is_dir(follow_symlinks=False))


def _listing(image: Path) -> list[str]:
    """``unsquashfs -lln`` without the size of directories (how a listing is split into
    headers is the writer's choice)."""
    out = run(need("unsquashfs"), "-lln", image).stdout.splitlines()
    lines = []
    for line in out:
        if line.startswith("d"):
            perms, owner, _size, rest = line.split(None, 3)
            line = f"{perms} {owner} - {rest}"
        lines.append(line)
    return lines


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every path below ``root``: kind and permission bits, and contents, link target or
    device number (what ``diff -r`` cannot compare for special files)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    what = fh.read()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(p)
            else:
                what = st.st_rdev
            found[os.path.relpath(p, root)] = (st.st_mode, what)
    return found


def _xattrs(root: Path) -> dict[str, dict[str, bytes]]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            found[os.path.relpath(p, root)] = {n: os.getxattr(p, n, follow_symlinks=False)
                                               for n in os.listxattr(p, follow_symlinks=False)}
    return found


def test_same_tree_as_mksquashfs(tree: Path, tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.sqfs", tmp_path / "theirs.sqfs"
    pack_directory(tree, ours)
    run(need("mksquashfs"), tree, theirs, "-noappend", "-quiet", "-no-progress", "-comp", "gzip")
    assert _listing(ours) == _listing(theirs)
    a, b = tmp_path / "a", tmp_path / "b"
    run("unsquashfs", "-q", "-no-progress", "-d", a, ours)
    run("unsquashfs", "-q", "-no-progress", "-d", b, theirs)
    assert _snapshot(a) == _snapshot(b)
    assert _xattrs(a) == _xattrs(b) == _xattrs(tree)
    assert (a / "files" / "one").stat().st_mtime == 0
    assert (a / "third").stat().st_ino == (a / "links" / "second").stat().st_ino
    assert (a / "third").stat().st_nlink == 3
    # duplicates stored once, as mksquashfs does: sizes within a few per cent
    assert abs(ours.stat().st_size - theirs.stat().st_size) < 0.05 * theirs.stat().st_size


def _skip_without_loop_mounts(tmp_path: Path, mnt: Path) -> None:
    """Skip, saying why, when this host cannot loop-mount even an image mksquashfs made."""
    (tmp_path / "ref").mkdir()
    ref = tmp_path / "ref.sqfs"
    run(need("mksquashfs"), tmp_path / "ref", ref, "-quiet", "-noappend")
    r = run("mount", "-t", "squashfs", "-o", "loop,ro", ref, mnt, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot loop-mount a squashfs here: {r.stderr.strip()}")
    run("umount", mnt)


@pytest.mark.skipif(not IS_ROOT, reason="mounting a squashfs with the kernel needs root")
def test_the_kernel_mounts_it_and_sees_the_tree(tree: Path, tmp_path: Path) -> None:
    image, mnt = tmp_path / "ours.sqfs", tmp_path / "mnt"
    pack_directory(tree, image)
    mnt.mkdir()
    _skip_without_loop_mounts(tmp_path, mnt)
    r = run("mount", "-t", "squashfs", "-o", "loop,ro", image, mnt, check=False)
    assert r.returncode == 0, f"the kernel refuses our image: {r.stderr.strip()}"
    try:
        assert _snapshot(mnt) == _snapshot(tree)
        assert _xattrs(mnt) == _xattrs(tree)
        for dirpath, dirnames, filenames in os.walk(tree):
            for name in dirnames + filenames:
                src = os.lstat(os.path.join(dirpath, name))
                got = os.lstat(os.path.join(mnt, os.path.relpath(dirpath, tree), name))
                assert (got.st_mode, got.st_uid, got.st_gid, got.st_rdev, int(got.st_mtime)) == \
                    (src.st_mode, src.st_uid, src.st_gid, src.st_rdev, int(src.st_mtime)), name
                assert got.st_nlink == _nlink(os.path.join(dirpath, name), src), name
                if stat.S_ISREG(src.st_mode) or stat.S_ISLNK(src.st_mode):
                    assert got.st_size == src.st_size, name
        names = os.listdir(mnt / "big-dir")
        assert len(names) == 1500 and (mnt / "big-dir" / names[777]).exists()
        missing = [n for n in sorted(names, reverse=True) if not os.path.lexists(mnt / "big-dir" / n)]
        assert not missing and not (mnt / "big-dir" / "entry-with-a-long-name-to-fill-the-listing-99999").exists()
    finally:
        run("umount", mnt, check=False)


def test_pysquashfsimage_reads_every_file(tree: Path, tmp_path: Path) -> None:
    from builder.images.squashfs import open_image

    image = tmp_path / "ours.sqfs"
    pack_directory(tree, image, offset=31)
    assert Path(image).read_bytes()[:31] == bytes(31)
    seen = 0
    with open_image(image, 31) as im:
        for entry in im:
            if entry.path == "/big-dir":  # a listing over 8 KiB: extended inode with a directory index
                assert type(entry.inode).__name__ == "ExtendedDirectoryInode" and entry.inode.i_count >= 8
            if entry.is_file:
                rel = entry.path.lstrip("/")
                assert entry.read_bytes() == (tree / rel).read_bytes(), rel
                seen += 1
    assert seen > 1500


def test_reproducible_with_source_date_epoch(tree: Path, tmp_path: Path) -> None:
    opts = SquashOptions(source_date_epoch=1700000000, workers=3)
    pack_directory(tree, tmp_path / "a.sqfs", options=opts)
    pack_directory(tree, tmp_path / "b.sqfs", options=SquashOptions(source_date_epoch=1700000000, workers=1))
    assert (tmp_path / "a.sqfs").read_bytes() == (tmp_path / "b.sqfs").read_bytes()
    info = run("unsquashfs", "-mkfs-time", tmp_path / "a.sqfs").stdout.strip()
    assert info == "1700000000"
    lines = {l.split()[-1]: l for l in _listing(tmp_path / "a.sqfs")}
    assert "2023-11-14" in lines["squashfs-root/files/below"]  # 2100 clamped to the epoch
    assert "1970-01-01" in lines["squashfs-root/files/one"]


def test_all_root(tree: Path, tmp_path: Path) -> None:
    pack_directory(tree, tmp_path / "a.sqfs", options=SquashOptions(all_root=True))
    assert all(" 0/0 " in line for line in _listing(tmp_path / "a.sqfs"))


def test_unreadable_files_are_errors_not_empty_files(unprivileged_user) -> None:
    """mksquashfs stores an unreadable file empty, leaves an unreadable directory out, and
    exits 0; we name them and fail."""
    shared = Path(tempfile.mkdtemp(prefix="sbuild-test-", dir="/tmp"))
    try:
        _unreadable(shared, unprivileged_user)
    finally:
        subprocess.run(["rm", "-rf", str(shared)], check=False)


def _unreadable(shared: Path, unprivileged_user) -> None:  # noqa: ANN001
    shared.chmod(0o755)
    root = shared / "t"
    (root / "locked").mkdir(parents=True)
    (root / "secret").write_text("s")
    (root / "ok").write_text("fine")
    unprivileged_user.chown(root)
    (root / "secret").chmod(0)
    (root / "locked").chmod(0)
    code = ("import sys; from builder.images.sqfs_pack import pack_directory\n"
            "from base.errors import BuildError\n"
            "try:\n    pack_directory(sys.argv[1], sys.argv[2])\n"
            "except BuildError as e:\n    print(e, e.output_tail); sys.exit(1)\n")
    out = unprivileged_user.home / "out.sqfs"
    r = unprivileged_user.run(sys.executable, "-c", code, root, out, cwd=str(Path(__file__).parents[2]))
    out.unlink(missing_ok=True)
    assert r.returncode == 1, r.stderr
    assert "could not read 2 file(s)" in r.stdout and "secret" in r.stdout and "locked" in r.stdout


def test_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ImageError, match="not a directory"):
        pack_directory(tmp_path / "f", tmp_path / "o.sqfs")


def test_duplicate_large_files_are_stored_once(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    blob = random.Random(1).randbytes(4 * BS)
    (root / "a").write_bytes(blob)
    pack_directory(root, tmp_path / "one.sqfs")
    for name in ("b", "c", "d"):
        (root / name).write_bytes(blob)
    pack_directory(root, tmp_path / "four.sqfs")
    assert (tmp_path / "four.sqfs").stat().st_size == (tmp_path / "one.sqfs").stat().st_size
    run("unsquashfs", "-q", "-no-progress", "-d", tmp_path / "x", tmp_path / "four.sqfs")
    assert all((tmp_path / "x" / n).read_bytes() == blob for n in "abcd")


try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    _name = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b
                                                      and b not in (b".", b".."))
    _size = st.sampled_from([0, 1, 100, BS - 1, BS, BS + 1, 2 * BS + 3])
    _node = st.recursive(st.tuples(st.just("f"), _size, st.integers(0, 3)),
                         lambda kids: st.dictionaries(_name, kids, max_size=6), max_leaves=25)
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    given = None


def _materialise(root: Path, spec: dict, made: list[Path]) -> None:
    for name, child in spec.items():
        p = Path(os.fsdecode(os.path.join(os.fsencode(root), name)))
        if isinstance(child, dict):
            p.mkdir()
            _materialise(p, child, made)
        elif child[2] == 3 and made:  # a hard link to an earlier file
            os.link(made[0], p)
        else:
            p.write_bytes(bytes([child[2] * 40]) * child[1] if child[2] else os.urandom(child[1]))
            made.append(p)


if given is not None:
    @pytest.mark.slow
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(spec=st.dictionaries(_name, _node, max_size=8))
    def test_any_tree_extracts_to_itself(spec: dict, tmp_path: Path) -> None:
        """Random trees (any name bytes, sizes around the block size, zero-filled and
        duplicate contents, hard links) come back out of unsquashfs unchanged."""
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        root = work / "root"
        root.mkdir()
        _materialise(root, spec, [])
        pack_directory(root, work / "o.sqfs")
        run(need("unsquashfs"), "-q", "-no-progress", "-d", work / "x", work / "o.sqfs")
        assert _snapshot(work / "x") == _snapshot(root)
        subprocess.run(["rm", "-rf", str(work)], check=True)


def _superblock(image: Path) -> tuple[int, int, int]:
    """(compression id, flags, xattr table start) of a squashfs at offset 0."""
    import struct

    fields = struct.unpack("<IIIIIHHHHHHQQQQQQQQ", image.read_bytes()[:96])
    return fields[5], fields[7], fields[14]


def test_mksquashfs_args_the_packer_understands(tree: Path, tmp_path: Path) -> None:
    """-comp gzip, -Xcompression-level, -processors, -no-xattrs and no-ops stay with sbuild's
    packer (mksquashfs would store the level as compressor options: flag 0x400); anything
    else goes to mksquashfs."""
    from builder.images.squashfs import PackOptions, pack, uses_mksquashfs

    args = ("-noappend", "-comp", "gzip", "-Xcompression-level", "1", "-processors", "1", "-no-xattrs")
    fast, best = tmp_path / "fast.sqfs", tmp_path / "best.sqfs"
    pack(tree, fast, PackOptions(mksquashfs_args=args))
    pack(tree, best, PackOptions())
    comp, flags, xattrs = _superblock(fast)
    assert (comp, flags & 0x400, xattrs) == (1, 0, 0xFFFFFFFFFFFFFFFF)
    assert _superblock(best)[2] != 0xFFFFFFFFFFFFFFFF  # the tree has xattrs
    assert fast.stat().st_size > best.stat().st_size  # level 1 compresses less
    run("unsquashfs", "-q", "-no-progress", "-d", tmp_path / "x", fast)
    assert _snapshot(tmp_path / "x") == _snapshot(tree)
    theirs = tmp_path / "theirs.sqfs"
    pack(tree, theirs, PackOptions(mksquashfs_args=args[:5], packer="mksquashfs"))
    assert _superblock(theirs)[1] & 0x400  # what the flag check above tells apart
    for other in (("-comp", "xz"), ("-b", "1M"), ("-Xcompression-level", "12"), ("-e", "x"), ("-comp",)):
        assert uses_mksquashfs(PackOptions(mksquashfs_args=other)), other
    assert not uses_mksquashfs(PackOptions(mksquashfs_args=("-b", "128K", "-all-root", "-quiet")))
