"""Where things are: the user's runtime directory, the image cache, paths inside an image.

Plain functions of the environment and the filesystem that import nothing else, so that
``runtime.stage`` can use them at the very start of a launch.
"""

from __future__ import annotations

import os

__all__ = ["runtime_dir", "cache_dir", "resolve", "SymlinkLoop"]


class SymlinkLoop(Exception):
    """More than 40 symlinks on the way (``runtime.rootfs.resolve`` reports it)."""


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
        from builder.errors import RunError

        raise RunError(f"preparing {path}: owned by someone else", hint="set XDG_RUNTIME_DIR to a directory of yours")
    return path


def cache_dir() -> str:
    """Where unprivileged runs keep images extracted once (``<cache>/rootfs``)."""
    base = (os.environ.get("SBUILD_CACHEDIR") or os.environ.get("APPTAINER_CACHEDIR")
            or os.environ.get("SINGULARITY_CACHEDIR"))
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "sbuild")
    return os.path.join(base, "rootfs")


def resolve(root: str, path: str) -> str:
    """``path`` inside ``root`` with symlinks followed, never leaving ``root``."""
    parts = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        full = root + "/" + "/".join(done + [part])
        try:
            link = os.readlink(full)
        except OSError:
            done.append(part)
            continue
        hops += 1
        if hops > 40:
            raise SymlinkLoop(path)
        if link.startswith("/"):
            done = []
        parts = [p for p in link.split("/") if p and p != "."] + parts
    return "/" + "/".join(done)
