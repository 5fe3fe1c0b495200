"""A partial blob that a killed pull left in the cache is reclaimed by ``cache clean``,
while the temp file of a download still running is kept (issue 9, item 6: leftovers), as
root and as an unprivileged user. The proxy sends half of a layer and holds the
connection, so that the download stays half done until the pull is killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import servers
from .conftest import REPO

ROOT = Path(__file__).resolve().parents[2]


def _layer(layout: Path, index: int) -> tuple[str, int]:
    index_doc = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index_doc["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "1.0")
    layer = json.loads((layout / "blobs/sha256" / desc["digest"][7:]).read_bytes())["layers"][index]
    return layer["digest"], layer["size"]


def _download_temp(cache: Path, digest: str, not_this: Path | None = None) -> Path | None:
    """The temp file a download of ``digest`` writes, as its lock file names it."""
    try:
        words = (cache / "locks" / digest.split(":")[1]).read_text().split()
    except FileNotFoundError:
        return None
    path = Path(words[1]) if len(words) > 1 else None
    return path if path is not None and path != not_this and path.exists() else None


def _wait(what, timeout: float = 30):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.parametrize("who", ["root", "user"])
def test_leftovers_partial_blob_of_a_killed_pull_is_reclaimed_by_cache_clean(request, proxy, layout, who):
    user = request.getfixturevalue("unprivileged_user") if who == "user" else None
    digest, size = _layer(layout, 1)
    proxy.faults.append(servers.Fault(match=f"/blobs/{digest}", truncate=size // 2, stall=120, times=-1))
    work = Path(tempfile.mkdtemp(prefix="sbuild-leftovers-", dir="/tmp"))  # (pytest's tmp_path is 0700)
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    (work / "tmp").mkdir()  # the killed pulls' bundles stay in here
    if user:
        user.chown(work)
    env = [f"APPTAINER_CACHEDIR={work / 'cache'}", "PATH=/usr/bin:/bin", f"HOME={user.home if user else '/root'}"]
    prefix = [*(user.argv() if user else []), "env", "-i", *env, sys.executable, "-m", "builder"]

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen([*prefix, "pull", "--nohttps", "--arch", "amd64", "--tmpdir", work / "tmp", work / name,
                                 f"docker://{proxy.host}/{REPO}:1.0"], cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    cache = work / "cache" / "sbuild"
    killed = start("a.sif")
    try:
        dead = _wait(lambda: _download_temp(cache, digest))
        os.killpg(killed.pid, signal.SIGKILL)
    finally:
        killed.wait(30)
    live = start("b.sif")  # downloads the same blob again, into its own temp file
    try:
        running = _wait(lambda: _download_temp(cache, digest, not_this=dead))
        r = subprocess.run([*prefix, "cache", "clean"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert not dead.exists(), r.stdout
        assert running.exists(), r.stdout  # a live download's file is never touched
        assert live.poll() is None
    finally:
        os.killpg(live.pid, signal.SIGKILL)
        live.wait(30)
    assert not (work / "a.sif").exists() and not (work / "b.sif").exists()
