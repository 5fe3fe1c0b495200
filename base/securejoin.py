"""Resolve a path inside a root directory as if the root were ``/`` (like Go's securejoin).

Symlinks met on the way are followed within the root: an absolute target restarts at the
root, ``..`` never climbs above it, so the result always lies under the root. Components
that do not exist are kept literally. Used for ``%files`` destinations, metadata writes
and every tar entry a layer applies.

``open_inside`` is the same walk done through directory fds (each component opened with
``O_NOFOLLOW`` relative to its parent, links read with ``readlinkat``), for writers that
must not be raced: a component swapped for a link between two steps makes it fail, never
leave the root. It can create the missing directories on the way.
"""

from __future__ import annotations

import errno
import stat

from base import lean_os as os

__all__ = ["resolve_inside", "open_inside", "MAX_LINKS"]

MAX_LINKS = 255
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def resolve_inside(root: str, path: str) -> str:
    """Host path of ``path`` (absolute or relative to ``/``) under ``root``, never outside it.

    ``root`` must be absolute and normalised. Raises ``OSError(ELOOP)`` after
    ``MAX_LINKS`` symlinks.
    """
    todo = [p for p in path.split("/") if p][::-1]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root + "/" + "/".join(done + [part])
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", candidate)
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo.extend(p for p in target.split("/")[::-1] if p)
            continue
        done.append(part)
    return root + ("/" + "/".join(done) if done else "")


def open_inside(root_fd: int, path: str, *, create: bool = False,
                follow_last: bool = True) -> tuple[int, str, str | None]:
    """``path`` resolved inside the directory open as ``root_fd``, through fds.

    Returns ``(fd, where, name)``: ``fd`` (the caller closes it) is the directory that holds
    the last component, ``where`` that directory's path inside the root (``""`` for the root),
    ``name`` the last component, missing or not a link (a link only when not
    ``follow_last``); ``name`` is None when ``path`` is the root itself. Missing
    intermediate directories are created 0755 with ``create``, else ``ENOENT``; ``ELOOP``
    after ``MAX_LINKS`` links.
    """
    todo = [p for p in path.split("/") if p][::-1]
    stack = [(os.dup(root_fd), "")]
    links = 0
    try:
        while todo:
            part = todo.pop()
            if part == "." or (part == ".." and len(stack) == 1):
                continue
            if part == "..":
                os.close(stack.pop()[0])
                continue
            fd, where = stack[-1]
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISLNK(st.st_mode) and (todo or follow_last):
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", f"{where}/{part}")
                target = os.readlink(part, dir_fd=fd)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop()[0])
                todo.extend(p for p in target.split("/")[::-1] if p)
                continue
            if not todo:
                return (*stack.pop(), part)
            if st is None:
                if not create:
                    raise OSError(errno.ENOENT, "no such directory", f"{where}/{part}")
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            stack.append((os.open(part, _DIR, dir_fd=fd), f"{where}/{part}"))
        return (*stack.pop(), None)
    finally:
        for fd, _ in stack:
            os.close(fd)
