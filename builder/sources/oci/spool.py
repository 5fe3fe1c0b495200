"""A blob being downloaded into the cache, readable while it grows: the pull's hand-over
from a download thread (``puller._Downloader``) to the layer applier.

``Spool`` is fed by the downloader (``start``, ``advance``, ``complete``, ``fail``) and read
through ``reader()``; ``Beat`` is when the pull last made progress (any of its blobs), shared
by its spools, so that a wait ends ``STALL`` seconds after the last byte anywhere.
``verdict`` is what the download says about the blob once it is over, for a layer that
failed to apply before its end (a registry serving the wrong bytes: the digest decides).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

from builder.sources.oci.errors import RegistryError
from builder.sources.oci.stream import STALL

__all__ = ["Beat", "Spool", "SpoolReader", "VERDICT_LIMIT"]

VERDICT_LIMIT = 1 << 30  # bytes a failed layer's download may still need for its digest to decide


class Beat:
    """When a pull last made progress (any of its blobs), shared by its spools."""

    def __init__(self) -> None:
        self.at = time.monotonic()

    def touch(self) -> None:
        self.at = time.monotonic()


class Spool:
    """A blob being written to the cache, readable (up to what is written) while it grows.

    It is read through the fd the downloader opened (``BlobWriter.reader``, or
    ``BlobCache.open`` on a hit), so neither the rename into the cache nor a ``cache clean``
    can take it away; ``wait`` gives up after ``stall`` seconds in which no blob of the pull
    made progress."""

    def __init__(self, digest: str = "", beat: Beat | None = None, stall: float = STALL) -> None:
        self._cond = threading.Condition()
        self.digest, self._beat, self._stall = digest or "blob", beat or Beat(), stall
        self.fh: BinaryIO | None = None
        self._closed = False
        self.written = 0
        self.verified = False
        self.failed = False  # the download failed (``error`` is why)
        self.error: BaseException | None = None

    def start(self, fh: BinaryIO) -> None:
        with self._cond:
            self._take(fh)
            self._beat.touch()
            self._cond.notify_all()

    def _take(self, fh: BinaryIO | None) -> None:
        if self.fh is not None and self.fh is not fh:
            self.fh.close()
        self.fh = fh
        if self._closed and fh is not None:  # the pull ended before this download did
            fh.close()
            self.fh = None

    def advance(self, written: int) -> None:
        with self._cond:
            self.written = written
            self._beat.touch()
            self._cond.notify_all()

    def alive(self) -> None:
        """The downloader is waiting for a lock whose holder makes progress."""
        self._beat.touch()

    def complete(self, fh: BinaryIO | None, size: int) -> None:
        with self._cond:
            self._take(fh)
            self.written, self.verified = size, True
            self._beat.touch()
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self.error, self.failed = error, True
            self._cond.notify_all()

    def verdict(self, size: int | None, limit: int = VERDICT_LIMIT) -> BaseException | None:
        """Once the download is over: its error, or None when the blob verified. Waits as
        ``wait`` does (it ends after ``stall`` seconds without progress), and not at all when
        the size is unknown or more than ``limit`` bytes are still to come (None: no word)."""
        with self._cond:
            while not (self.verified or self.failed):
                if size is None or size - self.written > limit:
                    return None
                left = self._beat.at + self._stall - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 1.0))
            return self.error if self.failed else None

    def wait(self, pos: int) -> int:
        """Bytes readable from ``pos`` (0 means end of a verified blob); raises on failure."""
        with self._cond:
            while True:
                if self.error is not None:
                    raise self.error
                if self.fh is not None and (self.written > pos or self.verified):
                    return self.written - pos
                left = self._beat.at + self._stall - time.monotonic()
                if left <= 0:
                    raise RegistryError(f"pulling {self.digest}: no progress for {self._stall:.0f} s",
                                        digest=self.digest)
                self._cond.wait(min(left, 1.0))

    def pread(self, size: int, pos: int) -> bytes:
        """Bytes of the blob at ``pos`` (under the lock: ``close`` cannot pull the fd away)."""
        with self._cond:
            if self.fh is None:
                raise RegistryError(f"pulling {self.digest}: read after the pull ended", digest=self.digest)
            return os.pread(self.fh.fileno(), size, pos)

    def close(self) -> None:
        """Release the blob; a later wait raises at once."""
        with self._cond:
            self._closed = True
            if self.error is None:
                self.error = RegistryError(f"pulling {self.digest}: the pull has ended", digest=self.digest)
            if self.fh is not None:
                self.fh.close()
                self.fh = None
            self._cond.notify_all()

    @contextlib.contextmanager
    def reader(self) -> Iterator[BinaryIO]:
        self.wait(0)
        try:
            yield SpoolReader(self)  # type: ignore[misc]
        finally:
            self.close()


class SpoolReader:
    def __init__(self, spool: Spool) -> None:
        self._spool, self._pos = spool, 0

    def read(self, size: int = -1) -> bytes:
        avail = self._spool.wait(self._pos)
        if avail == 0:
            return b""
        want = avail if size is None or size < 0 else min(size, avail)
        data = self._spool.pread(want, self._pos)
        if not data:
            raise RegistryError(f"pulling {self._spool.digest}: its file ends at {self._pos} bytes, "
                                f"{avail} more were written", digest=self._spool.digest)
        self._pos += len(data)
        return data

    def readable(self) -> bool:
        return True
