"""A small streaming reader of layer tars: headers parsed straight from the byte stream.

``TarReader(read)`` pulls bytes through ``read(n)`` (any length up to ``n``; ``b""`` at
the end) and yields ``Entry`` objects; ``data(entry)`` returns a member's bytes and
``copy_to(entry, fd)`` writes them to a file. It replaces ``tarfile`` on the hot path
of the layer applier (``tarfile`` costs ~100 µs of Python per member).

Understood: v7, ustar (name prefix), GNU (``L``/``K`` long names and links, base-256
numbers, old sparse ``S``) and pax (``x``: path, linkpath, size, uid, gid, mtime,
atime with nanoseconds, ``SCHILY.xattr.*`` kept as raw bytes, GNU sparse 0.0/0.1/1.0).
Global pax headers (``g``) are ignored, as Go's archive/tar users (umoci, containerd) do.
Pax records are parsed and checked in ``tarpax``: a NUL in a path or link is refused, so
are owners, device numbers and sparse maps out of the kernel's range; times are clamped.
Header checksums are verified. Every name is returned as written (decoded as UTF-8 with
surrogate escapes): cleaning and resolving it inside the root is the applier's job.

A missing end-of-archive marker is accepted (umoci 0.4 writes such layers), as is a
missing final padding; a stream that ends inside a header or inside member data is an
error (``LayerError``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

from builder.sources.oci.errors import LayerError
from builder.sources.oci.tarpax import apply_pax, check_ranges, pax_records

__all__ = ["Entry", "TarReader", "REGTYPE", "LNKTYPE", "SYMTYPE", "CHRTYPE", "BLKTYPE", "DIRTYPE",
           "FIFOTYPE"]

REGTYPE, LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE = (b"0", b"1", b"2", b"3", b"4", b"5",
                                                                 b"6")
_REGULAR = (b"0", b"\0", b"7", b"S")
_BLOCK = 512
_CHUNK = 1 << 20
_SUMS = struct.Struct("148B8x356B")
_FIELDS = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s")
_MAX_META = 16 << 20  # a pax header or long name larger than this is refused


class Entry:
    """One member, with the attribute names of ``tarfile.TarInfo`` the applier uses."""

    __slots__ = ("name", "linkname", "type", "mode", "uid", "gid", "size", "mtime_ns", "atime_ns",
                 "devmajor", "devminor", "xattrs", "sparse", "realsize")

    def __init__(self) -> None:
        self.xattrs: dict[str, bytes] = {}
        self.sparse: list[tuple[int, int]] | None = None
        self.atime_ns: int | None = None

    def isreg(self) -> bool:
        return self.type in _REGULAR

    def isdir(self) -> bool:
        return self.type == DIRTYPE

    def issym(self) -> bool:
        return self.type == SYMTYPE

    def islnk(self) -> bool:
        return self.type == LNKTYPE

    def ischr(self) -> bool:
        return self.type == CHRTYPE

    def isblk(self) -> bool:
        return self.type == BLKTYPE

    def isfifo(self) -> bool:
        return self.type == FIFOTYPE


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _cstr(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _num(field: bytes) -> int:
    """An octal (or GNU base-256) numeric header field."""
    try:
        return int(field.partition(b"\0")[0] or b"0", 8)
    except ValueError:
        pass
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")  # 0x80: positive; 0xff: two's complement
        return value - (1 << (8 * (len(field) - 1))) if field[0] == 0xFF else value
    text = _cstr(field).strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise LayerError(f"reading layer: corrupt tar header (bad number {field!r})") from None


class TarReader:
    """See the module docstring."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._current: Entry | None = None
        self._data = 0   # bytes of the current member's data not consumed
        self._pad = 0    # then its padding (may be missing at the very end)

    # --------------------------------------------------------------- buffer
    def _more(self) -> bool:
        if self._eof:
            return False
        chunk = self._read(_CHUNK)
        if not chunk:
            self._eof = True
            return False
        rest = len(self._buf) - self._pos
        self._buf = (self._buf[self._pos:] + chunk) if rest else chunk
        self._pos = 0
        return True

    def _take(self, n: int) -> bytes | None:
        """Exactly ``n`` bytes, or None if the stream ends first."""
        while len(self._buf) - self._pos < n:
            if not self._more():
                return None
        start = self._pos
        self._pos += n
        return self._buf[start:self._pos]

    def _skip(self, n: int, *, tolerant: bool = False) -> None:
        while n:
            avail = len(self._buf) - self._pos
            if avail >= n:
                self._pos += n
                return
            n -= avail
            self._pos = len(self._buf)
            if not self._more():
                if tolerant:
                    return
                raise LayerError("reading layer: unexpected end of data (truncated layer?)")

    # ---------------------------------------------------------------- data
    def data(self, entry: Entry) -> bytes:
        """The stored bytes of ``entry`` (call at most once, before the next entry)."""
        data = self._take(self._claim(entry))
        if data is None:
            raise LayerError("reading layer: unexpected end of data (truncated layer?)")
        return data

    def chunks(self, entry: Entry) -> Iterator[bytes | memoryview]:
        """The stored bytes of ``entry`` in pieces, each valid until the next is asked for."""
        if entry is not self._current or self._data != entry.size:
            raise LayerError("reading layer: member data read twice or out of order")
        while self._data:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self._more():
                    raise LayerError("reading layer: unexpected end of data (truncated layer?)")
                continue
            take = min(avail, self._data)
            start = self._pos
            self._pos += take
            self._data -= take
            yield memoryview(self._buf)[start:start + take]

    def _claim(self, entry: Entry) -> int:
        if entry is not self._current or self._data != entry.size:
            raise LayerError("reading layer: member data read twice or out of order")
        self._data = 0
        return entry.size

    # ------------------------------------------------------------- headers
    def __iter__(self) -> Iterator[Entry]:
        while (entry := self.next()) is not None:
            yield entry

    def next(self) -> Entry | None:
        """The next member, or None at the end of the archive."""
        self._skip(self._data)
        self._skip(self._pad, tolerant=True)
        self._data = self._pad = 0
        self._current = None
        pax: list[tuple[bytes, bytes]] = []
        longname = longlink = None
        while True:
            header = self._take(_BLOCK)
            if header is None:
                if len(self._buf) > self._pos or pax or longname is not None or longlink is not None:
                    raise LayerError("reading layer: unexpected end of data in a header")
                return None
            if header.count(0) == _BLOCK:
                return None
            entry = _header(header)
            if entry.type not in (b"x", b"g", b"L", b"K", b"X"):
                break
            if entry.size > _MAX_META:
                raise LayerError(f"reading layer: {entry.size}-byte metadata header refused")
            body = self._take(entry.size)
            if body is None:
                raise LayerError("reading layer: unexpected end of data in a header")
            self._skip(_padded(entry.size) - entry.size)
            if entry.type in (b"x", b"X"):
                pax.extend(pax_records(body))
            elif entry.type == b"L":
                longname = _cstr(body)
            elif entry.type == b"K":
                longlink = _cstr(body)
        if longname is not None:
            entry.name = _text(longname)
        if longlink is not None:
            entry.linkname = _text(longlink)
        v1 = apply_pax(entry, pax) if pax else False
        if entry.type == b"S":
            self._gnu_sparse(entry, header)
        if entry.type in (LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE):
            entry.size = 0  # header-only types carry no data (as Go's archive/tar reads them)
        if entry.size < 0:
            raise LayerError(f"reading layer: {entry.name!r}: negative size")
        self._current = entry
        self._data, self._pad = entry.size, _padded(entry.size) - entry.size
        if v1:
            self._sparse_map_v1(entry)
        check_ranges(entry)
        return entry

    def _gnu_sparse(self, e: Entry, h: bytes) -> None:
        """Old GNU sparse (type ``S``): the map is in the header and extension blocks."""
        regions = _sparse_structs(h[386:482], 4)
        extended = h[482]
        e.realsize = _num(h[483:495])
        while extended:
            block = self._take(_BLOCK)
            if block is None:
                raise LayerError("reading layer: unexpected end of data in a sparse header")
            regions += _sparse_structs(block[:504], 21)
            extended = block[504]
        e.sparse = regions
        e.type = REGTYPE

    def _sparse_map_v1(self, e: Entry) -> None:
        """GNU sparse 1.0: decimal lines (count, then offset/size pairs) starting the data."""
        numbers: list[int] = []
        used, tail, count = 0, b"", None
        while count is None or len(numbers) < 2 * count:
            block = self._take(_BLOCK) if used + _BLOCK <= e.size else None
            if block is None or used > _MAX_META:
                raise LayerError(f"reading layer: {e.name!r}: corrupt sparse map")
            used += _BLOCK
            *lines, tail = (tail + block).split(b"\n")
            for line in lines:
                try:
                    value = int(line)
                except ValueError:
                    raise LayerError(f"reading layer: {e.name!r}: corrupt sparse map") from None
                if count is None:
                    count = value
                elif len(numbers) < 2 * count:
                    numbers.append(value)
        e.sparse = list(zip(numbers[::2], numbers[1::2]))
        e.size -= used
        self._data = e.size


def _header(h: bytes) -> Entry:
    (name, mode, uid, gid, size, mtime, chksum, kind, link, magic, _, _, _, major, minor,
     prefix) = _FIELDS.unpack_from(h)
    stored = _num(chksum)
    if stored != sum(_SUMS.unpack_from(h)) + 256 and stored != _signed_sum(h):
        raise LayerError("reading layer: corrupt tar header (bad checksum)")
    e = Entry()
    name = _cstr(name)
    if magic == b"ustar\0":  # POSIX ustar: a name prefix (GNU uses these bytes otherwise)
        prefix = _cstr(prefix)
        if prefix:
            name = prefix + b"/" + name
    e.type = kind
    e.name = name.decode("utf-8", "surrogateescape")
    e.linkname = _cstr(link).decode("utf-8", "surrogateescape")
    e.mode = _num(mode)
    e.uid = _num(uid)
    e.gid = _num(gid)
    e.size = _num(size)
    e.mtime_ns = _num(mtime) * 1_000_000_000
    if kind == CHRTYPE or kind == BLKTYPE:
        e.devmajor, e.devminor = _num(major), _num(minor)
    else:
        e.devmajor = e.devminor = 0
    e.realsize = None
    if kind == b"\0" and e.name.endswith("/"):
        e.type = DIRTYPE  # v7 archives mark directories by a trailing slash
    return e


def _signed_sum(h: bytes) -> int:
    return sum(b - 256 if b > 127 else b for b in _SUMS.unpack_from(h)) + 256


def _sparse_structs(raw: bytes, count: int) -> list[tuple[int, int]]:
    out = []
    for i in range(count):
        off, num = raw[i * 24:i * 24 + 12], raw[i * 24 + 12:i * 24 + 24]
        if not off.strip(b"\0"):
            break
        out.append((_num(off), _num(num)))
    return out


def _padded(size: int) -> int:
    return (size + _BLOCK - 1) // _BLOCK * _BLOCK
