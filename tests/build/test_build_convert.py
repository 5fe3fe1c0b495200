"""Conversions through the build command: sandbox ↔ .simg/.sif, .simg ↔ .sif, with --fix-perms."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from builder.images import probe

BASE = """
    Bootstrap: busybox
    MirrorURL: file:///bin/busybox

    %setup
        mkdir -m 0500 "$SINGULARITY_ROOTFS/locked"
        echo secret > "$SINGULARITY_ROOTFS/locked/file"
        chmod 0400 "$SINGULARITY_ROOTFS/locked/file"

    %runscript
        echo converted
"""


def listing(image: Path) -> dict[str, str]:
    """path -> mode string, from unsquashfs -ll at the image's filesystem offset."""
    info = probe(image)
    out = subprocess.run(["unsquashfs", "-ll", "-o", str(info.fs_offset), str(image)], check=True,
                         capture_output=True, text=True).stdout
    modes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[5].startswith("squashfs-root"):
            modes[parts[5].removeprefix("squashfs-root").lstrip("/")] = parts[0]
    return modes


@pytest.fixture(scope="module")
def base_simg(tmp_path_factory) -> Path:
    if not Path("/bin/busybox").is_file():
        pytest.skip("busybox-static not installed (apt-get install busybox-static)")
    from builder.cli import main

    work = tmp_path_factory.mktemp("convert")
    (work / "base.def").write_text("\n".join(line[4:] for line in BASE.splitlines()).lstrip())
    assert main([str(work / "base.def"), str(work / "base.simg")]) == 0
    return work / "base.simg"


def test_singularity_order_unpacks_an_image_into_a_sandbox(sbuild, base_simg, tmp_path):
    sandbox = tmp_path / "dir"
    r = sbuild("--sandbox", f"{sandbox}/", base_simg)
    assert r.status == 0, r.err
    assert "read as TARGET SOURCE" in r.err
    assert (sandbox / "bin" / "busybox").is_file()
    assert stat.S_IMODE((sandbox / "locked").stat().st_mode) == 0o500  # kept without --fix-perms


def test_simg_to_sif_and_back_keeps_the_filesystem_bytes(sbuild, base_simg, tmp_path):
    sif = tmp_path / "out.sif"
    r = sbuild(base_simg, sif)
    assert r.status == 0, r.err
    listed = subprocess.run(["siftool", "list", str(sif)], capture_output=True, text=True, check=True).stdout
    assert "Def.FILE" in listed and "FS" in listed
    back = tmp_path / "back.simg"
    assert sbuild(sif, back).status == 0
    assert back.read_bytes() == base_simg.read_bytes()


def test_sandbox_directory_to_simg(sbuild, base_simg, tmp_path):
    sandbox = tmp_path / "sb"
    assert sbuild("--sandbox", sandbox, base_simg).status == 0
    (sandbox / "added").write_text("new\n")
    out = tmp_path / "out.simg"
    r = sbuild(f"{sandbox}/", out, "--json")
    assert r.status == 0, r.err
    assert json.loads(r.out)["format"] == "simg"
    modes = listing(out)
    assert "added" in modes and "bin/busybox" in modes and modes["locked"].startswith("dr-x------")
    cat = subprocess.run(["unsquashfs", "-cat", "-o", "31", str(out), ".singularity.d/runscript"],
                         capture_output=True, text=True, check=True).stdout
    assert "echo converted" in cat


def test_fix_perms_gives_the_owner_access_in_each_direction(sbuild, base_simg, tmp_path):
    sandbox = tmp_path / "fixed"
    r = sbuild("--fix-perms", "--sandbox", sandbox, base_simg)
    assert r.status == 0, r.err
    assert stat.S_IMODE((sandbox / "locked").stat().st_mode) == 0o700
    assert stat.S_IMODE((sandbox / "locked" / "file").stat().st_mode) == 0o600
    sif = tmp_path / "fixed.sif"
    assert sbuild("--fix-perms", base_simg, sif).status == 0
    modes = listing(sif)
    assert modes["locked"].startswith("drwx------") and modes["locked/file"].startswith("-rw-------")
    assert listing(base_simg)["locked/file"].startswith("-r--------")  # the source is untouched


def test_converting_onto_an_existing_target_needs_force(sbuild, base_simg, tmp_path):
    target = tmp_path / "t.sif"
    target.write_text("keep")
    r = sbuild(base_simg, target)
    assert r.status == 2 and "already exists" in r.err and target.read_text() == "keep"
    assert sbuild("--force", base_simg, target).status == 0
    assert target.read_bytes()[:10] != b"keep"


def test_a_corrupt_image_is_an_error_naming_it(sbuild, tmp_path):
    bad = tmp_path / "bad.simg"
    bad.write_bytes(b"#!/usr/bin/env run-singularity\n" + b"\0" * 4096)
    r = sbuild(bad, tmp_path / "out.sif")
    assert r.status == 2 and "bad.simg" in r.err
    assert not (tmp_path / "out.sif").exists()
