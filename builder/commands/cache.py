"""``sbuild cache list`` and ``sbuild cache clean [--days N] [--dry-run]``: the blob cache.

The cache lives in ``$APPTAINER_CACHEDIR``/``$SINGULARITY_CACHEDIR`` (``/sbuild`` below it)
or ``$XDG_CACHE_HOME/sbuild``; ``--cachedir`` overrides. Cleaning never waits and never
removes a blob a running build downloads or reads: it keeps those, says how many (each one
with ``-v``), and leaves the temp files while downloads run.
"""

from __future__ import annotations

import argparse
import time

from builder.commands import add_output_flags

__all__ = ["register"]


def register(subparsers, only: str | None = None) -> None:
    parser = subparsers.add_parser("cache", help="list or clean the blob cache")
    sub = parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="list cached blobs and their sizes")
    listing.add_argument("--cachedir", help="cache directory (default: from the environment)")
    listing.add_argument("-T", "--type", action="append", default=[], help=_TYPES_HELP)
    add_output_flags(listing)
    listing.set_defaults(handler=_list)
    clean = sub.add_parser("clean", help="remove cached blobs")
    clean.add_argument("-D", "--days", type=float, help="only blobs unused for more than DAYS days")
    clean.add_argument("-n", "--dry-run", action="store_true", help="say what would be removed, remove nothing")
    clean.add_argument("-T", "--type", action="append", default=[], help=_TYPES_HELP)
    clean.add_argument("--cachedir", help="cache directory (default: from the environment)")
    clean.add_argument("-f", "--force", action="store_true", help="accepted for Apptainer compatibility")
    add_output_flags(clean)
    clean.set_defaults(handler=_clean)


_TYPES_HELP = "cache types, comma list: library, oci, shub, blob(s), net, oras, all (sbuild's cache holds blobs)"
_TYPES = ("library", "oci", "shub", "blob", "blobs", "net", "oras", "all")


def _has_blobs(args: argparse.Namespace) -> bool:
    """Whether ``--type`` (Apptainer's cache kinds; default all) includes sbuild's blobs."""
    from base.errors import UsageError

    types = [t.strip() for v in args.type for t in v.split(",") if t.strip()] or ["all"]
    bad = [t for t in types if t not in _TYPES]
    if bad:
        raise UsageError(f"--type: unknown cache type {bad[0]!r}", hint="one of " + ", ".join(_TYPES))
    return any(t in ("blob", "blobs", "oci", "all") for t in types)


def _cache(args: argparse.Namespace):
    from pathlib import Path

    from builder.sources.oci.cache import BlobCache, default_cache_dir

    return BlobCache(Path(args.cachedir) if args.cachedir else default_cache_dir())


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _list(args: argparse.Namespace) -> int:
    cache = _cache(args)
    entries = cache.entries() if _has_blobs(args) else []
    now = time.time()
    if not args.quiet:
        for e in entries:
            age = (now - e.mtime) / 86400
            print(f"{e.digest[:19]}  {_size(e.size):>10}  {age:5.1f} days")
    print(f"{len(entries)} blobs, {_size(sum(e.size for e in entries))} in {cache.root}")
    return 0


def _clean(args: argparse.Namespace) -> int:
    if args.days is not None and args.days < 0:
        from base.errors import UsageError

        raise UsageError("--days must not be negative")
    if not _has_blobs(args):
        print("removed 0 blobs, 0 B")
        return 0
    cache = _cache(args)
    done = cache.clean(days=args.days, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    if args.verbose or args.dry_run:
        for e in done.removed:
            print(f"{verb} {e.digest} ({_size(e.size)})")
        for e in done.in_use:
            print(f"kept {e.digest} ({_size(e.size)}): in use by a running build")
    print(f"{verb} {len(done.removed)} blobs, {_size(sum(e.size for e in done.removed))}")
    if done.in_use:
        print(f"kept {len(done.in_use)} blobs in use by running builds, {_size(sum(e.size for e in done.in_use))}")
    if done.temp_kept:
        print("kept the temporary files: downloads are running")
    return 0
