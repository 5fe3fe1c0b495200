"""Content-addressed blob cache shared safely by concurrent builds.

Layout: ``<root>/blobs/sha256/<hex>`` (``root`` is ``$APPTAINER_CACHEDIR`` or
``$SINGULARITY_CACHEDIR`` + ``/sbuild``, else ``$XDG_CACHE_HOME/sbuild``, else
``~/.cache/sbuild``). A blob enters the cache only through ``BlobCache.writer``: bytes go
to a temporary file in ``<root>/tmp`` while being hashed, and the file is renamed into
place only when size and digest match; any failure removes it. Entries' mtimes are
refreshed on use: ``clean(days=N)`` removes blobs unused for N days.

Locks (all ``flock``, so a killed process drops its own):

- ``locks/<hex>``, exclusive, held while a blob is looked up and downloaded
  (``lock(digest)``): a second process waits for the first download instead of repeating
  it. The holder writes its pid and temp file there; a waiter gives up with a clear error
  after ``stall`` seconds in which that temp file did not grow.
- The blob file itself, shared, by every reader (``open`` on a hit, ``BlobWriter.reader``
  on the temp file before it is renamed into place): a blob in use never vanishes, and the
  reader keeps reading its fd whatever happens to the name. A cache from ``cache_for``
  also holds the blobs it handed out by path (``get``, or fetched under ``lock``) until
  the fetch ends, for the callers that read them by path.
- A temp file in ``tmp/`` (``base.owner.held_file``), shared, by the process writing it, from the
  moment it has its name until it is renamed into place: ``clean`` removes one nobody
  holds (what a killed download left) whenever it runs, never one being written.
- ``.cache.lock``, shared by downloads, exclusive for ``clean``'s sweep of the other files
  in ``tmp/`` (born before their writer took its lock: only removed while no download runs).

``clean`` never waits: it skips a blob being downloaded or read (and reports it). It also
removes the unfinished extractions that killed unprivileged runs left in ``rootfs/``
(``.extract-*``, whose owner record is free: ``base.owner``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from base.cachedir import cache_root
from base.owner import held_file, owned_temp_dir
from builder.sources.oci.errors import DigestError, RegistryError
from builder.sources.oci.stream import STALL, parse_digest

__all__ = ["BlobCache", "CacheEntry", "Cleaned", "default_cache_dir", "BlobWriter", "cache_for", "REFS_DIR"]

REFS_DIR = "shub"  # <root>/shub/<version>: small files naming the blob of a shub image
_POLL = 0.1  # seconds between two tries of a busy lock
_HELD_TEMPS = ("blob-", "image-")  # temp files locked by their writer (``held_file``)


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The blob cache's root: sbuild's cache root (``base.cachedir``)."""
    return Path(cache_root(environ))


@dataclass(frozen=True)
class CacheEntry:
    digest: str
    size: int
    mtime: float
    path: Path


@dataclass
class Cleaned:
    """What ``clean`` did: blobs removed, blobs kept because a build reads or downloads them,
    and whether the temp files were left because downloads were running."""

    removed: list[CacheEntry] = field(default_factory=list)
    in_use: list[CacheEntry] = field(default_factory=list)
    temp_kept: bool = False
    partial: list[Path] = field(default_factory=list)  # temp files and extractions of dead processes


class BlobWriter:
    """A temporary file that becomes the cache entry for ``digest`` on ``commit``."""

    def __init__(self, cache: "BlobCache", digest: str, size: int | None) -> None:
        self.digest, self.size = digest, size
        algo, _ = parse_digest(digest)
        self._hash = hashlib.new(algo)
        fd, self.path = held_file(cache.tmp, "blob-")
        self._fh = os.fdopen(fd, "wb", buffering=0)
        self.written = 0
        self._cache = cache
        cache._announce(digest, str(self.path))

    def reader(self) -> BinaryIO:
        """The file opened for reading and marked in use: it stays readable through the
        rename into the cache, and ``clean`` leaves the blob alone until it is closed."""
        fh = open(self.path, "rb", buffering=0)
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)  # a new inode: nobody else can hold it
        return fh

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._fh.write(view):]
        self._hash.update(data)
        self.written += len(data)
        if self.size is not None and self.written > self.size:
            raise DigestError(f"blob {self.digest}: more data than the {self.size} bytes announced",
                              digest=self.digest)

    def flush(self) -> None:
        self._fh.flush()

    def rewind(self) -> None:
        """Start over (a server ignored our Range request)."""
        self._fh.seek(0)
        self._fh.truncate()
        self._hash = hashlib.new(self._hash.name)
        self.written = 0

    def commit(self) -> Path:
        """Rename the verified file into place (still held: see ``held_file``), then close it."""
        actual = f"{self._hash.name}:{self._hash.hexdigest()}"
        if self.size is not None and self.written != self.size:
            raise DigestError(f"blob {self.digest}: got {self.written} bytes, expected {self.size} "
                              f"(truncated)", digest=self.digest)
        if actual != self.digest:
            raise DigestError(f"blob {self.digest}: digest mismatch: the content has digest {actual}",
                              digest=self.digest)
        dest = self._cache.path(self.digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o644)
        os.replace(self.path, dest)
        self._fh.close()
        return dest

    def abort(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self._fh.close()


class BlobCache:
    """See the module docstring."""

    def __init__(self, root: Path, stall: float = STALL, hold: bool = False) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.stall = stall
        self._held: dict[str, int] = {}  # hex -> fd of a download lock this process holds
        self._using: list[BinaryIO] | None = [] if hold else None  # hold: blobs handed out by path

    def _use(self, digest: str) -> None:
        """With ``hold``: keep the blob marked in use until ``release`` (its path was handed out)."""
        if self._using is not None:
            fh = self.open(digest)
            if fh is not None:
                self._using.append(fh)

    def release(self) -> None:
        """The blobs ``get`` and ``lock`` handed out are no longer in use."""
        while self._using:
            self._using.pop().close()

    def path(self, digest: str) -> Path:
        algo, hexpart = parse_digest(digest)
        return self.root / "blobs" / algo / hexpart

    def get(self, digest: str, size: int | None = None) -> Path | None:
        """The cached file for ``digest``, or None. A size mismatch counts as absent."""
        path = self.path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if size is not None and st.st_size != size:
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        self._use(digest)
        return path

    def open(self, digest: str, size: int | None = None) -> BinaryIO | None:
        """The cached blob open for reading and marked in use (``clean`` skips it until it
        is closed), or None. Call it holding ``lock(digest)``. A size mismatch is absent."""
        path = self.path(digest)
        try:
            fh = open(path, "rb", buffering=0)
        except FileNotFoundError:
            return None
        try:
            if size is not None and os.fstat(fh.fileno()).st_size != size:
                path.unlink(missing_ok=True)
                fh.close()
                return None
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # an older clean removing it right now: fetch it again
            fh.close()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return fh

    @contextlib.contextmanager
    def lock(self, digest: str, alive: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the per-blob lock (and the shared cache lock) while fetching ``digest``.

        Waiting for another process's download of it ends with a ``RegistryError`` after
        ``stall`` seconds without progress; ``alive()`` is called while waiting (it may
        raise to give up)."""
        _, hexpart = parse_digest(digest)
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with self._flock(self.root / ".cache.lock", fcntl.LOCK_SH, digest, alive), \
                self._flock(locks / hexpart, fcntl.LOCK_EX, digest, alive) as fd:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._held[hexpart] = fd
            try:
                yield
            finally:
                self._held.pop(hexpart, None)
                self._use(digest)  # what was fetched under the lock is about to be read by path

    def _announce(self, digest: str, tmp: str) -> None:
        """Name the temp file of a download in its lock file, for the waiters' progress."""
        fd = self._held.get(parse_digest(digest)[1])
        if fd is not None:
            with contextlib.suppress(OSError):
                os.pwrite(fd, f"{os.getpid()} {tmp}\n".encode(), 0)

    @contextlib.contextmanager
    def writer(self, digest: str, size: int | None) -> Iterator[BlobWriter]:
        w = BlobWriter(self, digest, size)
        try:
            yield w
        except BaseException:
            w.abort()
            raise

    @contextlib.contextmanager
    def _flock(self, path: Path, mode: int, digest: str,
               alive: Callable[[], None] | None) -> Iterator[int]:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._wait(fd, mode, path, digest, alive)
            yield fd
        finally:
            os.close(fd)

    def _wait(self, fd: int, mode: int, path: Path, digest: str, alive: Callable[[], None] | None) -> None:
        """``flock`` that gives up after ``stall`` seconds in which the holder made no progress."""
        seen, deadline = None, 0.0
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            now = _holder(fd)
            if now != seen:
                seen, deadline = now, time.monotonic() + self.stall
            elif time.monotonic() > deadline:
                who = f"process {now[0]}" if now[0] else "another process"
                raise RegistryError(f"blob {digest}: {who} has held {path} for {self.stall:.0f} s without "
                                    f"progress", digest=digest,
                                    hint="if that process is stuck, stop it; its lock goes with it")
            if alive is not None:
                alive()
            time.sleep(_POLL)

    def entries(self) -> list[CacheEntry]:
        out = []
        base = self.root / "blobs"
        if not base.is_dir():
            return out
        for algo_dir in sorted(base.iterdir()):
            for f in sorted(algo_dir.iterdir()):
                with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                    st = f.stat()
                    out.append(CacheEntry(f"{algo_dir.name}:{f.name}", st.st_size, st.st_mtime, f))
        return out

    def clean(self, days: float | None = None, dry_run: bool = False, now: float | None = None) -> Cleaned:
        """Remove entries (older than ``days`` when given) that no build is using, stale temp
        files, and the small files naming a blob (``shub/<version>``) whose blob is gone.
        Never waits: see the module docstring."""
        now = time.time() if now is None else now
        done = Cleaned()
        if not self.root.is_dir():
            return done
        for e in self.entries():
            if days is None or now - e.mtime > days * 86400:
                (done.removed if self._remove(e, dry_run) else done.in_use).append(e)
        if dry_run:
            return done
        from base.owner import reclaim

        done.partial += self._sweep_temps(held_only=True)
        with _try_flock(self.root / ".cache.lock", fcntl.LOCK_EX) as got:
            done.temp_kept = not got
            if got:
                done.partial += self._sweep_temps(held_only=False)
                self._drop_dangling_refs()
        done.partial += reclaim(self.root / "rootfs", [".extract-"])
        return done

    def _sweep_temps(self, held_only: bool) -> list[Path]:
        """Remove the temp files nobody holds: with ``held_only``, only those whose writer
        holds them from birth (``temp_file``), which is safe while downloads run."""
        removed = []
        with contextlib.suppress(FileNotFoundError):
            for f in sorted(self.tmp.iterdir()):
                if held_only and not f.name.startswith(_HELD_TEMPS):
                    continue
                with _try_flock(f, fcntl.LOCK_EX, create=False) as free:
                    if free and f.exists():
                        f.unlink(missing_ok=True)
                        removed.append(f)
        return removed

    def _remove(self, entry: CacheEntry, dry_run: bool) -> bool:
        """Remove ``entry`` unless it is being downloaded or read; False when it is in use."""
        _, hexpart = parse_digest(entry.digest)
        with _try_flock(self.root / "locks" / hexpart, fcntl.LOCK_EX) as free, \
                _try_flock(entry.path, fcntl.LOCK_EX, create=False) as unused:
            if not (free and unused):
                return False
            if not dry_run:
                entry.path.unlink(missing_ok=True)
            return True

    def _drop_dangling_refs(self) -> None:
        refs = self.root / REFS_DIR
        if not refs.is_dir():
            return
        for ref in refs.iterdir():
            try:
                digest = ref.read_text().strip()
                alive = self.path(digest).is_file()
            except (OSError, ValueError, DigestError):
                alive = False
            if not alive:
                ref.unlink(missing_ok=True)


def _holder(fd: int) -> tuple[str, int]:
    """(pid, size of its temp file) from a lock file: changes while its download progresses."""
    try:
        words = os.pread(fd, 4096, 0).decode(errors="replace").split()
    except OSError:
        return ("", -1)
    size = -1
    if len(words) > 1:
        with contextlib.suppress(OSError):
            size = os.stat(words[1]).st_size
    return (words[0] if words else "", size)


@contextlib.contextmanager
def _try_flock(path: Path, mode: int, create: bool = True) -> Iterator[bool]:
    """Take the lock without waiting: True when taken (or nothing is there to lock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextlib.contextmanager
def cache_for(options) -> Iterator[BlobCache]:  # noqa: ANN001
    """The blob cache for a fetch (``options``: ``disable_cache``, ``cache_dir``, ``tmpdir``,
    ``env()``), or a throw-away one under the temp dir with ``--disable-cache``. Blobs it
    hands out by path (``get``, or fetched under ``lock``) stay in use until the end."""
    if not options.disable_cache:
        cache = BlobCache(options.cache_dir or default_cache_dir(options.env()), hold=True)
        cache._sweep_temps(held_only=True)  # partial downloads of killed pulls (safe beside live ones)
        try:
            yield cache
        finally:
            cache.release()
        return
    with owned_temp_dir(options.tmpdir, "sbuild-blobs-") as tmp:  # (reclaimed if we are killed)
        yield BlobCache(tmp)
