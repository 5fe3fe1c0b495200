"""Resolve paths inside a rootfs as securejoin does: symlinks are followed as if the
rootfs were ``/``, so no path (``..``, an absolute symlink) ever leaves it.

``inside(rootfs, path)`` returns a host path under ``rootfs``; a trailing ``/`` is not
significant here (callers keep it themselves). Missing components are kept literally.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["inside"]

_MAX_LINKS = 255


def inside(rootfs: Path | str, path: str) -> Path:
    """``path`` (absolute or relative to ``/``) resolved under ``rootfs``, never outside it."""
    root = os.path.abspath(rootfs)
    todo = [p for p in path.split("/") if p]
    todo.reverse()
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
        candidate = os.path.join(root, *done, part)
        if os.path.islink(candidate):
            links += 1
            if links > _MAX_LINKS:
                raise OSError(40, "too many levels of symbolic links", candidate)
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo.extend(reversed([p for p in target.split("/") if p]))
            continue
        done.append(part)
    return Path(root, *done)
