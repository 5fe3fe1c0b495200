"""Content-addressed blob cache shared safely by concurrent builds.

Layout: ``<root>/blobs/sha256/<hex>`` (``root`` is ``$APPTAINER_CACHEDIR`` or
``$SINGULARITY_CACHEDIR`` + ``/sbuild``, else ``$XDG_CACHE_HOME/sbuild``, else
``~/.cache/sbuild``). A blob enters the cache only through ``BlobCache.writer``: bytes go
to a temporary file in ``<root>/tmp`` while being hashed, and the file is renamed into
place only when size and digest match; any failure removes it. A per-digest ``flock``
makes a second process wait for the first download instead of repeating it, and
``clean`` takes an exclusive lock that writers share, so nothing is removed mid-build.
Entries' mtimes are refreshed on use: ``clean(days=N)`` removes blobs unused for N days.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from base.cachedir import cache_root
from builder.sources.oci.errors import DigestError
from builder.sources.oci.stream import parse_digest

__all__ = ["BlobCache", "CacheEntry", "default_cache_dir", "BlobWriter", "cache_for", "REFS_DIR"]

REFS_DIR = "shub"  # <root>/shub/<version>: small files naming the blob of a shub image


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The blob cache's root: sbuild's cache root (``base.cachedir``)."""
    return Path(cache_root(environ))


@dataclass(frozen=True)
class CacheEntry:
    digest: str
    size: int
    mtime: float
    path: Path


class BlobWriter:
    """A temporary file that becomes the cache entry for ``digest`` on ``commit``."""

    def __init__(self, cache: "BlobCache", digest: str, size: int | None) -> None:
        self.digest, self.size = digest, size
        algo, _ = parse_digest(digest)
        self._hash = hashlib.new(algo)
        cache.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="blob-", dir=cache.tmp)
        self.path = Path(name)
        self._fh = os.fdopen(fd, "wb", buffering=0)
        self.written = 0
        self._cache = cache

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
        self._fh.close()
        actual = f"{self._hash.name}:{self._hash.hexdigest()}"
        if self.size is not None and self.written != self.size:
            raise DigestError(f"blob {self.digest}: got {self.written} bytes, expected {self.size} "
                              f"(truncated)", digest=self.digest)
        if actual != self.digest:
            raise DigestError(f"blob {self.digest}: content has digest {actual}", digest=self.digest)
        dest = self._cache.path(self.digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o644)
        os.replace(self.path, dest)
        return dest

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class BlobCache:
    """See the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"

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
        return path

    @contextlib.contextmanager
    def lock(self, digest: str) -> Iterator[None]:
        """Hold the per-blob lock (and the shared cache lock) while fetching ``digest``."""
        _, hexpart = parse_digest(digest)
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with self._flock(self.root / ".cache.lock", fcntl.LOCK_SH), \
                self._flock(locks / hexpart, fcntl.LOCK_EX):
            yield

    @contextlib.contextmanager
    def writer(self, digest: str, size: int | None) -> Iterator[BlobWriter]:
        w = BlobWriter(self, digest, size)
        try:
            yield w
        except BaseException:
            w.abort()
            raise

    @contextlib.contextmanager
    def _flock(self, path: Path, mode: int) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    def entries(self) -> list[CacheEntry]:
        out = []
        base = self.root / "blobs"
        if not base.is_dir():
            return out
        for algo_dir in sorted(base.iterdir()):
            for f in sorted(algo_dir.iterdir()):
                st = f.stat()
                out.append(CacheEntry(f"{algo_dir.name}:{f.name}", st.st_size, st.st_mtime, f))
        return out

    def clean(self, days: float | None = None, dry_run: bool = False,
              now: float | None = None) -> list[CacheEntry]:
        """Remove entries (older than ``days`` when given), stale temp files, and the small
        files naming a blob (``shub/<version>``) whose blob is gone."""
        now = time.time() if now is None else now
        if not self.root.is_dir():
            return []
        with self._flock(self.root / ".cache.lock", fcntl.LOCK_EX):
            chosen = [e for e in self.entries() if days is None or now - e.mtime > days * 86400]
            if not dry_run:
                for e in chosen:
                    e.path.unlink(missing_ok=True)
                if self.tmp.is_dir():
                    for f in self.tmp.iterdir():
                        f.unlink(missing_ok=True)
                self._drop_dangling_refs()
        return chosen

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


@contextlib.contextmanager
def cache_for(options) -> Iterator[BlobCache]:  # noqa: ANN001
    """The blob cache for a fetch (``options``: ``disable_cache``, ``cache_dir``, ``tmpdir``,
    ``env()``), or a throw-away one under the temp dir with ``--disable-cache``."""
    if not options.disable_cache:
        yield BlobCache(options.cache_dir or default_cache_dir(options.env()))
        return
    tmp = tempfile.mkdtemp(prefix="sbuild-blobs-", dir=options.tmpdir)
    try:
        yield BlobCache(Path(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
