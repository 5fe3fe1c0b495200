"""ext3 images: persistent overlays (``sbuild overlay create``), writable 2.x-style images
from a rootfs, and extraction of an ext3 image to a directory (spec §D.3).

Overlays follow ``apptainer overlay create``: ``upper/`` and ``work/`` (0755, or 0777
when the caller's uid or gid is above 65535) owned by the caller, plus ``upper/<dir>``
for each ``--create-dir``, put in by ``mkfs.ext3 -d``, which always adds a journal (the
runtime refuses ext3 without one). Non-sparse images are fully allocated (``-E
nodiscard`` stops mke2fs from punching holes back into them). The image is mode 0600.

Reading an ext3 image needs no mount: ``debugfs -R "rdump / DIR"`` copies the tree out.

Limits: no SIF-embedded overlays (adding an ext3 partition to an existing SIF).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from base.errors import CapabilityError, UsageError
from base.fsutil import walk
from builder.images.squashfs import run_checked

__all__ = ["OverlayOptions", "MIN_OVERLAY_MIB", "write_overlay", "write_ext3", "extract_ext3"]

log = logging.getLogger("sbuild.images")

MIN_OVERLAY_MIB = 64


@dataclass(frozen=True)
class OverlayOptions:
    size_mib: int = 64
    sparse: bool = False
    create_dirs: tuple[str, ...] = ()
    uid: int | None = None  # owner of upper/ and work/; None = the caller
    gid: int | None = None


def _mkfs() -> str:
    for name in ("mkfs.ext3", "mke2fs"):
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if found:
            return found
    raise CapabilityError("mkfs.ext3 not found", hint="install e2fsprogs (apt-get install e2fsprogs)")


def _safe_subdir(name: str) -> PurePosixPath:
    rel = PurePosixPath(name.strip("/"))
    if not name.strip("/") or ".." in rel.parts:
        raise UsageError(f"--create-dir {name!r}: must be a path inside upper/ without '..'")
    return rel


def _allocate(path: Path, size: int, sparse: bool) -> None:
    with open(path, "wb") as fh:
        if sparse:
            fh.truncate(size)
        else:
            try:
                os.posix_fallocate(fh.fileno(), 0, size)
            except OSError:  # a filesystem without fallocate: write the zeros
                zero = bytes(1 << 20)
                for _ in range(size >> 20):
                    fh.write(zero)
                fh.truncate(size)


def write_overlay(out: Path, opts: OverlayOptions) -> None:
    """Make the overlay image at ``out`` (an exact path; callers rename it into place)."""
    if opts.size_mib < MIN_OVERLAY_MIB:
        raise UsageError(f"overlay size {opts.size_mib} MiB is too small (minimum {MIN_OVERLAY_MIB})")
    subdirs = [_safe_subdir(d) for d in opts.create_dirs]
    uid = os.getuid() if opts.uid is None else opts.uid
    gid = os.getgid() if opts.gid is None else opts.gid
    mode = 0o777 if uid > 65535 or gid > 65535 else 0o755
    mkfs = _mkfs()
    with tempfile.TemporaryDirectory(prefix=".sbuild-overlay-", dir=out.parent) as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for d in [PurePosixPath("upper"), PurePosixPath("work")] + [PurePosixPath("upper") / s for s in subdirs]:
            (src / d).mkdir(parents=True, exist_ok=True)
        for dirpath, _, _ in os.walk(src):
            os.chmod(dirpath, mode)
            if dirpath != str(src) and (uid, gid) != (os.getuid(), os.getgid()):
                os.chown(dirpath, uid, gid)
        _allocate(out, opts.size_mib << 20, opts.sparse)
        cmd = [mkfs, "-q", "-F", "-d", str(src), str(out)]
        if Path(mkfs).name == "mke2fs":
            cmd[1:1] = ["-t", "ext3", "-j"]
        if not opts.sparse:
            cmd[1:1] = ["-E", "nodiscard"]
        run_checked(cmd, f"creating overlay {out}")
    os.chmod(out, 0o600)


def write_ext3(rootfs: Path, out: Path, *, extra_mib: int = 16) -> None:
    """A writable ext3 image of ``rootfs`` (sized 1.25 × its content + ``extra_mib``)."""
    used = 0
    for dirpath, dirnames, filenames in walk(rootfs):  # a loop: os.walk recurses per level
        for name in filenames + dirnames:
            try:
                used += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    size_mib = max(MIN_OVERLAY_MIB, int(used * 1.25) // (1 << 20) + extra_mib)
    _allocate(out, size_mib << 20, sparse=True)
    mkfs = _mkfs()
    cmd = [mkfs, "-q", "-F", "-d", str(rootfs), str(out)]
    if Path(mkfs).name == "mke2fs":
        cmd[1:1] = ["-t", "ext3", "-j"]
    run_checked(cmd, f"creating ext3 image {out}")


def extract_ext3(image: Path, dest: Path, *, offset: int = 0) -> None:
    """Copy the tree of the ext3 image at ``offset`` in ``image`` into ``dest`` (new)."""
    debugfs = shutil.which("debugfs") or shutil.which("debugfs", path="/usr/sbin:/sbin")
    if debugfs is None:
        raise CapabilityError("debugfs not found", hint="install e2fsprogs (apt-get install e2fsprogs)")
    src: Sequence[str] = [str(image)]
    with tempfile.TemporaryDirectory(prefix=".sbuild-ext3-", dir=Path(dest).parent) as tmp:
        if offset:  # debugfs cannot take an offset: copy the filesystem out
            part = Path(tmp) / "fs.img"
            with open(image, "rb") as fi, open(part, "wb") as fo:
                fi.seek(offset)
                shutil.copyfileobj(fi, fo, 1 << 20)
            src = [str(part)]
        out = Path(tmp) / "out"
        out.mkdir()
        run_checked([debugfs, "-R", f"rdump / {out}", *src], f"reading ext3 image {image}")
        lost = out / "lost+found"
        if lost.is_dir() and not any(lost.iterdir()):
            lost.rmdir()
        os.rename(out, dest)
