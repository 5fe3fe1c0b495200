"""A cache of compressed squashfs data blocks, by content: a repack after a small change to
the tree compresses only the blocks that changed (issue 10, "packing once").

Key: sha256 over a prefix naming everything that changes the stored bytes — the format
version of this cache, the compressor's implementation and version (zlib-ng 2.x and zlib
write different streams at the same level), the level, the block size, and the digest of a
fixed sample as this process compresses it (one code path of a compressor against
another, on another CPU sharing the cache directory) — and then the uncompressed block. Value: the bytes ``sqfs_format.compress`` returned for that block and
whether they are compressed. So a pack with the cache writes exactly the bytes of a pack
without it (same tree, same ``SOURCE_DATE_EPOCH``): a hit only skips the compressing.

Layout, under ``ROOT`` (``cache_root()/squashfs-blocks`` for builds): ``v1/XX/KEY`` where
``KEY`` is the key in hex and ``XX`` its first two digits. An entry is a 37-byte header —
``b"SQB1"``, one flag byte (1: compressed, 0: stored as is), sha256 over the key and the
payload — then the payload. A block that does not compress stores no payload: the block
itself is the value, and its hash is the key, so there is nothing to keep.

Verification: every entry is checked before use: magic, flag, and the digest of key and
payload (hashing ~40 KiB costs far less than inflating 128 KiB). A truncated, flipped or
misnamed entry is a miss: the block is compressed again and the entry rewritten.

Writes are atomic (a temporary file in the same directory, then ``rename``) and need no
lock: two packers that write the same key write the same bytes, and a reader holds either
the old entry or the new one. Eviction and ``clean`` unlink entries whose readers, if any,
already have them open; an entry gone before it was opened is a miss.

Limits: ``max_bytes`` (default 2 GiB) bounds the entries' total size; after a pack that
added entries, the least recently used are removed (last use is the file's mtime, renewed
on a hit at most once an hour) until the total is at most 90 % of it. Temporary files
older than an hour (a killed packer's) go then too. No fsync: a crash can leave a torn
entry, and verification turns it into a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import threading
import time
from itertools import count
from dataclasses import dataclass
from pathlib import Path

from builder.images import sqfs_format as fmt
from builder.images.sqfs_blocks import write_at

__all__ = ["BlockCache", "CacheUsage", "DEFAULT_MAX_BYTES", "default_dir"]

DEFAULT_MAX_BYTES = 2 << 30
_MAGIC = b"SQB1"
_HEADER = struct.Struct("4sB32s")
_VERSION = "v1"
_TOUCH_AFTER = 3600  # seconds: renew a hit's mtime when older than this
_TEMP_AGE = 3600  # seconds: a temporary file this old belongs to a killed packer
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
_SERIAL = count()


def default_dir(environ: dict[str, str] | None = None) -> Path:
    """Where builds keep the block cache: ``squashfs-blocks`` under the cache root."""
    from base.cachedir import cache_root

    return Path(cache_root(environ)) / "squashfs-blocks"


@dataclass(frozen=True)
class CacheUsage:
    """What ``usage`` counted or ``clean`` removed: entries and their bytes."""

    entries: int = 0
    bytes: int = 0


class BlockCache:
    """Compressed blocks under ``root`` for one compressor setting (``level``)."""

    def __init__(self, root: str | os.PathLike, level: int = fmt.LEVEL, *,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.top = self.root / _VERSION
        self.level, self.max_bytes = level, max_bytes
        self._prefix = hashlib.sha256(f"sbuild-sqfs-block {_VERSION} {fmt.compressor_id()} level={level} "
                                      f"block={fmt.BLOCK_SIZE}\0".encode())
        self._prefix.update(_probe(level))
        self.hits = self.misses = self.written = 0  # counted under _lock (several threads use one cache)
        self._lock = threading.Lock()

    def compress(self, block: bytes) -> tuple[bytes, bool]:
        """``sqfs_format.compress(block, level)``, from the cache when it holds it (and
        stored there when it did not). Safe to call from several threads."""
        key = self._key(block)
        found = self._get(key, block)
        if found is not None:
            with self._lock:
                self.hits += 1
            return found
        stored, packed = fmt.compress(block, self.level)
        try:
            self._put(key, stored if packed else b"", packed)
            wrote = 1
        except OSError:  # a cache that cannot be written is no cache
            wrote = 0
        with self._lock:
            self.misses += 1
            self.written += wrote
        return stored, packed

    def _key(self, block: bytes) -> bytes:
        h = self._prefix.copy()
        h.update(block)
        return h.digest()

    def _path(self, key: bytes) -> Path:
        name = key.hex()
        return self.top / name[:2] / name

    def _get(self, key: bytes, block: bytes) -> tuple[bytes, bool] | None:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            data = os.read(fd, st.st_size + 1)
            if time.time() - st.st_mtime > _TOUCH_AFTER:
                with contextlib.suppress(OSError):
                    os.utime(fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) < _HEADER.size:
            return None
        magic, flag, digest = _HEADER.unpack_from(data)
        payload = data[_HEADER.size:]
        if magic != _MAGIC or flag not in (0, 1) or hashlib.sha256(key + payload).digest() != digest:
            return None
        if flag == 0:
            return None if payload else (bytes(block), False)
        return payload, True

    def _put(self, key: bytes, payload: bytes, packed: bool) -> None:
        path = self._path(key)
        tmp = f"{path.parent}/.tmp-{os.getpid()}-{threading.get_ident()}-{next(_SERIAL)}"
        header = _HEADER.pack(_MAGIC, 1 if packed else 0, hashlib.sha256(key + payload).digest())
        try:
            fd = os.open(tmp, _CREATE, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, _CREATE, 0o644)
        try:
            try:
                write_at(fd, header + payload, 0)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ------------------------------------------------------------ upkeep
    def _entries(self) -> list[tuple[float, int, str, bool]]:
        """(mtime, size, path, temporary?) of every file under the cache."""
        found = []
        try:
            shards = list(os.scandir(self.top))
        except OSError:
            return found
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError), os.scandir(shard.path) as it:
                for e in it:
                    with contextlib.suppress(OSError):
                        st = e.stat(follow_symlinks=False)
                        found.append((st.st_mtime, st.st_size, e.path, e.name.startswith(".tmp-")))
        return found

    def usage(self) -> CacheUsage:
        """The entries held now and their total size (for ``cache list``)."""
        entries = [e for e in self._entries() if not e[3]]
        return CacheUsage(len(entries), sum(e[1] for e in entries))

    def clean(self, days: float | None = None, *, dry_run: bool = False) -> CacheUsage:
        """Remove every entry (``days`` None) or those unused for more than ``days`` days,
        and stale temporary files; returns what was (or, ``dry_run``, would be) removed.
        Safe beside running packers: they miss what is gone and write it again."""
        now = time.time()
        cutoff = None if days is None else now - days * 86400
        removed = []
        for mtime, size, path, temp in self._entries():
            if temp and now - mtime < _TEMP_AGE:
                continue  # a running packer's
            if temp or cutoff is None or mtime < cutoff:
                if not dry_run and not _unlink(path):
                    continue
                if not temp:
                    removed.append(size)
        return CacheUsage(len(removed), sum(removed))

    def evict(self) -> CacheUsage:
        """Bring the cache under ``max_bytes`` (to 90 % of it), least recently used first."""
        now = time.time()
        entries, removed = [], []
        for mtime, size, path, temp in self._entries():
            if temp:
                if now - mtime >= _TEMP_AGE:
                    _unlink(path)
                continue
            entries.append((mtime, size, path))
        total = sum(e[1] for e in entries)
        if total <= self.max_bytes:
            return CacheUsage()
        goal = self.max_bytes * 9 // 10
        for _, size, path in sorted(entries):
            if total <= goal:
                break
            if _unlink(path):
                removed.append(size)
            total -= size
        return CacheUsage(len(removed), sum(removed))


def _probe(level: int) -> bytes:
    """The digest of a fixed sample as this process's compressor writes it: a build of the
    same version that matches differently (another CPU's code path) gets other keys."""
    sample = b"".join(b"%d squashfs block cache probe %x\n" % (i, i * i) for i in range(4000))
    return hashlib.sha256(fmt.compress(sample[:fmt.BLOCK_SIZE], level)[0]).digest()


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
