"""Fixtures for the image tests: a tiny busybox rootfs and helpers to run real tools."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def need(tool: str) -> str:
    """The path of ``tool``, or skip the test saying what to install."""
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if not found:
        pytest.skip(f"{tool} not installed (apt-get install the package providing it)")
    return found


def run(*cmd: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=check, capture_output=True, text=True)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A small rootfs: busybox as /bin/sh, some files, a symlink, Singularity metadata."""
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    if not Path(BUSYBOX).exists():
        pytest.skip("busybox-static not installed (apt-get install busybox-static)")
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "hello.txt").write_text("hello from the image\n")
    sd = root / ".singularity.d"
    (sd / "env").mkdir(parents=True)
    (sd / "env" / "90-environment.sh").write_text("#!/bin/sh\n# Custom environment shell code should follow\n\nexport A=1\n")
    (sd / "runscript").write_text("#!/bin/sh\n\necho run\n")
    (sd / "runscript").chmod(0o755)
    (sd / "labels.json").write_text('{\n\t"MAINTAINER": "me",\n\t"org.label-schema.schema-version": "1.0"\n}')
    (sd / "Singularity").write_text("Bootstrap: scratch\n\n%runscript\n    echo run\n")
    for d in ("dev", "proc", "sys", "tmp", "home"):
        (root / d).mkdir()
    return root
