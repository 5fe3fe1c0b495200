"""shub:// and ``Bootstrap: shub`` against the fake Singularity Hub on loopback.

Containers: ``vsoch/hello`` (a .simg; tag ``sif`` is a SIF), ``vsoch/badmd5`` (the version
is not the file's md5), ``vsoch/notready`` (``image`` is null), ``vsoch/short`` (the object
store truncates it).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import libservers as servers
from libservers import cache_files

from builder.sources.oci.errors import ReferenceError_
from builder.sources.shub import ShubRef, parse_shub_ref, shub_api_url

ROOT = Path(__file__).resolve().parents[2]


def sbuild_proc(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, stdin=subprocess.DEVNULL, timeout=120)


@pytest.mark.parametrize("text,ref,url", [
    ("shub://vsoch/hello-world", ShubRef(None, "vsoch", "hello-world", "latest", None),
     "https://singularity-hub.org/api/container/vsoch/hello-world:latest"),
    ("shub://vsoch/hello-world:dev@" + "a" * 32, ShubRef(None, "vsoch", "hello-world", "dev", "a" * 32),
     "https://singularity-hub.org/api/container/vsoch/hello-world:dev@" + "a" * 32),
    ("shub://vsoch/hello-world@" + "b" * 40, ShubRef(None, "vsoch", "hello-world", None, "b" * 40),
     "https://singularity-hub.org/api/container/vsoch/hello-world@" + "b" * 40),
    ("shub://reg.example.org/u/c:t", ShubRef("reg.example.org", "u", "c", "t", None),
     "https://reg.example.org/api/container/u/c:t"),
    ("shub://127.0.0.1:8000/u/c", ShubRef("127.0.0.1:8000", "u", "c", "latest", None),
     "https://127.0.0.1:8000/api/container/u/c:latest"),
    ("u/c", ShubRef(None, "u", "c", "latest", None), "https://singularity-hub.org/api/container/u/c:latest"),
])
def test_reference_grammar(text, ref, url):
    assert parse_shub_ref(text) == ref
    assert shub_api_url(ref) == url


@pytest.mark.parametrize("text", ["shub://hello", "shub://u/c@1234", "shub://u/c:t:u", "shub://u/../c",
                                  "shub://u/c/../../x", "shub://" + "u" * 40 + "/c"])
def test_bad_references_are_usage_errors(text):
    with pytest.raises(ReferenceError_) as e:
        parse_shub_ref(text)
    assert e.value.exit_status == 2


def test_build_from_recipe_runs_and_keeps_labels(sbuild, shub, tmp_path, env):
    recipe = tmp_path / "shub.def"
    recipe.write_text(f"Bootstrap: shub\nFrom: {shub.host}/vsoch/hello\n\n%post\n    echo post > /etc/post\n")
    target = tmp_path / "out.sif"
    r = sbuild("build", "--nohttps", target, recipe)
    assert r.status == 0, r.err
    r = sbuild("inspect", "--labels", target)
    assert "org.example.title: served-shub" in r.out and "deffile.bootstrap: shub" in r.out
    p = sbuild_proc("exec", target, "/bin/sh", "-c", "cat /etc/post; echo $GREETING")
    assert p.stdout == "post\nhello from the shub image\n", p.stderr


@pytest.mark.parametrize("tag", ["latest", "sif"])
def test_uri_build_from_simg_and_sif(sbuild, shub, tmp_path, env, tag):
    target = tmp_path / "out.simg"
    r = sbuild("build", "--nohttps", f"shub://{shub.host}/vsoch/hello:{tag}", target)
    assert r.status == 0, r.err
    assert sbuild_proc("run", target).stdout.strip().startswith("hello from the")


def test_pull_keeps_simg_converts_to_sif_and_caches(sbuild, shub, store, images, tmp_path, env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SINGULARITY_NOHTTPS", "1")
    r = sbuild("pull", tmp_path / "h.simg", f"shub://{shub.host}/vsoch/hello")
    assert r.status == 0, r.err
    assert (tmp_path / "h.simg").read_bytes() == images["simg"]
    assert len(cache_files(env)) == 1 and (env / "shub" / shub.containers["vsoch/hello:latest"].version).is_file()
    before = len(store.seen)
    r = sbuild("pull", f"shub://{shub.host}/vsoch/hello")  # Apptainer's default name, a real SIF
    assert r.status == 0, r.err
    assert len(store.seen) == before  # from the cache
    sif = tmp_path / "hello_latest.sif"
    assert sif.read_bytes()[32:41] == b"SIF_MAGIC"
    assert sbuild_proc("run", sif).stdout == "hello from the shub image\n"
    version = shub.containers["vsoch/hello:latest"].version
    r = sbuild("pull", "--sandbox", tmp_path / "box", f"shub://{shub.host}/vsoch/hello@{version}")
    assert r.status == 0 and (tmp_path / "box/bin/busybox").is_file()
    assert sbuild("cache", "clean", "--days", "1").status == 0  # the blob is fresh: both stay
    assert len(cache_files(env)) == 1 and (env / "shub" / version).is_file()
    assert sbuild("cache", "clean").status == 0  # the blob goes, and the name pointing at it
    assert cache_files(env) == [] and not (env / "shub" / version).exists()


@pytest.mark.parametrize("name,message", [("badmd5", "has md5"), ("short", "truncated"),
                                          ("fileurl", "not http(s)"),
                                          ("notready", "not ready for download"),
                                          ("missing", "manifest was not found")])
def test_failures_leave_no_target_and_no_cache_entry(sbuild, shub, tmp_path, env, name, message):
    target = tmp_path / "x.sif"
    r = sbuild("build", "--nohttps", target, f"shub://{shub.host}/vsoch/{name}")
    assert r.status == 1 and message in r.err and shub.host.split(":")[0] in r.err, r.err
    assert not target.exists() and cache_files(env) == [] and not (env / "shub").exists()


def test_recipes_shub_def_builds_against_the_fake_hub(sbuild, shub, tmp_path, env):
    text = (ROOT / "recipes/shub.def").read_text()
    assert "From: vsoch/hello-world" in text
    recipe = tmp_path / "shub.def"
    recipe.write_text(text.replace("From: vsoch/hello-world", f"From: {shub.host}/vsoch/hello-world"))
    r = sbuild("build", "--nohttps", recipe, tmp_path / "hub.simg")
    assert r.status == 0, r.err
    assert sbuild_proc("exec", tmp_path / "hub.simg", "/bin/sh", "-c", "echo ok").stdout == "ok\n"


def test_gzipped_ext3_image_from_old_builds(sbuild, shub, tmp_path, env):
    if not any(shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin") for name in ("mkfs.ext3", "mke2fs")):
        pytest.skip("writing an ext3 image needs mke2fs (apt-get install e2fsprogs)")
    r = sbuild("build", "--format", "ext3", tmp_path / "old.img", ROOT / "recipes" / "scratch.def")
    assert r.status == 0, r.err
    old = gzip.compress((tmp_path / "old.img").read_bytes(), 1)
    shub.add("vsoch/old", "latest", servers.ShubImage(old))
    target = tmp_path / "old.sif"
    r = sbuild("pull", "--nohttps", target, f"shub://{shub.host}/vsoch/old")
    assert r.status == 0, r.err
    assert target.read_bytes()[32:41] == b"SIF_MAGIC"


@pytest.mark.slow
def test_archive_hint_for_the_default_registry(sbuild, tmp_path, env, monkeypatch):
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # no network: fail fast through a dead proxy
    monkeypatch.setenv("no_proxy", "")
    r = sbuild("pull", tmp_path / "x.sif", "shub://vsoch/hello-world")
    assert r.status == 1 and "singularity-hub.org" in r.err and "read-only archive" in r.err
