"""Process lifetime: background processes, SIGKILL and Ctrl-C leave nothing behind; a shell
under a pseudo-terminal behaves like a shell."""

from __future__ import annotations

import os
import pty
import select
import signal
import time

import pytest


def test_background_processes_end_with_the_command(profile, images, rt):
    r = profile.sbuild("exec", images["simg"], "sh", "-c", "sleep 2345.5 & sleep 2345.5 & echo started")
    assert (r.status, r.out) == (0, "started\n"), r.err
    assert rt.wait_until(lambda: not rt.marked("2345.5"), 3)


def _start_sleeper(profile, image, rt):
    proc = profile.popen("exec", image, "sleep", "2345.5")
    assert rt.wait_until(lambda: rt.marked("2345.5", commands_only=True), 15), "the command never started"
    return proc


def test_sigkill_of_sbuild_leaves_nothing(profile, images, rt):
    proc = _start_sleeper(profile, images["simg"], rt)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    assert rt.wait_until(lambda: not rt.marked("2345.5"), 5), rt.marked("2345.5")


def test_sigint_ends_the_command_and_passes_its_status(profile, images, rt):
    proc = _start_sleeper(profile, images["squashfs"], rt)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(10) == 130
    assert not rt.marked("2345.5")


def test_sigterm_is_forwarded_to_the_command(profile, images, rt):
    proc = _start_sleeper(profile, images["sandbox"], rt)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 143


class _Pty:
    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child
            os.execvp(argv[0], argv)
        self.buf = b""

    def expect(self, text: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {text!r}; got {self.buf[-500:]!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                assert chunk, f"terminal closed waiting for {text!r}; got {self.buf[-500:]!r}"
                self.buf += chunk
        out, _, self.buf = self.buf.partition(text.encode())
        return out.decode(errors="replace")

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            try:
                os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.02)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError("the process under the terminal did not end")


def test_interactive_shell_under_a_terminal(profile, images, rt):
    t = _Pty(profile._argv(rt.sbuild, "shell", str(images["simg"])))
    t.expect("Apptainer> ")
    t.send("echo $((6*7)); tty\n")
    out = t.expect("Apptainer> ")
    assert "42" in out and "/dev/pts/" in out
    t.send("sleep 2345.5\n")
    assert rt.wait_until(lambda: rt.marked("2345.5"), 10)
    t.send("\x03")  # Ctrl-C: ends the sleep, not the shell
    t.expect("Apptainer> ")
    assert rt.wait_until(lambda: not rt.marked("2345.5"), 5)
    t.send("exit 3\n")
    assert t.wait() == 3


def test_ctrl_c_on_exec_under_a_terminal(profile, images, rt):
    t = _Pty(profile._argv(rt.sbuild, "exec", str(images["sandbox"]), "sh", "-c",
                           "echo ready; exec sleep 2345.5"))
    t.expect("ready")
    assert rt.wait_until(lambda: rt.marked("2345.5"), 10)
    t.send("\x03")
    assert t.wait() == 130
    assert rt.wait_until(lambda: not rt.marked("2345.5"), 5)


_READ_AHEAD = """
import _thread, os, runtime.prefetch as s
done = _thread.allocate_lock()
done.acquire()
def mask():
    with open("/proc/thread-self/status") as f:
        return int([l.split()[1] for l in f if l.startswith("SigBlk:")][0], 16)
def prefetch(fds, started):
    started.release()
    print("thread", mask(), flush=True)
    for fd in fds:
        os.close(fd)
    done.release()
s._read_ahead = prefetch
print("staged", s.prefetch({image!r}) is not None, flush=True)
done.acquire()
print("main", mask(), flush=True)
"""


def test_read_ahead_thread_takes_no_signal_meant_for_the_cli(profile, images):
    # runtime.prefetch reads the image's /bin/sh ahead on a thread of the CLI process, which
    # then waits for the container's SIGCHLD and forwards SIGTERM & co: a signal that landed
    # on that thread would be lost (a hang) or kill the CLI
    if profile.name != "root":
        pytest.skip("the read-ahead is root-only (unprivileged squashfs is not mounted by sbuild)")
    r = profile.python(_READ_AHEAD.format(image=str(images["simg"])))
    assert r.status == 0, r.err
    lines = dict(line.split(" ", 1) for line in r.out.splitlines())
    assert lines["staged"] == "True"
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGWINCH):
        assert int(lines["thread"]) & (1 << (sig - 1)), sig
        assert not int(lines["main"]) & (1 << (sig - 1)), sig  # the main thread's mask is back


_LOCATE = """
import json
from builder.images.probe import probe
from runtime.prefetch import _squashfs_at
out = dict()
for kind, path in json.loads(PATHS).items():
    info = probe(path) if kind != "truncated" else None
    out[kind] = [_squashfs_at(path), [info.fs_offset, info.fs_size] if info else None]
print(json.dumps(out))
"""


def test_read_ahead_finds_the_squashfs_where_the_image_reader_does(profile, images, tmp_path):
    # runtime.prefetch reads .simg and raw squashfs headers itself (builder.images.probe costs
    # ~1 ms to import before the read-ahead can start): it must agree with the probe, and
    # leave everything else (SIF, ext3, a truncated image) to it
    import json

    truncated = tmp_path / "truncated.simg"
    truncated.write_bytes(images["simg"].read_bytes()[:4096])
    profile.own(tmp_path)
    paths = {k: str(images[k]) for k in ("simg", "squashfs", "sif", "ext3") if k in images}
    paths["truncated"] = str(truncated)
    r = profile.python(_LOCATE.replace("PATHS", repr(json.dumps(paths))))
    assert r.status == 0, r.err
    found = json.loads(r.out)
    for kind in ("simg", "squashfs"):
        assert found[kind][0] == found[kind][1] and found[kind][1][1] > 0, kind
    for kind in ("sif", "ext3", "truncated"):
        if kind in found:
            assert found[kind][0] is None, kind


_NO_MOUNT_API = """
import errno, sys
from runtime import _sys
def missing(*args, **kwargs):
    raise OSError(errno.ENOSYS, "function not implemented")
setattr(_sys, {name!r}, missing)
sys.argv = ["sbuild", "exec", {image!r}, "sh", "-c", "echo $FROM_IMAGE; cat /etc/hosts; ls /bin/busybox"]
from builder.cli import main
main(owns_process=True)
"""


@pytest.mark.parametrize("name", ["fsmount_bdev", "move_mount"])
def test_without_the_new_mount_api_the_container_mounts_the_image_itself(profile, images, name):
    # runtime.prefetch mounts the squashfs ahead with fsopen/fsmount (Linux 5.2+) and the
    # container attaches it with move_mount; where either fails (an older kernel, a seccomp
    # filter), the launch must go on as before the stage existed
    if profile.name != "root":
        pytest.skip("the read-ahead is root-only (unprivileged squashfs is not mounted by sbuild)")
    r = profile.python(_NO_MOUNT_API.format(name=name, image=str(images["simg"])))
    assert (r.status, r.out.split()[0], r.out.split()[-1]) == (0, "yes", "/bin/busybox"), r.err
