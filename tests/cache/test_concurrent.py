"""Four builds of one recipe at once with ``cache clean`` looping beside them: all succeed,
%post runs once in total (the others wait for it, saying so), and the cache stays
consistent. And the cache as the unprivileged user (a rootless, --fakeroot build)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from builder.cache import CheckpointStore

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")
RECIPE = """\
Bootstrap: busybox
MirrorURL: file:///bin/busybox

%post
    echo ran-post
    sleep 2
    echo built > /built
"""


def test_four_builds_and_a_clean_loop(write, tmp_path):
    path = write(RECIPE)
    env = {**os.environ, "SBUILD_CACHEDIR": str(tmp_path / "cache")}
    env.pop("SBUILD_BUILD_CACHE", None)
    builds = [subprocess.Popen([SBUILD, "build", "--cache-explain", str(path), f"o{n}.sif"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
              for n in range(4)]
    cleans = 0
    while any(b.poll() is None for b in builds):
        r = subprocess.run([SBUILD, "cache", "clean", "-T", "build"], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        cleans += 1
        time.sleep(0.05)
    errs = [b.communicate()[1] for b in builds]
    assert all(b.returncode == 0 for b in builds), errs
    assert sum(e.count("+ echo ran-post") for e in errs) == 1, errs
    assert sum("waiting for another build" in e for e in errs) >= 1
    images = {(tmp_path / f"o{n}.sif").read_bytes() for n in range(4)}
    assert len(images) == 1 and cleans > 0  # SOURCE_DATE_EPOCH: one image
    store = CheckpointStore(tmp_path / "cache" / "build")
    assert all(store.lookup(e.key) is not None for e in store.entries())  # what is left verifies
    assert not list((tmp_path / "cache" / "build" / "tmp").glob("ckpt-*"))


def test_unprivileged_user_hits_its_cache(unprivileged_user, tmp_path):
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="sbuild-cache-", dir="/tmp"))
    try:
        (work / "r.def").write_text(RECIPE.replace("sleep 2", "true") + "\n%runscript\n    echo one\n")
        unprivileged_user.chown(work)
        env = {"SBUILD_CACHEDIR": str(work / "cache"), "SOURCE_DATE_EPOCH": "1700000000", "SBUILD_BUILD_CACHE": "on"}

        def build(target: str) -> subprocess.CompletedProcess:
            r = unprivileged_user.run(SBUILD, "build", "--cache-explain", "r.def", target, cwd=str(work), env=env,
                                      stdin=subprocess.DEVNULL)
            assert r.returncode == 0, r.stderr
            return r

        assert "ran-post" in build("a.sif").stderr
        (work / "r.def").write_text((work / "r.def").read_text().replace("echo one", "echo two"))
        second = build("b.sif")
        assert "ran-post" not in second.stderr and "stage [" in second.stderr and ": hit (local)" in second.stderr
        env["SBUILD_BUILD_CACHE"] = "off"
        build("c.sif")
        assert (work / "b.sif").read_bytes() == (work / "c.sif").read_bytes()
    finally:
        shutil.rmtree(work, ignore_errors=True)
