"""Removing a tree we made (a build bundle, a temp rootfs, a half-written target), whatever
modes its directories were given.

``walk(top)`` is ``os.walk`` (top-down, links not followed) done as a loop: Python 3.11's
``os.walk``, ``os.fwalk`` and ``shutil.rmtree`` recurse once per level and die of
``RecursionError`` on a tree 1000 levels deep, which one layer entry can make. It holds one
directory descriptor at a time (whatever the depth: no ``EMFILE``, no ``PATH_MAX``): down
through ``O_NOFOLLOW`` opens, up through ``..`` checked against the device and inode it
came from, so a directory moved meanwhile ends the walk instead of leading it elsewhere.

``remove_tree(path)`` first gives every directory of the tree (``path`` included) that lacks
them the owner's read, write and search bits, then removes the tree: an image's read-only
directories (``/proc``, ``/sys`` at 0555, a 0500 ``/root``) would otherwise stop
``shutil.rmtree`` half way. No symbolic link is followed: the walk holds each directory
open (``walk``'s own descriptor), a child is changed only through a descriptor opened with
``O_NOFOLLOW``, so a link in the tree (or one swapped in meanwhile) never leads the chmod
out of it; the removal is the same walk, each entry unlinked relative to its directory's
descriptor. A ``path`` that is a link or a file is unlinked, a missing one is nothing to do.

Best effort, as clean-up must be: what cannot be changed or removed (another user's files,
a mount point) is left and not reported, unless ``ignore_errors=False`` (the layer
applier's use) makes the first failure raise. Only the standard library is imported.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator

__all__ = ["remove_tree", "walk"]

_OWNER_RWX = stat.S_IRWXU
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOFOLLOW_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str | os.PathLike[str], *, ignore_errors: bool = True) -> None:
    """Remove ``path`` and everything below it; see the module docstring."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    guard = contextlib.suppress(OSError) if ignore_errors else contextlib.nullcontext()
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError), guard:
            os.unlink(path)
        return
    top = os.fspath(path)
    _open_up(top, None, st)

    def rmdir(fd: int, name: str) -> None:
        with guard:
            os.rmdir(name, dir_fd=fd)
    with guard:
        for _, dirnames, filenames, fd in _fwalk(top, rmdir, _ignore if ignore_errors else None):
            for name in dirnames:
                _open_up(name, fd)
            for name in filenames:
                with guard:
                    os.unlink(name, dir_fd=fd)
        os.rmdir(top)


def walk(top: str | os.PathLike[str], onerror: Callable[[OSError], None] | None = None
         ) -> Iterator[tuple[str, list[str], list[str]]]:
    """``(dirpath, dirnames, filenames)`` of ``top`` and every directory below, as
    ``os.walk(top)`` (dirnames may be pruned in place); a link is a file. ``onerror``
    sees what cannot be opened or read."""
    try:
        for dirpath, dirnames, filenames, _ in _fwalk(os.fspath(top), onerror=onerror or _ignore):
            yield dirpath, dirnames, filenames
    except OSError as e:
        if onerror is not None:
            onerror(e)


def _fwalk(top: str, leave: Callable[[int, str], None] | None = None,
           onerror: Callable[[OSError], None] | None = None) -> Iterator[tuple[str, list[str], list[str], int]]:
    """``walk`` with the directory's descriptor; ``leave(parent_fd, name)`` runs once a
    directory's subtree is done. Raises ``OSError`` if ``top`` cannot be opened or a
    directory moved while it was walked."""
    fd = os.open(top, _NOFOLLOW_DIR)
    path, names, idents, pending = top, [], [_ident(fd)], []
    try:
        while True:
            if len(pending) < len(idents):  # first time at this directory
                dirnames, filenames = _listing(fd, path, onerror)
                yield path, dirnames, filenames, fd
                pending.append(dirnames[::-1])
            if pending[-1]:
                name = pending[-1].pop()
                try:
                    child = os.open(name, _NOFOLLOW_DIR, dir_fd=fd)
                except OSError as e:
                    if onerror is not None:
                        onerror(e)
                    continue
                os.close(fd)
                fd, path = child, f"{path}/{name}"
                names.append(name)
                idents.append(_ident(fd))
                continue
            pending.pop()
            idents.pop()
            if not idents:
                return
            up = os.open("..", _NOFOLLOW_DIR, dir_fd=fd)
            os.close(fd)
            fd = up
            if _ident(fd) != idents[-1]:
                raise OSError(errno.ESTALE, "directory moved while it was walked", path)
            name = names.pop()
            path = path[:-len(name) - 1]
            if leave is not None:
                leave(fd, name)
    finally:
        os.close(fd)


def _ignore(error: OSError) -> None:
    """``onerror`` of a best-effort walk."""


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _listing(fd: int, path: str, onerror: Callable[[OSError], None] | None) -> tuple[list[str], list[str]]:
    """Subdirectory and other names in the directory open as ``fd``, each sorted."""
    dirnames, filenames = [], []
    try:
        with os.scandir(fd) as it:
            for entry in it:
                (dirnames if entry.is_dir(follow_symlinks=False) else filenames).append(entry.name)
    except OSError as e:
        if onerror is None:
            raise
        onerror(e)
    dirnames.sort()
    filenames.sort()
    return dirnames, filenames


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
