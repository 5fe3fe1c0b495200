"""Fixtures of the registry tests: real docker-registry servers on 127.0.0.1 with the test
images pushed by skopeo, a token server, a fault proxy, and a per-test blob cache.

Servers are session-scoped (each starts in ~30 ms, pushes take ~0.2 s) and stopped by PID
at the end, even when tests fail.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import images  # noqa: E402
import servers  # noqa: E402

REPO = "test/hand"
try:
    import zstandard  # noqa: F401
    HAVE_ZSTD = True
except ImportError:
    HAVE_ZSTD = False


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install docker-registry skopeo umoci)")


@pytest.fixture(scope="session")
def layout(tmp_path_factory) -> Path:
    """OCI layout with tags 1.0 (standard image), multi (amd64 + arm64/v8 index), zstd, plain."""
    root = tmp_path_factory.mktemp("layout")
    std = images.Image(images.standard_layers(), images.standard_config())
    arm = images.Image(images.standard_layers()[:1], {"Env": ["ARCH=arm64"]}, arch="arm64", variant="v8")
    amd = images.Image(images.standard_layers()[:1], {"Env": ["ARCH=amd64"]}, arch="amd64")
    plain = images.Image(images.standard_layers(), images.standard_config(), compress="none")
    # without the zstandard module the zstd tag is a second plain image (the zstd test skips)
    zstd = images.Image(images.standard_layers(), images.standard_config(),
                        compress="zstd" if HAVE_ZSTD else "none")
    return images.write_layout(root / "oci", {"1.0": std, "multi": [arm, amd], "zstd": zstd, "plain": plain})


def _push_all(layout: Path, host: str, **kw) -> None:
    servers.skopeo_push(layout, "1.0", f"{host}/{REPO}:1.0", **kw)
    servers.skopeo_push(layout, "multi", f"{host}/{REPO}:multi", all_=True, **kw)
    servers.skopeo_push(layout, "zstd", f"{host}/{REPO}:zstd", **kw)
    servers.skopeo_push(layout, "plain", f"{host}/{REPO}:plain", **kw)
    servers.skopeo_push(layout, "1.0", f"{host}/{REPO}:v2s2", fmt="v2s2", **kw)
    servers.skopeo_push(layout, "multi", f"{host}/{REPO}:multi-docker", all_=True, fmt="v2s2", **kw)


@pytest.fixture(scope="session")
def registry(tmp_path_factory, layout):
    """A plain-HTTP registry holding the test images."""
    _need("docker-registry", "skopeo")
    reg = servers.start_registry(tmp_path_factory.mktemp("reg-plain"))
    try:
        _push_all(layout, reg.host)
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory, layout):
    _need("docker-registry", "skopeo", "htpasswd")
    work = tmp_path_factory.mktemp("reg-basic")
    pw = servers.htpasswd_file(work / "htpasswd")
    reg = servers.start_registry(work, auth={"htpasswd": {"realm": "basic-realm", "path": str(pw)}})
    try:
        servers.skopeo_push(layout, "1.0", f"{reg.host}/{REPO}:1.0", creds=f"{servers.USER}:{servers.PASSWORD}")
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory, layout):
    _need("docker-registry", "skopeo", "openssl")
    work = tmp_path_factory.mktemp("reg-tls")
    crt, key = servers.make_cert(work / "certs")
    certdir = work / "skopeo-certs"
    certdir.mkdir()
    shutil.copy(crt, certdir / "ca.crt")
    reg = servers.start_registry(work, tls=(crt, key))
    reg.ca = crt
    try:
        servers.skopeo_push(layout, "1.0", f"{reg.host}/{REPO}:1.0", cert_dir=certdir)
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory, layout):
    _need("docker-registry", "skopeo", "openssl")
    work = tmp_path_factory.mktemp("reg-token")
    tokens = servers.TokenServer(work / "token")
    reg = None
    try:
        reg = servers.start_registry(work, auth={"token": {
            "realm": tokens.realm, "service": "test-registry", "issuer": "test-issuer",
            "rootcertbundle": str(tokens.crt)}})
        reg.token_server = tokens
        servers.skopeo_push(layout, "1.0", f"{reg.host}/{REPO}:1.0", creds=f"{servers.USER}:{servers.PASSWORD}")
        yield reg
    finally:
        if reg:
            reg.stop()
        tokens.stop()


@pytest.fixture
def proxy(registry):
    """A fault-injecting proxy in front of the plain registry (fresh per test)."""
    p = servers.FaultProxy(f"http://{registry.host}").start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"
