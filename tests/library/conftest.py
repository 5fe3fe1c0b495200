"""Fixtures of the library:// and shub:// tests: real images built by sbuild, served by the
fake library, registry, Singularity Hub and object store of ``libservers.py`` on 127.0.0.1.

Images are built once per session (a busybox recipe, as SIF and as .simg); servers are
session-scoped and stopped at the end even when tests fail. Each test gets its own cache
directory and HOME (so no real token file is read) through the environment.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import libservers as servers  # noqa: E402

from builder.cli import main  # noqa: E402

HELLO = """Bootstrap: busybox
MirrorURL: file:///bin/busybox

%labels
    org.example.title served-{kind}

%environment
    export GREETING="hello from the {kind} image"

%runscript
    echo "$GREETING"
"""


def _build(tmp: Path, kind: str, target: str) -> Path:
    recipe = tmp / f"{kind}.def"
    recipe.write_text(HELLO.format(kind=kind))
    out = tmp / target
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(["build", "--quiet", str(recipe), str(out)])
    assert status == 0, err.getvalue()
    return out


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> dict[str, bytes]:
    """``{"sif": …, "simg": …}``: the bytes of two small busybox images built by sbuild."""
    if not Path("/bin/busybox").is_file():
        pytest.skip("busybox-static not installed (apt-get install busybox-static)")
    tmp = tmp_path_factory.mktemp("served")
    return {"sif": _build(tmp, "library", "hello.sif").read_bytes(),
            "simg": _build(tmp, "shub", "hello.simg").read_bytes()}


@pytest.fixture(scope="session")
def store():
    s = servers.ObjectStore()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def library(store, images):
    """The fake library with the images every test uses (see test_library.py for names)."""
    lib = servers.Library(store)
    sif = images["sif"]
    lib.add("test/hello/hello", "1.0", servers.LibImage("img-hello", sif))
    lib.add("test/hello/hello", "latest", servers.LibImage("img-hello", sif))
    lib.add("test/hello/direct", "1.0", servers.LibImage("img-direct", sif, mode="direct"))
    lib.add("test/hello/found", "1.0", servers.LibImage("img-found", sif, mode="302"))
    lib.add("test/hello/private", "1.0", servers.LibImage("img-private", sif, private=True))
    lib.add("test/hello/badhash", "1.0", servers.LibImage("img-badhash", sif, hash="sha256." + "0" * 64))
    lib.add("test/hello/short", "1.0", servers.LibImage("img-short", sif))
    lib.add("test/hello/broken", "1.0", servers.LibImage("img-broken", sif, mode="500"))
    lib.add("test/hello/armonly", "1.0", servers.LibImage("img-arm", sif, arch="arm64"))
    lib.add("library/default/alpine", "latest", servers.LibImage("img-alpine", sif))
    lib.add("library/default/alpine", "3.19", servers.LibImage("img-alpine", sif))  # recipes/library.def
    lib.add("test/hello/norange", "1.0", servers.LibImage("img-norange", sif))
    lib.add("test/hello/mbsize", "1.0", servers.LibImage("img-mbsize", sif, size=len(sif) * 3))
    store.truncate.add("img-short")
    store.no_range.add("img-norange")
    yield lib
    lib.stop()


@pytest.fixture(scope="session")
def oci_library(store, images):
    """A second library that offers the direct OCI pull through its registry."""
    reg = servers.Registry()
    lib = servers.Library(store)
    lib.registry = reg
    lib.add("test/hello/hello", "1.0", servers.LibImage("oci-hello", images["sif"]))
    reg.add("test/hello/hello", "1.0", images["sif"], arch="amd64")
    yield lib
    lib.stop()
    reg.stop()


@pytest.fixture(scope="session")
def shub(store, images):
    hub = servers.Shub(store)
    simg = images["simg"]
    hub.add("vsoch/hello", "latest", servers.ShubImage(simg))
    hub.add("vsoch/hello", "sif", servers.ShubImage(images["sif"]))
    hub.add("vsoch/hello-world", "latest", servers.ShubImage(simg))  # recipes/shub.def
    hub.add("vsoch/fileurl", "latest", servers.ShubImage(simg, url="file:///etc/passwd"))
    hub.add("vsoch/badmd5", "latest", servers.ShubImage(simg, version="0" * 32))
    hub.add("vsoch/notready", "latest", servers.ShubImage(simg, ready=False))
    short = hub.add("vsoch/short", "latest", servers.ShubImage(simg + b"\0"))
    store.truncate.add(f"shub-{short.version}.simg")
    yield hub
    hub.stop()


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """A fresh cache dir and HOME, no token or library in the environment; returns the cache."""
    cache = tmp_path / "cachedir"
    monkeypatch.setenv("APPTAINER_CACHEDIR", str(cache))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("SBUILD_CACHEDIR", "SINGULARITY_CACHEDIR", "SYLABS_AUTH_TOKEN", "SYLABS_TOKEN",
                "APPTAINER_LIBRARY_TOKEN", "SINGULARITY_LIBRARY_TOKEN", "SBUILD_LIBRARY_TOKENFILE",
                "APPTAINER_LIBRARY", "SINGULARITY_LIBRARY", "SBUILD_LIBRARY_REMOTE", "APPTAINER_NOHTTPS",
                "SINGULARITY_NOHTTPS", "APPTAINER_DISABLE_CACHE", "SINGULARITY_DISABLE_CACHE"):
        monkeypatch.delenv(var, raising=False)
    return cache / "sbuild"
