"""``exec docker://…`` as root and as an unprivileged user (issue 13, item 4): the image is
pulled into the profile's own cache once and run from there, also after the registry stops."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REGISTRY_TESTS = Path(__file__).resolve().parents[1] / "registry"


@pytest.fixture(scope="module")
def busybox_registry(tmp_path_factory):
    sys.path.insert(0, str(REGISTRY_TESTS))
    import images
    import runnable
    import servers

    work = tmp_path_factory.mktemp("rt-uri")
    layout = images.write_layout(work / "oci", {"1.0": images.Image(runnable.runnable_layers(),
                                                                    {"Env": ["PATH=/bin"]})})
    with servers.serving(work / "reg", layout, "1.0", "rt/busybox:1.0") as reg:
        yield reg


def test_exec_docker_uri_pulls_into_the_users_cache_once(profile, busybox_registry):
    uri = f"docker://{busybox_registry.host}/rt/busybox:1.0"
    shutil.rmtree(profile.cache / "images", ignore_errors=True)
    first = profile.sbuild("exec", uri, "id", "-u")
    assert (first.status, first.out) == (0, f"{profile.uid}\n"), first.err
    [entry] = [p for p in (profile.cache / "images" / "oci-tmp").iterdir() if not p.name.startswith(".")]
    assert entry.stat().st_uid == profile.uid  # in the caller's cache, as the caller
    second = profile.sbuild("exec", uri, "id", "-u")
    assert (second.status, second.out) == (0, f"{profile.uid}\n"), second.err
    assert "Using cached SIF image" in second.err and "Converting" not in second.err
