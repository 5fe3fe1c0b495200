"""Hostile and damaged images made from a sound one: SIF descriptors out of range or
overlapping, squashfs superblock, table and data corruption, ext3 garbage, truncated and
empty files. ``HOSTILE`` maps a name to ``(source kind, damage(bytearray) -> bytes)``; the
source kinds are the runtime fixtures' images (``sif``, ``squashfs``, ``ext3``)."""

from __future__ import annotations

import struct

__all__ = ["HOSTILE", "make"]

# SIF global header fields (offsets in bytes) and descriptor fields (relative to a descriptor)
_DESCR_TOTAL, _DESCR_OFFSET = 88, 96
_D_TYPE, _D_USED, _D_OFFSET, _D_SIZE, _D_EXTRA = 0, 4, 17, 25, 201
_DESCRIPTOR = 585
_PARTITION = 0x4004


def _q(buf: bytearray, at: int, value: int) -> bytes:
    buf[at:at + 8] = struct.pack("<q", value)
    return bytes(buf)


def _descriptors(buf: bytearray) -> list[int]:
    """Offsets of the used descriptors in ``buf``."""
    total, table = struct.unpack_from("<qq", buf, _DESCR_TOTAL)
    return [table + i * _DESCRIPTOR for i in range(total) if buf[table + i * _DESCRIPTOR + _D_USED]]


def _partition(buf: bytearray) -> int:
    return next(d for d in _descriptors(buf) if struct.unpack_from("<i", buf, d + _D_TYPE)[0] == _PARTITION)


def _part_offset(buf: bytearray) -> int:
    return struct.unpack_from("<q", buf, _partition(buf) + _D_OFFSET)[0]


def _sif_second_partition_overlapping(buf: bytearray) -> bytes:
    """Copy the partition's descriptor into a free slot, pointing 4 KiB into the first one."""
    part = _partition(buf)
    total, table = struct.unpack_from("<qq", buf, _DESCR_TOTAL)
    free = next(table + i * _DESCRIPTOR for i in range(total) if not buf[table + i * _DESCRIPTOR + _D_USED])
    buf[free:free + _DESCRIPTOR] = buf[part:part + _DESCRIPTOR]
    struct.pack_into("<I", buf, free + 5, 99)
    offset, size = struct.unpack_from("<qq", buf, part + _D_OFFSET)
    return _q(buf, free + _D_OFFSET, offset + 4096)


def _flip(buf: bytearray, start: int, length: int) -> bytes:
    for i in range(start, min(start + length, len(buf))):
        buf[i] ^= 0x5A
    return bytes(buf)


def _sqfs_field(fmt: str, at: int, value: int):
    def damage(buf: bytearray) -> bytes:
        struct.pack_into(fmt, buf, at, value)
        return bytes(buf)
    return damage


def _sqfs_tables_garbage(buf: bytearray) -> bytes:
    inode_table, directory_table = struct.unpack_from("<QQ", buf, 64)
    return _flip(buf, inode_table, directory_table - inode_table + 64)


HOSTILE = {
    "empty-file": ("sif", lambda b: b""),
    "zeros-1mib": ("sif", lambda b: bytes(1 << 20)),
    "sif-header-only": ("sif", lambda b: bytes(b[:128])),
    "sif-truncated-half": ("sif", lambda b: bytes(b[:len(b) // 2])),
    "sif-truncated-in-descriptors": ("sif", lambda b: bytes(b[:4096 + 700])),
    "sif-bad-version": ("sif", lambda b: bytes(b[:42] + b"99\0" + b[45:])),
    "sif-descr-total-huge": ("sif", lambda b: _q(b, _DESCR_TOTAL, 1 << 40)),
    "sif-descr-total-negative": ("sif", lambda b: _q(b, _DESCR_TOTAL, -3)),
    "sif-descr-offset-beyond-eof": ("sif", lambda b: _q(b, _DESCR_OFFSET, len(b) + 4096)),
    "sif-partition-offset-beyond-eof": ("sif", lambda b: _q(b, _partition(b) + _D_OFFSET, 1 << 50)),
    "sif-partition-offset-negative": ("sif", lambda b: _q(b, _partition(b) + _D_OFFSET, -4096)),
    "sif-partition-size-huge": ("sif", lambda b: _q(b, _partition(b) + _D_SIZE, (1 << 63) - 1)),
    "sif-partition-overlapping-header": ("sif", lambda b: _q(b, _partition(b) + _D_OFFSET, 0)),
    "sif-partition-overlapping-descriptors": ("sif", lambda b: _q(b, _partition(b) + _D_OFFSET, 4096)),
    "sif-partitions-overlapping-each-other": ("sif", _sif_second_partition_overlapping),
    "sif-partition-size-zero": ("sif", lambda b: _q(b, _partition(b) + _D_SIZE, 0)),
    "sif-partition-fstype-unknown": ("sif", lambda b: bytes(b[:_partition(b) + _D_EXTRA] + struct.pack("<i", 77)
                                                          + b[_partition(b) + _D_EXTRA + 4:])),
    "sif-squashfs-superblock-zeroed": ("sif", lambda b: _flip(b, _part_offset(b), 96)),
    "sqfs-bad-magic": ("squashfs", lambda b: bytes(b"hsqx" + b[4:])),
    "sqfs-truncated-half": ("squashfs", lambda b: bytes(b[:len(b) // 2])),
    "sqfs-superblock-only": ("squashfs", lambda b: bytes(b[:96])),
    "sqfs-bytes-used-huge": ("squashfs", _sqfs_field("<Q", 40, 1 << 60)),
    "sqfs-block-size-invalid": ("squashfs", _sqfs_field("<I", 12, 3)),
    "sqfs-block-log-mismatch": ("squashfs", _sqfs_field("<H", 22, 30)),
    "sqfs-compression-unknown": ("squashfs", _sqfs_field("<H", 20, 99)),
    "sqfs-inode-count-zero": ("squashfs", _sqfs_field("<I", 4, 0)),
    "sqfs-root-inode-beyond-table": ("squashfs", _sqfs_field("<Q", 32, (1 << 40) << 16)),
    "sqfs-inode-table-beyond-eof": ("squashfs", _sqfs_field("<Q", 64, 1 << 40)),
    "sqfs-id-table-beyond-eof": ("squashfs", _sqfs_field("<Q", 48, 1 << 40)),
    "sqfs-tables-garbage": ("squashfs", _sqfs_tables_garbage),
    "ext3-garbage-with-magic": ("ext3", lambda b: bytes(bytes(range(256)) * 4 + bytes(56) + b"\x53\xef"
                                                        + bytes(range(256)) * 100)),
    "ext3-truncated": ("ext3", lambda b: bytes(b[:len(b) // 8])),
    "ext3-superblock-garbage": ("ext3", lambda b: bytes(b[:1024] + bytes(range(56)) + b"\x53\xef"
                                                        + bytes(range(200)) + b[1282:])),
}


def make(name: str, sources: dict, out_dir) -> "object":
    """Write hostile image ``name`` (from the sound image of its kind in ``sources``) into
    ``out_dir``; returns its path (suffix: .sif, .sqfs or .img)."""
    from pathlib import Path

    kind, damage = HOSTILE[name]
    data = damage(bytearray(Path(sources[kind]).read_bytes()))
    path = Path(out_dir) / (name + {"sif": ".sif", "squashfs": ".sqfs", "ext3": ".img"}[kind])
    path.write_bytes(data)
    return path
