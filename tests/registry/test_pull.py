"""Pulling from real docker-registry servers on loopback: formats, platforms, auth, faults."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

import images as I
import pytest
import servers
from .conftest import HAVE_ZSTD, REPO

from builder.sources.oci import (AuthError, Credentials, DigestError, PullOptions, PlatformError,
                                 RegistryError, fetch_to_rootfs, parse_platform)

AMD64 = parse_platform("amd64")


def opts(cache_dir, **kw):
    kw.setdefault("platform", AMD64)
    return PullOptions(cache_dir=cache_dir, environ={"HOME": str(cache_dir.parent / "home")}, **kw)


def cached_blobs(cache_dir):
    base = cache_dir / "blobs" / "sha256"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def test_pull_equals_umoci_unpack_of_the_same_image(registry, layout, tmp_path, cache_dir):
    if shutil.which("umoci") is None:
        pytest.skip("needs umoci")
    cfg = fetch_to_rootfs(f"docker://{registry.host}/{REPO}:1.0", tmp_path / "rootfs", opts(cache_dir))
    subprocess.run(["umoci", "unpack", *([] if os.geteuid() == 0 else ["--rootless"]),
                    "--image", f"{layout}:1.0", str(tmp_path / "bundle")], check=True, capture_output=True)
    assert I.file_tree(tmp_path / "rootfs") == I.file_tree(tmp_path / "bundle" / "rootfs")
    assert cfg.entrypoint == ["/bin/sh", "-c"] and cfg.cmd == ["echo hello"]
    assert cfg.tag == "1.0" and cfg.digest.startswith("sha256:")
    assert cfg.name == f"{registry.host}/{REPO}:1.0"


@pytest.mark.parametrize("tag", ["zstd", "plain", "v2s2"])
def test_layer_formats_give_the_same_tree(registry, tag, tmp_path, cache_dir):
    if tag == "zstd" and not HAVE_ZSTD:
        pytest.skip("zstd layers need the zstandard module (pip install zstandard)")
    ref = f"docker://{registry.host}/{REPO}"
    fetch_to_rootfs(f"{ref}:1.0", tmp_path / "a", opts(cache_dir))
    fetch_to_rootfs(f"{ref}:{tag}", tmp_path / "b", opts(cache_dir))
    assert I.file_tree(tmp_path / "a") == I.file_tree(tmp_path / "b")


@pytest.mark.parametrize("tag", ["multi", "multi-docker"])
@pytest.mark.parametrize("arch,expect", [("arm64", "ARCH=arm64"), ("aarch64", "ARCH=arm64"),
                                         ("arm64/v8", "ARCH=arm64"), ("amd64", "ARCH=amd64")])
def test_platform_selection_from_index(registry, tag, arch, expect, tmp_path, cache_dir):
    cfg = fetch_to_rootfs(f"docker://{registry.host}/{REPO}:{tag}", tmp_path / "r",
                          opts(cache_dir, platform=parse_platform(arch)))
    assert cfg.env == [expect]


def test_no_matching_platform_is_a_clear_error(registry, tmp_path, cache_dir):
    with pytest.raises(PlatformError) as e:
        fetch_to_rootfs(f"docker://{registry.host}/{REPO}:multi", tmp_path / "r",
                        opts(cache_dir, platform=parse_platform("s390x")))
    assert "linux/s390x" in e.value.message and "linux/arm64/v8" in e.value.hint


def test_pull_by_digest_and_missing_tag(registry, tmp_path, cache_dir):
    cfg = fetch_to_rootfs(f"docker://{registry.host}/{REPO}:1.0", tmp_path / "a", opts(cache_dir))
    again = fetch_to_rootfs(f"docker://{registry.host}/{REPO}@{cfg.digest}", tmp_path / "b", opts(cache_dir))
    assert again.digest == cfg.digest and again.name == f"{registry.host}/{REPO}@{cfg.digest}"
    with pytest.raises(RegistryError, match="MANIFEST_UNKNOWN") as e:
        fetch_to_rootfs(f"docker://{registry.host}/{REPO}:nope", tmp_path / "c", opts(cache_dir))
    assert registry.host in e.value.message


def test_second_pull_is_served_from_the_cache(proxy, tmp_path, cache_dir):
    ref = f"docker://{proxy.host}/{REPO}:1.0"
    fetch_to_rootfs(ref, tmp_path / "a", opts(cache_dir))
    assert len(cached_blobs(cache_dir)) == 4  # config + 3 layers
    proxy.seen.clear()
    fetch_to_rootfs(ref, tmp_path / "b", opts(cache_dir))
    assert not [s for s in proxy.seen if "/blobs/" in s["path"]]
    assert I.file_tree(tmp_path / "a") == I.file_tree(tmp_path / "b")


def test_disable_cache_leaves_no_cache(proxy, tmp_path, cache_dir):
    fetch_to_rootfs(f"docker://{proxy.host}/{REPO}:1.0", tmp_path / "a", opts(cache_dir, disable_cache=True,
                                                                              tmpdir=tmp_path))
    assert not cache_dir.exists()
    assert sorted(os.listdir(tmp_path)) == ["a"]  # nothing left in --tmpdir, no HOME created


def _layer_digest(layout, index=0):
    import json
    idx = json.loads((layout / "index.json").read_text())
    desc = next(m for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "1.0")
    manifest = json.loads((layout / "blobs/sha256" / desc["digest"].split(":")[1]).read_bytes())
    return manifest["layers"][index]["digest"]


@pytest.mark.parametrize("fault", ["truncate", "corrupt", "status"])
def test_bad_blob_leaves_no_cache_entry_and_names_blob_and_registry(proxy, layout, tmp_path, cache_dir, fault):
    digest = _layer_digest(layout, 1)
    kw = {"truncate": {"truncate": 100, "times": -1}, "corrupt": {"corrupt": True, "times": -1},
          "status": {"status": 500, "times": -1}}[fault]
    proxy.faults.append(servers.Fault(match=f"/blobs/{digest}", **kw))
    slept = []
    with pytest.raises(RegistryError) as e:
        fetch_to_rootfs(f"docker://{proxy.host}/{REPO}:1.0", tmp_path / "r",
                        opts(cache_dir) if fault != "status" else
                        PullOptions(cache_dir=cache_dir, platform=AMD64, environ={}), sleep=slept.append)
    assert digest in str(e.value) and proxy.host in str(e.value)
    assert slept == ([1.0, 2.0, 4.0, 8.0] if fault == "status" else [])  # 5xx: 5 tries, doubling waits
    assert digest.split(":")[1] not in cached_blobs(cache_dir)
    assert not list((cache_dir / "tmp").iterdir())
    if fault == "corrupt":
        assert isinstance(e.value, DigestError)


def test_transient_errors_are_retried(proxy, tmp_path, cache_dir, layout):
    proxy.faults += [servers.Fault(match="/manifests/", status=429, retry_after="0", times=2),
                     servers.Fault(match=f"/blobs/{_layer_digest(layout, 0)}", status=503, times=1)]
    slept = []
    fetch_to_rootfs(f"docker://{proxy.host}/{REPO}:1.0", tmp_path / "r",
                    PullOptions(cache_dir=cache_dir, platform=AMD64, environ={}), sleep=slept.append)
    assert slept == [0.0, 0.0, 1.0]  # Retry-After: 0 honoured twice, then the first back-off step
    assert (tmp_path / "r" / "hello.txt").read_text() == "hello from layer 3\n"


def test_dropped_connection_is_retried(proxy, tmp_path, cache_dir, layout):
    digest = _layer_digest(layout, 0)
    proxy.faults.append(servers.Fault(match=f"/blobs/{digest}", truncate=200, times=1))
    fetch_to_rootfs(f"docker://{proxy.host}/{REPO}:1.0", tmp_path / "r", opts(cache_dir))
    gets = [s for s in proxy.seen if digest in s["path"]]
    assert len(gets) == 2  # the dropped one, then the resumed (or restarted) one
    assert (tmp_path / "r" / "bin" / "busybox").stat().st_size == 1800


def test_basic_auth(basic_registry, tmp_path, cache_dir, caplog):
    ref = f"docker://{basic_registry.host}/{REPO}:1.0"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError) as e:
        fetch_to_rootfs(ref, tmp_path / "a", opts(cache_dir))
    assert "401" in e.value.message
    with pytest.raises(AuthError) as e:
        fetch_to_rootfs(ref, tmp_path / "b", opts(cache_dir, login=Credentials(servers.USER, "wrong-pw-123")))
    assert "wrong-pw-123" not in e.value.render()
    fetch_to_rootfs(ref, tmp_path / "c", opts(cache_dir, login=Credentials(servers.USER, servers.PASSWORD)))
    assert (tmp_path / "c" / "hello.txt").exists()
    assert servers.PASSWORD not in caplog.text and "wrong-pw-123" not in caplog.text


def test_credentials_from_env_and_docker_config(basic_registry, tmp_path, cache_dir):
    import base64
    import json
    ref = f"docker://{basic_registry.host}/{REPO}:1.0"
    env = {"HOME": str(tmp_path / "h"), "APPTAINER_DOCKER_USERNAME": servers.USER,
           "APPTAINER_DOCKER_PASSWORD": servers.PASSWORD}
    fetch_to_rootfs(ref, tmp_path / "a", PullOptions(cache_dir=cache_dir, platform=AMD64, environ=env))
    cfgdir = tmp_path / "h" / ".docker"
    cfgdir.mkdir(parents=True)
    token = base64.b64encode(f"{servers.USER}:{servers.PASSWORD}".encode()).decode()
    (cfgdir / "config.json").write_text(json.dumps({"auths": {f"http://{basic_registry.host}/v1/": {"auth": token}}}))
    fetch_to_rootfs(ref, tmp_path / "b", PullOptions(cache_dir=cache_dir, platform=AMD64,
                                                      environ={"HOME": str(tmp_path / "h")}))
    assert (tmp_path / "b" / "hello.txt").exists()


def test_tls_registry_with_ca_bundle(tls_registry, tmp_path, cache_dir):
    ref = f"docker://{tls_registry.host}/{REPO}:1.0"
    with pytest.raises(RegistryError, match="certificate") as e:
        fetch_to_rootfs(ref, tmp_path / "a", opts(cache_dir))
    assert e.value.hint
    fetch_to_rootfs(ref, tmp_path / "b", opts(cache_dir, ca_bundle=str(tls_registry.ca)))
    assert (tmp_path / "b" / "hello.txt").exists()


def test_token_auth_anonymous_pull(token_registry, tmp_path, cache_dir):
    token_registry.token_server.requests.clear()
    fetch_to_rootfs(f"docker://{token_registry.host}/{REPO}:1.0", tmp_path / "a", opts(cache_dir))
    scopes = [r.get("query", {}).get("scope") for r in token_registry.token_server.requests]
    assert [f"repository:{REPO}:pull"] in scopes
    assert all(r["authorization"] == "" for r in token_registry.token_server.requests)


def test_redirected_blobs_get_no_credentials(token_registry, tmp_path, cache_dir, caplog):
    proxy = servers.FaultProxy(f"http://{token_registry.host}").start()
    try:
        proxy.faults.append(servers.Fault(match="/blobs/sha256:", redirect=True, times=-1))
        caplog.set_level(logging.DEBUG)
        fetch_to_rootfs(f"docker://{proxy.host}/{REPO}:1.0", tmp_path / "a",
                        opts(cache_dir, login=Credentials(servers.USER, servers.PASSWORD)))
    finally:
        proxy.stop()
    redirected = [s for s in proxy.seen if s["host"].startswith("localhost")]
    direct = [s for s in proxy.seen if s["host"].startswith("127.0.0.1") and "/blobs/" in s["path"]]
    assert redirected and all(s["authorization"] is None for s in redirected)
    assert direct and all(s["authorization"].startswith("Bearer ") for s in direct)
    assert servers.PASSWORD not in caplog.text
    assert all(s["authorization"] != "" for s in direct)


def test_plain_http_needs_nohttps_for_non_local_names(tmp_path, cache_dir):
    with pytest.raises(RegistryError) as e:
        fetch_to_rootfs("docker://registry.invalid:1/x/y:1", tmp_path / "a", opts(cache_dir))
    assert "registry.invalid:1" in e.value.message


def _small_sif(tmp_path):
    """A real SIF (amd64 squashfs partition) made with mksquashfs + siftool."""
    if shutil.which("siftool") is None or shutil.which("mksquashfs") is None:
        pytest.skip("needs siftool and mksquashfs (apt-get install siftool squashfs-tools)")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "hello").write_text("hi\n")
    subprocess.run(["mksquashfs", tmp_path / "tree", tmp_path / "fs.sqfs", "-noappend", "-quiet"],
                   check=True, capture_output=True)
    sif = tmp_path / "tiny.sif"
    subprocess.run(["siftool", "new", sif], check=True, capture_output=True)
    subprocess.run(["siftool", "add", sif, tmp_path / "fs.sqfs", "--datatype", "4", "--parttype", "2",
                    "--partfs", "1", "--partarch", "2"], check=True, capture_output=True)
    return sif


def _docker_config(home, host, entry):
    import json
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {host: entry}}))


def test_identity_token_from_docker_config_is_an_oauth2_refresh_token(token_registry, tmp_path, cache_dir,
                                                                      caplog):
    from builder.sources.oci.oras import pull_oras, push_oras

    sif = _small_sif(tmp_path)
    home = tmp_path / "home"
    _docker_config(home, token_registry.host, {"identitytoken": servers.REFRESH_TOKEN})
    options = PullOptions(cache_dir=cache_dir, platform=AMD64, environ={"HOME": str(home)})
    server = token_registry.token_server
    server.requests.clear()
    caplog.set_level(logging.DEBUG)
    push_oras(sif, f"oras://{token_registry.host}/test/idtoken:1", options)  # push needs the token's grant
    posts = [r for r in server.requests if r["method"] == "POST"]
    assert posts and not [r for r in server.requests if r["method"] == "GET"]
    first = posts[0]
    assert first["form"]["grant_type"] == ["refresh_token"]
    assert first["form"]["refresh_token"] == [servers.REFRESH_TOKEN]
    assert first["form"]["service"] == ["test-registry"]
    assert "repository:test/idtoken:pull,push" in first["form"]["scope"][0].split()
    assert first["content_type"] == "application/x-www-form-urlencoded" and not first["authorization"]
    # the token server's rotated refresh token is used from then on
    assert all(r["form"]["refresh_token"][0] in server.refresh_tokens for r in posts)
    pull_oras(f"oras://{token_registry.host}/test/idtoken:1", tmp_path / "back.sif", options)
    assert (tmp_path / "back.sif").read_bytes() == sif.read_bytes()
    assert servers.REFRESH_TOKEN not in caplog.text


def test_rejected_identity_token_is_an_auth_error(token_registry, tmp_path, cache_dir):
    from builder.sources.oci.oras import push_oras

    sif = _small_sif(tmp_path)
    home = tmp_path / "home"
    _docker_config(home, token_registry.host, {"identitytoken": "revoked-token-987"})
    with pytest.raises(AuthError) as e:
        push_oras(sif, f"oras://{token_registry.host}/test/idtoken:2",
                  PullOptions(cache_dir=cache_dir, platform=AMD64, environ={"HOME": str(home)}))
    assert token_registry.host in e.value.message and "401" in e.value.message
    assert "revoked-token-987" not in e.value.render()
