"""Resolve a path inside a root directory as if the root were ``/`` (like Go's securejoin).

Symlinks met on the way are followed within the root: an absolute target restarts at the
root, ``..`` never climbs above it, so the result always lies under the root. Components
that do not exist are kept literally. Used for ``%files`` destinations, metadata writes
and every tar entry a layer applies.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["resolve_inside", "MAX_LINKS"]

MAX_LINKS = 255


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
