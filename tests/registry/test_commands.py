"""``sbuild pull``, ``sbuild push oras://``, ``sbuild cache list/clean`` through the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
from .conftest import REPO

from builder.sources.oci import PullOptions, parse_platform
from builder.sources.oci.oras import SIF_LAYER, pull_oras


@pytest.fixture
def env(tmp_path, monkeypatch):
    cache = tmp_path / "cachedir"
    monkeypatch.setenv("APPTAINER_CACHEDIR", str(cache))
    return cache / "sbuild"


def test_pull_to_sandbox_writes_docker_metadata(sbuild, registry, tmp_path, env):
    target = tmp_path / "sandbox"
    r = sbuild("pull", "--arch", "amd64", "--sandbox", target, f"docker://{registry.host}/{REPO}:1.0")
    assert r.status == 0, r.err
    assert len([line for line in r.err.splitlines() if line.endswith("MiB done")]) == 3, r.err
    assert (target / "hello.txt").read_text() == "hello from layer 3\n"
    env_sh = (target / ".singularity.d/env/10-docker2singularity.sh").read_text()
    assert 'export FOO="${FOO:-"bar baz"}"' in env_sh
    assert json.loads((target / ".singularity.d/labels.json").read_text())["org.example.name"] == "test image"
    assert (target / "etc/hosts").read_text() == ""
    r = sbuild("pull", "--sandbox", target, f"docker://{registry.host}/{REPO}:1.0")
    assert r.status != 0 and "exists" in r.err


def test_pull_sif_push_oras_and_pull_back(sbuild, registry, tmp_path, env):
    sif = tmp_path / "img.sif"
    r = sbuild("pull", "--arch", "amd64", sif, f"docker://{registry.host}/{REPO}:1.0")
    assert r.status == 0, r.err
    assert sif.read_bytes()[32:41] == b"SIF_MAGIC"
    r = sbuild("push", sif, f"oras://{registry.host}/test/sif:1")
    assert r.status == 0, r.err
    r = sbuild("push", "--chunk-size", "4096", sif, f"oras://{registry.host}/test/sif:chunked")
    assert r.status == 0, r.err
    back = tmp_path / "back.sif"
    r = sbuild("pull", back, f"oras://{registry.host}/test/sif:chunked")
    assert r.status == 0, r.err
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(sif.read_bytes()).digest()
    assert os.stat(back).st_mode & 0o111


def test_oras_pull_refuses_a_container_image(registry, tmp_path):
    with pytest.raises(Exception, match="not a SIF artifact"):
        pull_oras(f"oras://{registry.host}/{REPO}:1.0", tmp_path / "x.sif",
                  PullOptions(platform=parse_platform("amd64"), environ={}, cache_dir=tmp_path / "c"))
    assert not (tmp_path / "x.sif").exists()


def test_cache_list_and_clean(sbuild, registry, tmp_path, env):
    assert sbuild("pull", "--arch", "amd64", "--sandbox", tmp_path / "s",
                  f"docker://{registry.host}/{REPO}:1.0").status == 0
    r = sbuild("cache", "list")
    assert r.status == 0 and "4 blobs" in r.out
    old = next((env / "blobs" / "sha256").iterdir())
    past = time.time() - 10 * 86400
    os.utime(old, (past, past))
    r = sbuild("cache", "clean", "--days", "5", "--dry-run")
    assert "would remove 1 blobs" in r.out and old.exists()
    r = sbuild("cache", "clean", "--days", "5")
    assert "removed 1 blobs" in r.out and not old.exists()
    assert "3 blobs" in sbuild("cache", "list").out
    assert sbuild("cache", "clean").status == 0
    assert "0 blobs" in sbuild("cache", "list").out
    assert SIF_LAYER


def test_build_from_docker_and_oras_bootstrap(sbuild, registry, tmp_path, env):
    recipe = tmp_path / "docker.def"
    recipe.write_text(f"Bootstrap: docker\nFrom: {registry.host}/{REPO}:1.0\n")
    first = tmp_path / "first.sif"
    r = sbuild("build", "--arch", "amd64", "--nohttps", recipe, first)
    assert r.status == 0, r.err
    # no terminal: one heartbeat line per layer when its download completes
    done = [line for line in r.err.splitlines() if line.strip().endswith("MiB done")]
    assert len(done) == 3, r.err
    r = sbuild("inspect", "--labels", first)
    assert "org.example.name: test image" in r.out
    assert sbuild("push", first, f"oras://{registry.host}/test/sif:built").status == 0
    recipe2 = tmp_path / "oras.def"
    recipe2.write_text(f"Bootstrap: oras\nFrom: {registry.host}/test/sif:built\n")
    r = sbuild("build", "--sandbox", "--nohttps", recipe2, tmp_path / "box")
    assert r.status == 0, r.err
    assert any(line.strip().endswith("MiB done") for line in r.err.splitlines()), r.err
    box = tmp_path / "box"
    assert (box / "hello.txt").read_text() == "hello from layer 3\n"
    assert (box / ".singularity.d" / "env" / "10-docker2singularity.sh").exists()
