"""library:// and ``Bootstrap: library`` against the fake Sylabs library on loopback.

Images: ``test/hello/hello`` (303 to the object store), ``direct`` (200 with the body),
``found`` (302, as sregistry answers), ``private`` (needs the token), ``badhash`` (the
library's hash is wrong), ``short`` (the object store truncates it), ``broken`` (HTTP 500),
``armonly`` (tag 1.0 for arm64 only), ``library/default/alpine`` (for the short forms).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import libservers as servers
from libservers import cache_files

from builder.sources.download import DownloadOptions, cache_for
from builder.sources.library import (LibraryNotFound, LibraryOptions, LibraryRef, fetch_library,
                                     library_url, parse_library_ref)
from builder.sources.oci.errors import AuthError, DigestError, ReferenceError_, RegistryError

ROOT = Path(__file__).resolve().parents[2]


def sbuild_proc(*args) -> subprocess.CompletedProcess:
    """Run sbuild in a child process (``exec``/``run`` replace the process that runs them)."""
    return subprocess.run([sys.executable, "-m", "builder", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, stdin=subprocess.DEVNULL, timeout=120)


@pytest.mark.parametrize("text,host,path,tag", [
    ("library://alpine", None, "alpine", "latest"),
    ("library://default/alpine:3.19", None, "default/alpine", "3.19"),
    ("library://entity/collection/container:1.0", None, "entity/collection/container", "1.0"),
    ("library://lib.example.org:8443/e/c/n:v1", "lib.example.org:8443", "e/c/n", "v1"),
    ("library:///e/c/n", None, "e/c/n", "latest"),
    ("library:e/c/n:1.0", None, "e/c/n", "1.0"),
    ("e/c/n", None, "e/c/n", "latest"),
    ("library://e/c/n:sha256." + "a" * 64, None, "e/c/n", "sha256." + "a" * 64),
])
def test_reference_grammar(text, host, path, tag):
    assert parse_library_ref(text) == LibraryRef(host, path, tag)


@pytest.mark.parametrize("text,why", [
    ("library://E/c/n", "invalid name 'E'"),
    ("library://e/c/n:a:b", "more than one ':'"),
    ("library://e/c/n:a,b", "one tag"),
    ("library://h/e/c/../n", "invalid name '..'"),
    ("library://h/../../etc/passwd", "invalid name '..'"),
    ("library://e/c/n:../x", "invalid tag"),
    ("library://e/c/n?x=1", "no query"),
    ("library://user:pw@h/e/c/n", "user info"),
    ("library://", "expected"),
])
def test_hostile_and_bad_references_are_usage_errors(text, why):
    with pytest.raises(ReferenceError_, match=why.replace("'", ".").replace("(", r"\(")) as e:
        parse_library_ref(text)
    assert e.value.exit_status == 2 and "pw" not in e.value.message


def test_library_url_order(env, monkeypatch):
    ref = parse_library_ref("e/c/n")
    assert library_url(ref, LibraryOptions()) == "https://library.sylabs.io"
    monkeypatch.setenv("APPTAINER_LIBRARY", "lib.example.org")
    assert library_url(ref, LibraryOptions()) == "https://lib.example.org"
    assert library_url(ref, LibraryOptions(library="http://other:8080/")) == "http://other:8080"
    hosted = parse_library_ref("library://h.example:81/e/c/n")
    assert library_url(hosted, LibraryOptions(library="http://other")) == "https://h.example:81"
    assert library_url(hosted, LibraryOptions(nohttps=True)) == "http://h.example:81"


def test_build_from_recipe_keeps_labels_and_runs(sbuild, library, tmp_path, env):
    recipe = tmp_path / "lib.def"
    recipe.write_text(f"Bootstrap: library\nFrom: test/hello/hello:1.0\nLibrary: {library.url}\n\n"
                      "%post\n    echo built > /etc/post\n")
    target = tmp_path / "out.sif"
    r = sbuild("build", target, recipe)
    assert r.status == 0, r.err
    r = sbuild("inspect", "--labels", "--json", target)
    assert '"org.example.title": "served-library"' in r.out
    assert '"org.label-schema.usage.singularity.deffile.bootstrap": "library"' in r.out
    p = sbuild_proc("exec", target, "/bin/sh", "-c", "cat /etc/post; echo $GREETING")
    assert p.stdout == "built\nhello from the library image\n", p.stderr
    assert sbuild_proc("run", target).stdout == "hello from the library image\n"


@pytest.mark.parametrize("name", ["hello", "direct", "found"])
def test_uri_build_with_host_follows_303_302_and_200(sbuild, library, tmp_path, env, name):
    target = tmp_path / "out.simg"
    r = sbuild("build", "--nohttps", target, f"library://{library.host}/test/hello/{name}:1.0")
    assert r.status == 0, r.err
    r = sbuild("inspect", "--deffile", target)
    assert r.out.strip() == f"bootstrap: library\nfrom: {library.host}/test/hello/{name}:1.0"
    assert len(cache_files(env)) == 1


def test_uri_build_without_host_uses_the_library_flag(sbuild, library, tmp_path, env):
    target = tmp_path / "out.sif"
    r = sbuild("build", "--library", library.url, target, "library://test/hello/hello:1.0")
    assert r.status == 0, r.err
    assert sbuild_proc("run", target).stdout == "hello from the library image\n"


def test_pull_copies_the_sif_verifies_and_caches(sbuild, library, store, images, tmp_path, env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = sbuild("pull", "--library", library.url, "library://test/hello/hello:1.0")
    assert r.status == 0, r.err
    pulled = tmp_path / "hello_1.0.sif"  # Apptainer's default name
    assert pulled.read_bytes() == images["sif"]
    digest = hashlib.sha256(images["sif"]).hexdigest()
    assert cache_files(env) == [f"blobs/sha256/{digest}"]
    before = len(store.seen)
    r = sbuild("pull", "--library", library.url, "--force", pulled, "library://test/hello/hello:1.0")
    assert r.status == 0 and len(store.seen) == before  # served from the cache
    r = sbuild("pull", "--library", library.url, pulled, "library://test/hello/hello:1.0")
    assert r.status == 2 and "already exists" in r.err
    r = sbuild("pull", "--library", library.url, "--sandbox", tmp_path / "box", f"library://test/hello/hello:sha256.{digest}")
    assert r.status == 0, r.err
    assert (tmp_path / "box/.singularity.d/env/90-environment.sh").read_text().count("hello from the library") == 1


def test_short_names_are_mapped_by_the_library(sbuild, library, tmp_path, env):
    for uri in ("library://alpine", "library://default/alpine:latest", "library://library/default/alpine"):
        r = sbuild("pull", "--library", library.url, "--force", tmp_path / "a.sif", uri)
        assert r.status == 0, (uri, r.err)


def test_ranged_download_from_object_storage_gets_no_token(library, store, images, tmp_path, env, monkeypatch):
    monkeypatch.setenv("SYLABS_AUTH_TOKEN", servers.LIB_TOKEN)
    start = len(store.seen)
    opts = LibraryOptions(library=library.url, arch="amd64",
                          download=DownloadOptions(part_size=128 << 10, cache_dir=tmp_path / "c"))
    with cache_for(opts.download) as cache:
        path = fetch_library(parse_library_ref("test/hello/private:1.0"), opts, cache)
        assert path.read_bytes() == images["sif"]
    ranges = [h.get("Range") for p, h in store.seen[start:]]
    assert len(ranges) == -(-len(images["sif"]) // (128 << 10)) and all(r.startswith("bytes=") for r in ranges)
    assert not any("Authorization" in h for _, h in store.seen[start:])
    assert all(h.get("Authorization") == f"Bearer {servers.LIB_TOKEN}" for p, h in library.seen[-3:])


def test_truncated_range_part_is_an_error_and_leaves_nothing(library, tmp_path, env):
    opts = LibraryOptions(library=library.url, arch="amd64",
                          download=DownloadOptions(part_size=128 << 10, cache_dir=tmp_path / "c"))
    with cache_for(opts.download) as cache, pytest.raises(DigestError, match="truncated"):
        fetch_library(parse_library_ref("test/hello/short:1.0"), opts, cache)
    assert cache_files(tmp_path / "c") == []


def test_concurrent_pulls_share_one_download(library, store, images, tmp_path, env):
    opts = LibraryOptions(library=library.url, arch="amd64", download=DownloadOptions(cache_dir=tmp_path / "c"))
    before = len(store.requests_to("/objects/img-direct")) + len(library.requests_to("/v1/imagefile/test/hello/direct"))
    results: list = []

    def pull() -> None:
        with cache_for(opts.download) as cache:
            results.append(fetch_library(parse_library_ref("test/hello/direct:1.0"), opts, cache).read_bytes())

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [images["sif"]] * 4
    after = len(store.requests_to("/objects/img-direct")) + len(library.requests_to("/v1/imagefile/test/hello/direct"))
    assert after - before == 1


@pytest.mark.parametrize("name", ["norange", "mbsize"])
def test_range_ignored_or_wrong_size_falls_back_to_one_stream(library, images, tmp_path, env, name):
    opts = LibraryOptions(library=library.url, arch="amd64",
                          download=DownloadOptions(part_size=128 << 10, cache_dir=tmp_path / "c"))
    with cache_for(opts.download) as cache:
        path = fetch_library(parse_library_ref(f"test/hello/{name}:1.0"), opts, cache)
        assert path.read_bytes() == images["sif"]
        assert cache_files(tmp_path / "c") == [str(path.relative_to(tmp_path / "c"))]


def test_recipes_library_def_builds_against_the_fake_library(sbuild, library, tmp_path, env):
    text = (ROOT / "recipes/library.def").read_text()
    assert "Library: https://library.example.org" in text
    recipe = tmp_path / "library.def"
    recipe.write_text(text.replace("https://library.example.org", library.url))
    r = sbuild("build", recipe, tmp_path / "lib.sif")
    assert r.status == 0, r.err
    assert sbuild_proc("exec", tmp_path / "lib.sif", "/bin/sh", "-c", "echo ok").stdout == "ok\n"


def test_private_image_needs_the_token_which_never_shows(sbuild, library, tmp_path, env, monkeypatch, caplog):
    target = tmp_path / "p.sif"
    uri = "library://test/hello/private:1.0"
    r = sbuild("pull", "--library", library.url, target, uri)
    assert r.status == 1 and "refused access" in r.err and library.host in r.err and uri in r.err
    assert "SYLABS_AUTH_TOKEN" in r.err and not target.exists()
    token_file = tmp_path / "home/.singularity/sylabs-token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(servers.LIB_TOKEN + "\n")
    caplog.set_level(logging.DEBUG)
    r = sbuild("pull", "--library", library.url, "-v", target, uri)
    assert r.status == 0, r.err
    assert servers.LIB_TOKEN not in r.err + r.out + caplog.text
    assert servers.LIB_TOKEN.encode() not in target.read_bytes()


@pytest.mark.parametrize("name,message", [("badhash", "has hash sha256."), ("short", "truncated")])
def test_bad_download_leaves_no_target_and_no_cache_entry(sbuild, library, tmp_path, env, name, message):
    target = tmp_path / "x.sif"
    r = sbuild("pull", "--library", library.url, target, f"library://test/hello/{name}:1.0")
    assert r.status == 1 and message in r.err and "127.0.0.1" in r.err, r.err
    assert not target.exists() and cache_files(env) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.sif")]


def test_failed_build_leaves_no_target(sbuild, library, tmp_path, env):
    target = tmp_path / "x.sif"
    r = sbuild("build", "--nohttps", target, f"library://{library.host}/test/hello/badhash:1.0")
    assert r.status == 1 and "does not match" in r.err
    assert not target.exists() and cache_files(env) == []


@pytest.mark.slow
def test_server_error_names_server_and_reference(sbuild, library, tmp_path, env):
    r = sbuild("pull", "--library", library.url, tmp_path / "x.sif", "library://test/hello/broken:1.0")
    assert r.status == 1 and "HTTP 500" in r.err and library.host in r.err
    assert "library://test/hello/broken:1.0" in r.err and not (tmp_path / "x.sif").exists()


def test_missing_container_tag_and_arch_say_what_exists(library, tmp_path, env):
    opts = LibraryOptions(library=library.url, arch="amd64", download=DownloadOptions(cache_dir=tmp_path / "c"))
    with cache_for(opts.download) as cache:
        with pytest.raises(LibraryNotFound, match="not found in library") as e:
            fetch_library(parse_library_ref("test/hello/nothing:1.0"), opts, cache)
        with pytest.raises(LibraryNotFound, match="no tag 'nope'") as e:
            fetch_library(parse_library_ref("test/hello/hello:nope"), opts, cache)
        assert "amd64: 1.0, latest" in e.value.hint
        with pytest.raises(LibraryNotFound, match="no amd64 image") as e:
            fetch_library(parse_library_ref("test/hello/armonly:1.0"), opts, cache)
        assert e.value.hint == "tag '1.0' exists for: arm64 (use --arch)" and e.value.exit_status == 2
        arm = LibraryOptions(library=library.url, arch="arm64", download=opts.download)
        assert fetch_library(parse_library_ref("test/hello/armonly:1.0"), arm, cache).is_file()


def test_oci_redirect_path_uses_the_registry_and_its_own_token(oci_library, store, images, tmp_path, env,
                                                                monkeypatch):
    monkeypatch.setenv("SYLABS_AUTH_TOKEN", servers.LIB_TOKEN)
    before = len(store.seen)
    opts = LibraryOptions(library=oci_library.url, arch="amd64",
                          download=DownloadOptions(cache_dir=tmp_path / "c", part_size=256 << 10))
    with cache_for(opts.download) as cache:
        assert fetch_library(parse_library_ref("test/hello/hello:1.0"), opts, cache).read_bytes() == images["sif"]
    reg = oci_library.registry
    assert [p for p, _ in reg.seen if "/manifests/" in p][0].endswith("/manifests/1.0")
    assert len([p for p, _ in reg.seen if "/blobs/" in p]) > 2  # config + Range parts of the SIF
    assert all(h.get("Authorization") == f"Bearer {servers.REG_TOKEN}" for _, h in reg.seen)
    assert len(store.seen) == before and not oci_library.requests_to("/v1/imagefile")
    with cache_for(opts.download) as cache, pytest.raises(Exception, match="no arm64 image"):
        fetch_library(parse_library_ref("test/hello/hello:1.0"),
                      LibraryOptions(library=oci_library.url, arch="arm64", download=opts.download), cache)


def test_service_discovery_and_old_api_warning(store, images, tmp_path, env, monkeypatch, caplog):
    old = servers.Library(store, api_version="1.0.0")
    try:
        old.add("test/hello/hello", "1.0", servers.LibImage("old-hello", images["sif"]))
        monkeypatch.setenv("SBUILD_LIBRARY_REMOTE", old.url)
        opts = LibraryOptions(arch="amd64", download=DownloadOptions(cache_dir=tmp_path / "c"))
        assert library_url(parse_library_ref("e/c/n"), opts) == old.url
        with cache_for(opts.download) as cache:
            fetch_library(parse_library_ref("test/hello/hello:1.0"), opts, cache)
        assert "does not select images by architecture" in caplog.text
        assert old.requests_to("/assets/config/config.prod.json")
    finally:
        old.stop()


def test_disable_cache_leaves_no_cache(sbuild, library, tmp_path, env):
    r = sbuild("build", "--disable-cache", "--nohttps", tmp_path / "o.sif",
               f"library://{library.host}/test/hello/hello:1.0")
    assert r.status == 0, r.err
    assert cache_files(env) == []


def test_fingerprints_refuse_an_unsigned_base(sbuild, library, tmp_path, env):
    recipe = tmp_path / "fp.def"
    recipe.write_text(f"Bootstrap: library\nFrom: test/hello/hello:1.0\nLibrary: {library.url}\n"
                      "Fingerprints: 12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84\n")
    r = sbuild("build", tmp_path / "o.sif", recipe)
    assert r.status == 1 and "integrity: signature not found for object group 1" in r.err
    assert not (tmp_path / "o.sif").exists()


@pytest.mark.slow
def test_https_library_with_ca_bundle(sbuild, store, images, tmp_path, env):
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl (apt-get install openssl)")
    crt, key = servers.make_cert(tmp_path / "tls")
    lib = servers.Library(store, tls=(crt, key))
    try:
        lib.add("test/hello/hello", "1.0", servers.LibImage("img-hello", images["sif"]))
        uri = f"library://{lib.host}/test/hello/hello:1.0"  # a host in the reference: https
        r = sbuild("pull", tmp_path / "a.sif", uri)
        assert r.status == 1 and "TLS certificate not trusted" in r.err and "--ca-bundle" in r.err
        r = sbuild("pull", "--ca-bundle", crt, tmp_path / "a.sif", uri)
        assert r.status == 0, r.err
        assert (tmp_path / "a.sif").read_bytes() == images["sif"]
        r = sbuild("pull", "--nohttps", tmp_path / "b.sif", uri)  # http to a TLS server
        assert r.status == 1 and not (tmp_path / "b.sif").exists()
    finally:
        lib.stop()


def test_unreachable_library_is_a_clear_error(tmp_path, env):
    opts = LibraryOptions(library="http://127.0.0.1:9", download=DownloadOptions(cache_dir=tmp_path / "c",
                                                                               retries=1))
    with cache_for(opts.download) as cache, pytest.raises(RegistryError, match="connection refused") as e:
        fetch_library(parse_library_ref("e/c/n"), opts, cache)
    assert "127.0.0.1:9" in e.value.message and not isinstance(e.value, (AuthError, DigestError))


def test_unprivileged_user_builds_from_the_library_and_runs_it(unprivileged_user, library, tmp_path):
    """A rootless build (implied --fakeroot): download into the user's own cache, unpack, %post, run."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="sbuild-rootless-lib-", dir="/tmp"))
    try:
        (work / "lib.def").write_text(f"Bootstrap: library\nFrom: test/hello/hello:1.0\nLibrary: {library.url}\n\n"
                                      "%post\n    id -u > /uid\n")
        unprivileged_user.chown(work)
        sbuild = str(ROOT / ".venv" / "bin" / "sbuild")
        r = unprivileged_user.run(sbuild, "build", "lib.def", "out.sif", cwd=str(work), stdin=subprocess.DEVNULL,
                                  env={"APPTAINER_CACHEDIR": str(work / "cache")})
        assert r.returncode == 0, r.stderr
        assert (work / "out.sif").stat().st_uid == unprivileged_user.uid
        assert list((work / "cache/sbuild/blobs/sha256").iterdir())  # the user's own cache
        r = unprivileged_user.run(sbuild, "exec", "out.sif", "/bin/sh", "-c", "cat /uid; echo $GREETING",
                                  cwd=str(work), stdin=subprocess.DEVNULL)
        assert r.stdout == "0\nhello from the library image\n", r.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)
