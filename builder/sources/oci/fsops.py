"""Filesystem helpers of the layer applier: ``Metadata`` (owner, mode, xattrs, times of
one entry, umoci's order and rootless rules), ``FileWriter`` (regular files written by a
small thread pool so that file-creation latency overlaps with tar parsing), sparse writes,
``SpaceGuard`` (the free space a layer must leave).

``SpaceGuard``: a layer that inflates without end (a gzip bomb: 1 MB of zeros per GB)
cannot have holes, so it is bounded by the disk: before a file that could not fit and
every ``_SPACE_EVERY`` bytes written (more often as the space runs out) the rootfs
filesystem's free space is read, and a layer that would leave less than ``SPACE_RESERVE``
(32 MiB: the floor ``builder.steps.checks.preflight`` demands of TMPDIR before a build)
stops with a ``LayerError`` naming the entry and what was written, before the host's disk
is full. There is no ratio limit: real layers inflate 10:1 and more, and the bound that
matters is the disk.

``FileWriter`` is adaptive: small files are written inline (cheapest on a local disk,
where creating a file takes ~20 µs and threads only add GIL traffic) until creating
them is seen to be slow (a network filesystem, or ext4 without a journal skipping
recently deleted inodes): then they go to the threads, so that the waits overlap. It
keeps at most ``_INFLIGHT_MAX`` bytes read but unwritten; the applier calls
``wait(path)`` before touching a path still being written and ``barrier()`` before
removals and at each layer's end. Errors from the threads surface at those points.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from builder.sources.oci.errors import LayerError

if TYPE_CHECKING:
    from builder.sources.oci.tarstream import Entry

__all__ = ["FileWriter", "Metadata", "SpaceGuard", "SPACE_RESERVE", "clear_xattrs", "lstat", "is_dir", "write_all",
           "write_sparse", "rootless_payload", "ROOTLESS_XATTR"]

_ASYNC_MAX = 4 << 20       # files up to this size go to the writer threads
_INFLIGHT_MAX = 32 << 20   # bytes read but not yet written, at most
_SLOW_NS = 200_000         # creating a file slower than this on average: use the threads
_SAMPLE = 64               # inline writes per average
_FORBIDDEN_XATTRS = frozenset({"security.selinux", "system.nfs4_acl"})
_IGNORED_ERRNOS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES)
SPACE_RESERVE = 32 << 20  # free bytes a layer must leave on the rootfs filesystem (checks.MIN_TMP_FREE)
_SPACE_EVERY = 32 << 20   # bytes written between two looks at the free space
ROOTLESS_XATTR = "user.rootlesscontainers"
_NOOP_ID = 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def rootless_payload(uid: int, gid: int) -> bytes | None:
    """The ``user.rootlesscontainers`` value for an owner (protobuf ``Resource{uid, gid}``,
    root written as ``uint32(-1)``), or None for root:root, which umoci does not record."""
    u, g = (uid or _NOOP_ID) & 0xFFFFFFFF, (gid or _NOOP_ID) & 0xFFFFFFFF
    if u == g == _NOOP_ID:
        return None
    return b"\x08" + _varint(u) + b"\x10" + _varint(g)


class Metadata:
    """Applies an entry's owner, mode, xattrs and times (thread-safe: writers call it)."""

    def __init__(self, rootless: bool, now_ns: int, warn: Callable[[str, str], None]) -> None:
        self.rootless, self.now_ns, self._warn = rootless, now_ns, warn

    def apply(self, target: int | str, m: "Entry", *, path: str | None = None, is_dir: bool = False,
              is_link: bool = False, deferred: Callable[[str, int | None, tuple[int, int]], None] | None = None
              ) -> None:
        path = path or target  # type: ignore[assignment]
        byfd = isinstance(target, int)
        if not self.rootless:
            if byfd:
                os.fchown(target, m.uid, m.gid)
            else:
                os.chown(target, m.uid, m.gid, follow_symlinks=False)
        mode = m.mode & 0o7777
        final = None
        if is_dir and self.rootless:
            final, mode = mode, mode | 0o700
        if not is_link:
            if byfd:
                os.fchmod(target, mode)
            else:
                os.chmod(target, mode)
        xattrs = self._xattrs(m, is_link)
        if xattrs:
            self._set_xattrs(target, xattrs, path)  # type: ignore[arg-type]
        mtime = m.mtime_ns or self.now_ns
        times = (m.atime_ns or mtime, mtime)
        if is_dir:
            assert deferred is not None
            deferred(path, final, times)  # type: ignore[arg-type]
        elif byfd:
            os.utime(target, ns=times)
        else:
            os.utime(target, ns=times, follow_symlinks=False)

    def _xattrs(self, m: "Entry", is_link: bool) -> dict[str, bytes]:
        xattrs = m.xattrs
        if ROOTLESS_XATTR in xattrs:
            if self.rootless:
                self._warn("rlc", f"rootless: ignoring the {ROOTLESS_XATTR} xattr stored in the layer")
                xattrs = {k: v for k, v in xattrs.items() if k != ROOTLESS_XATTR}
            else:
                self._warn("rlc", f"suspicious layer: {ROOTLESS_XATTR} xattr in a root unpack")
        if self.rootless and not is_link:  # user.* xattrs cannot be set on symlinks
            payload = rootless_payload(m.uid, m.gid)
            if payload is not None:
                xattrs = {**xattrs, ROOTLESS_XATTR: payload}
        return xattrs

    def _set_xattrs(self, target: int | str, xattrs: dict[str, bytes], path: str) -> None:
        for name, value in xattrs.items():
            if name in _FORBIDDEN_XATTRS:
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, value)
                else:
                    os.setxattr(target, name, value, follow_symlinks=False)
            except OSError as e:
                if e.errno not in _IGNORED_ERRNOS:
                    raise
                self._warn(f"xattr:{name}", f"cannot set xattr {name} on {os.path.basename(path)}: "
                                            f"{e.strerror} (ignored)")


def clear_xattrs(path: str) -> None:
    """Remove a merged directory's xattrs before the upper entry's are set (as umoci does)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name not in _FORBIDDEN_XATTRS:
            try:
                os.removexattr(path, name, follow_symlinks=False)
            except OSError as e:
                if e.errno not in _IGNORED_ERRNOS + (errno.ENODATA,):
                    raise


class FileWriter:
    def __init__(self, workers: int, *, threaded: bool | None = None) -> None:
        self._workers = workers
        self._pools: list[ThreadPoolExecutor] = []
        self._pending: dict[str, tuple[Future, int]] = {}
        self._inflight = 0
        self._threaded = bool(threaded) and workers > 1
        self._adaptive = threaded is None
        self._timed = self._time_ns = 0

    @property
    def threaded(self) -> bool:
        """Are creates going to the threads now?"""
        return self._threaded

    def __contains__(self, path: str) -> bool:
        return path in self._pending

    def wants(self, m: "Entry") -> bool:
        """Should this file go to the threads (else the caller writes it and calls ``timed``)?"""
        return self._threaded and m.sparse is None and m.size <= _ASYNC_MAX

    def timed(self, m: "Entry", ns: int) -> None:
        """Creating ``m`` inline took ``ns``: switch to the threads if creating files is slow."""
        if self._threaded or not self._adaptive or self._workers <= 1 or m.size > _ASYNC_MAX:
            return
        self._timed += 1
        self._time_ns += ns
        if self._timed == _SAMPLE:
            if self._time_ns > _SLOW_NS * _SAMPLE:
                self._threaded = True
            self._timed = self._time_ns = 0

    def submit(self, path: str, job: Callable[[], None], size: int = 0) -> None:
        """Queue ``job`` (which creates ``path``; ``size`` bytes held until it ran). Jobs for
        one directory go to one thread: a create locks its directory, so creates in
        different directories are the ones that run in parallel."""
        if not self._pools:
            self._pools = [ThreadPoolExecutor(1, thread_name_prefix=f"sbuild-unpack{i}")
                           for i in range(self._workers)]
        while self._inflight > _INFLIGHT_MAX and self._pending:
            self.wait(next(iter(self._pending)))
        self._inflight += size
        pool = self._pools[hash(path.rpartition("/")[0]) % len(self._pools)]
        self._pending[path] = (pool.submit(job), size)

    def wait(self, path: str) -> None:
        future, size = self._pending.pop(path)
        self._inflight -= size
        try:
            future.result()
        except OSError as e:
            raise LayerError(f"applying layer: writing {os.path.basename(path)!r}: {e.strerror or e}") from e

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
        for pool in self._pools:
            pool.shutdown()
        self._pools = []


class SpaceGuard:
    """Counts the bytes a layer writes and stops it before the filesystem fills up."""

    def __init__(self, root: str, reserve: int = SPACE_RESERVE) -> None:
        self.root, self.reserve = root, reserve
        self.written = 0
        self._unchecked = self._slack = 0  # bytes since the last look; how many before the next

    def spend(self, n: int, name: str) -> None:
        """``n`` more bytes are about to be written for entry ``name``."""
        self.written += n
        self._unchecked += n
        if self._unchecked < self._slack:
            return
        st = os.statvfs(self.root)
        free = st.f_bavail * st.f_frsize  # all but ``n`` (and up to 32 MiB queued to the writers) is in it
        self._unchecked = 0
        self._slack = min(_SPACE_EVERY, (free - n - self.reserve) // 2)
        if free - n < self.reserve:
            from builder.sources.oci.pathindex import shown
            raise LayerError(f"applying layer entry {shown(name)}: stopped with {free >> 20} MiB left free on the "
                             f"rootfs filesystem after {self.written >> 20} MiB written (a layer must leave "
                             f"{self.reserve >> 20} MiB; a decompression bomb?)",
                             hint="build on a larger filesystem (--tmpdir) or check the image's layers")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_sparse(fd: int, pieces: Iterable[bytes | memoryview], regions: list[tuple[int, int]],
                 realsize: int | None) -> None:
    """Write a sparse member: its stored bytes are the regions' contents, in order."""
    it = iter(pieces)
    piece = memoryview(b"")
    for offset, length in regions:
        while length:
            if not piece:
                piece = memoryview(next(it, b""))
                if not piece:
                    raise LayerError("reading layer: sparse member data ends early")
            take = piece[:length]
            written = os.pwrite(fd, take, offset)
            offset, length, piece = offset + written, length - written, piece[written:]
    for rest in it:
        if len(rest):
            raise LayerError("reading layer: sparse member has more data than its map")
    os.ftruncate(fd, max(realsize or 0, max((o + n for o, n in regions), default=0)))


def lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def is_dir(path: str) -> bool:
    st = lstat(path)
    return st is not None and stat.S_ISDIR(st.st_mode)
