"""Fixtures for the drop-in command line: the program run under each of its names.

``cli(name, *args)`` runs ``.venv/bin/<name>`` (the launchers setup.sh writes: sbuild,
apptainer, singularity, run-singularity) as a subprocess, with ``.venv/bin`` first on PATH so
that the real clients (Snakemake, cwltool, spython) find our ``apptainer``/``singularity``.
``busybox_image`` is a small image with a runscript and a %help, as a sandbox and a ``.simg``
(the 31-byte ``#!/usr/bin/env run-singularity`` header + squashfs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
NAMES = ("sbuild", "apptainer", "singularity")
COMPAT = ("apptainer", "singularity")


@dataclass
class Ran:
    status: int
    out: str
    err: str


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPTAINER_", "SINGULARITY_"))}
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra or {})
    return env


@pytest.fixture
def cli_env():
    """The environment ``cli`` runs in (``.venv/bin`` first on PATH), for clients' own calls."""
    return _env


@pytest.fixture
def cli(tmp_path):
    """Run the program under a name: ``cli("apptainer", "version")``; ``env=`` adds variables,
    ``cwd=`` defaults to the test's tmp_path."""
    launchers = {name: BIN / name for name in (*NAMES, "run-singularity")}
    missing = [str(p) for p in launchers.values() if not p.exists()]
    if missing:
        pytest.skip(f"launchers missing (run ./setup.sh): {', '.join(missing)}")

    def run(name: str, *args: str | os.PathLike, env: dict[str, str] | None = None, cwd=None) -> Ran:
        r = subprocess.run([str(launchers[name]), *map(str, args)], capture_output=True, text=True,
                           env=_env(env), cwd=cwd or tmp_path, timeout=120)
        return Ran(r.returncode, r.stdout, r.stderr)

    return run


HELP = "Prints its arguments.\n"
RUNSCRIPT = '#!/bin/sh\necho "runscript args: $*"\n'


@pytest.fixture(scope="module")
def busybox_image(tmp_path_factory):
    """``{"sandbox": dir, "simg": file}``: busybox with a runscript and a runscript help."""
    if not shutil.which("mksquashfs"):
        pytest.skip("mksquashfs not installed (setup.sh installs squashfs-tools)")
    base = tmp_path_factory.mktemp("cli-image")
    sb = base / "sandbox"
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home", "var/tmp", ".singularity.d/env"):
        (sb / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", sb / "bin" / "busybox")
    for applet in ("sh", "echo", "true", "cat"):
        (sb / "bin" / applet).symlink_to("busybox")
    (sb / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (sb / ".singularity.d" / "runscript").write_text(RUNSCRIPT)
    (sb / ".singularity.d" / "runscript").chmod(0o755)
    (sb / ".singularity.d" / "runscript.help").write_text(HELP)
    (sb / ".singularity.d" / "labels.json").write_text('{\n\t"A": "1"\n}\n')
    (sb / "singularity").symlink_to(".singularity.d/runscript")
    sqfs = base / "img.sqfs"
    subprocess.run(["mksquashfs", str(sb), str(sqfs), "-noappend", "-quiet", "-no-progress", "-all-root"],
                   check=True, stdout=subprocess.DEVNULL)
    simg = base / "img.simg"
    simg.write_bytes(b"#!/usr/bin/env run-singularity\n" + sqfs.read_bytes())
    simg.chmod(0o755)
    sqfs.unlink()
    return {"sandbox": sb, "simg": simg}
