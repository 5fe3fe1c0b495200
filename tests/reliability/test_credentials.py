"""Registry credentials never show: not in any output at any verbosity (``-d``, ``SBUILD_DEBUG``,
``-v``), not in error messages, labels, the stored recipe or any file of the image, whether
they came from a docker config.json, the environment, Apptainer's credential flags or
``--docker-login`` typed on a terminal; a wrong password fails with a clear error that does
not echo it either. Against a real docker-registry with htpasswd auth holding a runnable
image, so the recipe's ``%post`` can dump its environment into the image."""

from __future__ import annotations

import base64
import fcntl
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


def _with_tty(argv: list[str], env: dict, answers: list[tuple[bytes, bytes]], timeout: float = 240) -> tuple[int, str]:
    """Run ``argv`` on a new pseudo-terminal, typing each answer once its prompt appears (so the
    terminal's own echo, off for the password, is what getpass set)."""
    master, slave = os.openpty()

    def ctty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, preexec_fn=ctty)
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


def _build(how: str, ref: str, out: Path, tmp_path: Path, password: str, debug: str) -> tuple[int, str]:
    recipe = tmp_path / "cred.def"
    recipe.write_text(RECIPE.format(ref=ref))
    env = _env(tmp_path, **({"SBUILD_DEBUG": "1"} if debug == "SBUILD_DEBUG" else {}))
    verbosity = ["-d"] if debug == "-d" else []
    argv = [APPTAINER, *verbosity, "build", "--sandbox"]
    if how == "config.json":
        auth = base64.b64encode(f"{servers.USER}:{password}".encode()).decode()
        (tmp_path / "home" / ".docker").mkdir(exist_ok=True)
        (tmp_path / "home" / ".docker" / "config.json").write_text(json.dumps({"auths": {ref.split("/")[0]:
                                                                                          {"auth": auth}}}))
    elif how == "env":
        env.update(APPTAINER_DOCKER_USERNAME=servers.USER, APPTAINER_DOCKER_PASSWORD=password)
    elif how == "flags":
        argv += ["--docker-username", servers.USER, "--docker-password", password]
    elif how == "docker-login":
        argv += ["--docker-login"]
        return _with_tty([*argv, out, recipe], env, [(b"Username: ", servers.USER.encode() + b"\n"),
                                                    (b"Password: ", password.encode() + b"\n")])
    r = subprocess.run([*argv, out, recipe], env=env, capture_output=True, text=True, timeout=240,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout + r.stderr


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
def test_credentials_never_show_in_output_or_image(auth_registry, tmp_path, how, debug):
    if how == "docker-login" and debug == "SBUILD_DEBUG":
        pytest.skip("one terminal run is enough")
    ref = f"{auth_registry.host}/{REPO}:1.0"
    out = tmp_path / "sb"
    status, text = _build(how, ref, out, tmp_path, servers.PASSWORD, debug)
    no_internal_error(text)
    assert status == 0, text[-3000:]
    for secret in _secrets(servers.PASSWORD):
        assert secret.decode() not in text, f"{secret!r} in the output"
    assert (out / "built.txt").read_text() == "built\n"  # %post ran, and dumped its environment
    assert "Owner" in (out / ".singularity.d" / "labels.json").read_text()
    _no_secret_in_tree(out, servers.PASSWORD)


@pytest.mark.parametrize("how", HOW)
def test_a_wrong_password_fails_clearly_without_echoing_it(auth_registry, tmp_path, how):
    ref = f"{auth_registry.host}/{REPO}:1.0"
    out = tmp_path / "sb"
    status, text = _build(how, ref, out, tmp_path, WRONG, "-d")
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


@pytest.mark.parametrize("password", [servers.PASSWORD, WRONG], ids=["right", "wrong"])
def test_credentials_never_show_rootless(auth_registry, unprivileged_user, password):
    """The same as the unprivileged user (a rootless build: %post in the user namespace)."""
    import tempfile

    from base.fsutil import remove_tree

    work = Path(tempfile.mkdtemp(prefix="sbuild-rel-cred-", dir="/tmp"))
    try:
        work.chmod(0o755)
        ref = f"{auth_registry.host}/{REPO}:1.0"
        (work / "cred.def").write_text(RECIPE.format(ref=ref))
        unprivileged_user.chown(work)
        r = unprivileged_user.run(APPTAINER, "-d", "build", "--sandbox", work / "sb", work / "cred.def", timeout=240,
                                  env={"APPTAINER_DOCKER_USERNAME": servers.USER, "APPTAINER_DOCKER_PASSWORD": password,
                                       "SBUILD_CACHEDIR": str(work / "cache"), "SBUILD_DEBUG": "1"})
        text = r.stdout + r.stderr
        no_internal_error(text)
        for secret in _secrets(password):
            assert secret.decode() not in text
        if password == WRONG:
            assert r.returncode != 0 and not (work / "sb").exists()
        else:
            assert r.returncode == 0, text[-2000:]
            assert (work / "sb" / "built.txt").exists()
            _no_secret_in_tree(work / "sb", password)
    finally:
        remove_tree(work)
