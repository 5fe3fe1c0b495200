"""Hostile images built end to end from the loopback registry (issue 9, item 4): each
build ends with a clear error (or succeeds) and never with "internal error"; no TARGET is
left by a failed build, and a canary directory beside the build is untouched."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import images as I
import pytest
import servers

from base.fsutil import remove_tree

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
        "entrypoint-of-lists": I.Image([I.tar_bytes(_base())], {"Entrypoint": [["/bin/sh"]], "Env": ["PATH=/bin"]}),
        "nul-in-pax-path": I.Image([I.tar_bytes(_base() + [_pax(I.f("etc/evil", "x"), path="etc/x\0y")])]),
        "entry-past-path-max": I.Image([I.tar_bytes(_base() + [I.f("/".join(["p"] * 2500) + "/f", "x")])]),
        "deep-tree-1500-levels": I.Image([I.tar_bytes(_base() + [I.f(deep + "/bottom", "deep\n")])],
                                         {"Env": ["PATH=/bin"]}),
    }


def _pax(entry, **records):
    entry[0].pax_headers = records
    return entry


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


@pytest.fixture(params=["root", "rootless"])
def build(request, tmp_path):
    """``(run, out)``: ``run(*args)`` runs sbuild as root or as the unprivileged user, with a
    cache in ``out``; a canary directory beside ``out`` is checked unchanged at the end."""
    if request.param == "root":
        work = tmp_path
    else:
        user = request.getfixturevalue("unprivileged_user")
        work = Path(tempfile.mkdtemp(prefix="sbuild-hostile-", dir="/tmp"))
        work.chmod(0o755)
    canary = work / "canary"
    (canary / "dir").mkdir(parents=True)
    (canary / "dir" / "file").write_text("keep")
    before = I.file_tree(canary)
    out = work / "out"
    out.mkdir()
    if request.param == "rootless":
        user.chown(out)
    env = {"APPTAINER_CACHEDIR": str(out / "cache")}

    def run(*args) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "builder", *map(str, args)]
        if request.param == "root":
            return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL,
                                  timeout=300, env={**os.environ, **env})
        return user.run(*argv, cwd=str(ROOT), stdin=subprocess.DEVNULL, timeout=300, env=env)
    try:
        yield run, out
        assert I.file_tree(canary) == before
    finally:
        remove_tree(out)  # a loop: pytest's own clean-up recurses, and a deep tree stops it
        if work is not tmp_path:
            remove_tree(work)


def test_deeply_nested_json_config_is_a_clear_error(hostile, build):
    run, out = build
    r = run("build", "--nohttps", "--arch", "amd64", out / "img.sif", f"docker://{hostile}:deep-json-config")
    assert r.returncode != 0
    assert "internal error" not in r.stderr and "nested too deeply" in r.stderr, r.stderr[-2000:]
    assert not (out / "img.sif").exists()


@pytest.mark.parametrize("blob,message", [
    (b'{"config": {"Entrypoint": [["/bin/sh"]]}}', "config.Entrypoint is not a list of strings"),
    (b'{"config": {"Env": [5]}}', "config.Env is not a list of strings"),
    (b'{"config": {"Cmd": "ls"}}', "config.Cmd is not a list of strings"),
    (b'{"config": [1]}', "config is not a JSON object"),
    (b'{"config": {"Labels": ["a"]}}', "config.Labels is not a JSON object"),
    (b"[" * 3000 + b"]" * 3000, "nested too deeply"),
])
def test_config_of_the_wrong_shape_is_an_image_error(blob, message):
    from base.errors import ImageError
    from builder.sources.oci.config import ImageConfig
    from builder.sources.oci.platform import Platform

    with pytest.raises(ImageError, match=message):
        ImageConfig.from_blob(blob, Platform("linux", "amd64", None))


def test_entrypoint_of_lists_is_a_clear_error(hostile, build):
    run, out = build
    r = run("build", "--nohttps", "--arch", "amd64", out / "img.sif", f"docker://{hostile}:entrypoint-of-lists")
    assert r.returncode != 0 and "internal error" not in r.stderr, r.stderr[-2000:]
    assert "config.Entrypoint is not a list of strings" in r.stderr, r.stderr[-2000:]
    assert not (out / "img.sif").exists()


@pytest.mark.parametrize("tag", ["env-dir-loops-to-itself", "metadata-dir-loops-below-itself", "runscript-loops"])
def test_symlink_loop_under_a_metadata_path(hostile, build, tag):
    run, out = build
    image = out / "img.sif"
    r = run("build", "--nohttps", "--arch", "amd64", image, f"docker://{hostile}:{tag}")
    assert "internal error" not in r.stderr, r.stderr[-2000:]
    if r.returncode != 0:
        assert "symbolic links" in r.stderr and ".singularity.d" in r.stderr, r.stderr[-2000:]
        assert not image.exists()
        return
    for args in (("inspect", image), ("inspect", "--runscript", image), ("inspect", "--environment", image)):
        i = run(*args)
        assert "internal error" not in i.stderr, (args, i.stderr[-2000:])


@pytest.mark.parametrize("tag,entry", [("nul-in-pax-path", r"pax record 'path' of entry 'etc/evil' holds a NUL"),
                                       ("entry-past-path-max", r"applying layer entry 'p/p/p.*\(5001 characters")])
def test_refused_layer_entry_names_the_layer_and_the_entry(hostile, build, tag, entry):
    run, out = build
    r = run("build", "--nohttps", "--arch", "amd64", out / "img.sif", f"docker://{hostile}:{tag}")
    assert r.returncode != 0 and "internal error" not in r.stderr, r.stderr[-2000:]
    assert re.search(r"layer sha256:[0-9a-f]{64}: (reading layer: )?" + entry, r.stderr), r.stderr[-2000:]
    assert not (out / "img.sif").exists()


@pytest.mark.slow
def test_tree_1500_levels_deep_builds_and_packs(hostile, build):
    run, out = build
    image = out / "deep.sif"
    r = run("build", "--nohttps", "--arch", "amd64", image, f"docker://{hostile}:deep-tree-1500-levels")
    assert r.returncode == 0, r.stderr[-2000:]
    listing = subprocess.run(["unsquashfs", "-l", "-o", str(_fs_offset(image)), image], capture_output=True,
                             text=True, check=True).stdout
    assert "squashfs-root/" + "/".join(["a"] * 1500) + "/bottom\n" in listing


def _fs_offset(image: Path) -> int:
    from builder.images.probe import probe

    return probe(image).fs_offset
