"""Registry faults through ``servers.FaultProxy`` on loopback in front of the real docker-registry:
5xx and 429 (with ``Retry-After``), connection resets and truncation mid-blob, wrong bodies,
stalls before the headers and in the body. Each pull (``sbuild pull --sandbox`` and, for a few,
``sbuild build`` of a SIF, run as a subprocess with a hard timeout) either succeeds with the
right content after bounded retries (a cut blob is resumed with ``Range``) or fails with a
clear error naming the registry, never an internal error, never a TARGET, never an
unverified blob in the cache; each as root (a cache of its own) and rootless (the unprivileged
user, with their default cache under their HOME); a stall fails within the stated time
(``SBUILD_REGISTRY_RETRIES`` x ``SBUILD_REGISTRY_TIMEOUT`` + the back-off).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import images
import servers
from relhelpers import REPO, SBUILD, no_internal_error, run_sbuild

pytestmark = [pytest.mark.scenario("registry faults"), pytest.mark.slow, pytest.mark.timeout(180)]
TIMEOUT, RETRIES = 2.0, 3
STATED = RETRIES * TIMEOUT + (1 + 2)  # tries x read timeout + the back-off between them (1 s, 2 s)
BIG = os.urandom(3 << 20)  # one incompressible 3 MiB file: room to cut a blob after whole 1 MiB reads


@pytest.fixture(scope="module")
def big(registry, tmp_path_factory):
    """Push ``test/hand:big`` (one layer with a 3 MiB random file) to the registry; returns
    the layer's digest, the config's digest and the layer's size."""
    layout = images.write_layout(tmp_path_factory.mktemp("big") / "oci",
                                 {"big": images.Image([images.tar_bytes([images.f("big.bin", BIG)])], {})})
    servers.skopeo_push(layout, "big", f"{registry.host}/{REPO}:big")
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]).read_bytes())
    return manifest["layers"][0]["digest"], manifest["config"]["digest"], manifest["layers"][0]["size"]


class _Puller:
    """Where one scenario pulls: as root in ``tmp_path`` with its own cache (``SBUILD_CACHEDIR``),
    or rootless as the unprivileged user in a directory of theirs, with the user's default
    cache (``~/.cache/sbuild`` under the HOME given)."""

    def __init__(self, mode: str, tmp_path: Path, request) -> None:
        self.mode, self.user = mode, None
        self.base = tmp_path
        self.cache = tmp_path / "cache"
        if mode == "rootless":
            self.user = request.getfixturevalue("unprivileged_user")
            self.base = request.getfixturevalue("shared_dir")
            (self.base / "home").mkdir()
            self.user.chown(self.base)
            self.cache = self.base / "home" / ".cache" / "sbuild"

    def pull(self, proxy, tag: str = "big", build: bool = False):
        out = self.base / ("img.sif" if build else "sb")
        cmd = ["build", out] if build else ["pull", "--sandbox", out]
        env = {"SBUILD_REGISTRY_TIMEOUT": str(TIMEOUT), "SBUILD_REGISTRY_RETRIES": str(RETRIES)}
        started = time.monotonic()
        if self.user is None:
            env.update(SBUILD_CACHEDIR=str(self.cache), HOME=str(self.base))
            r = run_sbuild(*cmd, f"docker://{proxy.host}/{REPO}:{tag}", env=env, timeout=120)
        else:
            env.update(HOME=str(self.base / "home"))
            r = self.user.run(SBUILD, *cmd, f"docker://{proxy.host}/{REPO}:{tag}", env=env, timeout=120,
                              stdin=subprocess.DEVNULL)
        return r, out, time.monotonic() - started

    def leftovers(self) -> list[str]:
        """What the pull left in its directory besides the cache (and the rootless HOME)."""
        return sorted(set(os.listdir(self.base)) - {"cache", "home"})


@pytest.fixture(params=["root", "rootless"])
def puller(request, tmp_path):
    return _Puller(request.param, tmp_path, request)


def _cache_verified(puller: _Puller) -> None:
    """Every blob in the cache has the digest it is named after (and, rootless, the user owns it)."""
    blobs = puller.cache / "blobs" / "sha256"
    for blob in blobs.iterdir() if blobs.is_dir() else ():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"unverified cache entry {blob}"
        if puller.user is not None:
            assert blob.stat().st_uid == puller.user.uid, blob


def _ok(r, out: Path) -> None:
    no_internal_error(r.stderr)
    assert r.returncode == 0, r.stderr[-2000:]
    if out.is_dir():
        assert (out / "big.bin").read_bytes() == BIG


def _failed(r, out: Path, proxy, *words: str) -> None:
    no_internal_error(r.stderr)
    assert r.returncode != 0
    assert proxy.host in r.stderr, r.stderr[-2000:]  # the message names the registry
    for w in words:
        assert w in r.stderr, r.stderr[-2000:]
    assert not out.exists(), "a failed pull left its TARGET"
    assert not [p for p in out.parent.iterdir() if p.name.startswith((".sb", ".img", "sb.", "img."))]


LAYER, CONFIG, MANIFEST = "layer", "config", "manifest"

# name -> (what the fault matches, Fault keywords, expected: "ok" or words the error must hold)
SCENARIOS = {
    "500-manifest-twice": (MANIFEST, {"status": 500, "times": 2}, "ok"),
    "503-blob-twice": (LAYER, {"status": 503, "times": 2}, "ok"),
    "429-retry-after-1": (MANIFEST, {"status": 429, "retry_after": "1", "times": 1}, "ok"),
    "429-always": (MANIFEST, {"status": 429, "retry_after": "0", "times": -1}, ["429"]),
    "500-blob-always": (LAYER, {"status": 500, "times": -1}, ["500"]),
    "500-config-always": (CONFIG, {"status": 500, "times": -1}, ["500"]),
    "reset-mid-blob-once": (LAYER, {"reset": 2600000, "times": 1}, "ok"),
    "reset-mid-blob-always": (LAYER, {"reset": 2600000, "times": -1}, []),
    "truncate-mid-blob-once": (LAYER, {"truncate": 2600000, "times": 1}, "ok"),
    "truncate-every-answer-at-2.6MB": (LAYER, {"truncate": 2600000, "times": -1}, "ok"),  # resumed: each is short
    "short-wrong-body-blob": (LAYER, {"body": b"\0" * 1000, "times": -1}, ["truncated"]),
    "same-size-wrong-body-blob": (LAYER, {"body": "same-size", "times": -1}, ["digest"]),
    "config-not-a-descriptor": (MANIFEST, {"body": b'{"schemaVersion": 2, "config": {"size": 1}, "layers": []}',
                                           "times": -1}, ["not a valid image manifest"]),
    "digest-path-traversal": (MANIFEST, {"body": b'{"schemaVersion": 2, "config": {"digest": "sha256:../../../etc/x'
                                                 b'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "size": 9}, "layers": []}',
                                         "times": -1}, ["not a valid image manifest"]),
    "corrupt-blob": (LAYER, {"corrupt": True, "times": -1}, ["digest"]),
    "wrong-body-manifest": (MANIFEST, {"body": b'{"schemaVersion": 2, "layers": 7}', "times": -1},
                            ["not a valid image manifest"]),
    "garbage-manifest": (MANIFEST, {"body": b"\x1f\x8b garbage", "times": -1}, []),
    "stall-before-headers-once": (MANIFEST, {"stall_headers": 6, "times": 1}, "ok"),
    "stall-before-headers-always": (MANIFEST, {"stall_headers": 60, "times": -1}, ["timed out"]),
    "stall-mid-body-once": (LAYER, {"pause": 30, "pause_at": 2200000, "times": 1}, "ok"),
    "stall-every-answer-at-2.2MB": (LAYER, {"pause": 60, "pause_at": 2200000, "times": -1}, "ok"),
    "stall-mid-body-always": (LAYER, {"pause": 60, "pause_at": 1000, "times": -1}, ["connection lost"]),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_registry_fault(proxy, big, puller, name):
    where, kw, expected = SCENARIOS[name]
    layer, config, size = big
    if kw.get("body") == "same-size":
        kw = {**kw, "body": os.urandom(size)}
    match = {LAYER: f"/blobs/{layer}", CONFIG: f"/blobs/{config}", MANIFEST: "/manifests/big"}[where]
    proxy.faults.append(servers.Fault(match=match, **kw))
    r, out, took = puller.pull(proxy)
    if expected == "ok":
        _ok(r, out)
        if "retry_after" in kw:
            assert took >= 1.0  # Retry-After was honoured
    else:
        _failed(r, out, proxy, *expected)
    _cache_verified(puller)
    assert took < STATED + 25, f"took {took:.1f} s, stated bound {STATED:.0f} s (+ the rest of the pull)"


def test_a_cut_blob_is_resumed_with_range(proxy, big, puller):
    layer, _, _ = big
    proxy.faults.append(servers.Fault(match=f"/blobs/{layer}", truncate=2600000, times=1))
    r, out, _ = puller.pull(proxy)
    _ok(r, out)
    gets = [s for s in proxy.seen if layer in s["path"] and s["method"] == "GET"]
    assert len(gets) == 2 and gets[1]["range"] == "bytes=2097152-", gets  # after two whole 1 MiB reads


def test_a_permanent_stall_fails_within_the_stated_time(proxy, big, puller):
    proxy.faults.append(servers.Fault(match="/manifests/big", stall_headers=120, times=-1))
    r, out, took = puller.pull(proxy)
    _failed(r, out, proxy)
    assert STATED - 1 <= took < STATED + 10, (took, STATED)


@pytest.mark.parametrize("fault", [{"reset": 2600000}, {"body": b"\0" * 1000}, {"status": 500}])
def test_a_failed_build_from_a_faulty_registry_leaves_no_target(proxy, big, puller, fault):
    layer, _, _ = big
    proxy.faults.append(servers.Fault(match=f"/blobs/{layer}", times=-1, **fault))
    r, out, _ = puller.pull(proxy, build=True)
    _failed(r, out, proxy)
    _cache_verified(puller)
    assert puller.leftovers() == []


def test_manifest_whose_descriptors_lack_a_digest_is_not_an_internal_keyerror(proxy, big, puller):
    """Regression: ``{"layers": 7}`` or a config without a digest was ``internal error: KeyError: 'digest'``."""
    proxy.faults.append(servers.Fault(match="/manifests/big", body=b'{"schemaVersion": 2, "config": {}, "layers": 7}',
                                      times=-1))
    r, out, _ = puller.pull(proxy)
    _failed(r, out, proxy, "not a valid image manifest")


def test_a_tag_whose_manifest_is_invalid_is_refused_before_its_digest_is_pinned(proxy, big, tmp_path):
    """Regression: the pull through the URI image cache pinned the digest of whatever the tag
    served, unchecked, and the pull by that digest failed with a misleading 'HTTP 404: manifest
    unknown'."""
    proxy.faults.append(servers.Fault(match="/manifests/big", body=b'{"schemaVersion": 2, "layers": 7}', times=-1))
    r, out, _ = _Puller("root", tmp_path, None).pull(proxy)
    _failed(r, out, proxy, "not a valid image manifest")
    assert "404" not in r.stderr
    assert not [s for s in proxy.seen if "/manifests/sha256:" in s["path"]], proxy.seen
