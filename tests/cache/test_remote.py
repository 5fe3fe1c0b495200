"""The shared cache in a real registry (Debian's docker-registry on loopback): a second
"machine" (a fresh cache directory) builds the same recipe from it without running %post,
and gets the same bytes."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))
import servers  # noqa: E402

pytestmark = pytest.mark.slow

RECIPE = """\
Bootstrap: busybox
MirrorURL: file:///bin/busybox

%post
    echo ran-post
    echo built > /built

%runscript
    echo hello
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    if shutil.which("docker-registry") is None:
        pytest.skip("needs docker-registry (apt-get install docker-registry)")
    reg = servers.start_registry(tmp_path_factory.mktemp("reg-cache"))
    try:
        yield reg
    finally:
        reg.stop()


def test_second_machine_runs_no_post(registry, write, build, tmp_path, monkeypatch):
    ref = f"docker://{registry.host}/cache/busybox"
    (tmp_path / "data.txt").write_text("data\n")
    path = write(RECIPE.replace("%post", "%files\n    data.txt /data.txt\n\n%post"))
    first = build(path, "first.sif", "--nohttps", "--cache-to", ref)
    assert "ran-post" in first.err
    other = tmp_path / "elsewhere"  # the second machine checked the recipe out in another place
    other.mkdir()
    shutil.copy(path, other / "r.def")
    shutil.copy(tmp_path / "data.txt", other / "data.txt")
    monkeypatch.chdir(other)
    monkeypatch.setenv("SBUILD_CACHEDIR", str(tmp_path / "fresh"))
    second = build(other / "r.def", "second.sif", "--nohttps", "--cache-from", ref)
    assert "ran-post" not in second.err and second.outcome.get("image") == "hit", second.err
    assert (tmp_path / "first.sif").read_bytes() == (other / "second.sif").read_bytes()
    # a metadata change on a third machine: the %post checkpoint comes from the registry
    monkeypatch.setenv("SBUILD_CACHEDIR", str(tmp_path / "third"))
    path.write_text(path.read_text().replace("echo hello", "echo bye"))
    monkeypatch.setenv("SBUILD_CACHE_FROM", ref)
    third = build(path, "third.sif", "--nohttps")
    assert "ran-post" not in third.err and third.outcome["1 stage"].startswith("hit (from docker://"), third.err
    assert build(path, "cold.sif", "--disable-cache").status == 0
    assert Path("third.sif").read_bytes() == Path("cold.sif").read_bytes()


def test_push_skips_existing_blobs_and_keys_do_not_conflict(registry, write, build, tmp_path, monkeypatch):
    ref = f"docker://{registry.host}/cache/two"
    for n in range(2):  # two recipes, two keys, one repository
        build(write(RECIPE.replace("echo built", f"echo built{n}"), f"r{n}.def"), f"o{n}.sif", "--nohttps",
              "--cache-to", ref)
    again = build(write(RECIPE.replace("echo built", "echo built0"), "r0.def"), "o0b.sif", "--nohttps",
                  "--no-cache", "--cache-to", ref)  # pushes the same blobs again: skipped
    assert again.status == 0
    monkeypatch.setenv("SBUILD_CACHEDIR", str(tmp_path / "fresh"))
    for n in range(2):
        r = build(tmp_path / f"r{n}.def", f"f{n}.sif", "--nohttps", "--cache-from", ref)
        assert "ran-post" not in r.err, r.err


def test_docker_base_is_keyed_by_its_manifest_digest(registry, write, build, tmp_path):
    """A tag that moves to another image invalidates the bootstrap checkpoint; an unchanged
    tag is a hit without pulling anything (one manifest request)."""
    import images

    if shutil.which("skopeo") is None:
        pytest.skip("needs skopeo (apt-get install skopeo)")
    layers = images.standard_layers()
    layout = images.write_layout(tmp_path / "oci", {
        "a": images.Image(layers, images.standard_config()),
        "b": images.Image(layers[:1], images.standard_config())})
    servers.skopeo_push(layout, "a", f"{registry.host}/base/img:1")
    (tmp_path / "add.txt").write_text("x\n")  # (the test image has no shell for a %post)
    path = write(f"Bootstrap: docker\nFrom: {registry.host}/base/img:1\n\n%files\n    add.txt /add.txt\n")
    first = build(path, "a.sif", "--nohttps")
    assert first.outcome["1 bootstrap"].startswith("miss")
    (tmp_path / "add.txt").write_text("y\n")
    same = build(path, "b.sif", "--nohttps")
    assert same.outcome["1 bootstrap"].startswith("hit"), same.err
    servers.skopeo_push(layout, "b", f"{registry.host}/base/img:1")  # the tag moves
    moved = build(path, "c.sif", "--nohttps")
    assert "base image changed (sha256:" in moved.outcome["1 bootstrap"], moved.err
    assert "[stage 1] bootstrap: docker" in moved.err
