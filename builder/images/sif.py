"""SIF v01 byte layout: parse and write, exactly as the Go SIF library does (spec §D.2).

A SIF file is a 128-byte global header, a descriptor table (``capacity`` slots of 585
bytes, all written, unused ones zero) at ``descr_offset`` and the data objects after it,
each placed at the current end rounded up to its alignment (4096 for partitions, none
for the rest). ``write_sif`` reproduces the Go library's ``CreateContainer`` output byte
for byte (checked against the SIF golden files); ``parse_sif`` reads any v01 file and
checks that every used descriptor lies inside it.

Limits: no encryption, no in-place modification (add/delete objects); signing, signature
appends and verification are ``builder.signing``'s.

The records here (and ``probe.ImageInfo``) are ``Frozen`` plain classes rather than frozen
dataclasses: the reader is on the runtime's launch path, where importing ``dataclasses``
(and ``inspect`` with it) costs several milliseconds.
"""

from __future__ import annotations

import struct

from base import lean_os as os
from base.errors import ImageError
from base.records import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = [
    "SIF_MAGIC", "LAUNCH_SCRIPT", "GO_ZERO_TIME", "DATA_DEFFILE", "DATA_ENVVAR", "DATA_LABELS",
    "DATA_PARTITION", "DATA_SIGNATURE", "DATA_GENERIC_JSON", "DATA_GENERIC", "FS_SQUASH",
    "FS_EXT3", "PART_SYSTEM", "PART_PRIMSYS", "PART_DATA", "PART_OVERLAY", "ARCH_CODES",
    "Frozen", "SifDescriptor", "SifHeader", "SifLayout", "SifObject", "SifCreateOptions",
    "parse_sif", "read_sif", "write_sif", "plan_offsets", "sif_bytes", "arch_name", "arch_code",
]

SIF_MAGIC = b"SIF_MAGIC\0"
LAUNCH_SCRIPT = b"#!/usr/bin/env run-singularity\n"
GO_ZERO_TIME = -62135596800  # Go time.Time{}.Unix(): the "deterministic" timestamp
HEADER_SIZE = 128
DESCRIPTOR_SIZE = 585
DEFAULT_CAPACITY = 48
DEFAULT_DESCR_OFFSET = 4096
GROUP_MASK = 0xF0000000
DEFAULT_GROUP = 1

DATA_DEFFILE, DATA_ENVVAR, DATA_LABELS, DATA_PARTITION = 0x4001, 0x4002, 0x4003, 0x4004
DATA_SIGNATURE, DATA_GENERIC_JSON, DATA_GENERIC = 0x4005, 0x4006, 0x4007
FS_SQUASH, FS_EXT3 = 1, 2
PART_SYSTEM, PART_PRIMSYS, PART_DATA, PART_OVERLAY = 1, 2, 3, 4

# Go arch name -> two-digit SIF code.
ARCH_CODES = {
    "unknown": "00", "386": "01", "amd64": "02", "arm": "03", "arm64": "04", "ppc64": "05",
    "ppc64le": "06", "mips": "07", "mipsle": "08", "mips64": "09", "mips64le": "10",
    "s390x": "11", "riscv64": "12", "loong64": "13",
}
_ARCH_NAMES = {code: name for name, code in ARCH_CODES.items()}
DATA_TYPE_NAMES = {
    DATA_DEFFILE: "Def.FILE", DATA_ENVVAR: "Env.Vars", DATA_LABELS: "JSON.Labels",
    DATA_PARTITION: "FS", DATA_SIGNATURE: "Signature", DATA_GENERIC_JSON: "JSON.Generic",
    DATA_GENERIC: "Generic/Raw", 0x4008: "Cryptographic Message", 0x4009: "SBOM",
    0x400A: "OCI.RootIndex", 0x400B: "OCI.Blob",
}

_HEADER = struct.Struct("<32s10s3s3s16sqqqqqqqq")
_DESCR = struct.Struct("<i?IIIqqqqqqq128s384s")
_PART_EXTRA = struct.Struct("<ii3s")
assert _HEADER.size == HEADER_SIZE and _DESCR.size == DESCRIPTOR_SIZE


def arch_name(code: str) -> str:
    """The Go arch name for a SIF arch code ("02" -> "amd64"); "unknown" when unlisted."""
    return _ARCH_NAMES.get(code, "unknown")


def arch_code(name: str) -> str:
    """The SIF arch code for a Go arch name; raises ImageError for an unknown name."""
    try:
        return ARCH_CODES[name]
    except KeyError:
        raise ImageError(f"sif: unknown architecture {name!r}",
                         hint="one of " + ", ".join(sorted(ARCH_CODES))) from None


class SifHeader(Frozen):
    """The global header; ``arch`` is the two-digit SIF code of the primary partition."""

    __slots__ = _fields = ("launch", "version", "arch", "uuid", "created", "modified", "descr_free",
                           "descr_total", "descr_offset", "descr_size", "data_offset", "data_size")

    def __init__(self, launch: bytes, version: str, arch: str, uuid: bytes, created: int, modified: int,
                 descr_free: int, descr_total: int, descr_offset: int, descr_size: int, data_offset: int,
                 data_size: int) -> None:
        self._set(launch, version, arch, uuid, created, modified, descr_free, descr_total, descr_offset,
                  descr_size, data_offset, data_size)


class SifDescriptor(Frozen):
    """One used descriptor. ``fstype``/``parttype``/``arch`` are set for partitions only."""

    __slots__ = _fields = ("data_type", "id", "group_id", "link", "offset", "size", "size_with_padding",
                           "created", "modified", "uid", "gid", "name", "extra", "fstype", "parttype", "arch")

    def __init__(self, data_type: int, id: int, group_id: int, link: int, offset: int, size: int,  # noqa: A002
                 size_with_padding: int, created: int, modified: int, uid: int, gid: int, name: str,
                 extra: bytes, fstype: int | None = None, parttype: int | None = None,
                 arch: str | None = None) -> None:
        self._set(data_type, id, group_id, link, offset, size, size_with_padding, created, modified, uid, gid,
                  name, extra, fstype, parttype, arch)

    @property
    def type_name(self) -> str:
        return DATA_TYPE_NAMES.get(self.data_type, f"0x{self.data_type:x}")


class SifLayout(Frozen):
    """The header, the used descriptors, and the table slot each of them was found in."""

    __slots__ = _fields = ("header", "descriptors", "slots")

    def __init__(self, header: SifHeader, descriptors: tuple[SifDescriptor, ...], slots: tuple[int, ...]) -> None:
        self._set(header, descriptors, slots)

    def primary_partition(self) -> SifDescriptor | None:
        """The first used PrimSys partition (the runtime's rootfs), or None."""
        for d in self.descriptors:
            if d.data_type == DATA_PARTITION and d.parttype == PART_PRIMSYS:
                return d
        return None

    def by_name(self, data_type: int, name: str) -> SifDescriptor | None:
        for d in self.descriptors:
            if d.data_type == data_type and d.name == name:
                return d
        return None


def _uuid4() -> bytes:
    """A random version-4 UUID, as Go's uuid.New() (the uuid module is slow to import)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return bytes(raw)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def parse_sif(head: bytes, file_size: int, *, path: str = "") -> SifLayout:
    """Parse the header and descriptor table given the file's first bytes (enough of them
    to cover the table) and its size. Raises ImageError for anything malformed."""
    where = f"{path}: " if path else ""
    if len(head) < HEADER_SIZE:
        raise ImageError(f"{where}not a sif file: only {len(head)} bytes", path=path)
    f = _HEADER.unpack_from(head)
    if f[1] != SIF_MAGIC:
        raise ImageError(f"{where}not a sif file: bad magic", path=path)
    version = _cstr(f[2])
    if version != "01":
        raise ImageError(f"{where}unsupported sif version {version!r} (only 01)", path=path)
    header = SifHeader(f[0].rstrip(b"\0"), version, _cstr(f[3]), f[4], *f[5:])
    end = header.descr_offset + header.descr_total * DESCRIPTOR_SIZE
    if header.descr_total < 0 or header.descr_offset < HEADER_SIZE or end > file_size:
        raise ImageError(f"{where}truncated sif: descriptor table ends at {end}, "
                         f"file has {file_size} bytes", path=path)
    if len(head) < end:
        raise ImageError(f"{where}sif descriptor table not read completely", path=path)
    descriptors, slots = [], []
    for i in range(header.descr_total):
        d = _DESCR.unpack_from(head, header.descr_offset + i * DESCRIPTOR_SIZE)
        if not d[1]:
            continue
        desc = _descriptor(d)
        if desc.offset < 0 or desc.size < 0 or desc.offset + desc.size > file_size:
            raise ImageError(f"{where}truncated sif: object {desc.id} ({desc.type_name}) ends at "
                             f"{desc.offset + desc.size}, file has {file_size} bytes", path=path)
        descriptors.append(desc)
        slots.append(i)
    return SifLayout(header, tuple(descriptors), tuple(slots))


def _descriptor(d: tuple) -> SifDescriptor:
    extra: bytes = d[13]
    fstype = parttype = arch = None
    if d[0] == DATA_PARTITION:
        fstype, parttype, raw_arch = _PART_EXTRA.unpack_from(extra)
        arch = _cstr(raw_arch)
    return SifDescriptor(d[0], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11],
                         _cstr(d[12]), extra, fstype, parttype, arch)


def read_sif(fh: BinaryIO, *, path: str = "") -> SifLayout:
    """Parse the SIF open in ``fh`` (seekable, binary)."""
    fh.seek(0, 2)
    size = fh.tell()
    fh.seek(0)
    head = fh.read(HEADER_SIZE)
    if len(head) == HEADER_SIZE and head[32:42] == SIF_MAGIC:
        _, _, _, _, _, _, _, _, total, off, *_ = _HEADER.unpack(head)
        if 0 <= total < 1 << 20 and HEADER_SIZE <= off < size:
            head += fh.read(max(0, off + total * DESCRIPTOR_SIZE - HEADER_SIZE))
    return parse_sif(head, size, path=path)


# ----------------------------------------------------------------------------- writing


class SifObject(Frozen):
    """An object to write. ``data`` is bytes, a path (str/Path) whose content is copied,
    or None for content already in place in the output file (``size`` bytes at the
    offset the plan gives it; used to let mksquashfs write a partition directly).

    ``align``: None = the type's default (4096 for partitions, else none).
    ``group``: the group number (1 by default, 0 for none).
    """

    __slots__ = _fields = ("data_type", "data", "name", "align", "group", "link", "fstype", "parttype", "arch",
                           "extra", "size")

    def __init__(self, data_type: int, data: bytes | str | object, name: str = "", align: int | None = None,
                 group: int = DEFAULT_GROUP, link: int = 0, fstype: int = 0, parttype: int = 0, arch: str = "",
                 extra: bytes = b"", size: int | None = None) -> None:
        self._set(data_type, data, name, align, group, link, fstype, parttype, arch, extra, size)


class SifCreateOptions(Frozen):
    """Container-wide settings. ``uuid``/``time`` when given win; otherwise
    ``deterministic`` means a nil UUID and the Go zero time (the Go library's
    OptCreateDeterministic), and not deterministic means a random UUID and now."""

    __slots__ = _fields = ("launch", "deterministic", "uuid", "time", "capacity", "descr_offset")

    def __init__(self, launch: bytes = LAUNCH_SCRIPT, deterministic: bool = True, uuid: bytes | None = None,
                 time: int | None = None, capacity: int = DEFAULT_CAPACITY,
                 descr_offset: int = DEFAULT_DESCR_OFFSET) -> None:
        self._set(launch, deterministic, uuid, time, capacity, descr_offset)


def _object_size(obj: SifObject) -> int:
    if obj.data is None:
        return obj.size or 0
    if isinstance(obj.data, (bytes, bytearray)):
        return len(obj.data)
    import os

    return os.stat(obj.data).st_size


def _extra(obj: SifObject) -> bytes:
    if obj.data_type == DATA_PARTITION:
        code = arch_code(obj.arch or "unknown").encode() + b"\0"
        return _PART_EXTRA.pack(obj.fstype, obj.parttype, code)
    return obj.extra


def _plan(objects: list[SifObject], opts: SifCreateOptions) -> tuple[bytes, list[tuple[int, SifObject]]]:
    """Return the header+table bytes and (offset, object) placements."""
    if len(opts.launch) >= 32:
        raise ImageError("sif: launch script must be shorter than 32 bytes")
    if len(objects) > opts.capacity:
        raise ImageError(f"sif: {len(objects)} objects exceed the descriptor capacity {opts.capacity}")
    if sum(1 for o in objects if o.data_type == DATA_PARTITION and o.parttype == PART_PRIMSYS) > 1:
        raise ImageError("sif: only one primary system partition is allowed")
    uid, t = opts.uuid, opts.time
    if uid is None:
        uid = bytes(16) if opts.deterministic else _uuid4()
    if t is None:
        import time as _time

        t = GO_ZERO_TIME if opts.deterministic else int(_time.time())
    if len(uid) != 16:
        raise ImageError("sif: uuid must be 16 bytes")
    descr_size = opts.capacity * DESCRIPTOR_SIZE
    data_offset = opts.descr_offset + descr_size
    table = bytearray(descr_size)
    placements: list[tuple[int, SifObject]] = []
    data_size, arch = 0, "00"
    for i, obj in enumerate(objects):
        align = obj.align if obj.align is not None else (4096 if obj.data_type == DATA_PARTITION else 0)
        start = data_offset + data_size
        offset = -(-start // align) * align if align > 1 else start
        size = _object_size(obj)
        padded = offset - start + size
        data_size += padded
        group = obj.group | GROUP_MASK if obj.group else GROUP_MASK
        name = obj.name.encode()
        if len(name) > 128:
            raise ImageError(f"sif: object name longer than 128 bytes: {obj.name!r}")
        _DESCR.pack_into(table, i * DESCRIPTOR_SIZE, obj.data_type, True, i + 1, group, obj.link,
                         offset, size, padded, t, t, 0, 0, name, _extra(obj))
        if obj.data_type == DATA_PARTITION and obj.parttype == PART_PRIMSYS:
            arch = arch_code(obj.arch or "unknown")
        placements.append((offset, obj))
    header = _HEADER.pack(opts.launch, SIF_MAGIC, b"01\0", arch.encode() + b"\0", uid, t, t,
                          opts.capacity - len(objects), opts.capacity, opts.descr_offset,
                          descr_size, data_offset, data_size)
    head = header + bytes(opts.descr_offset - HEADER_SIZE) + bytes(table)
    return head, placements


def write_sif(fh: BinaryIO, objects: list[SifObject], opts: SifCreateOptions = SifCreateOptions()) -> int:
    """Write a SIF to the binary file ``fh`` (positioned at 0). Returns the bytes written."""
    import shutil

    head, placements = _plan(list(objects), opts)
    fh.write(head)
    pos = len(head)
    for offset, obj in placements:
        if obj.data is None:
            fh.seek(offset + _object_size(obj))
            pos = offset + _object_size(obj)
            continue
        if offset > pos:
            fh.write(bytes(offset - pos))
        if isinstance(obj.data, (bytes, bytearray)):
            fh.write(obj.data)
            pos = offset + len(obj.data)
        else:
            with open(obj.data, "rb") as src:  # type: ignore[arg-type]
                shutil.copyfileobj(src, fh, 1 << 20)
            pos = offset + _object_size(obj)
    return pos


def plan_offsets(objects: list[SifObject], opts: SifCreateOptions = SifCreateOptions()) -> list[int]:
    """Where ``write_sif`` would place each object (an object's offset depends only on
    the objects before it, so a last object's size may still be unknown)."""
    return [offset for offset, _ in _plan(list(objects), opts)[1]]


def sif_bytes(objects: list[SifObject], opts: SifCreateOptions = SifCreateOptions()) -> bytes:
    """The whole SIF as bytes (for small objects and tests)."""
    import io

    buf = io.BytesIO()
    write_sif(buf, objects, opts)
    return buf.getvalue()

