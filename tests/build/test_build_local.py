"""Builds from busybox and scratch recipes with no network, checked with unsquashfs and siftool."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import shutil
import subprocess


def need(tool: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if not found:
        pytest.skip(f"{tool} not installed (apt-get install the package providing it)")
    return found


def run(*cmd, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=check, capture_output=True, text=True)


def simg_cat(image: Path, path: str) -> str:
    return run(need("unsquashfs"), "-cat", "-o", "31", image, path).stdout

HELLO = """
    Bootstrap: busybox
    MirrorURL: file:///bin/busybox

    %labels
        org.example.title hello

    %environment
        export GREETING="Hello from sbuild"

    %runscript
        echo "$GREETING"

    %help
        Prints a greeting.
"""


def test_busybox_recipe_builds_a_simg_that_unsquashfs_lists(sbuild, recipe, busybox, tmp_path):
    target = tmp_path / "hello.simg"
    r = sbuild(recipe(HELLO), target)
    assert r.status == 0, r.err
    assert target.read_bytes()[:31] == b"#!/usr/bin/env run-singularity\n"
    listing = run(need("unsquashfs"), "-l", "-o", "31", target).stdout
    for path in ("bin/busybox", "bin/sh", ".singularity.d/env/90-environment.sh", ".singularity.d/actions/run",
                 ".singularity.d/env/94-appsbase.sh", ".singularity.d/Singularity", "etc/resolv.conf"):
        assert f"squashfs-root/{path}\n" in listing
    labels = json.loads(simg_cat(target, ".singularity.d/labels.json"))
    assert labels["org.example.title"] == "hello"
    assert labels["org.label-schema.usage.singularity.deffile.bootstrap"] == "busybox"
    assert labels["org.label-schema.usage"] == "/.singularity.d/runscript.help"
    assert simg_cat(target, ".singularity.d/runscript") == '#!/bin/sh\n\n    echo "$GREETING"\n\n\n'
    env = simg_cat(target, ".singularity.d/env/90-environment.sh")
    assert env.startswith("#!/bin/sh\n") and '\n\n    export GREETING="Hello from sbuild"\n' in env
    assert simg_cat(target, ".singularity.d/runscript.help").startswith("    Prints a greeting.\n")
    assert simg_cat(target, ".singularity.d/Singularity").startswith("Bootstrap: busybox\n")
    assert not list(tmp_path.glob(".hello.simg*"))  # no temp names left


def test_sif_target_is_accepted_by_siftool(sbuild, recipe, busybox, tmp_path):
    target = tmp_path / "hello.sif"
    r = sbuild(recipe(HELLO), target, "--json")
    assert r.status == 0, r.err
    out = json.loads(r.out)
    assert out["format"] == "sif" and out["size"] == target.stat().st_size
    assert out["digest"].startswith("sha256:") and out["stages"][0]["bootstrap"] == "busybox"
    listing = run(need("siftool"), "list", target).stdout
    assert "Def.FILE" in listing and "FS" in listing


def test_same_recipe_twice_with_source_date_epoch_is_byte_identical(sbuild, recipe, busybox, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    path = recipe(HELLO)
    for name in ("a.sif", "b.sif", "a.simg", "b.simg"):
        assert sbuild(path, tmp_path / name).status == 0
    assert (tmp_path / "a.sif").read_bytes() == (tmp_path / "b.sif").read_bytes()
    assert (tmp_path / "a.simg").read_bytes() == (tmp_path / "b.simg").read_bytes()
    labels = json.loads(simg_cat(tmp_path / "a.simg", ".singularity.d/labels.json"))
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert labels["org.label-schema.build-date"] == "Tuesday_14_November_2023_22:13:20_UTC"


def test_scratch_with_setup_and_files_from_host(sbuild, recipe, busybox, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("A")
    (tmp_path / "data" / "b.txt").write_text("B")
    (tmp_path / "link.txt").symlink_to(tmp_path / "data" / "a.txt")
    (tmp_path / "with space.txt").write_text("S")
    monkeypatch.chdir(tmp_path)
    path = recipe("""
        Bootstrap: scratch

        %setup
            cp /bin/busybox "$SINGULARITY_ROOTFS/busybox"
            echo "$APPTAINER_ROOTFS" > "$SINGULARITY_ROOTFS/rootfs-was"

        %files
            data/*.txt /opt/
            link.txt
            "with space.txt" /deep/new/dir/
            /etc/os-release ../../../../host-escape
    """)
    target = tmp_path / "s.sqfs"
    r = sbuild(path, target)
    assert r.status == 0, r.err
    listing = run(need("unsquashfs"), "-l", target).stdout
    for p in ("busybox", "opt/a.txt", "opt/b.txt", "link.txt", "deep/new/dir/with space.txt", "host-escape"):
        assert f"squashfs-root/{p}\n" in listing
    link = run("unsquashfs", "-cat", target, "link.txt").stdout
    assert link == "A"  # the symlink was dereferenced
    assert not Path("/host-escape").exists()


def test_failing_setup_names_section_line_code_and_output(sbuild, recipe, busybox, tmp_path):
    path = recipe("""
        Bootstrap: scratch

        %setup
            echo one
            echo two
            exit 7
    """)
    target = tmp_path / "f.simg"
    r = sbuild(path, target)
    assert r.status == 1
    assert "%setup failed with exit code 7" in r.err and "recipe line 3" in r.err
    assert "    two" in r.err and "+ exit 7" in r.err
    assert not target.exists() and not list(tmp_path.glob(".f.simg*"))


def test_no_cleanup_keeps_the_bundle_and_says_where(sbuild, recipe, tmp_path):
    path = recipe("""
        Bootstrap: scratch

        %setup
            false
    """)
    r = sbuild(path, tmp_path / "f.simg", "--no-cleanup", "--tmpdir", tmp_path)
    assert r.status == 1
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("sbuild-bundle-")]
    assert len(kept) == 1 and str(kept[0]) in r.err and (kept[0] / "rootfs" / ".singularity.d").is_dir()


def test_existing_target_needs_force(sbuild, recipe, tmp_path):
    target = tmp_path / "t.simg"
    target.write_text("keep me")
    path = recipe("Bootstrap: scratch\n")
    r = sbuild(path, target)
    assert r.status == 2 and "already exists" in r.err and "--force" in r.err
    assert target.read_text() == "keep me"
    assert sbuild(path, target, "--force").status == 0
    assert target.read_bytes()[:31] == b"#!/usr/bin/env run-singularity\n"


def test_target_source_order_is_accepted_and_reported(sbuild, recipe, tmp_path):
    src = recipe("Bootstrap: scratch\n", name="Singularity")
    target = tmp_path / "out.simg"
    r = sbuild(target, src)
    assert r.status == 0, r.err
    assert "TARGET SOURCE" in r.err and target.is_file()


def test_sandbox_target_then_unpack_with_singularity_order(sbuild, recipe, busybox, tmp_path):
    image = tmp_path / "h.simg"
    assert sbuild(recipe(HELLO), image).status == 0
    sandbox = tmp_path / "sb"
    r = sbuild("--sandbox", sandbox, image)
    assert r.status == 0, r.err
    assert (sandbox / "bin" / "busybox").is_file()
    assert os.access(sandbox / ".singularity.d" / "runscript", os.X_OK)


def test_section_flag_rejects_unknown_names(sbuild, recipe, tmp_path):
    r = sbuild(recipe("Bootstrap: scratch\n"), tmp_path / "x.simg", "--section", "runscrpt")
    assert r.status == 2 and "unknown section" in r.err


def test_unsupported_agent_is_a_recipe_error(sbuild, recipe, tmp_path):
    r = sbuild(recipe("Bootstrap: buildkit\nFrom: x\n"), tmp_path / "x.simg")
    assert r.status == 2 and "buildkit" in r.err
    assert not (tmp_path / "x.simg").exists()
