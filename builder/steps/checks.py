"""Build-time checks that run before the work they protect, each saying what to do.

``preflight`` runs before anything is fetched: an existing TARGET without ``--force``
(``--update`` needs an existing sandbox), a missing target directory, a missing
mksquashfs, a TMPDIR that is not a writable, exec-mounted directory with room (``nodev``
only warns, as in Apptainer), a sandbox target on a noexec mount, and what the recipe's
agents need (debootstrap, and for a rootless debootstrap a subordinate id range).

``check_room`` runs before packing: it estimates the image from the rootfs size (packing
rarely compresses a system tree better than about 3:1, so less free space than 30% of
the tree is an error and less than the whole tree a warning; a sandbox moved within one
filesystem needs none). ``no_space_hint`` turns a packer's ENOSPC into advice.
``first_unreadable`` finds what an unprivileged packer would silently leave out.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from base.errors import CapabilityError, UsageError
from base.fsutil import walk

__all__ = ["preflight", "check_room", "tree_size", "free_bytes", "no_space_hint", "first_unreadable",
           "MIN_TMP_FREE"]

log = logging.getLogger("sbuild.build")

MIN_TMP_FREE = 32 << 20
_DEBOOTSTRAP_FREE = 300 << 20  # a minbase bookworm is ~210 MB before packing
_SQUASH = ("simg", "sif", "squashfs")
_RATIO = 0.3
_ST_NOEXEC = getattr(os, "ST_NOEXEC", 8)
_ST_NODEV = getattr(os, "ST_NODEV", 4)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def free_bytes(path: str | os.PathLike) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _target(target: Path, fmt: str, force: bool, update: bool) -> None:
    exists = os.path.lexists(target)
    if update:
        if fmt != "sandbox":
            raise UsageError("--update only updates a sandbox directory", hint="add --sandbox, or drop --update")
        if exists and not target.is_dir():
            raise UsageError(f"--update: {target} exists and is not a sandbox directory",
                             hint="use --force to replace it")
        if exists:
            return
    if exists and not force:
        if not (fmt == "sandbox" and target.is_dir() and not target.is_symlink() and not any(target.iterdir())):
            raise UsageError(f"{target} already exists",
                             hint="use --force to overwrite it" + (" or --update to build on it"
                                                                   if fmt == "sandbox" and target.is_dir() else ""))
    parent = target.parent.resolve()
    if not parent.is_dir():
        raise UsageError(f"cannot write {target}: directory {target.parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):  # before the bootstrap, not after a long %post
        raise UsageError(f"cannot write {target}: permission denied in {parent}",
                         hint="choose a TARGET in a directory you can write")


def _tmpdir(tmp: str) -> None:
    try:
        st = os.statvfs(tmp)
    except OSError as e:
        raise UsageError(f"temporary directory {tmp}: {e.strerror}", hint="set --tmpdir or TMPDIR") from e
    if not os.access(tmp, os.W_OK | os.X_OK):
        raise CapabilityError(f"temporary directory {tmp} is not writable by this user",
                              hint="set --tmpdir or TMPDIR to a directory you can write")
    if st.f_flag & _ST_NOEXEC:
        raise CapabilityError(f"temporary directory {tmp} is on a noexec mount: build scripts cannot run there",
                              hint="set --tmpdir or TMPDIR to a directory on an exec mount")
    if st.f_flag & _ST_NODEV:
        log.warning("temporary directory %s is on a nodev mount: device files in the rootfs will not work", tmp)
    if st.f_bavail * st.f_frsize < MIN_TMP_FREE:
        raise CapabilityError(f"temporary directory {tmp} has less than {MIN_TMP_FREE >> 20} MiB free",
                              hint="free some space or set --tmpdir to a larger filesystem")


def _agents(agents: set[str], identity: str, tmp: str) -> None:
    if "debootstrap" not in agents:
        return
    if not (shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")):
        raise CapabilityError("Bootstrap: debootstrap needs the debootstrap program",
                              hint="apt-get install debootstrap")
    if identity == "root":
        user = os.environ.get("USER") or str(os.getuid())
        raise CapabilityError("a rootless debootstrap build needs subordinate ids (dpkg changes file owners)",
                              hint="install uidmap and add a range for you, e.g. "
                                   f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}")
    free = free_bytes(tmp)
    if free < _DEBOOTSTRAP_FREE:
        raise CapabilityError(f"temporary directory {tmp} has {_mib(free)} free; a debootstrap build needs "
                              f"about {_DEBOOTSTRAP_FREE >> 20} MiB",
                              hint="free some space or set --tmpdir to a larger filesystem")


def preflight(target: Path, fmt: str, *, force: bool = False, update: bool = False, tmpdir: str | None = None,
              agents: Iterable[str] = (), identity: str = "host", build: bool = True, pack=None) -> None:  # noqa: ANN001
    """Every check that can fail before a build starts (``build``: a recipe will be built;
    ``pack``: the PackOptions, to know whether mksquashfs will be needed)."""
    target = Path(target)
    _target(target, fmt, force, update)
    if fmt in _SQUASH:
        from builder.images.squashfs import PackOptions, require_mksquashfs, uses_mksquashfs

        if uses_mksquashfs(pack or PackOptions()):
            require_mksquashfs()
    if fmt == "sandbox":
        parent = target.parent.resolve()
        if os.statvfs(parent).f_flag & _ST_NOEXEC:
            raise CapabilityError(f"{parent} is on a noexec mount: a sandbox there could not run",
                                  hint="write the sandbox to a directory on an exec mount")
    if not build:
        return
    tmp = tmpdir or tempfile.gettempdir()
    _tmpdir(tmp)
    _agents(set(agents), identity, tmp)


def tree_size(root: Path) -> int:
    """Bytes of data under ``root`` (regular files: the smaller of size and allocation)."""
    total = 0
    for dirpath, dirnames, filenames in walk(root, onerror=lambda e: None):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += min(st.st_size, st.st_blocks * 512) if st.st_blocks else st.st_size
        total += 4096 * len(dirnames)
    return total


def check_room(rootfs: Path, target: Path, fmt: str) -> None:
    """Refuse to pack when ``target``'s filesystem clearly cannot hold the image."""
    where = Path(target).parent.resolve()
    if fmt == "sandbox" and os.stat(rootfs).st_dev == os.stat(where).st_dev:
        return  # moved into place by rename
    size, free = tree_size(rootfs), free_bytes(where)
    need = size if fmt not in _SQUASH else int(size * _RATIO)
    if free < need:
        raise CapabilityError(f"no room for {target}: the rootfs holds {_mib(size)}, {where} has {_mib(free)} free",
                              hint="free some space there or write TARGET to a larger filesystem")
    if fmt in _SQUASH and free < size:
        log.warning("%s has %s free for a %s rootfs: the image fits only if it compresses well",
                    where, _mib(free), _mib(size))


def first_unreadable(root: Path) -> str | None:
    """The first file or directory under ``root`` this process cannot read, else None.

    mksquashfs skips an unreadable directory with only a message ("Could not open …,
    skipping") and exits 0, so a rootless conversion checks first."""
    for dirpath, dirnames, filenames in walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and not os.access(path, os.R_OK | os.X_OK):
                return path
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and os.path.isfile(path) and not os.access(path, os.R_OK):
                return path
    return None


def no_space_hint(target: Path, output: Iterable[str]) -> str | None:
    """Advice when packing failed for lack of space, else None."""
    where = Path(target).parent.resolve()
    try:
        low = free_bytes(where) < (1 << 20)
    except OSError:
        low = False
    if low or any("No space left" in line for line in output):
        return f"{where} is full: free some space there or write TARGET to a larger filesystem"
    return None
