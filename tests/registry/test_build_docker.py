"""``Bootstrap: docker`` end to end: ``sbuild build`` from the loopback registry, then
``sbuild inspect`` and ``sbuild run`` on the result (spec §B.7 labels, §C runscript)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import images as I
import pytest
import servers
from .conftest import REPO

SBUILD = [sys.executable, "-m", "builder"]
ROOT = Path(__file__).resolve().parents[2]
BUSYBOX = Path("/bin/busybox")


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*SBUILD, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          stdin=subprocess.DEVNULL, timeout=300, env=env)


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "APPTAINER_CACHEDIR": str(tmp_path / "cache")}


def _runnable_layers() -> list[bytes]:
    busybox = BUSYBOX.read_bytes()
    return [I.tar_bytes([I.d("bin"), I.f("bin/busybox", busybox, 0o755), I.sym("bin/sh", "busybox"),
                         I.sym("bin/echo", "busybox"), I.sym("bin/cat", "busybox"), I.d("etc"), I.d("tmp", 0o1777),
                         I.f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")])]


@pytest.fixture(scope="module")
def runnable(registry, tmp_path_factory):
    """Two runnable busybox images in the registry: ENTRYPOINT + CMD, and CMD only."""
    if not BUSYBOX.is_file():
        pytest.skip("needs busybox-static (apt-get install busybox-static)")
    both = I.Image(_runnable_layers(), {"Env": ["PATH=/bin", "GREETING=hi there"],
                                        "Entrypoint": ["/bin/echo", "entry:"], "Cmd": ["$GREETING"]})
    cmd_only = I.Image(_runnable_layers(), {"Env": ["PATH=/bin"], "Cmd": ["/bin/echo", "cmd", "only"]})
    layout = I.write_layout(tmp_path_factory.mktemp("runnable") / "oci", {"both": both, "cmd": cmd_only})
    for tag in ("both", "cmd"):
        servers.skopeo_push(layout, tag, f"{registry.host}/test/runnable:{tag}")
    return f"{registry.host}/test/runnable"


def recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "docker.def"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def labels_of(image: Path, env) -> dict:
    r = cli("inspect", "--labels", "--json", image, env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    found = doc["data"]["attributes"]["labels"] if "data" in doc else doc
    return found


@pytest.mark.slow
def test_run_evaluates_entrypoint_and_cmd_like_apptainer(runnable, tmp_path, env):
    image = tmp_path / "both.sif"
    r = cli("build", "--nohttps", "--arch", "amd64", recipe(tmp_path, f"""
        Bootstrap: docker
        From: {runnable}:both
        """), image, env=env)
    assert r.returncode == 0, r.stderr
    run = cli("run", image, env=env)
    assert run.returncode == 0, run.stderr
    # Apptainer escapes $ in ENTRYPOINT/CMD (shell.ArgsQuoted): the image's "$GREETING" stays literal
    assert run.stdout == "entry: $GREETING\n"
    run = cli("run", image, "a", "two words", env=env)
    assert run.stdout == "entry: a two words\n", run.stderr  # arguments replace CMD, not ENTRYPOINT
    # ... but arguments go through eval unescaped: $GREETING is the image's Env default
    assert cli("run", image, "$GREETING", env=env).stdout == "entry: hi there\n"
    r = cli("build", "--nohttps", "--arch", "amd64", f"docker://{runnable}:cmd", tmp_path / "cmd.sif", env=env)
    assert r.returncode == 0, r.stderr
    assert cli("run", tmp_path / "cmd.sif", env=env).stdout == "cmd only\n"
    assert cli("run", tmp_path / "cmd.sif", "/bin/echo", "replaced", env=env).stdout == "replaced\n"


def test_labels_base_image_wins_unless_force(registry, tmp_path, env):
    text = f"""
        Bootstrap: docker
        From: {registry.host}/{REPO}:1.0

        %labels
            org.example.name from the recipe
            org.example.extra yes
        """
    kept, forced = tmp_path / "kept.sif", tmp_path / "forced.sif"
    r = cli("build", "--nohttps", "--arch", "amd64", recipe(tmp_path, text), kept, env=env)
    assert r.returncode == 0, r.stderr
    assert "org.example.name already exists" in r.stderr
    labels = labels_of(kept, env)
    assert labels["org.example.name"] == "test image" and labels["org.example.extra"] == "yes"
    assert labels["maintainer"] == "<nobody@example.com>"
    assert labels["org.opencontainers.image.base.name"] == f"{registry.host}/{REPO}:1.0"
    digest = labels["org.opencontainers.image.base.digest"]
    manifest = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                               f"docker://{registry.host}/{REPO}:1.0"], capture_output=True, check=True).stdout
    assert digest == I.sha(manifest)  # the digest the tag resolved to
    assert labels["org.label-schema.usage.singularity.deffile.bootstrap"] == "docker"
    r = cli("build", "--force", "--nohttps", "--arch", "amd64", recipe(tmp_path, text), forced, env=env)
    assert r.returncode == 0, r.stderr
    assert labels_of(forced, env)["org.example.name"] == "from the recipe"


@pytest.mark.parametrize("tag", ["multi", "multi-docker"])
@pytest.mark.parametrize("arch", ["arm64", "amd64"])
def test_arch_selects_the_manifest_from_an_index(registry, tmp_path, env, tag, arch):
    box = tmp_path / "box"
    r = cli("build", "--sandbox", "--nohttps", "--arch", arch, recipe(tmp_path, f"""
        Bootstrap: docker
        From: {registry.host}/{REPO}:{tag}
        """), box, env=env)
    assert r.returncode == 0, r.stderr
    env_sh = (box / ".singularity.d/env/10-docker2singularity.sh").read_text()
    assert f'export ARCH="${{ARCH:-"{arch}"}}"' in env_sh  # that platform's config
    labels = json.loads((box / ".singularity.d/labels.json").read_text())
    assert labels["org.opencontainers.image.architecture"] == arch
    index = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                            f"docker://{registry.host}/{REPO}:{tag}"], capture_output=True, check=True).stdout
    assert labels["org.opencontainers.image.base.digest"] == I.sha(index)  # the repo digest: the index


def test_arch_without_a_match_fails_and_names_what_there_is(registry, tmp_path, env):
    target = tmp_path / "x.sif"
    r = cli("build", "--nohttps", "--arch", "s390x", f"docker://{registry.host}/{REPO}:multi", target, env=env)
    assert r.returncode == 2, r.stderr
    assert "linux/s390x" in r.stderr and "linux/arm64/v8" in r.stderr
    assert not target.exists()


@pytest.mark.parametrize("command", ["build", "pull"])
def test_bad_blob_leaves_no_target_and_names_blob_and_registry(proxy, layout, tmp_path, env, command):
    manifest = json.loads((layout / "index.json").read_text())
    desc = next(m for m in manifest["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "1.0")
    layer = json.loads((layout / "blobs/sha256" / desc["digest"][7:]).read_bytes())["layers"][2]["digest"]
    proxy.faults.append(servers.Fault(match=f"/blobs/{layer}", corrupt=True, times=-1))
    target, scratch = tmp_path / "out.sif", tmp_path / "scratch"
    scratch.mkdir()
    ref = f"docker://{proxy.host}/{REPO}:1.0"
    flags = ["--nohttps", "--arch", "amd64", "--tmpdir", scratch]
    r = cli(command, *flags, *([ref, target] if command == "build" else [target, ref]), env=env)
    assert r.returncode == 1, r.stderr
    assert layer in r.stderr and proxy.host in r.stderr
    assert not target.exists() and sorted(os.listdir(tmp_path)) == ["cache", "scratch"]
    assert not os.listdir(scratch)  # no bundle or temporary rootfs left
    blobs = tmp_path / "cache" / "sbuild" / "blobs" / "sha256"
    assert layer[7:] not in os.listdir(blobs)  # the blobs that verified stay cached, the bad one does not
