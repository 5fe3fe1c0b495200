"""Fixtures for the package-agent tests: the repositories (built once per session, offline),
the HTTP server on 127.0.0.1 that serves them, and ``builder``: run ``sbuild build`` as root
or as the unprivileged test user (subordinate ids), in a fresh work directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import agentfixtures as fixtures  # noqa: E402 - beside this file

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")
_TOOLS = {"rpm": ("rpmbuild", "rpmsign", "createrepo_c", "gpg"), "arch": ("bsdtar", "zstd", "repo-add", "pacman-key")}


def _need(group: str) -> None:
    missing = [t for t in _TOOLS[group] if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: ./setup.sh installs them (rpm, createrepo-c, "
                    "pacman-package-manager, libarchive-tools, zstd, gnupg)")


@pytest.fixture(scope="session")
def repo_root():
    """The session's repository tree (world-readable, so that the test user's builds can read it)."""
    if os.geteuid() != 0:
        pytest.skip("the agent tests build and serve their repositories as root")
    work = Path(tempfile.mkdtemp(prefix="sbuild-agents-", dir="/tmp"))
    work.chmod(0o755)
    fixtures.make_keys(work / "gnupg")
    yield work
    for home in ("gnupg", "pacman-gnupg"):  # the agents gpg and pacman-key started
        if (work / home).is_dir():
            subprocess.run(["gpgconf", "--homedir", str(work / home), "--kill", "all"], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def rpm_repos(repo_root):
    """``repo_root/rpm-{plain,signed,othersig,corrupt}`` (see ``fixtures.make_rpm_repos``)."""
    _need("rpm")
    if not (repo_root / "rpm-plain").is_dir():
        fixtures.make_rpm_repos(repo_root, repo_root / "gnupg")
        subprocess.run(["chmod", "-R", "a+rX", str(repo_root)], check=True)
    return repo_root


@pytest.fixture(scope="session")
def pacman_repos(repo_root):
    """``repo_root/arch-{plain,signed,badsig,corrupt}`` and the ``pacman-gnupg`` keyring."""
    _need("arch")
    if not (repo_root / "arch-plain").is_dir():
        fprs = {}
        env = {**os.environ, "GNUPGHOME": str(repo_root / "gnupg")}
        for name, uid in (("sbt", fixtures.KEY_UID), ("other", fixtures.OTHER_UID)):
            out = fixtures.run("gpg", "--with-colons", "--fingerprint", uid, env=env).stdout
            fprs[name] = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr"))
        fixtures.make_pacman_repos(repo_root, repo_root / "gnupg", fprs)
        subprocess.run(["chmod", "-R", "a+rX", str(repo_root)], check=True)
    return repo_root


@pytest.fixture(scope="session")
def server(repo_root):
    srv = fixtures.Server(repo_root)
    yield srv
    srv.stop()


class Builder:
    """``sbuild build`` (and other commands) as ``who`` ("root" or "user") in ``work``."""

    def __init__(self, who: str, work: Path, user) -> None:  # noqa: ANN001 - conftest's UnprivilegedUser
        self.who, self.work, self.user = who, work, user

    def run(self, *args, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        args = [str(a) for a in args]
        extra = {"no_proxy": "127.0.0.1,localhost", **(env or {})}
        if self.user is None:
            full = {k: v for k, v in os.environ.items() if k not in ("GPG", "INCLUDE")}
            full.update(extra)
            return subprocess.run([sys.executable, "-m", "builder", *args], cwd=self.work, capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL, timeout=300, env=full)
        return self.user.run(SBUILD, *args, cwd=str(self.work), timeout=300, stdin=subprocess.DEVNULL, env=extra)

    def build(self, recipe: str, target: str = "out", *flags: str, env=None, **build_args: str):  # noqa: ANN001
        argv = ["build", "--sandbox", *flags]
        for key, value in build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        return self.run(*argv, self.work / target, RECIPES / recipe if "/" not in recipe else recipe, env=env)


@pytest.fixture(params=["root", "user"])
def builder(request):
    """A ``Builder`` for root and for the unprivileged test user (its sandbox removed as root)."""
    if os.geteuid() != 0:
        pytest.skip("run as root: the tests build as root and as a created unprivileged user")
    work = Path(tempfile.mkdtemp(prefix="sbuild-agent-", dir="/tmp"))
    user = None
    if request.param == "user":
        user = request.getfixturevalue("unprivileged_user")
        user.chown(work)
    try:
        yield Builder(request.param, work, user)
    finally:
        shutil.rmtree(work, ignore_errors=True)
