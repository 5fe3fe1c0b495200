"""A registry that serves the wrong bytes for a big layer (issue 9, item 7: misleading
errors). The layer is applied while it streams, before its digest is known; the wrong bytes
here are a valid gzip stream of garbage, so the applier fails first, on a corrupt tar
header. The error must say that the blob's digest did not match and name the blob and the
registry (the tar error is its cause), not "corrupt tar header"; and no TARGET is left.
The proxy pauses after the first 64 KiB so that the applier always fails before the
download ends."""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
from pathlib import Path

import images as I
import pytest
import servers

from builder.sources.oci.errors import DigestError, LayerError
from builder.sources.oci.platform import Platform
from builder.sources.oci.puller import PullOptions, fetch_to_rootfs

ROOT = Path(__file__).resolve().parents[2]
_SIZE = 8 << 20


@pytest.fixture(scope="module")
def big(registry, tmp_path_factory):
    """An image with one 8 MiB (incompressible) layer in the registry: (ref, digest, size)."""
    data = random.Random(9).randbytes(_SIZE)
    image = I.Image([I.tar_bytes([I.d("data"), I.f("data/big", data)])])
    layout = I.write_layout(tmp_path_factory.mktemp("big") / "oci", {"1": image})
    servers.skopeo_push(layout, "1", f"{registry.host}/test/big:1")
    _, _, layers = image.blobs()
    blob = layers[0][0]
    return "test/big:1", I.sha(blob), len(blob)


def _wrong_bytes(size: int, kind: str = "gzip") -> bytes:
    """``size`` bytes that start as a valid gzip stream of garbage (not a tar), or a gzip
    header followed by garbage (a decompression error)."""
    garbage = random.Random(7).randbytes(size)
    if kind == "gzip":
        return gzip.compress(garbage, compresslevel=0, mtime=0)[:size]
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + garbage)[:size]


def _serve_wrong(proxy, digest: str, size: int, kind: str = "gzip") -> None:
    proxy.faults.append(servers.Fault(match=f"/blobs/{digest}", body=_wrong_bytes(size, kind), pause=0.5,
                                      times=-1))


@pytest.mark.parametrize("kind,cause", [("gzip", "tar header"), ("garbage", "corrupt gzip data")])
def test_wrong_bytes_for_a_big_layer_say_digest_mismatch(proxy, big, tmp_path, kind, cause):
    ref, digest, size = big
    _serve_wrong(proxy, digest, size, kind)
    with pytest.raises(DigestError) as e:
        fetch_to_rootfs(f"docker://{proxy.host}/{ref}", tmp_path / "r",
                        PullOptions(cache_dir=tmp_path / "cache", nohttps=True, platform=Platform("linux", "amd64"),
                                     environ={}))
    text = str(e.value)
    assert "digest mismatch" in text and digest in text and proxy.host in text, text
    assert isinstance(e.value.__cause__, LayerError) and cause in str(e.value.__cause__)
    assert not (tmp_path / "cache" / "blobs" / "sha256" / digest[7:]).exists()


@pytest.mark.parametrize("command", ["build", "pull"])
def test_wrong_bytes_for_a_big_layer_cli(proxy, big, tmp_path, command):
    ref, digest, size = big
    _serve_wrong(proxy, digest, size)
    target, uri = tmp_path / "out.sif", f"docker://{proxy.host}/{ref}"
    env = {**os.environ, "APPTAINER_CACHEDIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "builder", command, "--nohttps", "--arch", "amd64",
                        *([uri, target] if command == "build" else [target, uri])],
                       capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=300, env=env)
    assert r.returncode == 1, r.stderr
    assert "digest mismatch" in r.stderr and digest in r.stderr and proxy.host in r.stderr, r.stderr
    assert "corrupt tar header" not in r.stderr
    assert not target.exists()
