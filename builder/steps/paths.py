"""Resolve paths inside a rootfs as securejoin does: symlinks are followed as if the
rootfs were ``/``, so no path (``..``, an absolute symlink) ever leaves it.

``inside(rootfs, path)`` returns a host path under ``rootfs``; a trailing ``/`` is not
significant here (callers keep it themselves). Missing components are kept literally.
"""

from __future__ import annotations

import os
from pathlib import Path

from builder.securejoin import resolve_inside

__all__ = ["inside"]


def inside(rootfs: Path | str, path: str) -> Path:
    """``path`` (absolute or relative to ``/``) resolved under ``rootfs``, never outside it."""
    return Path(resolve_inside(os.path.abspath(rootfs), path))
