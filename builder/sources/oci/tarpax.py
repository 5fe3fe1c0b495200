"""Pax extended headers of layer tars (for ``tarstream``): records parsed, applied to an
entry, and the numeric checks every entry passes.

``pax_records(data)`` splits a pax body into ``(key, value)`` records; ``apply_pax(entry,
records)`` sets path, linkpath, size, uid, gid, mtime/atime (nanoseconds, exactly),
``SCHILY.xattr.*`` and the GNU sparse 0.0/0.1/1.0 fields; ``check_ranges(entry)`` refuses
owners, device numbers and sparse maps the kernel cannot take and clamps times.

Refused, as Go's archive/tar does: a NUL byte in a key or in a path, link, user or group
name (the kernel would cut the name there; Python refuses it with ``ValueError``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from builder.sources.oci.errors import LayerError

if TYPE_CHECKING:
    from builder.sources.oci.tarstream import Entry

__all__ = ["apply_pax", "check_ranges", "pax_records"]

_NO_NUL = (b"path", b"linkpath", b"uname", b"gname", b"GNU.sparse.name")
_ID_MAX = (1 << 32) - 2          # uid/gid 2^32-1 is chown's "leave unchanged"
_DEV_MAX = (1 << 32) - 1
_NS_MAX = (1 << 63) - 1          # times and offsets: what the kernel's 64-bit fields hold


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _time_ns(text: bytes) -> int:
    """A pax time (``-12.5``, ``1600000000.123456789``) in nanoseconds, exactly."""
    neg = text.startswith(b"-")
    whole, _, frac = text.lstrip(b"-").partition(b".")
    try:
        ns = int(whole or b"0") * 1_000_000_000 + int((frac[:9] or b"0").ljust(9, b"0"))
    except ValueError:
        raise LayerError(f"reading layer: bad pax time {text!r}") from None
    return -ns if neg else ns


def pax_records(data: bytes) -> list[tuple[bytes, bytes]]:
    records, pos = [], 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise LayerError("reading layer: corrupt pax header") from None
        end = pos + length
        if space < 0 or length <= 0 or end > len(data) or data[end - 1] != 0x0A:
            raise LayerError("reading layer: corrupt pax header")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq:
            raise LayerError("reading layer: corrupt pax record")
        records.append((key, value))
        pos = end
    return records


def apply_pax(e: Entry, records: list[tuple[bytes, bytes]]) -> bool:
    """Apply pax records to ``e``; True when a GNU sparse 1.0 map starts the data."""
    fields: dict[bytes, bytes] = {}
    regions: list[int] = []
    for key, value in records:
        if b"\0" in key or (b"\0" in value and key in _NO_NUL):
            raise LayerError(f"reading layer: pax record {_text(key)!r} of entry {e.name!r} "
                             "holds a NUL byte (refused, as Go's archive/tar does)")
        if key.startswith(b"SCHILY.xattr."):
            e.xattrs[_text(key[13:])] = value
        elif key in (b"GNU.sparse.offset", b"GNU.sparse.numbytes"):
            regions.append(_int(value, key))  # format 0.0: repeated records, in order
        else:
            fields[key] = value
    if b"path" in fields:
        e.name = _text(fields[b"path"])
    if b"linkpath" in fields:
        e.linkname = _text(fields[b"linkpath"])
    for key in (b"size", b"uid", b"gid"):
        if key in fields:
            setattr(e, key.decode(), _int(fields[key], key))
    if b"mtime" in fields:
        e.mtime_ns = _time_ns(fields[b"mtime"])
    if b"atime" in fields:
        e.atime_ns = _time_ns(fields[b"atime"])
    major, minor = fields.get(b"GNU.sparse.major"), fields.get(b"GNU.sparse.minor")
    if not (regions or b"GNU.sparse.map" in fields or major is not None or minor is not None):
        return False
    if b"GNU.sparse.name" in fields:
        e.name = _text(fields[b"GNU.sparse.name"])
    real = fields.get(b"GNU.sparse.size", fields.get(b"GNU.sparse.realsize"))
    if real is None:
        raise LayerError(f"reading layer: {e.name!r}: sparse member without a real size")
    e.realsize = _int(real, b"GNU.sparse.realsize")
    if major == b"1":
        return True
    if b"GNU.sparse.map" in fields:
        regions = [_int(x, b"GNU.sparse.map") for x in fields[b"GNU.sparse.map"].split(b",") if x]
    if len(regions) % 2:
        raise LayerError(f"reading layer: {e.name!r}: corrupt sparse map")
    e.sparse = list(zip(regions[::2], regions[1::2]))
    return False


def _int(value: bytes, key: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise LayerError(f"reading layer: bad pax {key.decode(errors='replace')} {value!r}") from None

def check_ranges(e: Entry) -> None:
    """Refuse owners, device numbers, sizes and sparse offsets the kernel cannot take; clamp times.

    Owners and devices are refused, as GNU tar does ("value out of uid_t range"): clamping
    or wrapping would give the file another owner (2^32 wraps to root) or device. Times
    carry no privilege and are clamped to the 64-bit nanoseconds ``utimensat`` takes (the
    filesystem then truncates them to its own range, as for any file)."""
    for what, value, top in (("uid", e.uid, _ID_MAX), ("gid", e.gid, _ID_MAX),
                             ("device major", e.devmajor, _DEV_MAX), ("device minor", e.devminor, _DEV_MAX),
                             ("size", e.size, _NS_MAX)):  # off_t: a larger claim is no file a kernel holds
        if not 0 <= value <= top:
            raise LayerError(f"reading layer: entry {e.name!r}: {what} {value} out of range 0..{top}")
    e.mtime_ns = max(-_NS_MAX, min(e.mtime_ns, _NS_MAX))
    if e.atime_ns is not None:
        e.atime_ns = max(-_NS_MAX, min(e.atime_ns, _NS_MAX))
    ends = [e.realsize or 0] + [o + n for o, n in e.sparse or ()]
    if any(o < 0 or n < 0 for o, n in e.sparse or ()) or max(ends) > _NS_MAX:
        raise LayerError(f"reading layer: entry {e.name!r}: sparse map or size out of range")
