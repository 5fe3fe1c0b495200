"""Byte streams for blobs: digest-checking readers and layer decompression.

``HashingReader`` hashes what passes through it. ``decompressed(raw, media_type)``
returns a reader of the uncompressed tar: gzip (multi-member; through ``zlib-ng``, twice
as fast, when it is installed), zstd (needs the ``zstandard`` package) or plain, chosen
by the magic bytes first and the media type second, so that mislabelled docker-archive
layers still work.

``LayerPump(open_layer, media_types)`` decompresses and hashes the layers, in order, in
one background thread (zlib, zstd and sha256 release the GIL, so this runs beside the
applier on another core), handing chunks through a bounded queue per layer (at most
``_DEPTH`` MiB buffered per layer): layer *i+1* is decompressed while layer *i*'s tail
is being applied. ``pump.reader(i)`` is the tar stream of layer *i*; ``digest()`` is
its digest (the diff_id; sha256 unless told otherwise) once read to the end. Errors in the thread (a failed download,
corrupt data) are raised by ``read`` in the caller's thread.

No wait is unbounded: ``STALL`` is how long a pull may go without progress (no byte
downloaded, no lock freed) before the waiting side gives up with an error naming what it
waited for. A reader whose pump thread ended without a word raises at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import queue
import threading
import zlib
from collections.abc import Callable
from typing import BinaryIO

from base.errors import CapabilityError
from builder.sources.oci.errors import LayerError

try:  # zlib-ng inflates about twice as fast as zlib, with the same output; optional
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # pragma: no cover - depends on the environment
    _zlib = zlib  # type: ignore[assignment]

__all__ = ["HashingReader", "decompressed", "parse_digest", "CHUNK", "LayerPump", "STALL"]

CHUNK = 1 << 20
STALL = 300.0  # seconds without progress before a wait gives up (above the HTTP read timeout)
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
_DEPTH = 8


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
        self._z = _zlib.decompressobj(31)
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
            self._z = _zlib.decompressobj(31)
            self._feed(rest, size)
            return
        data = self._z.unconsumed_tail or self._raw.read(CHUNK // 4)
        if not data:
            raise LayerError("decompressing layer: gzip stream ends early (truncated blob?)")
        self._feed(data, size)

    def _feed(self, data: bytes, size: int) -> None:
        try:
            self._pending = self._z.decompress(data, max(size, CHUNK))
        except (zlib.error, _zlib.error) as e:
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


class _End:
    def __init__(self, digest: str, size: int) -> None:
        self.digest, self.size = digest, size


class LayerPump:
    """See the module docstring. Use as a context manager; leaving it stops the thread."""

    def __init__(self, open_layer: Callable[[int], contextlib.AbstractContextManager[BinaryIO]],
                 media_types: list[str | None], algorithms: list[str] | None = None) -> None:
        self._open, self._media = open_layer, media_types
        self._algos = algorithms or ["sha256"] * len(media_types)
        self._queues: list[queue.Queue] = [queue.Queue(_DEPTH) for _ in media_types]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sbuild-inflate", daemon=True)

    def __enter__(self) -> "LayerPump":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # the thread ends at its next put; it never touches the rootfs
        for q in self._queues:
            with contextlib.suppress(queue.Empty):
                while True:
                    q.get_nowait()

    def reader(self, index: int) -> "_PumpReader":
        return _PumpReader(self._queues[index], self._thread, f"layer {index + 1}")

    def _run(self) -> None:
        for index, media in enumerate(self._media):
            q = self._queues[index]
            try:
                with self._open(index) as raw:
                    src = decompressed(raw, media)
                    digest, size = hashlib.new(self._algos[index]), 0
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        if not self._put(q, chunk):
                            return
                self._put(q, _End(f"{digest.name}:{digest.hexdigest()}", size))
            except BaseException as e:  # raised again by the reader, in the applier's thread
                self._put(q, e)
                return

    def _put(self, q: queue.Queue, item: object) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False


class _PumpReader:
    """``read(n)`` over one layer's queue; ``drain()`` then ``digest()`` at the end."""

    def __init__(self, q: queue.Queue, thread: threading.Thread, what: str) -> None:
        self._q, self._thread, self._what = q, thread, what
        self._rest = b""
        self._end: _End | None = None

    def _next(self) -> object:
        """The next item. While we wait the queue is empty, so the pump is decompressing or
        waiting for bytes, and that wait ends (``STALL``); if the pump is gone, raise now."""
        while True:
            try:
                return self._q.get(timeout=0.5)
            except queue.Empty:
                if not self._thread.is_alive() and self._q.empty():
                    raise LayerError(f"decompressing {self._what}: the decompressing thread stopped") from None

    def read(self, size: int = -1) -> bytes:
        if self._rest:
            data = self._rest
        elif self._end is not None:
            return b""
        else:
            item = self._next()
            if isinstance(item, BaseException):
                self._end = _End("", 0)
                raise item
            if isinstance(item, _End):
                self._end = item
                return b""
            data = item
        if 0 <= size < len(data):
            self._rest = data[size:]
            return data[:size]
        self._rest = b""
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def digest(self) -> str:
        assert self._end is not None, "digest() before the end of the layer"
        return self._end.digest
