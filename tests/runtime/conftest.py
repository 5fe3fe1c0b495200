"""Fixtures for the runtime tests: each test runs as root and as an unprivileged user.

``profile`` is parametrised over both; it runs the real ``sbuild`` CLI (a subprocess, as
that user) and Python snippets. ``images`` builds small busybox images once per profile in a
directory the profile's user owns: a sandbox with a ``/.singularity.d`` layout, .simg, raw
squashfs, SIF (siftool) and, for root, an ext3 image. ``leaks`` (autouse) fails a test that
leaves a mount, a loop device or a marked process behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
if not Path(SBUILD).exists():  # running from an environment without the venv's script
    SBUILD, PYTHON = shutil.which("sbuild") or SBUILD, sys.executable
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = ("sh", "true", "false", "echo", "cat", "ls", "id", "env", "sleep", "ps", "touch", "rm", "mkdir",
           "pwd", "kill", "test", "[", "grep", "wc", "head", "chown", "stat", "readlink", "whoami", "mount",
           "hostname", "tty", "sort", "seq")

ENV_90 = """#!/bin/sh
# Custom environment shell code should follow

export FROM_IMAGE=yes
export MYVAR=image
"""
RUNSCRIPT = '#!/bin/sh\n\necho "runscript args: $*"\n'
TESTSCRIPT = '#!/bin/sh\n\necho "testing in $SINGULARITY_NAME"\nexit 5\n'
STARTSCRIPT = '#!/bin/sh\n\necho started > /dev/shm/started\nexec sleep 3456.5\n'


@dataclass
class Result:
    status: int
    out: str
    err: str


@dataclass
class Profile:
    name: str  # root | user
    uid: int
    gid: int
    home: Path
    user: object | None  # the UnprivilegedUser, for "user"
    cache: Path | None = None  # SBUILD_CACHEDIR for this session (removed with the images)
    # XDG_RUNTIME_DIR for this session: its instances, apart from other test workers' (instance list)
    runtime: Path | None = None

    def _argv(self, *cmd: str) -> list[str]:
        cache = [f"SBUILD_CACHEDIR={self.cache}"] if self.cache else []
        if self.runtime:
            cache.append(f"XDG_RUNTIME_DIR={self.runtime}")
        if self.user is None:
            return ["env", "-i", "HOME=/root", "USER=root", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                    "LANG=C.UTF-8", *cache, *cmd]
        return self.user.argv("env", *[f"{k}={v}" for k, v in self.user.env().items()], *cache, *cmd)

    def popen(self, *args: str | os.PathLike, cwd=None, **kw) -> subprocess.Popen:
        return subprocess.Popen(self._argv(SBUILD, *map(str, args)), cwd=cwd or self.home, **kw)

    def sbuild(self, *args: str | os.PathLike, input: str | None = None, cwd=None, env: dict | None = None,
               timeout: float = 60) -> Result:
        extra = [f"{k}={v}" for k, v in (env or {}).items()]
        argv = self._argv(*(["env", *extra] if extra else []), SBUILD, *map(str, args))
        r = subprocess.run(argv, input=input, capture_output=True, text=True, cwd=cwd or self.home, timeout=timeout,
                           stdin=None if input is not None else subprocess.DEVNULL)
        return Result(r.returncode, r.stdout, r.stderr)

    def python(self, code: str, timeout: float = 60) -> Result:
        r = subprocess.run(self._argv(PYTHON, "-c", code), capture_output=True, text=True, cwd=self.home,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        return Result(r.returncode, r.stdout, r.stderr)

    def own(self, path: Path) -> None:
        if self.user is not None:
            self.user.chown(path)


def _sandbox(path: Path) -> Path:
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home", "var/tmp", ".singularity.d/env",
              ".singularity.d/actions", "scif/apps/hello/scif/env", "opt"):
        (path / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        (path / "bin" / applet).symlink_to("busybox")
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (path / "etc" / "group").write_text("root:x:0:\n")
    (path / "etc" / "hosts").write_text("")
    files = {
        ".singularity.d/env/01-base.sh": "#!/bin/sh\nexport ORDER=01\n",
        ".singularity.d/env/90-environment.sh": ENV_90,
        ".singularity.d/env/95-apps.sh": '#!/bin/sh\nif [ -n "${SINGULARITY_APPNAME:-}" ]; then '
                                         'export APPVAR=$SINGULARITY_APPNAME; fi\n',
        ".singularity.d/env/99-base.sh": '#!/bin/sh\nexport ORDER="$ORDER 99"\n'
                                         'if [ -z "${PS1:-}" ]; then PS1="Apptainer> "; fi\n',
        ".singularity.d/runscript": RUNSCRIPT,
        ".singularity.d/test": TESTSCRIPT,
        ".singularity.d/startscript": STARTSCRIPT,
        "scif/apps/hello/scif/runscript": '#!/bin/sh\n\necho "hello app $APPVAR"\n',
        "scif/apps/hello/scif/test": "#!/bin/sh\n\nexit 0\n",
    }
    for rel, text in files.items():
        (path / rel).write_text(text)
        (path / rel).chmod(0o755)
    (path / "singularity").symlink_to(".singularity.d/runscript")
    return path


def _build_images(base: Path, profile: Profile) -> dict[str, Path]:
    sb = _sandbox(base / "sandbox")
    out = {"sandbox": sb}
    sqfs = base / "img.sqfs"
    subprocess.run(["mksquashfs", str(sb), str(sqfs), "-noappend", "-quiet", "-no-progress"], check=True,
                   stdout=subprocess.DEVNULL)
    out["squashfs"] = sqfs
    simg = base / "img.simg"
    simg.write_bytes(b"#!/usr/bin/env run-singularity\n" + sqfs.read_bytes())
    simg.chmod(0o755)
    out["simg"] = simg
    if shutil.which("siftool"):
        sif = base / "img.sif"
        subprocess.run(["siftool", "new", str(sif)], check=True, capture_output=True)
        subprocess.run(["siftool", "add", str(sif), str(sqfs), "--datatype", "4", "--parttype", "2",
                        "--partfs", "1", "--partarch", "2"], check=True, capture_output=True)
        out["sif"] = sif
    ext3 = base / "img.ext3"
    subprocess.run(["truncate", "-s", "16M", str(ext3)], check=True)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext3", "-d", str(sb), str(ext3)], check=True)
    out["ext3"] = ext3
    profile.own(base)
    return out


_CACHE: dict[str, tuple[Profile, dict[str, Path], Path]] = {}
_WORKDIRS: list[Path] = []  # this test's work dirs, for the leak check


@pytest.fixture(scope="session")
def _profiles(request):
    yield _CACHE
    for _profile, _images, base in _CACHE.values():
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["root", "user"])
def profile(request, _profiles) -> Profile:
    if os.geteuid() != 0:
        pytest.skip("the runtime tests create an unprivileged user and images as root")
    if request.param not in _profiles:
        if request.param == "root":
            prof = Profile("root", 0, 0, Path("/root"), None)
        else:
            user = request.getfixturevalue("unprivileged_user")
            prof = Profile("user", user.uid, user.gid, user.home, user)
        base = Path(tempfile.mkdtemp(prefix=f"sbuild-rt-{request.param}-", dir="/tmp"))
        base.chmod(0o755)
        prof.cache, prof.runtime = base / "cache", base / "run"
        prof.runtime.mkdir(mode=0o700)
        _profiles[request.param] = (prof, _build_images(base, prof), base)
    return _profiles[request.param][0]


@pytest.fixture
def images(profile, _profiles) -> dict[str, Path]:
    return _profiles[profile.name][1]


@pytest.fixture
def workdir(profile) -> Path:
    """A fresh directory the profile's user owns (removed afterwards)."""
    d = Path(tempfile.mkdtemp(prefix="sbuild-rt-work-", dir="/tmp"))
    _WORKDIRS.append(d)
    d.chmod(0o755)
    profile.own(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def marked_processes(marker: str, commands_only: bool = False) -> list[int]:
    """PIDs whose command line holds ``marker`` (only non-sbuild ones with ``commands_only``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            if marker.encode() in cmdline and not (commands_only and b"sbuild" in cmdline):
                found.append(int(entry))
        except OSError:
            pass
    return found


def _loops_on(prefix: str | tuple[str, ...]) -> list[str]:
    found = []
    for block in Path("/sys/block").glob("loop*"):
        try:
            backing = (block / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(prefix):
            found.append(f"{block.name}: {backing}")
    return found


def _mounts_on(words: tuple[str, ...]) -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if any(w in line for w in words)]


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(autouse=True)
def leaks(request):
    """After each test: no mounts, loop devices or marked processes of ours remain."""
    yield
    if "profile" not in request.fixturenames:
        return
    words = ("/tmp/sbuild-rt-", "/run/sbuild/mnt", "/run/sbuild/stage", "/tmp/sbuild-1", "sbuild-rt-")
    # loop devices on this session's images and work dirs (other sessions may run these tests too)
    ours = tuple(f"{path}/" for path in [*(base for _p, _i, base in _CACHE.values()), *_WORKDIRS])
    _WORKDIRS.clear()
    assert wait_until(lambda: not _loops_on(ours)), _loops_on(ours)
    assert not _mounts_on(words), _mounts_on(words)
    for marker in ("3456.5", "2345.5"):
        assert wait_until(lambda: not marked_processes(marker)), marked_processes(marker)


@pytest.fixture
def rt():
    """Helpers for tests (this directory's modules cannot import conftest under importlib mode)."""
    import types

    return types.SimpleNamespace(marked=marked_processes, wait_until=wait_until, sbuild=SBUILD, python=PYTHON)
