"""Filesystem helpers of the layer applier, and ``FileWriter``: regular files written by a
small thread pool so that file-creation latency overlaps with tar parsing.

``FileWriter`` keeps at most ``_INFLIGHT_MAX`` bytes read but unwritten; the applier calls
``wait(path)`` before touching a path still being written, ``blocks(host, root)`` before
resolving a directory below one, and ``barrier()`` before removals and at each layer's end.
Errors from the threads surface at those points.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from builder.sources.oci.errors import LayerError

__all__ = ["FileWriter", "copy", "lstat", "is_dir", "make_traversable", "write_all"]

_CHUNK = 1 << 20
_ASYNC_MAX = 4 << 20       # files up to this size go to the writer threads
_INFLIGHT_MAX = 32 << 20   # bytes read but not yet written, at most


class FileWriter:
    def __init__(self, workers: int, write: Callable[[str, tarfile.TarInfo, bytes], None]) -> None:
        self._workers, self._write = workers, write
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[str, tuple[Future, int]] = {}
        self._inflight = 0

    def __contains__(self, path: str) -> bool:
        return path in self._pending

    def wants(self, m: tarfile.TarInfo) -> bool:
        return self._workers > 1 and m.sparse is None and m.size <= _ASYNC_MAX

    def submit(self, path: str, m: tarfile.TarInfo, data: bytes) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="sbuild-unpack")
        while self._inflight > _INFLIGHT_MAX and self._pending:
            self.wait(next(iter(self._pending)))
        self._inflight += len(data)
        self._pending[path] = (self._pool.submit(self._write, path, m, data), len(data))

    def wait(self, path: str) -> None:
        future, size = self._pending.pop(path)
        self._inflight -= size
        try:
            future.result()
        except OSError as e:
            raise LayerError(f"applying layer: writing {os.path.basename(path)!r}: {e.strerror or e}") from e

    def blocks(self, host: str, root: str) -> bool:
        """Is a file still being written at ``host`` or one of its parents?"""
        if not self._pending:
            return False
        while len(host) > len(root):
            if host in self._pending:
                return True
            host = host.rpartition("/")[0]
        return False

    def barrier(self) -> None:
        """Wait for every queued write; raise the first failure."""
        first: BaseException | None = None
        for path in list(self._pending):
            try:
                self.wait(path)
            except BaseException as e:  # keep draining, then report the first
                first = first or e
        if first is not None:
            raise first

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def copy(src: BinaryIO, dst: BinaryIO, size: int) -> None:
    remaining = size
    while remaining:
        chunk = src.read(min(_CHUNK, remaining))
        if not chunk:
            raise EOFError("unexpected end of layer data")
        dst.write(chunk)
        remaining -= len(chunk)


def lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def is_dir(path: str) -> bool:
    st = lstat(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def make_traversable(top: str) -> None:
    """Give every directory under ``top`` u+rwx so that it can be removed (rootless)."""
    os.chmod(top, os.lstat(top).st_mode & 0o7777 | 0o700)
    for dirpath, dirnames, _ in os.walk(top):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                os.chmod(p, st.st_mode & 0o7777 | 0o700)
