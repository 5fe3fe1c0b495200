"""Registry credentials never show: not in any output at any verbosity (``-d``, ``SBUILD_DEBUG``,
``-v``), not in error messages, labels, the stored recipe or any file of the image, whether
they came from a docker config.json, the environment, Apptainer's credential flags or
``--docker-login`` typed on a terminal; a wrong password fails with a clear error that does
not echo it either. Against a real docker-registry with htpasswd auth holding a runnable
image, so the recipe's ``%post`` can dump its environment into the image."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import select
import subprocess
import termios
import time
from pathlib import Path

import pytest

import images
import runnable
import servers
from relhelpers import APPTAINER, REPO, SBUILD, no_internal_error

pytestmark = [pytest.mark.scenario("credentials"), pytest.mark.slow, pytest.mark.timeout(300)]
WRONG = "wr0ng-Secret-77"
RECIPE = """Bootstrap: docker
From: {ref}

%post
    env > /post-env.txt
    echo built > /built.txt

%labels
    Owner me
"""


def _secrets(password: str) -> list[bytes]:
    pair = f"{servers.USER}:{password}".encode()
    return [password.encode(), base64.b64encode(pair), base64.urlsafe_b64encode(pair)]


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    """An htpasswd docker-registry holding a runnable image as ``test/hand:1.0``."""
    for tool in ("docker-registry", "skopeo", "htpasswd"):
        if not __import__("shutil").which(tool):
            pytest.skip(f"needs {tool}")
    work = tmp_path_factory.mktemp("reg-auth-run")
    layout = images.write_layout(work / "oci", {"1.0": images.Image(runnable.runnable_layers(), {})})
    pw = servers.htpasswd_file(work / "htpasswd")
    reg = servers.start_registry(work / "reg", auth={"htpasswd": {"realm": "basic-realm", "path": str(pw)}})
    try:
        servers.skopeo_push(layout, "1.0", f"{reg.host}/{REPO}:1.0", creds=f"{servers.USER}:{servers.PASSWORD}")
        yield reg
    finally:
        reg.stop()


def _env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if "DOCKER" not in k and "CACHEDIR" not in k}
    env.update(HOME=str(tmp_path / "home"), SBUILD_CACHEDIR=str(tmp_path / "cache"), **extra)
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


class _Who:
    """Who runs the commands: root in ``tmp_path``, or the unprivileged user (a rootless
    build: %post in a user namespace) in a directory of theirs under /tmp, with their own HOME
    (its docker config.json, its token file) and cache."""

    def __init__(self, mode: str, tmp_path: Path, request) -> None:
        self.user = request.getfixturevalue("unprivileged_user") if mode == "rootless" else None
        self.base = request.getfixturevalue("shared_dir") if self.user else tmp_path
        (self.base / "home").mkdir(exist_ok=True)

    def argv_env(self, argv: list, **extra: str) -> tuple[list[str], dict]:
        """``argv`` and the environment to run it with (HOME, cache and ``extra`` set)."""
        env = _env(self.base, **extra)
        argv = [str(a) for a in argv]
        if self.user is None:
            return argv, env
        self.user.chown(self.base)
        mine = {"HOME": env["HOME"], "SBUILD_CACHEDIR": env["SBUILD_CACHEDIR"], **extra}
        return self.user.argv("env", *[f"{k}={v}" for k, v in self.user.env(**mine).items()], *argv), env

    def run(self, argv: list, **extra: str) -> tuple[int, str]:
        argv, env = self.argv_env(argv, **extra)
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
                           cwd=self.base)
        return r.returncode, r.stdout + r.stderr


@pytest.fixture(params=["root", "rootless"])
def who(request, tmp_path):
    return _Who(request.param, tmp_path, request)


def _with_tty(argv: list[str], env: dict, answers: list[tuple[bytes, bytes]], timeout: float = 240,
              cwd: str | None = None, owner: int | None = None) -> tuple[int, str]:
    """Run ``argv`` on a new pseudo-terminal, typing each answer once its prompt appears (so the
    terminal's own echo, off for the password, is what getpass set)."""
    master, slave = os.openpty()
    if owner is not None:  # the user's own terminal, as a login would give them
        os.fchown(slave, owner, -1)

    def ctty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, preexec_fn=ctty, cwd=cwd)
    os.close(slave)
    seen, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if answers and answers[0][0] in seen:
                os.write(master, answers.pop(0)[1])
            if not ready and proc.poll() is not None:
                break
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return status, seen.decode(errors="replace")


def _build(how: str, ref: str, out: Path, who: _Who, password: str, debug: str) -> tuple[int, str]:
    recipe = who.base / "cred.def"
    recipe.write_text(RECIPE.format(ref=ref))
    extra = {"SBUILD_DEBUG": "1"} if debug == "SBUILD_DEBUG" else {}
    verbosity = ["-d"] if debug == "-d" else []
    argv = [APPTAINER, *verbosity, "build", "--sandbox"]
    if how == "config.json":
        auth = base64.b64encode(f"{servers.USER}:{password}".encode()).decode()
        (who.base / "home" / ".docker").mkdir(exist_ok=True)
        (who.base / "home" / ".docker" / "config.json").write_text(json.dumps({"auths": {ref.split("/")[0]:
                                                                                          {"auth": auth}}}))
    elif how == "env":
        extra.update(APPTAINER_DOCKER_USERNAME=servers.USER, APPTAINER_DOCKER_PASSWORD=password)
    elif how == "flags":
        argv += ["--docker-username", servers.USER, "--docker-password", password]
    elif how == "docker-login":
        argv, env = who.argv_env([*argv, "--docker-login", out, recipe], **extra)
        return _with_tty(argv, env, [(b"Username: ", servers.USER.encode() + b"\n"),
                                     (b"Password: ", password.encode() + b"\n")], cwd=str(who.base),
                         owner=who.user.uid if who.user else None)
    return who.run([*argv, out, recipe], **extra)


def _no_secret_in_tree(root: Path, password: str) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            for secret in _secrets(password):
                assert secret not in data, f"{secret!r} in {path}"


HOW = ["config.json", "env", "flags", "docker-login"]


@pytest.mark.parametrize("debug", ["-d", "SBUILD_DEBUG"])
@pytest.mark.parametrize("how", HOW)
def test_credentials_never_show_in_output_or_image(auth_registry, who, how, debug):
    if how == "docker-login" and debug == "SBUILD_DEBUG":
        pytest.skip("one terminal run is enough")
    ref = f"{auth_registry.host}/{REPO}:1.0"
    out = who.base / "sb"
    status, text = _build(how, ref, out, who, servers.PASSWORD, debug)
    no_internal_error(text)
    assert status == 0, text[-3000:]
    for secret in _secrets(servers.PASSWORD):
        assert secret.decode() not in text, f"{secret!r} in the output"
    assert (out / "built.txt").read_text() == "built\n"  # %post ran, and dumped its environment
    if who.user is not None:
        assert out.stat().st_uid == who.user.uid  # (built rootless, by the user)
    assert "Owner" in (out / ".singularity.d" / "labels.json").read_text()
    _no_secret_in_tree(out, servers.PASSWORD)


@pytest.mark.parametrize("how", HOW)
def test_a_wrong_password_fails_clearly_without_echoing_it(auth_registry, who, how):
    ref = f"{auth_registry.host}/{REPO}:1.0"
    out = who.base / "sb"
    status, text = _build(how, ref, out, who, WRONG, "-d")
    no_internal_error(text)
    assert status != 0 and ("401" in text or "unauthorized" in text.lower() or "denied" in text.lower()), text[-2000:]
    for secret in _secrets(WRONG):
        assert secret.decode() not in text, f"{secret!r} in the output"
    assert not out.exists()


def test_credentials_never_show_in_a_sif_its_inspect_or_a_verbose_pull(auth_registry, tmp_path):
    ref = f"{auth_registry.host}/{REPO}:1.0"
    recipe = tmp_path / "cred.def"
    recipe.write_text(RECIPE.format(ref=ref))
    env = _env(tmp_path, APPTAINER_DOCKER_USERNAME=servers.USER, APPTAINER_DOCKER_PASSWORD=servers.PASSWORD,
               SBUILD_DEBUG="1")
    sif = tmp_path / "img.sif"
    outputs = []
    for argv in ([SBUILD, "build", "-v", sif, recipe], [SBUILD, "inspect", "--all", sif],
                 [SBUILD, "inspect", "--deffile", sif], [APPTAINER, "-d", "pull", tmp_path / "p.sif", f"docker://{ref}"],
                 [APPTAINER, "-d", "exec", sif, "cat", "/post-env.txt", "/.singularity.d/Singularity"]):
        r = subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=240,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr[-2000:]
        outputs.append(r.stdout + r.stderr)
    text = "\n".join(outputs)
    assert "PATH=" in outputs[-1] and "Bootstrap: docker" in outputs[-1]  # the env dump and recipe were read
    for secret in _secrets(servers.PASSWORD):
        assert secret.decode() not in text
        assert secret not in sif.read_bytes()


# -- library tokens ----------------------------------------------------------------------------

LIB_RECIPE = """Bootstrap: library
From: test/hello/private:1.0
Library: {url}

%post
    env > /post-env.txt
"""


@pytest.fixture(scope="module")
def token_library(tmp_path_factory):
    """The fake library of ``tests/library`` holding a private image (served with its token only)."""
    if not Path("/bin/busybox").is_file():
        pytest.skip("busybox-static not installed")
    import libservers

    from builder.cli import main

    recipe = tmp_path_factory.mktemp("lib") / "hello.def"
    recipe.write_text("Bootstrap: busybox\nMirrorURL: file:///bin/busybox\n\n%runscript\n    echo hello\n")
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main(["build", "--quiet", str(recipe), str(recipe.with_suffix(".sif"))]) == 0
    store = libservers.ObjectStore()
    lib = libservers.Library(store)
    lib.add("test/hello/private", "1.0", libservers.LibImage("img-private", recipe.with_suffix(".sif").read_bytes(),
                                                             private=True))
    try:
        yield lib, libservers.LIB_TOKEN
    finally:
        lib.stop()
        store.stop()


@pytest.mark.parametrize("how", ["env", "token-file"])
@pytest.mark.parametrize("right", [True, False], ids=["right", "wrong"])
def test_library_tokens_never_show(token_library, who, how, right):
    """A private library image pulled (``apptainer -d pull``) and built on (``sbuild build -v``,
    ``SBUILD_DEBUG``) with the token from ``SYLABS_AUTH_TOKEN`` or ``~/.singularity/sylabs-token``:
    the token is in no output, error, image or stored recipe; a wrong one fails without echoing it."""
    lib, token = token_library
    token = token if right else "lib-token-" + WRONG
    extra = {"SBUILD_DEBUG": "1", "APPTAINER_LIBRARY": lib.url}
    if how == "env":
        extra["SYLABS_AUTH_TOKEN"] = token
    else:
        (who.base / "home" / ".singularity").mkdir()
        (who.base / "home" / ".singularity" / "sylabs-token").write_text(token + "\n")
    (who.base / "lib.def").write_text(LIB_RECIPE.format(url=lib.url))
    outputs = [who.run([APPTAINER, "-d", "pull", who.base / "p.sif", "library://test/hello/private:1.0"], **extra),
               who.run([SBUILD, "build", "-v", who.base / "b.sif", who.base / "lib.def"], **extra)]
    if right:
        assert [status for status, _ in outputs] == [0, 0], outputs[-1][1][-2000:]
        outputs.append(who.run([SBUILD, "inspect", "--deffile", who.base / "b.sif"], **extra))
        outputs.append(who.run([APPTAINER, "exec", who.base / "b.sif", "cat", "/post-env.txt"], **extra))
        assert outputs[-1][0] == 0 and "PATH=" in outputs[-1][1], outputs[-1][1][-2000:]
        for sif in ("p.sif", "b.sif"):
            assert token.encode() not in (who.base / sif).read_bytes(), sif
    else:
        for status, text in outputs:
            assert status != 0 and "refused" in text, text[-2000:]
        assert not (who.base / "p.sif").exists() and not (who.base / "b.sif").exists()
    for _, text in outputs:
        no_internal_error(text)
        assert token not in text, text[-2000:]
