"""A SIF opened for signing or verifying: raw header and descriptor bytes, streamed object
data, groups and links as the Go SIF library sees them, and appending a signature object.

``builder.images.sif`` parses the layout; this module adds what signing needs on top of it:
the raw 128-byte header and 585-byte descriptors (the integrity metadata hashes parts of
them), object reads in bounded chunks (a 1 GB partition is never held in memory), and
``append_signature``, which adds a Signature object exactly as the SIF library's
``AddObject`` does (first free slot, data at the end of the last object, no alignment,
descriptor table then header rewritten; the "deterministic" time when the image is).

Limits: v01 SIFs only; appending needs a free descriptor slot (no table growth, as in Go).
"""

from __future__ import annotations

import os
import struct
import time as _time

from base.errors import ImageError
from builder.images.sif import (
    DATA_SIGNATURE, DESCRIPTOR_SIZE, GO_ZERO_TIME, GROUP_MASK, HEADER_SIZE, SifDescriptor, read_sif,
)

__all__ = ["SignImage", "CHUNK", "group_of", "linked"]

CHUNK = 1 << 20  # read size when hashing object data
_SIG_EXTRA = struct.Struct("<i20s")


def group_of(d: SifDescriptor) -> int:
    """The object's group number (0: not in a group), as Go's ``Descriptor.GroupID``."""
    return d.group_id & ~GROUP_MASK & 0xFFFFFFFF


def linked(d: SifDescriptor) -> tuple[int, bool]:
    """(linked ID, whether it is a group), as Go's ``Descriptor.LinkedID``."""
    if d.link & GROUP_MASK:
        return d.link & ~GROUP_MASK & 0xFFFFFFFF, True
    return d.link, False


class SignImage:
    """One SIF file, open read-only (``writable=False``) or for appending signatures."""

    def __init__(self, path: str, *, writable: bool = False) -> None:
        self.path = path
        try:
            self._fh = open(path, "r+b" if writable else "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise ImageError(f"{path}: cannot open image: {e.strerror}", path=path) from e
        try:
            self._load()
        except BaseException:
            self._fh.close()
            raise

    def _load(self) -> None:
        self.layout = read_sif(self._fh, path=self.path)
        h = self.layout.header
        self._fh.seek(0)
        self.header_raw = self._fh.read(HEADER_SIZE)
        self._fh.seek(h.descr_offset)
        self.table = bytearray(self._fh.read(h.descr_total * DESCRIPTOR_SIZE))
        self.descriptors = list(self.layout.descriptors)
        self._slot = dict(zip((d.id for d in self.descriptors), self.layout.slots))

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> SignImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading

    def raw_descriptor(self, d: SifDescriptor) -> bytes:
        start = self._slot[d.id] * DESCRIPTOR_SIZE
        return bytes(self.table[start:start + DESCRIPTOR_SIZE])

    def by_id(self, object_id: int) -> SifDescriptor | None:
        for d in self.descriptors:
            if d.id == object_id:
                return d
        return None

    def read(self, d: SifDescriptor) -> bytes:
        """The whole object (for signatures and other small objects)."""
        self._fh.seek(d.offset)
        return self._fh.read(d.size)

    def feed(self, d: SifDescriptor, *hashers: object) -> None:
        """Feed the object's bytes to each hasher's ``update``, ``CHUNK`` bytes at a time."""
        fd = self._fh.fileno()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        pos, left = d.offset, d.size
        updates = [h.update for h in hashers]  # type: ignore[attr-defined]
        while left > 0:
            n = os.preadv(fd, [view[:min(CHUNK, left)]], pos)
            if n <= 0:
                raise ImageError(f"{self.path}: object {d.id} is truncated", path=self.path)
            for update in updates:
                update(view[:n])
            pos += n
            left -= n

    # -- groups

    def group_ids(self) -> list[int]:
        return sorted({group_of(d) for d in self.descriptors if group_of(d)})

    def group_objects(self, group: int) -> list[SifDescriptor]:
        return [d for d in self.descriptors if group_of(d) == group]

    def signatures(self) -> list[SifDescriptor]:
        return [d for d in self.descriptors if d.data_type == DATA_SIGNATURE]

    # -- appending

    def _deterministic(self) -> bool:
        h = self.layout.header
        return h.uuid == bytes(16) and h.created == GO_ZERO_TIME and h.modified == GO_ZERO_TIME

    def append_signature(self, blob: bytes, group: int, hash_type: int, fingerprint: bytes = b"",
                         *, now: int | None = None) -> int:
        """Add a Signature object linked to ``group``; returns its ID."""
        h = self.layout.header
        used = {self._slot[d.id] for d in self.descriptors}
        free = [i for i in range(h.descr_total) if i not in used]
        if not free:
            raise ImageError(f"{self.path}: no free descriptor slot for a signature "
                             f"(all {h.descr_total} used)", path=self.path)
        slot = free[0]
        t = GO_ZERO_TIME if self._deterministic() else int(_time.time()) if now is None else now
        offset = max((d.offset + d.size for d in self.descriptors), default=h.data_offset)
        extra = _SIG_EXTRA.pack(hash_type, fingerprint.ljust(20, b"\0")[:20]).ljust(384, b"\0")
        raw = struct.pack("<i?IIIqqqqqqq128s384s", DATA_SIGNATURE, True, slot + 1, GROUP_MASK,
                          group | GROUP_MASK, offset, len(blob), len(blob), t, t, 0, 0, b"", extra)
        self._fh.seek(offset)
        self._fh.write(blob)
        self.table[slot * DESCRIPTOR_SIZE:(slot + 1) * DESCRIPTOR_SIZE] = raw
        self._fh.seek(h.descr_offset)
        self._fh.write(self.table)
        head = bytearray(self.header_raw)
        end = offset + len(blob)
        struct.pack_into("<q", head, 72, t)
        struct.pack_into("<q", head, 80, h.descr_free - 1)
        struct.pack_into("<q", head, 120, end - h.data_offset)
        self._fh.seek(0)
        self._fh.write(head)
        self._fh.flush()
        self._load()
        return slot + 1
