"""The pull and inspect command lines Nextflow and cwltool send (reference apptainer-cli.md §8),
as plain shell commands with only ``apptainer``/``singularity`` on PATH: neither client can
run here (Nextflow needs a JVM; cwltool's runs need its own test images)."""

from __future__ import annotations

import json
import os


def _is_sif(path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(41)[32:41] == b"SIF_MAGIC"


def test_nextflow_pulls_to_a_temporary_name_then_renames(client, client_registry):
    # ApptainerCache: in cwd=cacheDir, APPTAINER_PULLFOLDER removed, stdout to /dev/null, then a rename
    name = "test-bash-1.0.img"
    r = client.run("bash", "-c", f"apptainer pull --name {name}.pulling.1700000000000 "
                                 f"docker://{client_registry.host}/test/bash:1.0 > /dev/null")
    assert r.returncode == 0, r.stderr
    os.rename(client.cwd / f"{name}.pulling.1700000000000", client.cwd / name)
    assert _is_sif(client.cwd / name)  # a SIF whatever the name says
    r = client.run("apptainer", "exec", name, "cat", "/etc/marker")
    assert (r.returncode, r.stdout) == (0, "registry\n"), r.stderr


def test_cwltool_pull_force_name_in_a_directory_and_inspect_json(client, client_registry):
    ref = f"{client_registry.host}/test/bash:1.0"
    (client.cwd / "images").mkdir()
    target = f"images/{ref.replace('/', '_')}.sif"
    (client.cwd / target).write_text("stale")
    r = client.run("singularity", "pull", "--force", "--name", target, f"docker://{ref}")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert _is_sif(client.cwd / target)
    r = client.run("singularity", "pull", "--name", target, f"docker://{ref}")
    assert r.returncode != 0 and f'Image file already exists: "{target}" - will not overwrite' in r.stderr
    r = client.run("singularity", "build", "--sandbox", "box", f"docker://{ref}")
    assert r.returncode == 0, r.stderr
    r = client.run("singularity", "inspect", "--json", "box")  # cwltool: a built sandbox has attributes
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["data"]["attributes"]
