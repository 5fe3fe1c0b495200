"""The squashfs 4.0 on-disk format, for writing (``builder.images.sqfs_pack`` fills it).

What is here: the compressor (zlib format, as squashfs's "gzip" stores it; zlib-ng when
installed, else zlib, both at level 9 like mksquashfs's default), ``MetaStream`` (the 8 KiB
metadata blocks every table is made of), inode and directory-listing encoders, and
``write_tables``, which lays the tables out after the data in the order the kernel checks
them (inodes, directories, fragments, export, ids, xattrs; each index table ending where
the next table starts, the xattr index ending at ``bytes_used``) and returns the superblock.

Names follow the kernel's ``fs/squashfs/squashfs_fs.h``. Positions are relative to the
start of the filesystem (a .simg or SIF adds its own offset). Listings longer than a
metadata block get a directory index, split where mksquashfs splits them, so a lookup
starts near its name. Limits: gzip only; no compressor options stored.
"""

from __future__ import annotations

import array
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

try:
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # pragma: no cover - zlib-ng is a dependency; plain zlib is the same format
    import zlib as _zlib

__all__ = ["BLOCK_SIZE", "META_SIZE", "SUPERBLOCK_SIZE", "NO_FRAGMENT", "NO_XATTR", "DIR", "REG",
           "SYMLINK", "BLKDEV", "CHRDEV", "FIFO", "SOCKET", "compress", "compressor_id", "MetaStream", "Inode",
           "encode_inode", "write_listing", "Tables", "write_tables", "encode_rdev", "xattr_prefix"]

MAGIC = 0x73717368
BLOCK_SIZE = 131072
BLOCK_LOG = 17
META_SIZE = 8192
SUPERBLOCK_SIZE = 96
GZIP = 1
LEVEL = 9
UNCOMPRESSED_BLOCK = 1 << 24
UNCOMPRESSED_META = 0x8000
NO_FRAGMENT = 0xFFFFFFFF
NO_XATTR = 0xFFFFFFFF
INVALID_BLK = 0xFFFFFFFFFFFFFFFF
FLAG_DUPLICATES = 0x40
FLAG_EXPORTABLE = 0x80

# basic inode types (directory entries always use these); extended = basic + 7
DIR, REG, SYMLINK, BLKDEV, CHRDEV, FIFO, SOCKET = 1, 2, 3, 4, 5, 6, 7
_EXT = 7
_DIR_COUNT = 256          # entries per directory header, at most
_INODE_DELTA = 32767      # |inode number - header's| in one header, at most
_XATTR_PREFIXES = {"user.": 0, "trusted.": 1, "security.": 2}


def compress(data: bytes, level: int = LEVEL) -> tuple[bytes, bool]:
    """``(stored, compressed?)``: the zlib stream, or the input when that is not smaller."""
    packed = _zlib.compress(data, level)
    if len(packed) < len(data):
        return packed, True
    return bytes(data), False


def compressor_id() -> str:
    """Which deflate writes ``compress``'s bytes, with its version: two of them (or two
    versions of one) may write different streams for the same block at the same level."""
    version = getattr(_zlib, "ZLIBNG_VERSION", None)
    if version:
        return f"zlib-ng {version}"
    return f"zlib {getattr(_zlib, 'ZLIB_RUNTIME_VERSION', _zlib.ZLIB_VERSION)}"


def encode_rdev(major: int, minor: int) -> int:
    """A device number as squashfs stores it (the kernel's ``new_encode_dev``)."""
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def xattr_prefix(name: str) -> tuple[int, str] | None:
    """``(type, name without prefix)`` for the prefixes squashfs stores, else None."""
    for prefix, kind in _XATTR_PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return kind, name[len(prefix):]
    return None


class MetaStream:
    """A run of metadata blocks: 8 KiB of payload each, compressed when that helps, behind
    a 2-byte length (bit 15: stored uncompressed)."""

    def __init__(self, level: int = LEVEL) -> None:
        self.level = level
        self.out = bytearray()
        self.block_starts: list[int] = []
        self._buf = bytearray()

    def pos(self) -> tuple[int, int]:
        """(start of the current block in the stream, offset in its payload)."""
        return len(self.out), len(self._buf)

    def ref(self) -> int:
        """The current position as a squashfs reference (block start << 16 | offset)."""
        block, offset = self.pos()
        return block << 16 | offset

    def write(self, data: bytes) -> None:
        self._buf += data
        while len(self._buf) >= META_SIZE:
            self._flush(bytes(self._buf[:META_SIZE]))
            del self._buf[:META_SIZE]

    def finish(self) -> bytes:
        if self._buf:
            self._flush(bytes(self._buf))
            self._buf.clear()
        return bytes(self.out)

    def _flush(self, payload: bytes) -> None:
        self.block_starts.append(len(self.out))
        stored, packed = compress(payload, self.level)
        self.out += struct.pack("<H", len(stored) if packed else len(stored) | UNCOMPRESSED_META)
        self.out += stored


@dataclass(eq=False, slots=True)
class Inode:
    """One inode. ``kind`` is a basic type; the encoder picks the extended form when a
    field needs it. Files: ``start``, ``sizes`` (per block; 0 = sparse; bit 24 = stored),
    ``fragment``/``frag_offset``, ``size``. Directories: ``children`` [(name, Inode)]."""

    kind: int
    mode: int
    uid_index: int
    gid_index: int
    mtime: int
    xattr: int = NO_XATTR
    number: int = 0
    nlink: int = 1
    size: int = 0
    start: int = 0
    sizes: list[int] = field(default_factory=list)
    fragment: int = NO_FRAGMENT
    frag_offset: int = 0
    sparse: int = 0
    target: bytes = b""
    rdev: int = 0
    children: list[tuple[bytes, "Inode"]] = field(default_factory=list)
    ref: int | None = None      # where the inode was written (block << 16 | offset)
    parent: int = 0             # directories: the parent's inode number
    dir_start: int = 0          # directories: listing block (in the directory table)
    dir_offset: int = 0
    dir_size: int = 3           # directories: listing bytes + 3, as squashfs counts
    dir_index: list[tuple[int, int, bytes]] = field(default_factory=list)  # (listing offset, block, name)
    same_as: "Inode | None" = None  # files: stored once already, as this inode's data


def _block_list(sizes: list[int]) -> bytes:
    """A file's block sizes as little-endian u32 (``array``: a 1 TB sparse file has 8 M)."""
    out = array.array("I", sizes)
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def encode_inode(i: Inode) -> bytes:
    """The inode's bytes (header + the type's body), basic form unless it cannot be."""
    head = (i.mode & 0o7777, i.uid_index, i.gid_index, i.mtime & 0xFFFFFFFF, i.number)
    has_x = i.xattr != NO_XATTR
    if i.kind == REG:
        blocks = _block_list(i.sizes)
        if not has_x and i.nlink == 1 and i.start < 1 << 32 and i.size < 1 << 32:
            return struct.pack("<HHHHII IIII", REG, *head, i.start, i.fragment, i.frag_offset, i.size) + blocks
        return struct.pack("<HHHHII QQQIIII", REG + _EXT, *head, i.start, i.size, i.sparse, i.nlink,
                           i.fragment, i.frag_offset, i.xattr) + blocks
    if i.kind == DIR:
        if not has_x and i.dir_size <= 0xFFFF and not i.dir_index:
            return struct.pack("<HHHHII IIHHI", DIR, *head, i.dir_start, i.nlink, i.dir_size,
                               i.dir_offset, i.parent)
        index = b"".join(struct.pack("<III", at, block, len(name) - 1) + name for at, block, name in i.dir_index)
        return struct.pack("<HHHHII IIIIHHI", DIR + _EXT, *head, i.nlink, i.dir_size, i.dir_start,
                           i.parent, len(i.dir_index), i.dir_offset, i.xattr) + index
    if i.kind == SYMLINK:
        body = struct.pack("<II", i.nlink, len(i.target)) + i.target
        if not has_x:
            return struct.pack("<HHHHII", SYMLINK, *head) + body
        return struct.pack("<HHHHII", SYMLINK + _EXT, *head) + body + struct.pack("<I", i.xattr)
    if i.kind in (BLKDEV, CHRDEV):
        if not has_x:
            return struct.pack("<HHHHII II", i.kind, *head, i.nlink, i.rdev)
        return struct.pack("<HHHHII III", i.kind + _EXT, *head, i.nlink, i.rdev, i.xattr)
    if i.kind in (FIFO, SOCKET):
        if not has_x:
            return struct.pack("<HHHHII I", i.kind, *head, i.nlink)
        return struct.pack("<HHHHII II", i.kind + _EXT, *head, i.nlink, i.xattr)
    raise ValueError(f"unknown inode kind {i.kind}")


def _listing_groups(entries: list[tuple[bytes, Inode]]) -> list[tuple[int, int, bool]]:
    """``(first, end, indexed)`` per header: one header per run of entries with inodes in
    the same metadata block and numbers within ±32767, at most 256; and a new, indexed
    header whenever the listing has grown by more than a metadata block since the last
    indexed one (mksquashfs's rule), so that a lookup can start near its name."""
    groups: list[tuple[int, int, bool]] = []
    size = indexed_at = 0
    i = 0
    while i < len(entries):
        base = entries[i][1]
        block, number = base.ref >> 16, base.number
        indexed = bool(groups) and size + 12 + 8 + len(entries[i][0]) - indexed_at > META_SIZE
        if indexed:
            indexed_at = size
        size += 12 + 8 + len(entries[i][0])
        j = i + 1
        while j < len(entries) and j - i < _DIR_COUNT:
            node, grown = entries[j][1], 8 + len(entries[j][0])
            if (node.ref >> 16 != block or abs(node.number - number) > _INODE_DELTA
                    or size + grown - indexed_at > META_SIZE):
                break
            size += grown
            j += 1
        groups.append((i, j, indexed))
        i = j
    return groups


def write_listing(stream: MetaStream, children: Iterable[tuple[bytes, Inode]]
                  ) -> tuple[int, list[tuple[int, int, bytes]]]:
    """Write a directory's listing to ``stream``: headers (``count - 1``, inode block,
    base inode number), then ``offset, inode delta, type, name length - 1, name`` per entry.
    Returns its length and the directory index: (listing offset, directory-table block,
    first name) of each indexed header."""
    entries = list(children)
    length = 0
    index: list[tuple[int, int, bytes]] = []
    for first, end, indexed in _listing_groups(entries):
        block, number = entries[first][1].ref >> 16, entries[first][1].number
        if indexed:
            index.append((length, stream.pos()[0], entries[first][0]))
        out = bytearray(struct.pack("<III", end - first - 1, block, number))
        for name, node in entries[first:end]:
            out += struct.pack("<HhHH", node.ref & 0xFFFF, node.number - number, node.kind, len(name) - 1)
            out += name
        stream.write(bytes(out))
        length += len(out)
    return length, index


@dataclass
class Tables:
    """Everything ``write_tables`` lays out after the data."""

    inodes: bytes
    directories: bytes
    root_ref: int
    inode_count: int
    fragments: list[tuple[int, int]]        # (start, size field)
    export: list[int]                       # inode refs by inode number - 1
    ids: list[int]
    xattr_sets: list[list[tuple[int, bytes, bytes]]]  # [(type, name, value)] per xattr id
    mkfs_time: int
    level: int = LEVEL


def _indexed(entries: bytes, base: int, level: int) -> tuple[bytes, int]:
    """Metadata blocks holding ``entries``, then the index of their positions; returns the
    bytes and where the index starts (relative to ``base``, the bytes' position)."""
    meta = MetaStream(level)
    meta.write(entries)
    blocks = meta.finish()
    index = struct.pack(f"<{len(meta.block_starts)}Q", *(base + s for s in meta.block_starts))
    return blocks + index, base + len(blocks)


def _xattr_tables(sets: list[list[tuple[int, bytes, bytes]]], base: int, level: int) -> tuple[bytes, int]:
    kv = MetaStream(level)
    ids = bytearray()
    for entries in sets:
        ref, size = kv.ref(), 0
        for kind, name, value in entries:
            kv.write(struct.pack("<HH", kind, len(name)) + name + struct.pack("<I", len(value)) + value)
            size += len(name) + len(("user.", "trusted.", "security.")[kind]) + 1 + len(value)
        ids += struct.pack("<QII", ref, len(entries), size)
    kv_bytes = kv.finish()
    meta = MetaStream(level)
    meta.write(bytes(ids))
    id_blocks = meta.finish()
    header_at = base + len(kv_bytes) + len(id_blocks)
    header = struct.pack("<QII", base, len(sets), 0)
    index = struct.pack(f"<{len(meta.block_starts)}Q",
                        *(base + len(kv_bytes) + s for s in meta.block_starts))
    return kv_bytes + id_blocks + header + index, header_at


def write_tables(t: Tables, data_end: int) -> tuple[bytes, bytes]:
    """``(tables, superblock)``: the tables to write at ``data_end`` and the superblock for
    offset 0. ``bytes_used`` is ``data_end + len(tables)``."""
    out = bytearray()
    inode_start = data_end
    out += t.inodes
    dir_start = data_end + len(out)
    out += t.directories
    frag_bytes, frag_start = _indexed(b"".join(struct.pack("<QII", s, z, 0) for s, z in t.fragments),
                                      data_end + len(out), t.level)
    if not t.fragments:
        frag_bytes, frag_start = b"", data_end + len(out)
    out += frag_bytes
    export_bytes, export_start = _indexed(struct.pack(f"<{len(t.export)}Q", *t.export), data_end + len(out), t.level)
    out += export_bytes
    id_bytes, id_start = _indexed(struct.pack(f"<{len(t.ids)}I", *t.ids), data_end + len(out), t.level)
    out += id_bytes
    xattr_start = INVALID_BLK
    if t.xattr_sets:
        x_bytes, xattr_start = _xattr_tables(t.xattr_sets, data_end + len(out), t.level)
        out += x_bytes
    bytes_used = data_end + len(out)
    superblock = struct.pack("<IIIIIHHHHHHQQQQQQQQ", MAGIC, t.inode_count, t.mkfs_time & 0xFFFFFFFF,
                             BLOCK_SIZE, len(t.fragments), GZIP, BLOCK_LOG,
                             FLAG_DUPLICATES | FLAG_EXPORTABLE, len(t.ids), 4, 0, t.root_ref, bytes_used,
                             id_start, xattr_start, inode_start, dir_start, frag_start, export_start)
    assert len(superblock) == SUPERBLOCK_SIZE
    return bytes(out), superblock
