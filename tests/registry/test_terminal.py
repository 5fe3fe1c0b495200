"""``sbuild pull`` on a terminal: per-layer tqdm bars and the ``--docker-login`` prompts,
run as a real process on a pseudo-terminal (its controlling terminal)."""

from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import images as I
import pytest
import servers
from .conftest import REPO

SBUILD = Path(sys.executable).with_name("sbuild")
# make the pty the child's controlling terminal (getpass reads /dev/tty), then run sbuild
_ON_TTY = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
           "os.execv(sys.argv[1], sys.argv[1:])")


class Terminal:
    """A process whose stdin, stdout and stderr are one pseudo-terminal."""

    def __init__(self, argv: list[str], env: dict[str, str], size: tuple[int, int] = (40, 120)) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        os.set_blocking(self.master, False)
        self.proc = subprocess.Popen([sys.executable, "-c", _ON_TTY, *argv], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, start_new_session=True, close_fds=True)
        os.close(slave)
        self.output = b""

    def read_until(self, needle: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} on the terminal; got {self.output[-2000:]!r}")
            if not self._read(0.2) and self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode} before {needle!r}: {self.output[-2000:]!r}")

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the other side is closed
            return False
        self.output += data
        return bool(data)

    def write(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        while self._read(0.05):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        os.close(self.master)
        return self.proc.wait()


@pytest.fixture
def term_env(tmp_path):
    if not SBUILD.exists():
        pytest.skip(f"needs the sbuild entry point at {SBUILD} (./setup.sh)")
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "TERM": "xterm", "COLUMNS": "120",
            "LINES": "40", "APPTAINER_CACHEDIR": str(tmp_path / "cache"), "LANG": "C.UTF-8"}


def _layer_digests(layout: Path, tag: str) -> list[str]:
    idx = json.loads((layout / "index.json").read_text())
    desc = next(m for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    manifest = json.loads((layout / "blobs/sha256" / desc["digest"].split(":")[1]).read_bytes())
    return [layer["digest"] for layer in manifest["layers"]]


@pytest.mark.parametrize("size", [(40, 120), (0, 0)], ids=["120-columns", "no-size"])
def test_pull_draws_a_bar_per_layer_on_a_terminal(registry, layout, tmp_path, term_env, size):
    target = tmp_path / "box"
    t = Terminal([str(SBUILD), "pull", "--arch", "amd64", "--sandbox", str(target),
                  f"docker://{registry.host}/{REPO}:1.0"], term_env, size)
    status = t.finish()
    text = t.output.decode("utf-8", "replace")
    assert status == 0, text
    for digest in _layer_digests(layout, "1.0"):
        assert digest[7:19] in text  # one bar per layer, named by its digest
    assert "100%" in text and "\r" in text  # drawn and redrawn in place: a progress bar
    assert (target / "hello.txt").read_text() == "hello from layer 3\n"


def test_no_bars_without_a_terminal(sbuild, registry, tmp_path, monkeypatch):
    monkeypatch.setenv("APPTAINER_CACHEDIR", str(tmp_path / "cache"))
    r = sbuild("pull", "--arch", "amd64", "--sandbox", tmp_path / "box", f"docker://{registry.host}/{REPO}:1.0")
    assert r.status == 0, r.err
    assert "%|" not in r.err and "\r" not in r.err


def test_docker_login_asks_on_the_terminal(basic_registry, tmp_path, term_env):
    target = tmp_path / "box"
    t = Terminal([str(SBUILD), "pull", "--docker-login", "--arch", "amd64", "--sandbox", str(target),
                  f"docker://{basic_registry.host}/{REPO}:1.0"], term_env)
    t.read_until(b"Username: ")
    t.write(servers.USER + "\n")
    t.read_until(b"Password: ")
    t.write(servers.PASSWORD + "\n")
    status = t.finish()
    text = t.output.decode("utf-8", "replace")
    assert status == 0, text
    assert servers.PASSWORD not in text  # not echoed
    assert I.file_tree(target)["hello.txt"][4] == b"hello from layer 3\n"


def test_docker_login_without_a_terminal_is_a_usage_error(sbuild, basic_registry, tmp_path):
    r = sbuild("pull", "--docker-login", "--sandbox", tmp_path / "box", f"docker://{basic_registry.host}/{REPO}:1.0")
    assert r.status == 2 and "needs a terminal" in r.err
    assert not (tmp_path / "box").exists()
