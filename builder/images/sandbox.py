"""Sandbox directories: copy or move a rootfs into place, and ``--fix-perms``.

A sandbox is a plain directory tree. Copying uses ``cp -a`` (owners, modes, times,
hard links, devices, xattrs as far as the caller may); a rootfs that is ours to give
away is renamed instead when it lies on the same filesystem.

``fix_perms`` gives the owner read/write on every file and read/write/search on every
directory (``chmod -R u+rwX`` semantics, like Apptainer's ``--fix-perms``), so that an
unprivileged user can later modify and delete the whole sandbox.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path

from base.errors import BuildError, ImageError
from base.fsutil import walk

__all__ = ["copy_tree", "place_tree", "fix_perms"]

log = logging.getLogger("sbuild.images")


def copy_tree(src: Path, dest: Path) -> None:
    """Copy the directory ``src`` to ``dest`` (which must not exist), keeping everything."""
    if not Path(src).is_dir():
        raise ImageError(f"copying sandbox {src}: not a directory", path=str(src))
    cp = shutil.which("cp") or "/bin/cp"
    proc = subprocess.run([cp, "-a", "--no-target-directory", "--", str(src), str(dest)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = [l for l in proc.stderr.splitlines() if l.strip()][-20:]
        raise BuildError(f"copying sandbox {src} to {dest}: cp exited {proc.returncode}",
                         exit_code=proc.returncode, output_tail=tail)


def place_tree(src: Path, dest: Path, *, move: bool) -> None:
    """Put ``src`` at ``dest``: rename it when ``move`` and on one filesystem, else copy."""
    if move:
        try:
            os.rename(src, dest)
            return
        except OSError as e:
            log.debug("cannot rename %s to %s (%s), copying", src, dest, e.strerror)
    copy_tree(src, dest)


def _ensure(path: str, mode: int, want: int) -> None:
    if mode & want != want:
        try:
            os.chmod(path, stat.S_IMODE(mode) | want)
        except OSError as e:
            log.warning("fix-perms: cannot chmod %s: %s", path, e.strerror)


def fix_perms(root: Path) -> None:
    """Owner rwX on everything under ``root`` (symlinks untouched)."""
    root_st = os.lstat(root)
    _ensure(str(root), root_st.st_mode, stat.S_IRWXU)
    for dirpath, dirnames, filenames in walk(root):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                _ensure(p, st.st_mode, stat.S_IRWXU)
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                _ensure(p, st.st_mode, stat.S_IRUSR | stat.S_IWUSR)
