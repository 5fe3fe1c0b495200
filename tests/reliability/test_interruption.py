"""Interruption: ``sbuild build`` of a docker image with ``%files``, ``%post`` and a SIF target
is interrupted at 20 seeded points (delays drawn with a fixed seed across the length of one
whole build, so they land in the pull, the layer application, ``%post``, the packing and the
write), alternately by SIGINT to its process group (Ctrl-C) and by SIGKILL of sbuild alone (the
OOM killer), half as root and half as the unprivileged user. Afterwards: TARGET is absent or a whole image, no process of that
build, no mount or loop device on its files, no lock of its cache held; the next build of the
same TARGET in the same TMPDIR and cache succeeds and leaves only TARGET (bundles, half-written
images and partial downloads reclaimed)."""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import images
import runnable
import servers
from relhelpers import REPO, SBUILD

pytestmark = [pytest.mark.scenario("interruption"), pytest.mark.slow, pytest.mark.timeout(300)]
SEED, POINTS = 20261202, 20
RECIPE = """Bootstrap: docker
From: {ref}

%files
    {data} /opt/data

%post
    for i in 1 2 3 4 5; do echo "step $i" >> /opt/steps; sleep 0.05; done
    cat /opt/data > /opt/copy
"""


@pytest.fixture(scope="module")
def run_ref(registry, tmp_path_factory):
    """``test/hand:run``, the runnable image, pushed to the plain registry."""
    layout = images.write_layout(tmp_path_factory.mktemp("run") / "oci",
                                 {"run": images.Image(runnable.runnable_layers(), {})})
    servers.skopeo_push(layout, "run", f"{registry.host}/{REPO}:run")
    return f"{registry.host}/{REPO}:run"


class Build:
    """One work directory (tmp, out, cache, recipe) and how to run sbuild in it as ``user``."""

    def __init__(self, work: Path, ref: str, user) -> None:
        self.work, self.user = work, user
        for d in ("tmp", "out", "cache"):
            (work / d).mkdir()
        (work / "data").write_bytes(os.urandom(1 << 20))
        (work / "b.def").write_text(RECIPE.format(ref=ref, data=work / "data"))
        if user:
            user.chown(work)

    def argv(self, *extra: str) -> list[str]:
        env = {"HOME": str(self.user.home) if self.user else "/root", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
               "LANG": "C.UTF-8", "SBUILD_CACHEDIR": str(self.work / "cache")}
        prefix = self.user.argv("env", "-i") if self.user else ["env", "-i"]
        return [*prefix, *[f"{k}={v}" for k, v in env.items()], SBUILD, "build", *extra, "--tmpdir", str(self.work / "tmp"),
                str(self.work / "b.def"), str(self.work / "out" / "img.sif")]

    def start(self) -> subprocess.Popen:
        log = open(self.work / "log", "ab")
        try:
            return subprocess.Popen(self.argv(), cwd=self.work, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    def run(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*extra), cwd=self.work, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120)


def _session_procs(sid: int) -> list[str]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    out.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
            except (OSError, ProcessLookupError):
                pass
    return out


def _mounts_and_loops(work: Path) -> list[str]:
    found = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(work) in line]
    for block in Path("/sys/block").glob("loop*"):
        try:
            backing = (block / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(str(work)):
            found.append(f"{block.name}: {backing}")
    return found


def _held_locks(cache: Path) -> list[str]:
    held = []
    for lock in cache.rglob("*.lock") if cache.is_dir() else ():
        with open(lock, "rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(str(lock))
    for lock in (cache / "locks").iterdir() if (cache / "locks").is_dir() else ():
        with open(lock, "rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(str(lock))
    return held


def _wait_clean(sid: int, work: Path, timeout: float = 15) -> tuple[list, list]:
    deadline = time.monotonic() + timeout
    while True:
        procs, mounts = _session_procs(sid), _mounts_and_loops(work)
        if (not procs and not mounts) or time.monotonic() > deadline:
            return procs, mounts
        time.sleep(0.05)


def _points() -> list[tuple[int, str, str, float]]:
    """(index, signal, who, fraction of a whole build) for the 20 seeded points."""
    rng = random.Random(SEED)
    fractions = sorted(rng.uniform(0.02, 0.98) for _ in range(POINTS))
    return [(i, "SIGINT" if i % 2 == 0 else "SIGKILL", "root" if i % 4 < 2 else "user", f)
            for i, f in enumerate(fractions)]


@pytest.fixture(scope="module")
def whole(run_ref, unprivileged_user):
    """Seconds of one whole build, per privilege mode (measured once, the first fills nothing shared)."""
    out = {}
    for who in ("root", "user"):
        work = Path(tempfile.mkdtemp(prefix="sbuild-int-", dir="/tmp"))
        work.chmod(0o755)
        try:
            b = Build(work, run_ref, unprivileged_user if who == "user" else None)
            started = time.monotonic()
            r = b.run()
            assert r.returncode == 0, r.stderr[-2000:]
            out[who] = time.monotonic() - started
        finally:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    return out


@pytest.mark.parametrize("point", _points(), ids=lambda p: f"{p[0]:02d}-{p[1]}-{p[2]}-at-{p[3]:.2f}")
def test_interrupted_build_leaves_nothing_after_the_next_build(run_ref, unprivileged_user, whole, point):
    _index, sig, who, fraction = point
    work = Path(tempfile.mkdtemp(prefix="sbuild-int-", dir="/tmp"))
    work.chmod(0o755)
    proc = None
    try:
        b = Build(work, run_ref, unprivileged_user if who == "user" else None)
        proc = b.start()
        time.sleep(fraction * whole[who])
        if sig == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        try:
            status = proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"sbuild did not end within 30 s of {sig}")
        log = (work / "log").read_text(errors="replace")
        assert "internal error" not in log and "Traceback" not in log, log[-2000:]
        procs, mounts = _wait_clean(proc.pid, work)
        assert not procs, f"processes of the interrupted build remain: {procs}"
        assert not mounts, f"mounts or loop devices remain: {mounts}"
        assert not _held_locks(work / "cache"), "a lock of the cache is still held"
        target = work / "out" / "img.sif"
        if target.exists():  # the signal came after the write (atomic): a whole image, or none
            probe = subprocess.run([SBUILD, "inspect", target], capture_output=True, text=True, timeout=60)
            assert probe.returncode == 0, probe.stderr
        else:
            assert status != 0
        r = b.run(*(["--force"] if target.exists() else []))
        assert r.returncode == 0, r.stderr[-2000:]
        assert sorted(os.listdir(work / "out")) == ["img.sif"], "a half-written image stayed beside TARGET"
        assert os.listdir(work / "tmp") == [], "a bundle stayed in TMPDIR"
        leftovers = [p.name for p in (work / "cache" / "tmp").iterdir()] if (work / "cache" / "tmp").is_dir() else []
        assert leftovers == [], f"partial downloads stayed in the cache: {leftovers}"
        assert not _held_locks(work / "cache")
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        subprocess.run(["rm", "-rf", str(work)], check=False)


def test_a_removal_cut_short_keeps_the_owner_record_for_the_next_reclaim(tmp_path):
    """Regression: a bundle's removal deleted its owner record among the first files; cut short
    (Ctrl-C reaching the helper that removes a rootless bundle) it left a bundle nobody reclaims.
    A mount point inside stands for the part that could not be removed."""
    from base.owner import OWNER, owned_dir, reclaim, remove_owned

    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    owned = owned_dir(tmp_path, "sbuild-bundle-")
    (owned.path / "rootfs" / "busy").mkdir(parents=True)
    (owned.path / "rootfs" / "file").write_text("x")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", owned.path / "rootfs" / "busy"], check=True)
    try:
        remove_owned(owned.path)
        assert (owned.path / OWNER).exists() and not (owned.path / "rootfs" / "file").exists()
    finally:
        subprocess.run(["umount", owned.path / "rootfs" / "busy"], check=True)
    owned.release()  # the build is gone
    assert reclaim(tmp_path, ["sbuild-bundle-"]) == [owned.path] and not owned.path.exists()


def test_the_partial_download_of_a_killed_pull_is_removed_by_the_next_pull(registry, tmp_path):
    """Regression: only ``cache clean`` removed ``tmp/blob-*`` that a SIGKILLed pull left."""
    partial = tmp_path / "cache" / "tmp" / "blob-left0ver"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a layer")
    r = subprocess.run([SBUILD, "pull", "--sandbox", tmp_path / "sb", f"docker://{registry.host}/{REPO}:1.0"],
                       env={**os.environ, "SBUILD_CACHEDIR": str(tmp_path / "cache")}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not partial.exists()


def test_the_temp_beside_target_keeps_its_owner_record_until_it_is_empty(tmp_path):
    """Regression (seeded point 09, SIGKILL as root): the temp directory beside TARGET lost its
    owner record first while being removed after the rename; killed there, it stayed for good.
    A busy mount inside stands for the kill."""
    from base.owner import OWNER, reclaim
    from builder.images.convert import atomic_target

    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    target = tmp_path / "img"
    with atomic_target(target, force=False) as tmp:
        tmp.mkdir()
        busy = tmp.parent / "busy"
        busy.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", busy], check=True)
    try:
        assert target.is_dir() and (busy.parent / OWNER).exists()
    finally:
        subprocess.run(["umount", busy], check=True)
    assert reclaim(tmp_path, [".img.sbuild-"]) == [busy.parent]
    assert sorted(os.listdir(tmp_path)) == ["img"]
