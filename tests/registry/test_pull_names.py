"""``pull``'s target rules (reference apptainer-cli.md §6): Apptainer's default names,
``--name`` (Snakemake's and shpc's only form) over the positional TARGET, ``--dir``, refusing
to overwrite without ``--force``, and ``inspect --json``'s shape for an image without labels."""

from __future__ import annotations

import json

import pytest
from .conftest import REPO

from builder.commands.pull import default_name

NAMES = [  # (URI, the file apptainer pull writes), §6
    ("docker://alpine:3.19", "alpine_3.19.sif"),
    ("docker://ubuntu", "ubuntu_latest.sif"),
    ("docker://sylabs.io/lolcow:3.7", "lolcow_3.7.sif"),
    ("docker://127.0.0.1:5000/test/hand", "hand_latest.sif"),
    ("docker://ubuntu@sha256:abcd", "ubuntu@sha256_abcd.sif"),
    ("library://u/c/img:1.0", "img_1.0.sif"),
    ("library://u/c/img:1.0,stable", "img_1.0.sif"),
    ("library:img", "img_latest.sif"),
    ("oras://r/ns/img:t", "img_t.sif"),
    ("shub://u/image", "image_latest.sif"),
    ("https://h/p/f.sif", "f.sif"),
]


@pytest.mark.parametrize(("uri", "name"), NAMES)
def test_default_name_is_apptainers(uri, name):
    assert default_name(uri) == name


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("APPTAINER_CACHEDIR", str(tmp_path / "cachedir"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_pull_name_wins_over_the_positional_target_and_dir_is_joined(sbuild, registry, env):
    uri = f"docker://{registry.host}/{REPO}:1.0"
    r = sbuild("pull", "--name", "named.sif", uri)
    assert r.status == 0 and r.out == "", r.err  # stdout stays empty, as Apptainer's
    assert (env / "named.sif").read_bytes()[32:41] == b"SIF_MAGIC"
    (env / "d").mkdir()
    r = sbuild("pull", "--dir", "d", "--name", "x.simg", "ignored.sif", uri)
    assert r.status == 0, r.err
    assert (env / "d" / "x.simg").is_file() and not (env / "ignored.sif").exists()
    r = sbuild("pull", "--dir", "d", uri)
    assert r.status == 0 and (env / "d" / "hand_1.0.sif").is_file(), r.err


def test_dir_is_not_put_in_front_of_an_absolute_name(sbuild, registry, env):
    r = sbuild("pull", "--dir", env / "nowhere", "--name", env / "abs.sif", f"docker://{registry.host}/{REPO}:1.0")
    assert r.status == 0 and (env / "abs.sif").is_file(), r.err
    assert "--dir" in r.err and not (env / "nowhere").exists()


def test_an_existing_target_needs_force(sbuild, registry, env):
    uri = f"docker://{registry.host}/{REPO}:1.0"
    (env / "hand_1.0.sif").write_text("keep")
    r = sbuild("pull", "--no-https", uri)
    assert r.status != 0 and 'Image file already exists: "hand_1.0.sif" - will not overwrite' in r.err
    assert (env / "hand_1.0.sif").read_text() == "keep"
    r = sbuild("pull", "--nohttps", "--force", "--disable-cache", uri)
    assert r.status == 0, r.err
    assert (env / "hand_1.0.sif").read_bytes()[32:41] == b"SIF_MAGIC"
    assert not (env / "cachedir").exists()  # --disable-cache: nothing cached


def test_arch_picks_the_platform_of_an_index(sbuild, registry, env):
    r = sbuild("pull", "--arch", "arm64", "--arch-variant", "v8", "--sandbox", "arm",
               f"docker://{registry.host}/{REPO}:multi")
    assert r.status == 0, r.err
    assert '"arm64"' in (env / "arm/.singularity.d/env/10-docker2singularity.sh").read_text()


def test_inspect_json_of_an_image_without_labels_has_empty_attributes(sbuild, registry, env):
    r = sbuild("pull", "--arch", "amd64", "--sandbox", "box", f"docker://{registry.host}/{REPO}:multi")
    assert r.status == 0, r.err
    labels = json.loads((env / "box/.singularity.d/labels.json").read_text())  # a pull is a build: its labels
    assert labels["org.label-schema.schema-version"] == "1.0" and labels["org.label-schema.build-arch"] == "amd64"
    assert labels["org.label-schema.usage.singularity.deffile.bootstrap"] == "docker"
    # (pulled by the digest the tag resolved to: the URI cache is keyed by it)
    assert labels["org.label-schema.usage.singularity.deffile.from"].startswith(f"{registry.host}/{REPO}@sha256:")
    (env / "box/.singularity.d/labels.json").write_text("{}")  # (an image without any labels)
    r = sbuild("inspect", "--json", "box")
    assert (r.status, r.out, r.err) == (0, '{\n\t"data": {\n\t\t"attributes": {}\n\t},\n\t"type": "container"\n}\n', "")


def test_docker_username_and_password_flags_log_in(sbuild, basic_registry, env):
    import servers

    uri = f"docker://{basic_registry.host}/{REPO}:1.0"
    r = sbuild("pull", "--sandbox", "no", uri)
    assert r.status != 0 and not (env / "no").exists()
    r = sbuild("pull", "--docker-username", servers.USER, "--docker-password", servers.PASSWORD,
               "--sandbox", "yes", uri)
    assert r.status == 0 and (env / "yes/.singularity.d").is_dir(), r.err


def test_under_apptainer_a_uri_needs_its_transport_and_stdout_stays_empty(tmp_path):
    import subprocess
    from pathlib import Path

    apptainer = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "apptainer"
    if not apptainer.exists():
        pytest.skip("setup.sh writes the apptainer launcher")
    r = subprocess.run([str(apptainer), "pull", "alpine"], capture_output=True, text=True, cwd=tmp_path,
                       stdin=subprocess.DEVNULL, timeout=60)
    assert (r.returncode, r.stdout) == (255, "") and "FATAL:   No transport type URI supplied" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_second_pull_copies_from_the_uri_cache_and_disable_cache_bypasses_it(sbuild, registry, env):
    uri = f"docker://{registry.host}/{REPO}:1.0"
    r = sbuild("pull", "one.sif", uri)
    assert r.status == 0, r.err
    entries = list((env / "cachedir" / "sbuild" / "images" / "oci-tmp").iterdir())
    entries = [p for p in entries if not p.name.startswith(".")]
    assert len(entries) == 1 and entries[0].read_bytes() == (env / "one.sif").read_bytes()
    blobs = env / "cachedir" / "sbuild" / "blobs"
    import shutil

    shutil.rmtree(blobs)  # a re-fetch of the layers would have to fill it again
    r = sbuild("pull", "two.sif", uri)
    assert r.status == 0 and "Using cached SIF image" in r.err, r.err
    assert (env / "two.sif").read_bytes() == (env / "one.sif").read_bytes()
    assert not blobs.exists() or not any(blobs.rglob("sha256*"))
    r = sbuild("pull", "--disable-cache", "three.sif", uri)
    assert r.status == 0 and "Using cached SIF image" not in r.err, r.err
    assert (env / "three.sif").read_bytes()[32:41] == b"SIF_MAGIC"
