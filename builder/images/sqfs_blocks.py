"""Compress squashfs data blocks on a thread pool and write them in submission order
(for ``builder.images.sqfs_pack``).

Blocks go to the threads in batches of ``_BATCH``: a thread needs the GIL to take a job
and to hand back its result, and while the main thread walks the tree it may wait up to
Python's switch interval for it, so fewer, larger jobs keep the cores busy. At most
``limit`` blocks are held (read but not written), whatever the file sizes. The order of
the output never depends on which thread finishes first. ``holes`` queues a run of
all-zero blocks without data; ``data_region`` finds where a file's data and holes are
(``SEEK_DATA``/``SEEK_HOLE``) and ``pread_all`` reads it. With a ``cache``
(``builder.images.blockcache.BlockCache``) the threads take a block's compressed bytes
from it when it holds them, and store those they compress (the output is the same).
"""

from __future__ import annotations

import collections
import errno
import os
from concurrent.futures import Future, ThreadPoolExecutor

from builder.images import sqfs_format as fmt

__all__ = ["BlockWriter", "data_region", "pread_all", "write_at"]

_BATCH = 8  # blocks per compression job
_ZERO_BLOCK = bytes(fmt.BLOCK_SIZE)


def _compress_batch(blocks: list[bytes], level: int, cache) -> list[tuple[bytes, bool]]:  # noqa: ANN001
    if cache is not None:
        return [cache.compress(b) for b in blocks]
    return [fmt.compress(b, level) for b in blocks]


class _Block:
    __slots__ = ("batch", "index", "owner", "done", "dropped", "count")

    def __init__(self, owner: object, done) -> None:  # noqa: ANN001
        self.batch: Future | list | None = None  # None: a hole
        self.index, self.owner, self.done, self.dropped, self.count = 0, owner, done, False, 1


class BlockWriter:
    """Blocks in, compressed (or stored) blocks out at ``base + pos``, in order."""

    def __init__(self, fd: int, base: int, workers: int, level: int = fmt.LEVEL, cache=None) -> None:  # noqa: ANN001
        self.fd, self.base, self.level, self.cache = fd, base, level, cache
        self.pos = fmt.SUPERBLOCK_SIZE  # data starts right after the superblock
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="sbuild-squash")
        self.limit = (2 * workers + 2) * _BATCH
        self.queue: collections.deque[_Block] = collections.deque()
        self.batch: list[bytes] = []
        self.batch_blocks: list[_Block] = []

    def submit(self, block: bytes, owner: object, done) -> bool:  # noqa: ANN001
        """Queue ``block``; ``done(position, size field)`` runs when it is written (in order).
        An all-zero block of a file (``owner`` not None) becomes a hole: returns True then."""
        entry = _Block(owner, done)
        hole = owner is not None and block == _ZERO_BLOCK[:len(block)]
        if not hole:
            entry.index = len(self.batch)
            entry.batch = self.batch_blocks  # replaced by the future when the batch goes
            self.batch.append(block)
            self.batch_blocks.append(entry)
            if len(self.batch) >= _BATCH:
                self._send()
        self.queue.append(entry)
        while len(self.queue) > self.limit:
            self._retire()
        return hole

    def holes(self, count: int, owner: object, done) -> None:  # noqa: ANN001
        """Queue ``count`` all-zero blocks of ``owner`` as holes, unread and uncompressed:
        ``done(position, 0, count)`` runs once for all of them (in order)."""
        entry = _Block(owner, done)
        entry.count = count
        self.queue.append(entry)
        while len(self.queue) > self.limit:
            self._retire()

    def _send(self) -> None:
        if not self.batch:
            return
        future = self.pool.submit(_compress_batch, self.batch, self.level, self.cache)
        for entry in self.batch_blocks:
            entry.batch = future
        self.batch, self.batch_blocks = [], []

    def _retire(self) -> None:
        entry = self.queue.popleft()
        if entry.batch is self.batch_blocks:
            self._send()
        if entry.dropped:
            return
        if entry.batch is None:  # a hole (or a run of them): nothing written
            if entry.count == 1:
                entry.done(self.pos, 0)
            else:
                entry.done(self.pos, 0, entry.count)
            return
        stored, packed = entry.batch.result()[entry.index]
        write_at(self.fd, stored, self.base + self.pos)
        entry.done(self.pos, len(stored) if packed else len(stored) | fmt.UNCOMPRESSED_BLOCK)
        self.pos += len(stored)

    def take_back(self, owner: object, start: int | None) -> None:
        """Forget ``owner``'s blocks: they are the newest queued, and any already written
        are the last thing written, from ``start`` on."""
        for entry in reversed(self.queue):
            if entry.owner is not owner:
                break
            entry.dropped = True
        if start is not None:
            self.pos = start

    def drain(self) -> None:
        self._send()
        while self.queue:
            self._retire()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def write_at(fd: int, data: bytes, at: int) -> None:
    """All of ``data`` at ``at`` (pwrite may write less than asked)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, at)
        view, at = view[n:], at + n


def data_region(fd: int, pos: int) -> tuple[int, int, bool]:
    """``(data, hole, tail)``: where the next data at or after ``pos`` starts and the hole
    after it ends it; ``tail`` when no data follows (``data`` is then the end of the file).
    A filesystem that cannot tell says the whole file is data."""
    try:
        data = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError as e:
        if e.errno != errno.ENXIO:
            return pos, 1 << 63, False
        return max(pos, os.fstat(fd).st_size), 1 << 63, True
    try:
        return data, os.lseek(fd, data, os.SEEK_HOLE), False
    except OSError:
        return data, 1 << 63, False


def pread_all(fd: int, size: int, at: int) -> bytes:
    """Up to ``size`` bytes at ``at`` (fewer only at end of file)."""
    data = os.pread(fd, size, at)
    if len(data) == size or not data:
        return data
    parts, got = [data], len(data)
    while got < size:
        more = os.pread(fd, size - got, at + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)
