"""The local checkpoint store: ``<cache root>/build/`` (``base.cachedir``).

Layout:

- ``entries/<key>.json``: the index record of one checkpoint (kind, stage, inputs,
  parent key, blob digest and size, what the bundle carried); its mtime is the last use.
- ``entries/<key>.blob``: the checkpoint itself, a squashfs of the stage's rootfs packed
  by sbuild's packer (or, for kind ``image``, the packed TARGET).
- ``locks/<key>``: the key's ``flock``: shared while an entry is read and restored,
  exclusive while it is built or removed. A build that misses takes it exclusively, looks
  again (another build may have made it meanwhile) and only then runs the steps: concurrent
  builds of one recipe run its ``%post`` once, the others wait (and say so).
- ``slots/<slot>.json``: the inputs a stage of a recipe had last time, for ``--cache-explain``.
- ``tmp/``: blobs and records being written (``base.owner.held_file``: a killed writer's
  temp is removed by the next ``clean``); a write is renamed into place, the blob first,
  the record last, so an entry is complete or absent.

Every blob is verified (size and sha256) before it is used: a corrupt entry is a miss, and
is removed when nobody reads it. ``evict(cap)`` removes the least recently used entries
nobody holds until the store fits ``cap`` bytes; ``clean(days)`` those unused for DAYS.
Neither waits for a lock. Limits: the store must be on a filesystem with ``flock`` that
its builds share (NFS carries it; ``local_lock=flock`` does not).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from base.errors import UsageError
from base.owner import held_file
from builder.images import file_digest

__all__ = ["CheckpointStore", "Entry", "Cleaned", "parse_size", "DEFAULT_CAP", "STORE_DIR"]

log = logging.getLogger("sbuild.cache")

STORE_DIR = "build"
DEFAULT_CAP = 20 * 1024 ** 3  # bytes; SBUILD_CACHE_MAX / --cache-max change it
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
_TEMP = "ckpt-"


def parse_size(text: str) -> int:
    """``10G``, ``500M``, ``1024`` (bytes) → bytes."""
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    try:
        return int(float(value[:len(value) - len(unit)]) * _UNITS[unit])
    except ValueError as e:
        raise UsageError(f"cache size {text!r} is not a size", hint="e.g. 10G, 500M or a number of bytes") from e


@dataclass(frozen=True)
class Entry:
    key: str
    record: dict
    blob: Path
    size: int
    last_use: float

    @property
    def kind(self) -> str:
        return self.record.get("kind", "?")


@dataclass
class Cleaned:
    removed: list[Entry] = field(default_factory=list)
    in_use: list[Entry] = field(default_factory=list)
    temps: int = 0


class CheckpointStore:
    """The store below ``root`` (``<cache root>/build``); created on first write."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def _record(self, key: str) -> Path:
        return self.root / "entries" / f"{key}.json"

    def _blob(self, key: str) -> Path:
        return self.root / "entries" / f"{key}.blob"

    # ------------------------------------------------------------------ locks
    @contextlib.contextmanager
    def _locked(self, key: str, mode: int, *, wait: bool = True, on_wait: Callable[[], None] | None = None):
        """Hold ``locks/<key>`` in ``mode``; yields False (nothing held) when busy and not ``wait``."""
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(locks / key, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                if on_wait:
                    on_wait()
                fcntl.flock(fd, mode)
            yield True
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def reading(self, key: str, on_wait: Callable[[], None] | None = None) -> Iterator[Entry | None]:
        """The verified entry of ``key`` (None: a miss), held shared while the block runs
        (``on_wait()`` first when a build of it holds it)."""
        with self._locked(key, fcntl.LOCK_SH, on_wait=on_wait):
            yield self.lookup(key)

    @contextlib.contextmanager
    def building(self, key: str, on_wait: Callable[[], None] | None = None) -> Iterator[Entry | None]:
        """Hold ``key`` exclusively (``on_wait()`` first when another build holds it), then
        yield its entry if that build made it meanwhile, else None: build it, ``put`` it."""
        with self._locked(key, fcntl.LOCK_EX, on_wait=on_wait):
            entry = self.lookup(key)
            if entry is None:
                self._drop(key)  # a corrupt or half entry: nobody else holds it
            yield entry

    # ---------------------------------------------------------------- entries
    def read_record(self, key: str) -> dict | None:
        try:
            return json.loads(self._record(key).read_text())
        except (OSError, ValueError):
            return None

    def lookup(self, key: str) -> Entry | None:
        """The entry of ``key`` if present and its blob verifies, else None."""
        record = self.read_record(key)
        if record is None:
            return None
        blob = self._blob(key)
        try:
            size = blob.stat().st_size
            ok = size == record.get("size") and file_digest(blob) == record.get("digest")
        except OSError:
            ok = False
        if not ok:
            log.warning("cache entry %s is corrupt or incomplete: rebuilding it", key[:12])
            return None
        now = time.time()
        with contextlib.suppress(OSError):
            os.utime(self._record(key), (now, now))
        return Entry(key, record, blob, size, now)

    def put(self, key: str, record: dict, write_blob: Callable[[Path], None]) -> Entry:
        """Store ``key``: ``write_blob(path)`` fills the blob; digest and size are recorded.
        The caller holds ``building(key)``."""
        fd, tmp = held_file(self.root / "tmp", _TEMP)
        try:  # held (fd) while the writer, maybe in the build's user namespace, fills it by path
            write_blob(tmp)
            record = dict(record, key=key, size=tmp.stat().st_size, digest=file_digest(tmp),
                          created=record.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            (self.root / "entries").mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self._blob(key))
            _write_atomic(self._record(key), json.dumps(record, indent=1, sort_keys=True).encode(), self.root)
        finally:
            os.close(fd)
            tmp.unlink(missing_ok=True)
        return Entry(key, record, self._blob(key), record["size"], time.time())

    def _drop(self, key: str) -> None:
        self._record(key).unlink(missing_ok=True)
        self._blob(key).unlink(missing_ok=True)

    def entries(self) -> list[Entry]:
        """Every entry with a record (not verified), least recently used first."""
        found = []
        for path in sorted((self.root / "entries").glob("*.json")):
            key = path.name[:-len(".json")]
            record = self.read_record(key)
            try:
                last = path.stat().st_mtime
                size = self._blob(key).stat().st_size
            except OSError:
                continue
            if record is not None:
                found.append(Entry(key, record, self._blob(key), size, last))
        return sorted(found, key=lambda e: e.last_use)

    def _remove(self, entry: Entry, dry_run: bool) -> bool:
        with self._locked(entry.key, fcntl.LOCK_EX, wait=False) as free:
            if free and not dry_run:
                self._drop(entry.key)
            return free

    def clean(self, days: float | None = None, dry_run: bool = False, now: float | None = None) -> Cleaned:
        """Remove entries unused for more than ``days`` (None: all) that nobody holds."""
        now = time.time() if now is None else now
        done = Cleaned()
        for entry in self.entries():
            if days is not None and now - entry.last_use <= days * 86400:
                continue
            (done.removed if self._remove(entry, dry_run) else done.in_use).append(entry)
        if not dry_run:
            done.temps = self._sweep_temps()
        return done

    def evict(self, cap: int) -> list[Entry]:
        """Remove the least recently used entries nobody holds until the store fits ``cap``."""
        entries = self.entries()
        total = sum(e.size for e in entries)
        removed = []
        for entry in entries:
            if total <= cap:
                break
            if self._remove(entry, False):
                total -= entry.size
                removed.append(entry)
                log.info("cache: evicted %s (%d bytes, least recently used)", entry.key[:12], entry.size)
        return removed

    def _sweep_temps(self) -> int:
        count = 0
        for path in (self.root / "tmp").glob(_TEMP + "*"):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)
                count += 1
            except OSError:
                pass
            finally:
                os.close(fd)
        return count

    # ------------------------------------------------------------------ slots
    def last_inputs(self, slot: str) -> dict | None:
        """What the stage ``slot`` (recipe + stage + phase) had last time: {key, inputs}."""
        try:
            return json.loads((self.root / "slots" / f"{slot}.json").read_text())
        except (OSError, ValueError):
            return None

    def remember(self, slot: str, key: str, inputs: dict) -> None:
        with contextlib.suppress(OSError):
            (self.root / "slots").mkdir(parents=True, exist_ok=True)
            _write_atomic(self.root / "slots" / f"{slot}.json",
                          json.dumps({"key": key, "inputs": inputs}, sort_keys=True).encode(), self.root)


def _write_atomic(path: Path, data: bytes, root: Path) -> None:
    fd, tmp = held_file(root / "tmp", _TEMP)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
