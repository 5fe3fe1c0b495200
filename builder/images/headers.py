"""Superblock checks for the filesystems inside images: squashfs and ext3 (spec §D.1).

These read a few bytes at a known offset and say whether the filesystem there is one
Apptainer's runtime would accept: squashfs 4.0 with a known compressor and all of its
``bytes_used`` present; ext3 with a journal and only the features Apptainer allows.
They never read the whole filesystem.
"""

from __future__ import annotations

import struct

from base.errors import ImageError
from base.records import Frozen

__all__ = [
    "SQUASHFS_MAGIC", "SIMG_LAUNCH", "EXT_MAGIC", "COMPRESSORS", "SquashfsSuper", "Ext3Super",
    "parse_squashfs", "parse_ext3",
]

SQUASHFS_MAGIC = b"hsqs"
SIMG_LAUNCH = b"#!/usr/bin/env run-singularity\n"
EXT_MAGIC = b"\x53\xef"
EXT_MAGIC_OFFSET = 1080  # 1024 (superblock) + 56
COMPRESSORS = {1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}

_SQ = struct.Struct("<4sIiIIHHHHHHqqqqqqqq")

# ext feature bits Apptainer accepts (pkg/image/ext3.go)
_COMPAT_HAS_JOURNAL = 0x4
_INCOMPAT_OK = {0x2: "filetype", 0x4: "recover", 0x10: "meta_bg"}
_RO_COMPAT_OK = {0x1: "sparse_super", 0x2: "large_file", 0x4: "btree_dir"}
_INCOMPAT_NAMES = {0x1: "compression", 0x8: "journal_dev", 0x40: "extent", 0x80: "64bit",
                   0x100: "mmp", 0x200: "flex_bg", 0x400: "ea_inode", 0x1000: "dirdata",
                   0x2000: "metadata_csum_seed", 0x4000: "large_dir", 0x8000: "inline_data",
                   0x10000: "encrypt", 0x20000: "casefold"}
_RO_COMPAT_NAMES = {0x8: "huge_file", 0x10: "gdt_csum", 0x20: "dir_nlink", 0x40: "extra_isize",
                    0x100: "quota", 0x200: "bigalloc", 0x400: "metadata_csum", 0x1000: "readonly",
                    0x2000: "project", 0x8000: "verity", 0x10000: "orphan_present"}


class SquashfsSuper(Frozen):
    """What ``parse_squashfs`` read."""

    __slots__ = _fields = ("inodes", "mkfs_time", "block_size", "compression", "bytes_used")

    def __init__(self, inodes: int, mkfs_time: int, block_size: int, compression: str, bytes_used: int) -> None:
        self._set(inodes, mkfs_time, block_size, compression, bytes_used)


class Ext3Super(Frozen):
    """What ``parse_ext3`` read."""

    __slots__ = _fields = ("block_size", "blocks", "size", "features")

    def __init__(self, block_size: int, blocks: int, size: int, features: tuple[str, ...]) -> None:
        self._set(block_size, blocks, size, features)


def parse_squashfs(raw: bytes, *, available: int, where: str = "") -> SquashfsSuper:
    """Check the squashfs superblock in ``raw`` (at least 96 bytes from its start).

    ``available`` is how many bytes of the file follow the superblock's start; a
    ``bytes_used`` beyond that means the image is truncated.
    """
    pre = f"{where}: " if where else ""
    if len(raw) < _SQ.size:
        raise ImageError(f"{pre}truncated squashfs: superblock incomplete ({len(raw)} bytes)")
    (magic, inodes, mtime, block_size, _frags, comp, block_log, _flags, ids, major, minor,
     root, bytes_used, id_table, _xattrs, inode_table, dir_table, *_rest) = _SQ.unpack_from(raw)
    if magic != SQUASHFS_MAGIC:
        raise ImageError(f"{pre}bad squashfs magic {magic!r} (expected b'hsqs')")
    if (major, minor) != (4, 0):
        raise ImageError(f"{pre}unsupported squashfs version {major}.{minor} (only 4.0)")
    if comp not in COMPRESSORS:
        raise ImageError(f"{pre}unknown squashfs compression id {comp}")
    if block_size != 1 << block_log or not 4096 <= block_size <= 1 << 20:
        raise ImageError(f"{pre}corrupt squashfs superblock: block size {block_size}")
    if bytes_used < _SQ.size or bytes_used > available:
        raise ImageError(f"{pre}truncated squashfs: superblock says {bytes_used} bytes, "
                         f"only {available} present")
    _check_tables(pre, inodes, ids, root, bytes_used, id_table, inode_table, dir_table)
    return SquashfsSuper(inodes, mtime, block_size, COMPRESSORS[comp], bytes_used)


def _check_tables(pre: str, inodes: int, ids: int, root: int, used: int, id_table: int, inode_table: int,
                  dir_table: int) -> None:
    """The tables the kernel and unsquashfs need lie inside the image, in order, and the root
    inode inside the inode table (a damaged root reference mounts or extracts as empty)."""
    if inodes < 1 or ids < 1:
        raise ImageError(f"{pre}corrupt squashfs superblock: {inodes} inodes, {ids} owner ids")
    if not _SQ.size <= inode_table < dir_table <= used or not _SQ.size <= id_table < used:
        raise ImageError(f"{pre}corrupt squashfs superblock: tables at {inode_table}, {dir_table}, {id_table} "
                         f"do not fit the image's {used} bytes")
    if (root >> 16) >= dir_table - inode_table or (root & 0xFFFF) >= 8192:
        raise ImageError(f"{pre}corrupt squashfs superblock: root inode reference {root:#x} lies outside "
                         "the inode table")


def _names(bits: int, table: dict[int, str]) -> list[str]:
    out = []
    for bit in range(32):
        if bits & (1 << bit):
            out.append(table.get(1 << bit, f"0x{1 << bit:x}"))
    return out


def parse_ext3(raw: bytes, *, available: int, where: str = "") -> Ext3Super:
    """Check the ext superblock; ``raw`` starts at the filesystem start (>= 2048 bytes)."""
    pre = f"{where}: " if where else ""
    if len(raw) < 2048 or raw[EXT_MAGIC_OFFSET:EXT_MAGIC_OFFSET + 2] != EXT_MAGIC:
        raise ImageError(f"{pre}bad ext3 magic: no ext superblock at offset 1024")
    sb = raw[1024:2048]
    blocks, = struct.unpack_from("<I", sb, 4)
    log_bs, = struct.unpack_from("<I", sb, 24)
    compat, incompat, ro_compat = struct.unpack_from("<III", sb, 92)
    if log_bs > 6:
        raise ImageError(f"{pre}corrupt ext superblock: block size 2^{10 + log_bs}")
    block_size = 1024 << log_bs
    if not compat & _COMPAT_HAS_JOURNAL:
        raise ImageError(f"{pre}ext3 image has no journal (Apptainer needs has_journal)",
                         hint="recreate it with `sbuild overlay create` or mkfs.ext3")
    bad = _names(incompat & ~sum(_INCOMPAT_OK), _INCOMPAT_NAMES)
    bad += _names(ro_compat & ~sum(_RO_COMPAT_OK), _RO_COMPAT_NAMES)
    if bad:
        raise ImageError(f"{pre}unsupported ext features for an ext3 image: {', '.join(bad)}",
                         hint="this looks like ext4; make it with mkfs.ext3")
    size = blocks * block_size
    if size > available:
        raise ImageError(f"{pre}truncated ext3: filesystem needs {size} bytes, "
                         f"only {available} present")
    features = ["has_journal"] + _names(incompat, _INCOMPAT_OK) + _names(ro_compat, _RO_COMPAT_OK)
    return Ext3Super(block_size, blocks, size, tuple(features))
