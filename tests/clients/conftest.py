"""Fixtures of the real-client tests (issue 13): Snakemake and spython, installed from PyPI with
the test extras, drive sbuild with nothing but ``apptainer`` and ``singularity`` on PATH.

- ``compat_path``: a directory holding ``apptainer`` and ``singularity``, symlinks to this
  checkout's ``sbuild`` launcher (the program answers to the name it is called by), put first
  on the clients' PATH; the venv's ``bin`` (with ``sbuild``) is not on it.
- ``bash_image``: a SIF built by ``sbuild build`` from a sandbox holding the host's busybox and
  ``/bin/bash`` with its libraries (Snakemake runs ``bash -c``), a runscript, a startscript
  and a label; ``/etc/marker`` says ``local``.
- ``client_registry``: a loopback docker-registry holding the same tree as ``test/bash:1.0``,
  whose ``/etc/marker`` says ``registry``.
- ``client``: runs a client's command as root with that PATH and a cache of the test's own.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_TESTS = ROOT / "tests" / "registry"
sys.path.insert(0, str(REGISTRY_TESTS))

import images  # noqa: E402
import runnable  # noqa: E402
import servers  # noqa: E402

VENV = ROOT / ".venv" / "bin"
SBUILD = VENV / "sbuild"
RUNSCRIPT = '#!/bin/sh\necho "runscript got: $*"\n'
STARTSCRIPT = "#!/bin/sh\nexec sleep 2345.5\n"


def need_module(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"needs {name} (pip install -e '.[test]' installs it)")


@pytest.fixture(scope="session")
def compat_path(tmp_path_factory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("the client flows run images as root here")
    bindir = tmp_path_factory.mktemp("compat-bin")
    for name in ("apptainer", "singularity"):
        (bindir / name).symlink_to(SBUILD)
    return bindir


def _tree(root: Path, marker: str) -> Path:
    runnable.runnable_rootfs(root)
    sd = root / ".singularity.d"
    (sd / "env").mkdir(parents=True, exist_ok=True)
    for name, text in (("runscript", RUNSCRIPT), ("startscript", STARTSCRIPT)):
        (sd / name).write_text(text)
        (sd / name).chmod(0o755)
    (sd / "labels.json").write_text('{\n\t"org.example.client": "yes"\n}')
    (root / "etc" / "marker").write_text(marker + "\n")
    return root


@pytest.fixture(scope="session")
def bash_image(tmp_path_factory, compat_path) -> Path:
    base = tmp_path_factory.mktemp("bash-image")
    sandbox = _tree(base / "sandbox", "local")
    image = base / "bash.sif"
    r = subprocess.run([str(SBUILD), "build", str(image), str(sandbox)], capture_output=True, text=True,
                       timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return image


@pytest.fixture(scope="session")
def client_registry(tmp_path_factory, compat_path):
    work = tmp_path_factory.mktemp("client-registry")
    tree = runnable.runnable_layers() + [images.tar_bytes([images.f("etc/marker", "registry\n")])]
    layout = images.write_layout(work / "oci", {"1.0": images.Image(tree, {"Env": ["PATH=/bin"]})})
    with servers.serving(work / "reg", layout, "1.0", "test/bash:1.0") as reg:
        yield reg


@dataclass
class Client:
    env: dict[str, str]
    cwd: Path

    def run(self, *argv: str | os.PathLike, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=self.env, cwd=self.cwd,
                              timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def client(tmp_path, compat_path) -> Client:
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": f"{compat_path}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root",
           "USER": "root", "LANG": "C.UTF-8", "APPTAINER_CACHEDIR": str(tmp_path / "cachedir"),
           "CLIENT_HOST_VAR": "from-the-host"}
    return Client(env, work)
