"""What a killed build leaves is reclaimed (issue 9, item 6: leftovers), as root and as an
unprivileged user: ``sbuild build`` is SIGKILLed while its ``%post`` runs (its bundle is in
TMPDIR) and while it packs (its half-written image is beside TARGET; mksquashfs is held by a
pseudo file whose command touches a marker and sleeps); the next build in that TMPDIR, of
that TARGET, removes both, while a build running meanwhile keeps its bundle. A kept bundle
(``--no-cleanup``) stays. Unprivileged, an extraction into the rootfs cache killed half way
is removed by ``cache clean`` (or the next extraction).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")
if not Path(SBUILD).exists():
    SBUILD = shutil.which("sbuild") or SBUILD

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/bin/busybox").is_file(), reason="apt-get install busybox-static")]

SLOW = """\
Bootstrap: busybox
MirrorURL: file:///bin/busybox

%post
    mkdir /owned && touch /owned/f && chown -R 1000:1000 /owned && chmod 0555 /owned
    touch /started
    sleep {sleep}
"""  # /owned: unprivileged, files of a subordinate id in a read-only dir (removable in the namespace only)


class Who:
    """Runs sbuild as root or as the unprivileged user, in a directory that user owns."""

    def __init__(self, name: str, user, work: Path) -> None:
        self.name, self.user, self.work = name, user, work
        self.procs: list[subprocess.Popen] = []

    def argv(self, *args) -> list[str]:
        env = {"HOME": str(self.user.home) if self.user else "/root", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
               "LANG": "C.UTF-8", "SBUILD_CACHEDIR": str(self.work / "cache"),
               "SBUILD_BUILD_CACHE": os.environ.get("SBUILD_BUILD_CACHE", "off")}  # builds of one recipe run at once
        prefix = self.user.argv("env", "-i") if self.user else ["env", "-i"]
        return [*prefix, *[f"{k}={v}" for k, v in env.items()], SBUILD, *map(str, args)]

    def start(self, *args) -> subprocess.Popen:
        """sbuild in the background, in a process group of its own, its output in a log file."""
        with open(self.work / f"log-{len(self.procs)}", "wb") as log:
            p = subprocess.Popen(self.argv(*args), cwd=self.work, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def run(self, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), cwd=self.work, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)


@pytest.fixture(params=["root", "user"])
def who(request):
    user = request.getfixturevalue("unprivileged_user") if request.param == "user" else None
    work = Path(tempfile.mkdtemp(prefix="sbuild-leftovers-", dir="/tmp"))
    work.chmod(0o755)
    for d in ("tmp", "out", "cache"):
        (work / d).mkdir()
    if user:
        user.chown(work)
    w = Who(request.param, user, work)
    yield w
    for p in w.procs:  # ours, by process group: sbuild, its containers' launchers, mksquashfs
        _kill_group(p)
    subprocess.run(["rm", "-rf", str(work)], check=False)


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(30)


def _wait_for(pattern: str, where: Path, seen=(), timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in where.glob(pattern) if p not in seen]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"{pattern} did not appear in {where}: {sorted(os.listdir(where))}")


def _bundle_of(marker: Path) -> Path:
    return marker.parent.parent  # TMPDIR/sbuild-bundle-*/rootfs/started


def test_leftovers_of_killed_builds_are_reclaimed_by_the_next_build(who):
    tmp, out = who.work / "tmp", who.work / "out"
    (who.work / "slow.def").write_text(SLOW.format(sleep=600))
    (who.work / "quick.def").write_text(SLOW.format(sleep=0))
    (who.work / "pseudo").write_text(f"/slow f 644 0 0 sh -c 'touch {who.work}/packing; sleep 600'\n")
    if who.user:
        who.user.chown(who.work)
    kept = who.run("build", "--tmpdir", tmp, "--no-cleanup", "quick.def", out / "kept.sif")
    assert kept.returncode == 0, kept.stderr
    (kept_bundle,) = tmp.iterdir()
    # a build that keeps running: its bundle must survive everything below
    live = who.start("build", "--tmpdir", tmp, "slow.def", out / "live.sif")
    live_bundle = _bundle_of(_wait_for("sbuild-bundle-*/rootfs/started", tmp, seen=[kept_bundle / "rootfs/started"]))
    # killed while packing: a half-written image beside TARGET (and its bundle in TMPDIR)
    packing = who.start("build", "--tmpdir", tmp, "--mksquashfs-args", f"-pf {who.work / 'pseudo'}", "quick.def",
                        out / "img.sif")
    _wait_for("packing", who.work)
    half = [p for p in out.iterdir() if p.name.startswith(".img.sif.sbuild-")]
    (packing_bundle,) = set(tmp.iterdir()) - {kept_bundle, live_bundle}
    assert half, sorted(os.listdir(out))
    _kill_group(packing)
    # killed in %post (another TARGET): its bundle stays in TMPDIR; the packing one is gone
    killed = who.start("build", "--tmpdir", tmp, "slow.def", out / "other.sif")
    dead_bundle = _bundle_of(_wait_for("sbuild-bundle-*/rootfs/started", tmp,
                                       seen=[b / "rootfs/started" for b in (kept_bundle, live_bundle, packing_bundle)]))
    os.kill(killed.pid, signal.SIGKILL)  # sbuild alone: its container dies with it
    killed.wait(30)
    assert not packing_bundle.exists()  # reclaimed when the build after it started
    assert dead_bundle.is_dir() and all(p.exists() for p in half)

    r = who.run("build", "--tmpdir", tmp, "quick.def", out / "img.sif")
    assert r.returncode == 0, r.stderr
    assert not dead_bundle.exists() and not any(p.exists() for p in half), r.stderr
    assert f"removed {dead_bundle}, left by a stopped build" in r.stderr
    assert sorted(os.listdir(out)) == ["img.sif", "kept.sif"]  # the live build's TARGET is not written yet
    assert sorted(tmp.iterdir()) == sorted([live_bundle, kept_bundle])
    assert (live_bundle / "rootfs" / "started").exists() and live.poll() is None  # untouched, still running


def _big_image(who) -> Path:
    """A squashfs whose extraction takes a while (incompressible data), owned by the user."""
    src = who.work / "src"
    (src / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", src / "bin" / "busybox")
    (src / "bin" / "true").symlink_to("busybox")
    for i in range(8):
        (src / f"data{i}").write_bytes(os.urandom(16 << 20))
    image = who.work / "big.sqfs"
    subprocess.run(["mksquashfs", str(src), str(image), "-noappend", "-quiet", "-no-progress", "-noD"], check=True)
    shutil.rmtree(src)
    who.user.chown(who.work)
    return image


def test_leftovers_of_a_killed_extraction_are_reclaimed_by_cache_clean(who):
    if who.user is None:
        pytest.skip("root mounts a squashfs in place: only unprivileged runs extract it")
    image = _big_image(who)
    rootfs = who.work / "cache" / "rootfs"
    for _attempt in range(5):  # the kill must land while unsquashfs writes (it takes ~1 s here)
        p = who.start("exec", image, "true")
        try:
            partial = _wait_for(".extract-*/rootfs/data*", rootfs, timeout=30)
        except AssertionError:
            _kill_group(p)
            continue
        _kill_group(p)
        break
    else:
        pytest.fail("the extraction always finished before the kill")
    extract = partial.parent.parent
    assert extract.is_dir()
    r = who.run("cache", "clean")
    assert r.returncode == 0, r.stderr
    assert not extract.exists(), sorted(os.listdir(rootfs))
    assert "unfinished downloads and extractions" in r.stdout
    assert who.run("exec", image, "true").returncode == 0  # the image extracts afresh
