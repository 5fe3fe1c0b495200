"""Images by URI (issue 13, item 4): ``exec/run/inspect/instance start docker://…`` pull the image
once into the cache as a SIF named by its manifest digest, then run it; a second run needs no
network; a moved tag is pulled again; concurrent first runs pull once.

Each test starts its own loopback docker-registry (it stops some of them) holding a busybox
image (``runnable.py``), and runs the real ``sbuild`` CLI as a subprocess, as root, with its
own cache.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import images
import runnable
import servers

ROOT = Path(__file__).resolve().parents[2]
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the runtime runs these images as root here")


def _image(marker: str, labels: dict | None = None) -> images.Image:
    layers = runnable.runnable_layers() + [images.tar_bytes([images.f("etc/marker", marker + "\n")])]
    config = {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh", "-c", "echo default cmd"]}
    if labels:
        config["Labels"] = labels
    return images.Image(layers, config)


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uri-layout")
    arm = _image("ARM")
    arm.arch, arm.variant = "arm64", "v8"
    return images.write_layout(root / "oci", {"a": _image("A", {"org.example": "yes"}), "b": _image("B"),
                                              "idx": [arm, _image("AMD")]})


@pytest.fixture
def reg(tmp_path, layout):
    with servers.serving(tmp_path / "reg", layout, "a", "test/run:1.0") as registry:
        registry.layout = layout
        yield registry


@pytest.fixture
def cli(tmp_path):
    cachedir = tmp_path / "cachedir"

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LANG": "C.UTF-8",
               "APPTAINER_CACHEDIR": str(cachedir)}
        return subprocess.run([SBUILD, *map(str, args)], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    run.images = cachedir / "sbuild" / "images"
    return run


def _manifest_digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag:
            return m["digest"]
    raise KeyError(tag)


def test_exec_docker_uri_pulls_once_and_runs_offline_the_second_time(reg, cli):
    uri = f"docker://{reg.host}/test/run:1.0"
    first = cli("exec", uri, "cat", "/etc/marker")
    assert (first.returncode, first.stdout) == (0, "A\n"), first.stderr
    assert "image not found" not in first.stderr  # the URI was once read as a path (docker:/…)
    assert "Converting OCI blobs to SIF format" in first.stderr
    entries = sorted(p.name for p in (cli.images / "oci-tmp").iterdir() if not p.name.startswith("."))
    assert entries == [_manifest_digest(reg.layout, "a").partition(":")[2]]
    second = cli("exec", uri, "cat", "/etc/marker")
    assert (second.returncode, second.stdout) == (0, "A\n"), second.stderr
    assert "Using cached SIF image" in second.stderr and "Converting" not in second.stderr
    reg.stop()
    offline = cli("exec", uri, "cat", "/etc/marker")
    assert (offline.returncode, offline.stdout) == (0, "A\n"), offline.stderr
    assert "using the cached image" in offline.stderr


def test_a_moved_tag_is_pulled_again(reg, cli):
    uri = f"docker://{reg.host}/test/run:1.0"
    assert cli("exec", uri, "cat", "/etc/marker").stdout == "A\n"
    servers.skopeo_push(reg.layout, "b", f"{reg.host}/test/run:1.0")
    moved = cli("exec", uri, "cat", "/etc/marker")
    assert (moved.returncode, moved.stdout) == (0, "B\n"), moved.stderr
    assert "Converting OCI blobs to SIF format" in moved.stderr
    assert len([p for p in (cli.images / "oci-tmp").iterdir() if not p.name.startswith(".")]) == 2


def test_run_and_a_pinned_digest_need_no_registry_once_cached(reg, cli):
    digest = _manifest_digest(reg.layout, "a")
    uri = f"docker://{reg.host}/test/run@{digest}"
    r = cli("run", uri)
    assert (r.returncode, r.stdout) == (0, "default cmd\n"), r.stderr
    reg.stop()
    r = cli("exec", uri, "cat", "/etc/marker")
    assert (r.returncode, r.stdout) == (0, "A\n"), r.stderr
    assert "Using cached SIF image" in r.stderr


def test_concurrent_first_runs_pull_once(reg, cli, tmp_path):
    uri = f"docker://{reg.host}/test/run:1.0"
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "APPTAINER_CACHEDIR": str(tmp_path / "cachedir")}
    procs = [subprocess.Popen([SBUILD, "exec", uri, "cat", "/etc/marker"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path) for _ in range(3)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    assert [r[:2] for r in results] == [(0, "A\n")] * 3, [r[2] for r in results]
    assert sum("Converting OCI blobs" in r[2] for r in results) == 1
    names = sorted(p.name for p in (cli.images / "oci-tmp").iterdir())
    hexpart = _manifest_digest(reg.layout, "a").partition(":")[2]
    assert names == sorted([hexpart, f".{hexpart}.lock"])  # no temp file left behind


def test_inspect_and_instance_start_take_a_uri(reg, cli):
    uri = f"docker://{reg.host}/test/run:1.0"
    r = cli("inspect", "--json", uri)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["data"]["attributes"]["labels"]["org.example"] == "yes"
    r = cli("instance", "start", uri, "uri-inst-2345.5")
    try:
        assert r.returncode == 0, r.stderr
        listed = cli("instance", "list", "--json", "uri-inst-2345.5")
        rows = json.loads(listed.stdout)["instances"]
        assert [row["img"] for row in rows] == [str(next((cli.images / "oci-tmp").glob("[0-9a-f]*")))]
    finally:
        cli("instance", "stop", "uri-inst-2345.5")


def test_oras_uri_runs_the_pushed_sif(reg, cli, tmp_path):
    sif = tmp_path / "run.sif"
    assert cli("pull", sif, f"docker://{reg.host}/test/run:1.0").returncode == 0
    assert cli("push", sif, f"oras://{reg.host}/test/sif:1").returncode == 0
    r = cli("exec", f"oras://{reg.host}/test/sif:1", "cat", "/etc/marker")
    assert (r.returncode, r.stdout) == (0, "A\n"), r.stderr
    assert [p.name for p in (cli.images / "oras").iterdir() if not p.name.startswith(".")]


def test_unknown_transport_is_named_and_other_colons_are_paths(cli, tmp_path):
    r = cli("exec", "foo://x/y", "true")
    assert r.returncode != 0 and "Unsupported transport type: foo" in r.stderr
    r = cli("exec", "oci-archive:x.tar", "true")
    assert r.returncode != 0 and "oci-archive: images cannot be run from this transport" in r.stderr
    r = cli("exec", "my:f.sif", "true")
    assert r.returncode != 0 and "my:f.sif" in r.stderr and "transport" not in r.stderr


def test_an_image_without_labels_gets_an_empty_labels_json(reg, cli, tmp_path):
    servers.skopeo_push(reg.layout, "b", f"{reg.host}/test/run:nolabels")
    sandbox = tmp_path / "sb"
    r = cli("pull", "--sandbox", sandbox, f"docker://{reg.host}/test/run:nolabels")
    assert r.returncode == 0, r.stderr
    labels = json.loads((sandbox / ".singularity.d" / "labels.json").read_text())  # an object, never null
    assert labels["org.label-schema.usage.singularity.deffile.bootstrap"] == "docker"  # (a pull is a build)
    assert not [k for k in labels if not k.startswith(("org.label-schema.", "org.opencontainers.image."))]
    r = cli("inspect", sandbox)
    assert r.returncode == 0 and "unable to parse labels" not in r.stderr, r.stderr


def test_an_unwritable_cache_warns_and_pulls_into_a_temporary_dir(reg, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "APPTAINER_CACHEDIR": "/proc/no-such-dir",
           "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    r = subprocess.run([SBUILD, "exec", f"docker://{reg.host}/test/run:1.0", "cat", "/etc/marker"], env=env,
                       capture_output=True, text=True, cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout) == (0, "A\n"), r.stderr
    assert "is not writable: the image cache is disabled" in r.stderr
    assert list((tmp_path / "tmp").iterdir()) == []  # the temporary pull is removed at exit


def test_an_index_is_keyed_by_the_digest_of_the_hosts_image(reg, cli):
    if os.uname().machine != "x86_64":
        pytest.skip("the index holds arm64 and amd64 images; the amd64 one is expected here")
    servers.skopeo_push(reg.layout, "idx", f"{reg.host}/test/run:idx", all_=True)
    uri = f"docker://{reg.host}/test/run:idx"
    r = cli("exec", uri, "cat", "/etc/marker")
    assert (r.returncode, r.stdout) == (0, "AMD\n"), r.stderr
    index = json.loads((reg.layout / "index.json").read_text())
    [top] = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "idx"]
    doc = json.loads((reg.layout / "blobs" / "sha256" / top["digest"].partition(":")[2]).read_bytes())
    [amd] = [m["digest"] for m in doc["manifests"] if m["platform"]["architecture"] == "amd64"]
    [entry] = [p for p in (cli.images / "oci-tmp").iterdir() if not p.name.startswith(".")]
    assert entry.name == amd.partition(":")[2]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_disable_cache_pulls_into_a_temporary_dir(reg, tmp_path, how):
    (tmp_path / "tmp").mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "APPTAINER_CACHEDIR": str(tmp_path / "cachedir"),
           "TMPDIR": str(tmp_path / "tmp"), **({"APPTAINER_DISABLE_CACHE": "true"} if how == "env" else {})}
    flags = ["--disable-cache"] if how == "flag" else []
    r = subprocess.run([SBUILD, "exec", *flags, f"docker://{reg.host}/test/run:1.0", "cat", "/etc/marker"],
                       env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout) == (0, "A\n"), r.stderr
    assert not (tmp_path / "cachedir" / "sbuild" / "images").exists()
    assert list((tmp_path / "tmp").iterdir()) == []
