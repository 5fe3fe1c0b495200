"""Hostile images built end to end from the loopback registry (issue 9, item 4): each
build ends with a clear error (or succeeds) and never with "internal error"; no TARGET is
left by a failed build, and a canary directory beside the build is untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import images as I
import pytest
import servers

ROOT = Path(__file__).resolve().parents[2]
BUSYBOX = Path("/bin/busybox")
DEEP_JSON = 5000  # levels: Go's encoding/json (skopeo, the registry) takes 10000, Python's json ~1000


def _base() -> list:
    return [I.d("bin"), I.f("bin/busybox", BUSYBOX.read_bytes(), 0o755), I.sym("bin/sh", "busybox"),
            I.sym("bin/cat", "busybox"), I.sym("bin/ls", "busybox"), I.d("etc"), I.d("tmp", 0o1777),
            I.f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")]


def _images() -> dict[str, I.Image]:
    deep = "/".join(["a"] * 1500)
    return {
        "deep-json-config": I.Image([I.tar_bytes(_base())], {"Env": ["PATH=/bin"]}),
        "env-dir-loops-to-itself": I.Image([I.tar_bytes(_base() + [I.d(".singularity.d"),
                                                                  I.sym(".singularity.d/env", "env")])]),
        "metadata-dir-loops-below-itself": I.Image([I.tar_bytes(_base() + [
            I.sym(".singularity.d", "/.singularity.d/x")])]),
        "runscript-loops": I.Image([I.tar_bytes(_base() + [I.d(".singularity.d"),
                                                          I.sym(".singularity.d/runscript", "runscript")])]),
        "deep-tree-1500-levels": I.Image([I.tar_bytes(_base() + [I.f(deep + "/bottom", "deep\n")])],
                                         {"Env": ["PATH=/bin"]}),
    }


@pytest.fixture(scope="module")
def hostile(registry, tmp_path_factory):
    if not BUSYBOX.is_file():
        pytest.skip("needs busybox-static (apt-get install busybox-static)")
    images = _images()
    layout = I.write_layout(tmp_path_factory.mktemp("hostile") / "oci", images)
    _deepen_config(layout, "deep-json-config")
    for tag in images:
        servers.skopeo_push(layout, tag, f"{registry.host}/test/hostile:{tag}")
    return f"{registry.host}/test/hostile"


def _deepen_config(layout: Path, tag: str) -> None:
    """Give the image ``tag``'s config a deeply nested member (and fix the digests)."""
    import hashlib
    import json

    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / desc["digest"].split(":")[1]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    raw = json.dumps(config).encode()[:-1] + b', "x-nested": ' + b"[" * DEEP_JSON + b"]" * DEEP_JSON + b"}"
    manifest["config"].update(digest=I.sha(raw), size=len(raw))
    (blobs / hashlib.sha256(raw).hexdigest()).write_bytes(raw)
    body = json.dumps(manifest).encode()
    (blobs / hashlib.sha256(body).hexdigest()).write_bytes(body)
    desc.update(digest=I.sha(body), size=len(body))
    (layout / "index.json").write_text(json.dumps(index))


def cli(*args, env=None, user=None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "builder", *map(str, args)]
    if user is not None:
        argv = user.argv(*argv)
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL,
                          timeout=300, env=env)


@pytest.fixture
def work(tmp_path):
    """A build directory beside a canary one, checked unchanged at the end."""
    canary = tmp_path / "canary"
    (canary / "dir").mkdir(parents=True)
    (canary / "dir" / "file").write_text("keep")
    before = I.file_tree(canary)
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    yield out
    assert I.file_tree(canary) == before


def _env(out: Path) -> dict:
    return {**os.environ, "APPTAINER_CACHEDIR": str(out / "cache")}


def test_deeply_nested_json_config_is_a_clear_error(hostile, work):
    r = cli("build", "--nohttps", "--arch", "amd64", work / "img.sif", f"docker://{hostile}:deep-json-config",
            env=_env(work))
    assert r.returncode != 0
    assert "internal error" not in r.stderr and "nested too deeply" in r.stderr, r.stderr[-2000:]
    assert not (work / "img.sif").exists()


@pytest.mark.parametrize("tag", ["env-dir-loops-to-itself", "metadata-dir-loops-below-itself", "runscript-loops"])
def test_symlink_loop_under_a_metadata_path(hostile, work, tag):
    image = work / "img.sif"
    r = cli("build", "--nohttps", "--arch", "amd64", image, f"docker://{hostile}:{tag}", env=_env(work))
    assert "internal error" not in r.stderr, r.stderr[-2000:]
    if r.returncode != 0:
        assert "symbolic links" in r.stderr and ".singularity.d" in r.stderr, r.stderr[-2000:]
        assert not image.exists()
        return
    for args in (("inspect", image), ("inspect", "--runscript", image), ("inspect", "--environment", image)):
        i = cli(*args, env=_env(work))
        assert "internal error" not in i.stderr, (args, i.stderr[-2000:])
