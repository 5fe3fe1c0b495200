"""``sbuild cache list`` and ``sbuild cache clean [--days N] [--dry-run]``, and the build's cache flags.

The cache lives in ``$APPTAINER_CACHEDIR``/``$SINGULARITY_CACHEDIR`` (``/sbuild`` below it)
or ``$XDG_CACHE_HOME/sbuild``; ``--cachedir`` overrides. It holds several kinds, each in
``KINDS`` (the one table: a new cache adds a ``Kind`` there): ``blobs`` (OCI blobs,
``builder.sources.oci.cache``), ``build`` (build checkpoints, ``builder.cache``), ``images``
(SIFs of URIs that were run, ``builder.commands.uri``) and ``squashfs-blocks`` (the packer's compressed blocks,
``builder.images.blockcache``: one row, their count and size). ``--type`` selects kinds (Apptainer's names map to blobs).

Cleaning never waits and never removes an entry a running build downloads, reads or builds:
it keeps those, says how many (each one with ``-v``). It removes what stopped processes
left (partial downloads and checkpoints, unfinished extractions), never what a running one
is writing.

``add_cache_flags(parser)`` / ``cache_options(args)``: the build's ``--no-cache``,
``--cache-explain``, ``--rebuild``, ``--cache-from``/``--cache-to`` (also
``SBUILD_CACHE_FROM``/``SBUILD_CACHE_TO``) and ``--cache-max`` (``SBUILD_CACHE_MAX``); ``SBUILD_BUILD_CACHE=off`` turns checkpoints off
(the test suite does, outside ``tests/cache``, so that builds there always run their steps).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.commands import add_output_flags

__all__ = ["register", "Kind", "KINDS", "add_cache_flags", "cache_options"]


@dataclass(frozen=True)
class Row:
    name: str
    size: int
    last_use: float


@dataclass(frozen=True)
class Kind:
    """One kind of cache entry: ``types`` are the ``--type`` values that select it;
    ``entries(root)`` lists rows; ``clean(root, days, dry_run)`` → (removed, kept in use,
    notes: lines said after the counts)."""

    name: str
    noun: str
    types: tuple[str, ...]
    entries: Callable[[Path], list[Row]]
    clean: Callable[[Path, float | None, bool], tuple[list[Row], list[Row], list[str]]]
    totals: bool = False  # one row, named by its count (a cache of many small entries)


def _blob_cache(root: Path):  # noqa: ANN202
    from builder.sources.oci.cache import BlobCache

    return BlobCache(root)


def _blob_rows(root: Path) -> list[Row]:
    return [Row(e.digest[:19], e.size, e.mtime) for e in _blob_cache(root).entries()]


def _blob_clean(root: Path, days: float | None, dry_run: bool) -> tuple[list[Row], list[Row], list[str]]:
    done = _blob_cache(root).clean(days=days, dry_run=dry_run)
    rows = [[Row(e.digest, e.size, e.mtime) for e in part] for part in (done.removed, done.in_use)]
    notes = []
    if done.partial:
        notes.append(f"removed {len(done.partial)} unfinished downloads and extractions left by stopped processes")
    if done.temp_kept:
        notes.append("kept the temporary files: downloads are running")
    return rows[0], rows[1], notes


def _store(root: Path):  # noqa: ANN202
    from builder.cache import STORE_DIR, CheckpointStore

    return CheckpointStore(root / STORE_DIR)


def _build_rows(root: Path) -> list[Row]:
    return [Row(f"{e.key[:12]} {e.kind} {e.record.get('stage', '')}", e.size, e.last_use)
            for e in _store(root).entries()]


def _build_clean(root: Path, days: float | None, dry_run: bool) -> tuple[list[Row], list[Row], list[str]]:
    done = _store(root).clean(days=days, dry_run=dry_run)
    rows = [[Row(f"{e.key[:12]} {e.kind}", e.size, e.last_use) for e in part] for part in (done.removed, done.in_use)]
    notes = [f"removed {done.temps} unfinished checkpoints left by stopped builds"] if done.temps else []
    return rows[0], rows[1], notes


def _image_files(root: Path) -> list[Path]:
    from builder.commands.uri import PULLABLE

    found = []
    for kind in sorted(set(PULLABLE.values())):
        found += [p for p in sorted((root / "images" / kind).glob("*")) if p.is_file() and not p.name.startswith(".")]
    return found


def _image_rows(root: Path) -> list[Row]:
    rows = []
    for path in _image_files(root):
        st = path.stat()
        rows.append(Row(f"{path.parent.name}/{path.name[:12]}", st.st_size, st.st_mtime))
    return rows


def _image_clean(root: Path, days: float | None, dry_run: bool) -> tuple[list[Row], list[Row], list[str]]:
    import fcntl

    now, removed, kept = time.time(), [], []
    for path in _image_files(root):
        st = path.stat()
        if days is not None and now - st.st_mtime <= days * 86400:
            continue
        row = Row(f"{path.parent.name}/{path.name[:12]}", st.st_size, st.st_mtime)
        lock = path.parent / f".{path.name}.lock"
        with open(lock, "a") as fh:  # the lock a pull of this image holds (builder.commands.uri)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                kept.append(row)
                continue
            if not dry_run:
                path.unlink(missing_ok=True)
            removed.append(row)
    return removed, kept, []


def _blocks(root: Path):  # noqa: ANN202
    from builder.images.blockcache import BlockCache

    return BlockCache(root / "squashfs-blocks")


def _block_rows(root: Path) -> list[Row]:
    """One row for the packer's block cache (thousands of small entries: their count and size)."""
    used = _blocks(root).usage() if (root / "squashfs-blocks").is_dir() else None
    return [Row(f"{used.entries} compressed blocks", used.bytes, 0.0)] if used and used.entries else []


def _block_clean(root: Path, days: float | None, dry_run: bool) -> tuple[list[Row], list[Row], list[str]]:
    if not (root / "squashfs-blocks").is_dir():
        return [], [], []
    done = _blocks(root).clean(days, dry_run=dry_run)
    return ([Row(f"{done.entries} compressed blocks", done.bytes, 0.0)] if done.entries else []), [], []


KINDS: list[Kind] = [
    Kind("blobs", "blobs", ("library", "oci", "shub", "blob", "blobs", "net", "oras"), _blob_rows, _blob_clean),
    Kind("build", "checkpoints", ("build",), _build_rows, _build_clean),
    Kind("images", "images", ("images", "oci", "oras", "library", "shub"), _image_rows, _image_clean),
    Kind("squashfs-blocks", "compressed blocks", ("blocks",), _block_rows, _block_clean, totals=True),
]


def _types_help() -> str:
    names = sorted({t for k in KINDS for t in k.types} | {"all"})
    return "cache types, comma list: " + ", ".join(names)


def register(subparsers, only: str | None = None) -> None:
    parser = subparsers.add_parser("cache", help="list or clean the blob, build and image caches")
    sub = parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="list cached entries and their sizes")
    listing.add_argument("--cachedir", help="cache directory (default: from the environment)")
    listing.add_argument("-T", "--type", action="append", default=[], help=_types_help())
    add_output_flags(listing)
    listing.set_defaults(handler=_list)
    clean = sub.add_parser("clean", help="remove cached entries")
    clean.add_argument("-D", "--days", type=float, help="only entries unused for more than DAYS days")
    clean.add_argument("-n", "--dry-run", action="store_true", help="say what would be removed, remove nothing")
    clean.add_argument("-T", "--type", action="append", default=[], help=_types_help())
    clean.add_argument("--cachedir", help="cache directory (default: from the environment)")
    clean.add_argument("-f", "--force", action="store_true", help="accepted for Apptainer compatibility")
    add_output_flags(clean)
    clean.set_defaults(handler=_clean)


def _kinds(args: argparse.Namespace) -> list[Kind]:
    """The kinds ``--type`` selects (default all)."""
    from base.errors import UsageError

    types = [t.strip() for v in args.type for t in v.split(",") if t.strip()] or ["all"]
    known = {t for k in KINDS for t in k.types} | {"all"}
    bad = [t for t in types if t not in known]
    if bad:
        raise UsageError(f"--type: unknown cache type {bad[0]!r}", hint="one of " + ", ".join(sorted(known)))
    return [k for k in KINDS if "all" in types or set(types) & set(k.types)]


def _root(args: argparse.Namespace) -> Path:
    from builder.sources.oci.cache import default_cache_dir

    return Path(args.cachedir) if args.cachedir else default_cache_dir()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _list(args: argparse.Namespace) -> int:
    root, now = _root(args), time.time()
    for kind in _kinds(args):
        rows = kind.entries(root)
        if not args.quiet and not kind.totals:
            for r in rows:
                print(f"{r.name:<19}  {_size(r.size):>10}  {(now - r.last_use) / 86400:5.1f} days")
        where = root if kind.name == "blobs" else root / kind.name
        count = rows[0].name if kind.totals and rows else f"{len(rows)} {kind.noun}"
        print(f"{count}, {_size(sum(r.size for r in rows))} in {where}")
    return 0


def _clean(args: argparse.Namespace) -> int:
    if args.days is not None and args.days < 0:
        from base.errors import UsageError

        raise UsageError("--days must not be negative")
    root = _root(args)
    verb = "would remove" if args.dry_run else "removed"
    for kind in _kinds(args):
        removed, kept, notes = kind.clean(root, args.days, args.dry_run)
        if (args.verbose or args.dry_run) and not kind.totals:
            for r in removed:
                print(f"{verb} {r.name} ({_size(r.size)})")
            for r in kept:
                print(f"kept {r.name} ({_size(r.size)}): in use by a running build")
        if removed or kind.name == "blobs":
            count = removed[0].name if kind.totals else f"{len(removed)} {kind.noun}"
            print(f"{verb} {count}, {_size(sum(r.size for r in removed))}")
        if kept:
            print(f"kept {len(kept)} {kind.noun} in use by running builds, {_size(sum(r.size for r in kept))}")
        for note in notes:
            print(note)
    return 0


# ------------------------------------------------------------------ build flags
def add_cache_flags(p: argparse.ArgumentParser) -> None:
    """The build's cache flags (``--disable-cache`` is registered beside them by the build)."""
    p.add_argument("--no-cache", action="store_true", help="run every step; still record checkpoints")
    p.add_argument("--cache-explain", action="store_true", help="say for each stage: cache hit, or which input changed")
    p.add_argument("--rebuild", action="append", default=[], metavar="STAGE",
                   help="rerun stage STAGE (name or number) and those after it, ignoring their checkpoints")
    p.add_argument("--cache-from", action="append", default=[], metavar="REF",
                   help="registry repository to read checkpoints from (docker:// or oras://; env SBUILD_CACHE_FROM)")
    p.add_argument("--cache-to", metavar="REF", help="registry repository to push checkpoints to (env SBUILD_CACHE_TO)")
    p.add_argument("--cache-max", metavar="SIZE", help="cap of the local build cache, e.g. 10G (env SBUILD_CACHE_MAX)")


def cache_options(args: argparse.Namespace):  # noqa: ANN201 - builder.options.CacheOptions
    from builder.cache import parse_size
    from builder.options import CacheOptions

    env = os.environ
    sources = list(getattr(args, "cache_from", None) or []) or [
        r for r in env.get("SBUILD_CACHE_FROM", "").split(",") if r.strip()]
    to = getattr(args, "cache_to", None) or env.get("SBUILD_CACHE_TO") or None
    cap = getattr(args, "cache_max", None) or env.get("SBUILD_CACHE_MAX")
    rebuild = frozenset(s.strip() for v in getattr(args, "rebuild", None) or [] for s in v.split(",") if s.strip())
    enabled = not args.disable_cache and env.get("SBUILD_BUILD_CACHE", "on").lower() not in ("off", "0", "no")
    return CacheOptions(enabled=enabled, reuse=not getattr(args, "no_cache", False), rebuild=rebuild,
                        explain=bool(getattr(args, "cache_explain", False) or getattr(args, "verbose", False)),
                        max_size=parse_size(cap) if cap else None, cache_from=tuple(s.strip() for s in sources),
                        cache_to=to)
