"""Where things are: the user's runtime directory, the image cache, paths inside an image.

Plain functions of the environment and the filesystem. ``base.securejoin`` is imported
here, by the CLI, not on first use: the container's setup, which resolves every mount point,
runs in a forked child, where an import costs twice as much (every page the import machinery
writes to is copied on write).
"""

from __future__ import annotations

from base import lean_os as os
from base.securejoin import resolve_inside

__all__ = ["runtime_dir", "cache_dir", "resolve", "SymlinkLoop"]


class SymlinkLoop(Exception):
    """Too many symlinks on the way (``runtime.layers.resolve`` reports it)."""


def runtime_dir() -> str:
    """The user's private runtime directory for sbuild (session mount point, instances)."""
    uid = os.getuid()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.stat(xdg).st_uid == uid:
        path = os.path.join(xdg, "sbuild")
    else:
        path = "/run/sbuild" if uid == 0 else f"/tmp/sbuild-{uid}"
    os.makedirs(path, 0o700, exist_ok=True)
    st = os.lstat(path)
    if st.st_uid != uid or not os.path.isdir(path):
        from base.errors import RunError

        raise RunError(f"preparing {path}: owned by someone else", hint="set XDG_RUNTIME_DIR to a directory of yours")
    return path


def cache_dir() -> str:
    """Where unprivileged runs keep images extracted once (``<cache root>/rootfs``)."""
    from base.cachedir import cache_root

    return os.path.join(cache_root(), "rootfs")


def resolve(root: str, path: str) -> str:
    """``path`` inside ``root`` with symlinks followed, never leaving ``root`` (container path)."""
    try:
        host = resolve_inside(root, path)
    except OSError as e:
        raise SymlinkLoop(path) from e
    return host[len(root):] or "/"
