"""Resolve paths inside a rootfs as securejoin does: symlinks are followed as if the
rootfs were ``/``, so no path (``..``, an absolute symlink) ever leaves it.

``write_file(path, data, mode)`` writes a file there without following a symlink at it.

``inside(rootfs, path)`` returns a host path under ``rootfs``; a trailing ``/`` is not
significant here (callers keep it themselves). Missing components are kept literally. A
link loop on the way (``/.singularity.d/env -> env``) is an ``ImageError`` naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path

from base.errors import ImageError
from base.securejoin import resolve_inside

__all__ = ["inside", "write_file"]


def inside(rootfs: Path | str, path: str) -> Path:
    """``path`` (absolute or relative to ``/``) resolved under ``rootfs``, never outside it."""
    try:
        return Path(resolve_inside(os.path.abspath(rootfs), path))
    except OSError as e:
        raise ImageError(f"resolving {'/' + path.lstrip('/')} in the image: {e.strerror} (a link loop in the image)",
                         hint="fix or remove the looping symbolic link in the base image") from e


def write_file(path: Path, data: str | bytes, mode: int) -> None:
    """Create or replace ``path`` (never following a symlink at it) with ``mode``."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)
