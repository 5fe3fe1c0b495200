"""Byte streams for blobs: digest-checking readers and layer decompression.

``HashingReader`` hashes what passes through it; ``verify`` compares the result with a
descriptor. ``decompressed(raw, media_type)`` returns a reader of the uncompressed tar:
gzip (multi-member), zstd (needs the ``zstandard`` package) or plain, chosen by the
magic bytes first and the media type second, so that mislabelled docker-archive layers
still work.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from typing import BinaryIO

from builder.errors import CapabilityError
from builder.sources.oci.errors import LayerError

__all__ = ["HashingReader", "decompressed", "parse_digest", "CHUNK"]

CHUNK = 1 << 20
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"


def parse_digest(digest: str) -> tuple[str, str]:
    """``("sha256", hex)`` from ``sha256:hex``; only sha256 and sha512 are accepted."""
    algo, _, hexpart = digest.partition(":")
    size = {"sha256": 64, "sha512": 128}.get(algo)
    if size is None or len(hexpart) != size or any(c not in "0123456789abcdef" for c in hexpart):
        raise ValueError(f"invalid digest {digest!r}")
    return algo, hexpart


class HashingReader(io.RawIOBase):
    """Reads from ``raw`` and hashes every byte returned."""

    def __init__(self, raw: BinaryIO, algo: str = "sha256") -> None:
        self._raw = raw
        self.hash = hashlib.new(algo)
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.hash.update(data)
        self.count += n
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size if size is not None and size >= 0 else CHUNK * 64)
        self.hash.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def digest(self) -> str:
        return f"{self.hash.name}:{self.hash.hexdigest()}"


class _Gunzip(io.RawIOBase):
    """Streaming gzip reader that accepts concatenated members (like ``gzip -d``)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._z = zlib.decompressobj(31)
        self._pending = b""
        self._pos = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = CHUNK
        while self._pos >= len(self._pending) and not self._eof:
            self._pending, self._pos = b"", 0
            self._fill(size)
        start = self._pos
        if start == 0 and size >= len(self._pending):
            self._pos = len(self._pending)
            return self._pending
        self._pos = min(start + size, len(self._pending))
        return self._pending[start:self._pos]

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _fill(self, size: int) -> None:
        if self._z.eof:
            rest = self._z.unused_data
            if not rest.strip(b"\0"):
                rest = self._raw.read(CHUNK // 4)
                if not rest:
                    self._eof = True
                    return
            self._z = zlib.decompressobj(31)
            self._feed(rest, size)
            return
        data = self._z.unconsumed_tail or self._raw.read(CHUNK // 4)
        if not data:
            raise LayerError("decompressing layer: gzip stream ends early (truncated blob?)")
        self._feed(data, size)

    def _feed(self, data: bytes, size: int) -> None:
        try:
            self._pending = self._z.decompress(data, max(size, CHUNK))
        except zlib.error as e:
            raise LayerError(f"decompressing layer: corrupt gzip data: {e}") from e


def decompressed(raw: BinaryIO, media_type: str | None = None) -> BinaryIO:
    """A reader of the uncompressed layer tar in ``raw``."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(_Raw(raw), CHUNK)
    head = buffered.peek(4)[:4]
    if head.startswith(_GZIP):
        return _Gunzip(buffered)  # type: ignore[return-value]
    if head.startswith(_ZSTD):
        try:
            import zstandard
        except ImportError as e:
            raise CapabilityError("decompressing a zstd layer: the zstandard module is missing",
                                  hint="pip install zstandard") from e
        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
    return buffered  # type: ignore[return-value]


class _Raw(io.RawIOBase):
    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._f.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
