"""Local OCI sources: oci:, oci-archive:, docker-archive: (docker and OCI layouts), docker-daemon:."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time

import images as I
import pytest

from base.errors import ImageError
from builder.sources.oci import DigestError, PullOptions, PlatformError, fetch_to_rootfs, parse_platform

OPTS = PullOptions(platform=parse_platform("amd64"), environ={})


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory, layout):
    root = tmp_path_factory.mktemp("ref") / "rootfs"
    fetch_to_rootfs(f"oci:{layout}:1.0", root, OPTS)
    return I.file_tree(root)


def test_oci_layout_by_tag_and_digest(layout, tmp_path, reference_tree):
    cfg = fetch_to_rootfs(f"oci:{layout}:1.0", tmp_path / "a", OPTS)
    assert I.file_tree(tmp_path / "a") == reference_tree and cfg.tag == "1.0"
    again = fetch_to_rootfs(f"oci:{layout}@{cfg.digest}", tmp_path / "b", OPTS)
    assert I.file_tree(tmp_path / "b") == reference_tree and again.digest == cfg.digest


def test_oci_layout_needs_a_name_when_it_holds_several(layout, tmp_path):
    with pytest.raises(ImageError, match="holds 4 images") as e:
        fetch_to_rootfs(f"oci:{layout}", tmp_path / "a", OPTS)
    assert "1.0" in e.value.hint


def test_oci_layout_index_by_platform(layout, tmp_path):
    cfg = fetch_to_rootfs(f"oci:{layout}:multi", tmp_path / "a", PullOptions(platform=parse_platform("arm64")))
    assert cfg.env == ["ARCH=arm64"]
    with pytest.raises(PlatformError):
        fetch_to_rootfs(f"oci:{layout}:multi", tmp_path / "b", PullOptions(platform=parse_platform("ppc64le")))


def test_oci_layout_with_corrupt_blob_is_refused(layout, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(layout, bad)
    import json
    idx = json.loads((bad / "index.json").read_text())
    top = next(m for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "1.0")
    manifest = json.loads((bad / "blobs/sha256" / top["digest"][7:]).read_text())
    blob = bad / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises((DigestError, ImageError)):
        fetch_to_rootfs(f"oci:{bad}:1.0", tmp_path / "r", OPTS)


@pytest.mark.parametrize("compress", [False, True])
def test_oci_archive(layout, tmp_path, reference_tree, compress):
    archive = tmp_path / ("img.tar.gz" if compress else "img.tar")
    with tarfile.open(archive, "w:gz" if compress else "w") as tar:
        tar.add(layout, arcname=".")
    fetch_to_rootfs(f"oci-archive:{archive}:1.0", tmp_path / "r", OPTS)
    assert I.file_tree(tmp_path / "r") == reference_tree


def test_docker_archive_classic_layout(tmp_path, reference_tree):
    img = I.Image(I.standard_layers(), I.standard_config())
    archive = I.docker_save_tar(tmp_path / "save.tar", img, "test/hand:1.0")
    cfg = fetch_to_rootfs(f"docker-archive:{archive}", tmp_path / "a", OPTS)
    assert I.file_tree(tmp_path / "a") == reference_tree and cfg.tag == "test/hand:1.0"
    fetch_to_rootfs(f"docker-archive:{archive}:test/hand:1.0", tmp_path / "b", OPTS)
    with pytest.raises(ImageError, match="no image named"):
        I.docker_save_tar(tmp_path / "two.tar", img, "x:1")
        _two_images(tmp_path / "two.tar", tmp_path / "save.tar")
        fetch_to_rootfs(f"docker-archive:{tmp_path / 'two.tar'}:other:9", tmp_path / "c", OPTS)


def _two_images(dest, src):
    import io
    import json
    with tarfile.open(src) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]
    manifest = json.loads(dict((m.name, d) for m, d in members)["manifest.json"])
    manifest.append({**manifest[0], "RepoTags": ["second:1"]})
    with tarfile.open(dest, "w") as out:
        for m, data in members:
            if m.name == "manifest.json":
                data = json.dumps(manifest).encode()
                m.size = len(data)
            out.addfile(m, io.BytesIO(data))


def test_docker_archive_with_wrong_diff_id_is_refused(tmp_path):
    img = I.Image(I.standard_layers(), I.standard_config())
    archive = I.docker_save_tar(tmp_path / "save.tar", img, "t:1")
    layers = I.standard_layers()
    layers[1] = I.tar_bytes([I.f("evil", "swapped layer")])
    swapped = I.Image(layers, I.standard_config())
    # same config (diff_ids of the real layers), different layer content
    _, cfg, _ = img.blobs()
    I.docker_save_tar(tmp_path / "swapped.tar", swapped, "t:1")
    with tarfile.open(tmp_path / "swapped.tar") as tar:
        names = tar.getnames()
    assert names and archive.exists()
    import io
    import json
    with tarfile.open(tmp_path / "swapped.tar") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    manifest = json.loads(dict((m.name, d) for m, d in members)["manifest.json"])
    with tarfile.open(tmp_path / "mixed.tar", "w") as out:
        for m, data in members:
            if m.name == manifest[0]["Config"]:
                data = cfg
                m.size = len(data)
            out.addfile(m, io.BytesIO(data))
    with pytest.raises(DigestError) as e:
        fetch_to_rootfs(f"docker-archive:{tmp_path / 'mixed.tar'}", tmp_path / "r", OPTS)
    got, want = I.sha(layers[1]), I.sha(I.standard_layers()[1])
    assert f"uncompressed content has digest {got}, the config says {want}" in str(e.value)


def test_docker_archive_that_is_an_oci_layout(layout, tmp_path, reference_tree):
    single = tmp_path / "single"
    I.write_layout(single, {"1.0": I.Image(I.standard_layers(), I.standard_config())})
    archive = tmp_path / "docker25.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(single, arcname=".")
    fetch_to_rootfs(f"docker-archive:{archive}", tmp_path / "r", OPTS)
    assert I.file_tree(tmp_path / "r") == reference_tree


def test_skopeo_docker_archive(layout, tmp_path, reference_tree):
    if shutil.which("skopeo") is None:
        pytest.skip("needs skopeo")
    archive = tmp_path / "skopeo.tar"
    subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}:1.0", f"docker-archive:{archive}:test/hand:1.0"],
                   check=True, capture_output=True)
    fetch_to_rootfs(f"docker-archive:{archive}", tmp_path / "r", OPTS)
    assert I.file_tree(tmp_path / "r") == reference_tree


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root")
    if shutil.which("dockerd") is None:
        pytest.skip("needs dockerd (apt-get install --no-install-recommends docker.io)")
    work = tmp_path_factory.mktemp("dockerd")
    sock = work / "docker.sock"
    with open(work / "log", "wb") as log:
        proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false",
             "--ip-masq=false", "--storage-driver=vfs", "--data-root", str(work / "root"),
             "--exec-root", str(work / "exec"), "--pidfile", str(work / "docker.pid"), "-H", f"unix://{sock}",
             "--containerd-namespace", "sbuild-test", "--containerd-plugins-namespace", "sbuild-test-plugins"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        if not sock.exists():
            pytest.skip("dockerd did not start: " + (work / "log").read_text()[-500:])
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["umount", "-R", str(work / "root")], capture_output=True)
        subprocess.run(["umount", "-R", str(work / "exec")], capture_output=True)


@pytest.mark.slow
@pytest.mark.root
def test_docker_daemon(dockerd, tmp_path, reference_tree):
    import docker
    img = I.Image(I.standard_layers(), I.standard_config())
    archive = I.docker_save_tar(tmp_path / "save.tar", img, "test/hand:1.0")
    client = docker.DockerClient(base_url=dockerd)
    try:
        with open(archive, "rb") as fh:
            client.images.load(fh.read())
    finally:
        client.close()
    opts = PullOptions(platform=parse_platform("amd64"), docker_host=dockerd, environ={})
    cfg = fetch_to_rootfs("docker-daemon:test/hand:1.0", tmp_path / "r", opts)
    assert I.file_tree(tmp_path / "r") == reference_tree
    assert cfg.entrypoint == ["/bin/sh", "-c"]
    with pytest.raises(ImageError, match="no such image"):
        fetch_to_rootfs("docker-daemon:missing:1", tmp_path / "m", opts)
