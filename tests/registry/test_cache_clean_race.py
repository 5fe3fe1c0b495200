"""``sbuild cache clean`` beside a running pull, and the end of every wait of a pull.

The fault proxy (``servers.FaultProxy``, a ``hold`` fault) in front of the real registry holds
the last byte of the first layer until the test releases it. Meanwhile the other layers finish downloading and land in the cache,
where the pull has not read them yet (it applies layers in order): the exact moment at
which a cron ``cache clean`` used to take them away and leave the pull waiting forever.
Now ``clean`` returns at once, keeps the blobs in use and says so; a blob removed anyway
(by a tool that ignores the locks) is still read from the fd the pull holds. Locks held by
a stuck process end in a clear error after the stall time, not before while it progresses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import servers
from .conftest import REPO

from builder.sources.oci.cache import BlobCache
from builder.sources.oci.errors import RegistryError

ROOT = Path(__file__).resolve().parents[2]
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _layers(registry) -> list[str]:
    req = urllib.request.Request(f"http://{registry.host}/v2/{REPO}/manifests/1.0", headers={"Accept": MANIFEST_TYPES})
    return [layer["digest"] for layer in json.loads(_OPENER.open(req).read())["layers"]]


@pytest.fixture
def pull(registry, tmp_path):
    """Start ``sbuild pull`` of the 3-layer image through a proxy holding its first layer;
    returns (process, hold fault, cache root, sandbox, layer digests) once the other two
    layers are in the cache."""
    layers = _layers(registry)
    gate = servers.Fault(match=f"/blobs/{layers[0]}", hold=threading.Event(), times=-1)
    proxy = servers.FaultProxy(f"http://{registry.host}", faults=[gate]).start()
    cache, out = tmp_path / "cache", tmp_path / "sandbox"
    env = {**os.environ, "SBUILD_CACHEDIR": str(cache), "HOME": str(tmp_path)}
    proc = subprocess.Popen([SBUILD, "pull", "--arch", "amd64", "--sandbox", str(out),
                             f"docker://{proxy.host}/{REPO}:1.0"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert gate.reached.wait(30), "the pull never reached the first layer"
        blobs = [cache / "blobs" / "sha256" / d.split(":")[1] for d in layers]
        deadline = time.monotonic() + 30
        while not all(b.exists() for b in blobs[1:]):  # a condition, not a guess: bounded by the deadline
            assert time.monotonic() < deadline and proc.poll() is None, "layers 2 and 3 never landed"
            time.sleep(0.02)
        yield proc, gate, cache, out, blobs
    finally:
        proxy.stop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _finish(proc: subprocess.Popen, gate: servers.Fault) -> tuple[int, str]:
    gate.hold.set()
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the pull hung after its cached layers were removed:\n{err}")
    return proc.returncode, err


def test_cache_clean_beside_a_pull_keeps_the_blobs_it_uses_and_does_not_wait(pull):
    proc, gate, cache, out, blobs = pull
    try:
        r = subprocess.run([SBUILD, "cache", "clean", "-v", "--cachedir", str(cache)], capture_output=True,
                           text=True, timeout=20, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("cache clean waited for the running pull")
    assert r.returncode == 0, r.stderr
    assert "kept 3 blobs in use by running builds" in r.stdout, r.stdout  # the config and layers 2, 3
    assert "kept the temporary files: downloads are running" in r.stdout
    assert all(b.exists() for b in blobs[1:])
    status, err = _finish(proc, gate)
    assert status == 0, err
    assert (out / "hello.txt").read_text() == "hello from layer 3\n"
    assert all(b.exists() for b in blobs)
    r = subprocess.run([SBUILD, "cache", "clean", "--cachedir", str(cache)], capture_output=True, text=True,
                       timeout=20)
    assert "removed 4 blobs" in r.stdout and "kept" not in r.stdout, r.stdout
    assert not any(b.exists() for b in blobs)


def test_pull_finishes_when_its_landed_blobs_are_removed_under_it(pull):
    proc, gate, cache, out, blobs = pull
    for b in blobs[1:]:  # what an older sbuild's clean, or rm -rf of the cache, did
        b.unlink()
    status, err = _finish(proc, gate)
    assert status == 0, err
    assert (out / "hello.txt").read_text() == "hello from layer 3\n"
    assert (out / "etc" / "hostname").read_text() == "layer2"


_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
tmp = sys.argv[2]
os.pwrite(fd, f"{os.getpid()} {tmp}\\n".encode(), 0)
print("locked", flush=True)
for _ in range(int(sys.argv[3])):
    if tmp != "-":
        with open(tmp, "ab") as f:
            f.write(b"x")
    time.sleep(0.1)
"""


def _hold(cache: BlobCache, digest: str, tmp: str, ticks: int) -> subprocess.Popen:
    locks = cache.root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(locks / digest.split(":")[1]), tmp, str(ticks)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "locked\n"
    return p


DIGEST = "sha256:" + "ab" * 32


def test_a_stuck_download_lock_ends_in_a_clear_error_after_the_stall_time(tmp_path):
    cache = BlobCache(tmp_path / "cache", stall=1.0)
    holder = _hold(cache, DIGEST, "-", 600)
    try:
        t0 = time.monotonic()
        with pytest.raises(RegistryError, match=rf"process {holder.pid} has held .* for 1 s without progress"):
            with cache.lock(DIGEST):
                pass
        assert 1.0 <= time.monotonic() - t0 < 5
    finally:
        holder.kill()
        holder.communicate()


def test_a_download_lock_is_waited_for_while_its_holder_makes_progress(tmp_path):
    cache = BlobCache(tmp_path / "cache", stall=1.0)
    holder = _hold(cache, DIGEST, str(tmp_path / "growing"), 25)  # 2.5 s, growing every 0.1 s
    try:
        t0 = time.monotonic()
        with cache.lock(DIGEST):
            waited = time.monotonic() - t0
        assert waited > 1.5  # longer than the stall time: the holder was progressing
    finally:
        holder.kill()
        holder.communicate()


def test_a_layer_whose_download_never_starts_ends_in_a_clear_error(tmp_path):
    from builder.sources.oci.puller import _Spool

    spool = _Spool(DIGEST, stall=1.0)
    t0 = time.monotonic()
    with pytest.raises(RegistryError, match=f"pulling {DIGEST}: no progress for 1 s"):
        with spool.reader():
            pass
    assert time.monotonic() - t0 < 5


def _clean(cache_root: Path) -> str:
    r = subprocess.run([SBUILD, "cache", "clean", "--cachedir", str(cache_root)], capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_blob_handed_out_by_path_stays_until_its_fetch_ends(tmp_path):
    """library:// and shub:// read their image by path after the download lock is gone."""
    import hashlib

    from builder.sources.oci import PullOptions
    from builder.sources.oci.cache import cache_for

    options = PullOptions(cache_dir=tmp_path / "cache", environ={})
    data = b"an image\n"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with cache_for(options) as cache:
        with cache.lock(digest), cache.writer(digest, len(data)) as w:
            w.write(data)
            w.commit()
        assert "kept 1 blobs in use" in _clean(cache.root) and cache.path(digest).exists()
    with cache_for(options) as cache:
        assert cache.get(digest) is not None
        assert "kept 1 blobs in use" in _clean(cache.root) and cache.path(digest).exists()
    assert "removed 1 blobs" in _clean(cache.root) and not cache.path(digest).exists()
