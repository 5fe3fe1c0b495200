"""Pack a rootfs into squashfs and unpack squashfs with unsquashfs (spec §E).

``pack`` writes the squashfs with sbuild's own packer (``builder.images.sqfs_pack``:
gzip, mksquashfs's defaults, about twice as fast) unless mksquashfs is asked for: by
``--mksquashfs-args`` that the packer does not understand (another compressor, or any
option but the gzip level, block size 128K, processors, -all-root, -no-xattrs and
no-ops) or by ``packer="mksquashfs"`` (``SBUILD_PACKER=mksquashfs``). Either writes at a byte offset inside OUT (for .simg and
SIF, which saves a copy of the whole filesystem).

mksquashfs runs as ``mksquashfs ROOTFS OUT -noappend [-comp gzip] [ARGS] [-all-root]``
with all cores. With ``source_date_epoch`` set, mksquashfs (4.5+) gets
``SOURCE_DATE_EPOCH`` in its environment: it uses it as the filesystem time and clamps
newer file times to it, and its output is otherwise reproducible by default, so the
same tree gives the same bytes.

``unpack`` (unsquashfs, or PySquashfsImage without it) and ``open_image`` (read files
without extracting) are ``base.squashfs``'s, re-exported here: the runtime's extraction
cache uses the same extractor and may not import this module.

Limits: a non-gzip compressor needs the host's mksquashfs to support it (and
``zstandard``/``lz4``/``python-lzo`` for the PySquashfsImage fallback).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from base.errors import BuildError, CapabilityError, ImageError
from base.squashfs import open_image, unpack
from base.squashfs import output_tail as _tail

__all__ = ["PackOptions", "PACKERS", "uses_mksquashfs", "pack", "unpack", "open_image", "Runner", "split_mksquashfs_args",
           "require_mksquashfs"]

log = logging.getLogger("sbuild.images")

Runner = Callable[..., subprocess.CompletedProcess]
_TIME_FLAGS = {"-mkfs-time", "-fstime", "-all-time", "-root-time"}


@dataclass(frozen=True)
class PackOptions:
    """How to pack a rootfs.

    mksquashfs_args: extra arguments passed on (``--mksquashfs-args``, already split)
    all_root: ``-all-root`` (files owned by root); None = only when not running as root
    processors: ``-processors N``; None = all cores (mksquashfs's default)
    source_date_epoch: makes the output byte-for-byte reproducible (and SIFs deterministic)
    packer: "auto" (sbuild's own unless mksquashfs_args are given) or "mksquashfs"
    block_cache: directory of sbuild's packer's cache of compressed blocks
    (``builder.images.blockcache``; None: none, as with mksquashfs)
    """

    mksquashfs_args: tuple[str, ...] = ()
    all_root: bool | None = None
    processors: int | None = None
    source_date_epoch: int | None = None
    env: dict[str, str] | None = field(default=None, compare=False)
    packer: str = "auto"
    # (where the cache is never changes the bytes: not in repr, which the build cache's image key reads)
    block_cache: str | None = field(default=None, compare=False, repr=False)


PACKERS = ("auto", "mksquashfs")


def uses_mksquashfs(opts: PackOptions) -> bool:
    """Will ``pack`` run mksquashfs (rather than sbuild's packer) with these options?"""
    return _packer_options(opts) is None


def _packer_options(opts: PackOptions) -> dict | None:
    """sbuild's packer's settings for ``opts``, or None when mksquashfs must pack."""
    if opts.packer == "mksquashfs":
        return None
    settings = _packer_settings(opts.mksquashfs_args)
    if settings is None:
        return None
    return {"all_root": _all_root(opts), "workers": opts.processors,
            "source_date_epoch": opts.source_date_epoch, "block_cache": opts.block_cache, **settings}


def _all_root(opts: PackOptions) -> bool:
    """Files owned by root in the image: as asked, else when not packing as root."""
    return opts.all_root if opts.all_root is not None else os.geteuid() != 0


_NO_OPS = {"-noappend", "-quiet", "-no-progress", "-progress", "-xattrs"}


def _packer_settings(args: tuple[str, ...]) -> dict | None:
    """What ``--mksquashfs-args`` ask of sbuild's packer, or None when they need mksquashfs:
    ``-comp gzip``, ``-Xcompression-level N``, ``-b 128K``, ``-processors N``,
    ``-all-root``/``-root-owned``, ``-no-xattrs`` and the no-ops are understood."""
    found: dict = {}
    it = iter(args)
    for arg in it:
        if arg in _NO_OPS:
            continue
        if arg in ("-all-root", "-root-owned"):
            found["all_root"] = True
        elif arg == "-no-xattrs":
            found["xattrs"] = False
        elif arg in ("-comp", "-Xcompression-level", "-b", "-processors"):
            value = next(it, "")
            if arg == "-comp" and value != "gzip":
                return None
            if arg == "-b" and value not in ("131072", "128K", "128k"):
                return None
            if arg in ("-Xcompression-level", "-processors"):
                if not value.isdigit() or (arg == "-Xcompression-level" and not 1 <= int(value) <= 9):
                    return None  # mksquashfs says what is wrong with it
                found["level" if arg == "-Xcompression-level" else "workers"] = int(value)
        else:
            return None
    return found


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise CapabilityError(f"{name} not found", hint="install squashfs-tools (apt-get install squashfs-tools)")
    return found


def split_mksquashfs_args(text: str | None) -> tuple[str, ...]:
    """``--mksquashfs-args "…"`` split on whitespace, as Apptainer does."""
    return tuple((text or "").split())


def require_mksquashfs() -> str:
    """The mksquashfs path; CapabilityError (saying what to install) when missing. For
    the build's pre-flight checks."""
    return _tool("mksquashfs")


def pack_command(rootfs: Path, out: Path, opts: PackOptions, *, offset: int = 0) -> list[str]:
    """The mksquashfs command line ``pack`` runs (exposed for the benchmark)."""
    cmd = [_tool("mksquashfs"), str(rootfs), str(out), "-noappend", "-no-progress", "-quiet"]
    if opts.processors:
        cmd += ["-processors", str(opts.processors)]
    if "-comp" not in opts.mksquashfs_args:
        cmd += ["-comp", "gzip"]
    cmd += list(opts.mksquashfs_args)
    if _all_root(opts) and "-all-root" not in cmd and "-root-owned" not in cmd:
        cmd.append("-all-root")
    if offset:
        cmd += ["-offset", str(offset)]
    return cmd


def pack_env(opts: PackOptions) -> dict[str, str]:
    """The environment for mksquashfs: ours, with SOURCE_DATE_EPOCH from the options only."""
    env = dict(opts.env if opts.env is not None else os.environ)
    env.pop("SOURCE_DATE_EPOCH", None)
    explicit = _TIME_FLAGS.intersection(opts.mksquashfs_args)
    if opts.source_date_epoch is not None:
        if explicit:  # mksquashfs refuses both; the explicit flags win
            log.debug("mksquashfs: %s given, not passing SOURCE_DATE_EPOCH", ", ".join(sorted(explicit)))
        else:
            env["SOURCE_DATE_EPOCH"] = str(opts.source_date_epoch)
    return env


# mksquashfs 4.5 reports an unreadable file ("Failed to read file X") and an unreadable
# directory ("Could not open X, skipping...") and still exits 0.
_UNREADABLE = re.compile(r"(?:Failed to read file |Could not open )(?P<path>.*?)(?:, skipping\.*)?$")


def pack(rootfs: Path, out: Path, opts: PackOptions = PackOptions(), *, offset: int = 0,
         runner: Runner = subprocess.run) -> int:
    """Write a squashfs of ``rootfs`` into ``out`` at ``offset`` (bytes before it are
    zeroed). Returns the size of the squashfs, padded to 4 KiB as mksquashfs writes it."""
    if not Path(rootfs).is_dir():
        raise ImageError(f"packing {rootfs}: not a directory", path=str(rootfs))
    settings = _packer_options(opts)
    if settings is not None:
        from builder.images.sqfs_pack import SquashOptions, pack_directory

        return pack_directory(rootfs, out, offset=offset, options=SquashOptions(**settings))
    cmd = pack_command(rootfs, out, opts, offset=offset)
    log.debug("running %s", " ".join(cmd))
    proc = runner(cmd, env=pack_env(opts), stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"packing {rootfs} with mksquashfs: exit status {proc.returncode}",
                         exit_code=proc.returncode, output_tail=_tail(proc))
    unread = [l for l in _tail(proc, 10**6) if _UNREADABLE.search(l)]
    if unread:  # mksquashfs exits 0, storing such files empty and leaving such dirs out
        first = _UNREADABLE.search(unread[0]).group("path")
        raise BuildError(f"packing {rootfs}: mksquashfs could not read {len(unread)} file(s) or "
                         f"director(ies), the first {first}",
                         output_tail=unread[:20],
                         hint="make them readable (--fix-perms) or pack as their owner or root")
    for line in _tail(proc, 5):
        log.debug("mksquashfs: %s", line)
    return os.stat(out).st_size - offset


def run_checked(cmd: Sequence[str], what: str, runner: Runner = subprocess.run) -> subprocess.CompletedProcess:
    """Run ``cmd``; a non-zero exit becomes ImageError naming ``what``."""
    proc = runner(list(cmd), stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError(f"{what}: {Path(cmd[0]).name} exited {proc.returncode}: "
                         + " / ".join(_tail(proc, 3)))
    return proc
