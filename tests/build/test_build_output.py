"""What a build prints: a progress bar on a terminal, step lines otherwise, --quiet, --json."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "recipes" / "hello.def"

pytestmark = [pytest.mark.skipif(not Path("/bin/busybox").is_file(), reason="apt-get install busybox-static")]


def on_terminal(args, cwd: Path, *, columns: int = 100) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal; (status, stdout, terminal text)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "builder", *map(str, args)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave, cwd=cwd, env={**os.environ, "TERM": "xterm"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read().decode()
    proc.stdout.close()
    status = proc.wait()
    os.close(master)
    return status, out, b"".join(chunks).decode("utf-8", "replace")


def test_terminal_gets_a_bar_with_the_current_step_and_section_output_above_it(tmp_path):
    status, out, term = on_terminal([HELLO, tmp_path / "h.simg"], tmp_path)
    assert status == 0, term
    assert "\r[stage 1] %post |" in term and "| 1/5 [" in term  # bootstrap, %post, metadata, %test, write
    assert "+ echo 'built on" in term  # %post's output, written above the bar
    assert "\n[stage 1] %post\r\n" not in term  # no plain step lines on a terminal
    assert term.rstrip().splitlines()[-1].startswith("built ")  # the bar is gone at the end


def test_terminal_without_a_size_still_gets_a_bar(tmp_path):
    status, _, term = on_terminal([HELLO, tmp_path / "h.simg"], tmp_path, columns=0)
    assert status == 0, term
    assert "h.simg (simg) |" in term and "| 4/5 [" in term


def test_pipes_get_plain_step_lines(tmp_path):
    r = subprocess.run([sys.executable, "-m", "builder", HELLO, tmp_path / "h.simg"], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    for step in ("[stage 1] bootstrap: busybox", "[stage 1] %post", "[stage 1] metadata", "[stage 1] %test"):
        assert step in lines
    assert "\r" not in r.stderr and "|" not in r.stderr and r.stdout == ""


def test_quiet_prints_nothing_on_success_and_the_error_on_failure(sbuild, recipe, tmp_path):
    r = sbuild("--quiet", HELLO, tmp_path / "q.simg")
    assert (r.status, r.out, r.err) == (0, "", "")
    r = sbuild("-q", recipe("Bootstrap: scratch\n\n%setup\n    echo noisy\n    exit 2\n"), tmp_path / "f.simg")
    assert r.status == 1 and r.out == ""
    assert r.err.startswith("sbuild: error: %setup failed with exit code 2") and "    noisy" in r.err


def test_json_is_one_object_describing_the_image(sbuild, tmp_path):
    target = tmp_path / "j.sif"
    r = sbuild("--json", HELLO, target)
    assert r.status == 0, r.err
    obj = json.loads(r.out)
    assert set(obj) == {"target", "format", "size", "digest", "duration", "stages"}
    assert obj["target"] == str(target) and obj["format"] == "sif" and obj["size"] == target.stat().st_size
    assert obj["digest"] == "sha256:" + hashlib.sha256(target.read_bytes()).hexdigest()
    assert obj["stages"] == [{"name": "", "bootstrap": "busybox", "duration": obj["stages"][0]["duration"]}]
    assert 0 < obj["stages"][0]["duration"] <= obj["duration"]
    assert "+ echo" not in r.err  # section output is not mixed into machine output


def test_json_for_a_multistage_sandbox_and_a_conversion(sbuild, recipe, tmp_path):
    stage = "Bootstrap: busybox\nMirrorURL: file:///bin/busybox\n"
    path = recipe(stage + "Stage: one\n\n" + stage + "Stage: two\n")
    r = sbuild("--json", "--sandbox", tmp_path / "sb", path)
    assert r.status == 0, r.err
    obj = json.loads(r.out)
    assert obj["format"] == "sandbox" and obj["digest"] is None and obj["size"] == 0
    assert [s["name"] for s in obj["stages"]] == ["one", "two"]
    r = sbuild("--json", tmp_path / "sb", tmp_path / "c.simg")
    obj = json.loads(r.out)
    assert obj["format"] == "simg" and obj["stages"] == [] and obj["size"] == (tmp_path / "c.simg").stat().st_size
