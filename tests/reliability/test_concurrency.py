"""Concurrency: 4 builds of one docker image (``%files``, ``%post``, SIF target) share one cache
while ``sbuild cache clean`` runs in a loop beside them (a cron job), as root and as the
unprivileged user: all 4 succeed with sound images, every clean returns promptly, and what
is left in the cache is verified. (``tests/registry/test_cache_clean_race.py`` holds the
exact race of one pull; this is the crowd.)"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import images
import runnable
import servers
from relhelpers import REPO, SBUILD

pytestmark = [pytest.mark.scenario("concurrency"), pytest.mark.slow, pytest.mark.timeout(300)]
RECIPE = """Bootstrap: docker
From: {ref}

%files
    {data} /opt/data

%post
    cat /opt/data > /opt/copy-{n}
"""


@pytest.fixture(scope="module")
def run_ref(registry, tmp_path_factory):
    layout = images.write_layout(tmp_path_factory.mktemp("run-c") / "oci",
                                 {"run": images.Image(runnable.runnable_layers(), {})})
    servers.skopeo_push(layout, "run", f"{registry.host}/{REPO}:run")
    return f"{registry.host}/{REPO}:run"


def _argv(user, work: Path, *args) -> list[str]:
    env = {"HOME": str(user.home) if user else "/root", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
           "LANG": "C.UTF-8", "SBUILD_CACHEDIR": str(work / "cache")}
    prefix = user.argv("env", "-i") if user else ["env", "-i"]
    return [*prefix, *[f"{k}={v}" for k, v in env.items()], SBUILD, *map(str, args)]


@pytest.mark.parametrize("who", ["root", "user"])
def test_four_builds_on_one_cache_with_cache_clean_looping(run_ref, unprivileged_user, who):
    user = unprivileged_user if who == "user" else None
    work = Path(tempfile.mkdtemp(prefix="sbuild-conc-", dir="/tmp"))
    work.chmod(0o755)
    procs: list[subprocess.Popen] = []
    try:
        (work / "data").write_bytes(os.urandom(1 << 20))
        for n in range(4):
            (work / f"b{n}.def").write_text(RECIPE.format(ref=run_ref, data=work / "data", n=n))
        (work / "cache").mkdir()
        if user:
            user.chown(work)
        for n in range(4):
            procs.append(subprocess.Popen(_argv(user, work, "build", work / f"b{n}.def", work / f"img{n}.sif"),
                                          cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        cleans, slowest, failures = 0, 0.0, []
        stop = threading.Event()

        def loop() -> None:
            nonlocal cleans, slowest
            while not stop.is_set():
                t0 = time.monotonic()
                r = subprocess.run(_argv(user, work, "cache", "clean"), capture_output=True, text=True, timeout=60)
                slowest = max(slowest, time.monotonic() - t0)
                cleans += 1
                if r.returncode != 0:
                    failures.append(r.stderr)
                stop.wait(0.05)

        cleaner = threading.Thread(target=loop)
        cleaner.start()
        try:
            results = [p.communicate(timeout=240) for p in procs]
        finally:
            stop.set()
            cleaner.join(90)
        for n, (p, (_, err)) in enumerate(zip(procs, results)):
            assert p.returncode == 0, f"build {n}: {err[-2000:]}"
            r = subprocess.run(_argv(user, work, "exec", work / f"img{n}.sif", "cat", f"/opt/copy-{n}"),
                               capture_output=True, timeout=60)
            assert r.returncode == 0 and r.stdout == (work / "data").read_bytes(), r.stderr[-1000:]
        assert not failures, failures[:2]
        assert cleans >= 2 and slowest < 20, (cleans, slowest)
        blobs = work / "cache" / "blobs" / "sha256"
        for blob in blobs.iterdir() if blobs.is_dir() else ():
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
        subprocess.run(["rm", "-rf", str(work)], check=False)
