"""A small image that can run commands: the host's static busybox with its applets, and the
host's ``/bin/bash`` with the libraries ``ldd`` names (Snakemake runs ``bash -c``).

``runnable_layers()`` gives the layer tars (in memory, for ``images.Image``);
``runnable_rootfs(dir)`` writes the same tree as a directory (for ``sbuild build`` from a
sandbox). Nothing is downloaded: every file comes from this host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import images

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = ("sh", "true", "false", "echo", "cat", "ls", "id", "env", "sleep", "touch", "rm", "mkdir", "pwd",
           "test", "[", "grep", "wc", "head", "sort", "tr", "cut", "printf", "uname", "basename", "dirname",
           "mv", "cp", "date", "stat", "readlink", "hostname", "kill", "ps", "sed", "tee", "seq", "chmod")
DIRS = ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home", "var/tmp", "mnt", "opt", "usr/bin")


def _bash_files() -> list[str]:
    """``/bin/bash`` and the absolute paths of the libraries it loads."""
    bash = os.path.realpath(shutil.which("bash") or "/bin/bash")
    out = subprocess.run(["ldd", bash], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"(/\S+)\s+\(0x", out)
    return [bash, *libs]


def _files() -> dict[str, tuple[bytes, int]]:
    """Image path -> (content, mode) of the regular files."""
    files = {"bin/busybox": (Path(BUSYBOX).read_bytes(), 0o755),
             "etc/passwd": (b"root:x:0:0:root:/root:/bin/sh\n", 0o644),
             "etc/group": (b"root:x:0:\n", 0o644)}
    bash, *libs = _bash_files()
    files["bin/bash"] = (Path(bash).read_bytes(), 0o755)
    for lib in libs:
        files[lib.lstrip("/")] = (Path(lib).read_bytes(), 0o755)
    return files


def runnable_layers() -> list[bytes]:
    """One layer holding the runnable tree."""
    files = _files()
    dirs = set(DIRS)
    for path in files:
        parent = os.path.dirname(path)
        while parent:
            dirs.add(parent)
            parent = os.path.dirname(parent)
    entries = [images.d(p, mode=0o1777 if p in ("tmp", "var/tmp") else 0o755) for p in sorted(dirs)]
    entries += [images.f(p, data, mode) for p, (data, mode) in sorted(files.items())]
    entries += [images.sym(f"bin/{a}", "busybox") for a in APPLETS]
    return [images.tar_bytes(entries)]


def runnable_rootfs(root: Path) -> Path:
    """The same tree as a directory at ``root``."""
    for d in DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    for d in ("tmp", "var/tmp"):
        (root / d).chmod(0o1777)
    for path, (data, mode) in _files().items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    return root
