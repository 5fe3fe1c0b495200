"""Fixtures shared by every test area.

Each area (recipe, runtime, images, registry, build) keeps its own fixtures in
``tests/<area>/conftest.py``; only what several areas use lives here.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.cli import main

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance"
RECIPES = ROOT / "recipes"


# Builds outside tests/cache run every step: their assertions read the steps' output.
# (tests/cache removes this for its own builds; UnprivilegedUser.env passes it on.)
os.environ.setdefault("SBUILD_BUILD_CACHE", "off")


@pytest.fixture(scope="session")
def conformance() -> Path:
    """``../shared/conformance``, or a skip that says why it is missing."""
    if not CONFORMANCE.is_dir():
        pytest.skip(f"conformance data not found at {CONFORMANCE} (it sits beside the clone in CI)")
    return CONFORMANCE


@dataclass
class CliResult:
    status: int
    out: str
    err: str


@pytest.fixture
def sbuild():
    """Run ``sbuild ARGS…`` in this process and capture its status, stdout and stderr."""

    def run(*args: str | os.PathLike) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([str(a) for a in args])
        return CliResult(status, out.getvalue(), err.getvalue())

    return run


# The unprivileged account for tests that must run without root (rootless runtime and builds):
# created once per session when missing, with an /etc/subuid and /etc/subgid range, and checked
# once for access to this checkout (see _checkout_unreadable); ``nobody`` is the
# same check for tests that run as uid 65534.


@dataclass(frozen=True)
class UnprivilegedUser:
    """An ordinary user: ``name``, ``uid``, ``gid``, ``home``; ``run`` runs a command as them."""

    name: str
    uid: int
    gid: int
    home: Path
    subuid: tuple[int, int] | None

    def argv(self, *cmd: str | os.PathLike) -> list[str]:
        """``cmd`` wrapped to run as this user (setpriv: no setuid helper, no PAM session)."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "--reset-env", "--", *map(str, cmd)]

    def env(self, **extra: str) -> dict[str, str]:
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
               "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
        if "SBUILD_BUILD_CACHE" in os.environ:
            env["SBUILD_BUILD_CACHE"] = os.environ["SBUILD_BUILD_CACHE"]
        env.update(extra)
        return env

    def run(self, *cmd: str | os.PathLike, check: bool = False, timeout: float = 120, env=None, **kw):
        """Run ``cmd`` as the user (``subprocess.run``; text mode, output captured by default)."""
        import subprocess

        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.argv("env", *[f"{k}={v}" for k, v in self.env(**(env or {})).items()], *cmd),
                              check=check, timeout=timeout, cwd=kw.pop("cwd", str(self.home)), **kw)

    def chown(self, path: str | os.PathLike) -> None:
        """Give ``path`` (recursively, symlinks not followed) to the user."""
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.uid, self.gid)
        os.lchown(path, self.uid, self.gid)


def _ensure_subids(path: str, name: str, start: int, count: int) -> tuple[int, int]:
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        parts = line.split(":")
        if len(parts) == 3 and parts[0] == name:
            return int(parts[1]), int(parts[2])
    with open(path, "a") as f:
        f.write(f"{name}:{start}:{count}\n")
    return start, count


def _closed_parent(path: Path) -> Path | None:
    """The first directory from ``/`` down to ``path`` that others cannot traverse (no o+x)."""
    for d in [*reversed(path.parents), path]:
        if not d.stat().st_mode & 0o001:
            return d
    return None


def _checkout_unreadable(who: str, argv: list[str]) -> str | None:
    """Why ``who`` (run through the ``argv`` prefix) cannot use this checkout, or None.

    Checks once what the unprivileged tests do: run this checkout's Python, import sbuild
    from it and read a recipe. A checkout cloned under /root or below any 0700 directory
    would otherwise fail each of them with ``Permission denied``.
    """
    import subprocess

    pythons = dict.fromkeys([sys.executable, str(ROOT / ".venv" / "bin" / "python")])
    probe = f"import builder.cli, runtime; open({str(RECIPES / 'hello.def')!r}).close()"
    for python in (p for p in pythons if Path(p).exists()):
        r = subprocess.run([*argv, python, "-c", probe], capture_output=True, text=True, cwd="/", timeout=60)
        if r.returncode != 0:
            detail = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
            closed = _closed_parent(ROOT)
            where = f" ({closed} is mode {closed.stat().st_mode & 0o777:04o})" if closed else ""
            return (f"the unprivileged user {who} cannot use this checkout {ROOT}{where}: {python}: {detail}; "
                    "clone into a world-readable directory, e.g. /work or /srv, or chmod o+x its parents")
    return None


@pytest.fixture(scope="session")
def nobody() -> tuple[int, int]:
    """``(uid, gid)`` of ``nobody`` (65534) for tests that run sbuild as a user with no
    account of its own; skips, saying why, without root or setpriv or when nobody cannot use
    this checkout."""
    import shutil

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to switch to an unprivileged user")
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "-i", f"PATH={os.environ['PATH']}"]
    problem = _checkout_unreadable("nobody (65534)", argv)
    if problem:
        pytest.skip(problem)
    return 65534, 65534


@pytest.fixture(scope="session")
def unprivileged_user() -> UnprivilegedUser:
    """The user ``sbtester`` (created when missing, with subordinate ids 200000-265535).

    Skips, saying why, when the tests do not run as root, the tools are missing, or the user
    cannot read this checkout or run its Python (and how to fix that).
    """
    import pwd
    import shutil
    import subprocess

    name = "sbtester"
    if os.geteuid() != 0:
        pytest.skip("creating the unprivileged test user needs root")
    for tool in ("setpriv", "useradd"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is missing (util-linux / passwd)")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        r = subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name],
                           capture_output=True, text=True)
        if r.returncode != 0 and "already exists" not in r.stderr:
            pytest.skip(f"cannot create user {name}: {r.stderr.strip()}")
        entry = pwd.getpwnam(name)
    home = Path(entry.pw_dir)
    if not home.is_dir():
        home.mkdir(mode=0o755, parents=True)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    sub = _ensure_subids("/etc/subuid", name, 200000, 65536)
    _ensure_subids("/etc/subgid", name, 200000, 65536)
    user = UnprivilegedUser(name, entry.pw_uid, entry.pw_gid, home, sub)
    problem = _checkout_unreadable(name, user.argv("env", *[f"{k}={v}" for k, v in user.env().items()]))
    if problem:
        pytest.skip(problem)
    return user


# Reliability scenarios (issue 9): each test marked ``scenario(CLASS)`` is counted by class and
# privilege mode when SBUILD_RELIABILITY_JSON names a file (tests/reliability/report.py sets it).


def pytest_itemcollected(item):
    mark = item.get_closest_marker("scenario")
    if mark is not None:
        item.user_properties.append(("scenario", mark.args[0]))


_SCENARIOS: list[dict] = []


def pytest_runtest_logreport(report):
    props = dict(report.user_properties)
    if "scenario" not in props or not os.environ.get("SBUILD_RELIABILITY_JSON"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _SCENARIOS.append({"class": props["scenario"], "test": report.nodeid, "outcome": report.outcome,
                           "seconds": round(report.duration, 3)})


def pytest_sessionfinish(session):
    target = os.environ.get("SBUILD_RELIABILITY_JSON")
    if target and not hasattr(session.config, "workerinput"):  # the xdist controller or a plain run
        import json

        Path(target).write_text(json.dumps(_SCENARIOS, indent=1))
