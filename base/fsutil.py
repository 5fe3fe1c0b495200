"""Removing a tree we made (a build bundle, a temp rootfs, a half-written target), whatever
modes its directories were given.

``remove_tree(path)`` first gives every directory of the tree (``path`` included) that lacks
them the owner's read, write and search bits, then removes the tree: an image's read-only
directories (``/proc``, ``/sys`` at 0555, a 0500 ``/root``) would otherwise stop
``shutil.rmtree`` half way. No symbolic link is followed: the walk holds each directory
open (``os.fwalk``), a child is changed only through a descriptor opened with
``O_NOFOLLOW``, so a link in the tree (or one swapped in meanwhile) never leads the chmod
out of it; the removal is ``shutil.rmtree``'s descriptor-based one. A ``path`` that is a
link or a file is unlinked, a missing one is nothing to do.

Best effort, as clean-up must be: what cannot be changed or removed (another user's files,
a mount point) is left and not reported. Only the standard library is imported.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat

__all__ = ["remove_tree"]

_OWNER_RWX = stat.S_IRWXU
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOFOLLOW_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` and everything below it; see the module docstring."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    _open_up(os.fspath(path), None, st)
    with contextlib.suppress(OSError):
        for _, dirnames, _, dirfd in os.fwalk(path):
            for name in dirnames:
                _open_up(name, dirfd)
    shutil.rmtree(path, ignore_errors=True)


def _open_up(name: str, dirfd: int | None, st: os.stat_result | None = None) -> None:
    """Give the directory ``name`` (relative to ``dirfd``) u+rwx if it lacks them, never
    through a symbolic link."""
    with contextlib.suppress(OSError):
        st = st or os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode) or st.st_mode & _OWNER_RWX == _OWNER_RWX:
            return
        try:
            fd = os.open(name, _NOFOLLOW_DIR, dir_fd=dirfd)
        except PermissionError:  # no read bit (0o000, 0o300): a path-only descriptor instead
            fd = os.open(name, _NOFOLLOW_PATH, dir_fd=dirfd)
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode) | _OWNER_RWX
            try:
                os.fchmod(fd, mode)
            except OSError:  # EBADF on an O_PATH descriptor: chmod the inode it names
                os.chmod(f"/proc/self/fd/{fd}", mode)
        finally:
            os.close(fd)
