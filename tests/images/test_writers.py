"""Writers and conversions, checked with independent tools (unsquashfs, siftool, PySquashfsImage)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from base.errors import BuildError, ImageError, UsageError
from builder.images import sif
from builder.images.convert import convert_image, extract_image, format_for_target, write_image
from builder.images.probe import probe
from builder.images.squashfs import PackOptions, open_image

from .conftest import need, run

EPOCH = PackOptions(source_date_epoch=1700000000)
DEF = b"Bootstrap: scratch\n\n%runscript\n    echo run\n"


def _listing(image: Path, offset: int) -> list[str]:
    out = run(need("unsquashfs"), "-o", str(offset), "-lls", "-d", "", image).stdout
    return sorted(l.split(None, 5)[-1] for l in out.splitlines() if l[:1] in "-dlcbps" and " /" in l)


@pytest.mark.parametrize("fmt, name", [("simg", "a.simg"), ("sif", "a.sif"), ("squashfs", "a.sqfs")])
def test_written_image_lists_like_the_rootfs(tmp_path: Path, rootfs: Path, fmt: str, name: str) -> None:
    target = tmp_path / name
    result = write_image(rootfs, target, fmt, deffile=DEF, options=EPOCH)
    info = probe(target)
    assert result.size == target.stat().st_size
    files = _listing(target, info.fs_offset)
    assert any(f.endswith("/etc/hello.txt") for f in files)
    assert any("/bin/sh -> busybox" in f for f in files)
    if fmt != "squashfs":
        assert os.stat(target).st_mode & 0o777 == 0o755
    if fmt == "simg":
        assert target.read_bytes()[:31] == b"#!/usr/bin/env run-singularity\n"
    with open_image(target, info.fs_offset) as im:
        assert im.select("/etc/hello.txt").read_bytes() == b"hello from the image\n"


def test_sif_accepted_by_siftool(tmp_path: Path, rootfs: Path) -> None:
    target = tmp_path / "a.sif"
    write_image(rootfs, target, "sif", deffile=DEF, options=EPOCH,
                json_objects={"oci-config.json": b'{"Env":["A=1"]}'})
    siftool = need("siftool")
    listing = run(siftool, "list", target).stdout
    lines = [l for l in listing.splitlines() if l[:1].isdigit()]
    assert [l.split("|")[-1].strip() for l in lines] == [
        "Def.FILE", "JSON.Generic", "JSON.Generic", "FS (Squashfs/*System/amd64)"]
    info = run(siftool, "info", "4", target).stdout
    assert "Squashfs" in info and "amd64" in info
    assert run(siftool, "dump", "1", target).stdout.encode() == DEF
    names = [d.name for d in probe(target).descriptors]
    assert names == ["", "inspect-metadata.json", "oci-config.json", ""]
    part = probe(target).descriptors[-1]
    assert part.offset % 4096 == 0
    meta = json.loads(run(siftool, "dump", "2", target).stdout)
    assert meta["type"] == "container"
    assert meta["data"]["attributes"]["labels"]["MAINTAINER"] == "me"
    assert meta["data"]["attributes"]["deffile"] == DEF.decode().rstrip("\n")


@pytest.mark.parametrize("fmt, name", [("simg", "a.simg"), ("sif", "a.sif"), ("squashfs", "a.sqfs")])
def test_reproducible_with_source_date_epoch(tmp_path: Path, rootfs: Path, fmt: str, name: str) -> None:
    first, second = tmp_path / "1", tmp_path / "2"
    first.mkdir(), second.mkdir()
    write_image(rootfs, first / name, fmt, deffile=DEF, options=EPOCH)
    os.utime(rootfs / "etc" / "hello.txt")  # a newer mtime is clamped to the epoch
    write_image(rootfs, second / name, fmt, deffile=DEF, options=EPOCH)
    assert (first / name).read_bytes() == (second / name).read_bytes()
    if fmt == "sif":
        with open(first / name, "rb") as fh:
            head = sif.read_sif(fh).header
        assert head.uuid == bytes(16) and head.created == sif.GO_ZERO_TIME


def test_sif_not_deterministic_without_epoch(tmp_path: Path, rootfs: Path) -> None:
    write_image(rootfs, tmp_path / "a.sif", "sif", deffile=DEF)
    with open(tmp_path / "a.sif", "rb") as fh:
        head = sif.read_sif(fh).header
    assert head.uuid != bytes(16) and head.created > 1700000000


def test_simg_sif_round_trip_keeps_filesystem(tmp_path: Path, rootfs: Path) -> None:
    simg = tmp_path / "a.simg"
    write_image(rootfs, simg, "simg", options=EPOCH)
    convert_image(simg, tmp_path / "b.sif", "sif", options=EPOCH)
    convert_image(tmp_path / "b.sif", tmp_path / "c.simg", "simg", options=EPOCH)
    assert (tmp_path / "c.simg").read_bytes() == simg.read_bytes()
    b = probe(tmp_path / "b.sif")
    assert b.arch == "amd64"
    types = [d.data_type for d in b.descriptors]
    assert types == [sif.DATA_DEFFILE, sif.DATA_GENERIC_JSON, sif.DATA_PARTITION]  # recipe copy kept


def test_extract_matches_rootfs(tmp_path: Path, rootfs: Path) -> None:
    write_image(rootfs, tmp_path / "a.sif", "sif", options=EPOCH)
    extract_image(tmp_path / "a.sif", tmp_path / "sb")
    diff = subprocess.run(["diff", "-r", "--no-dereference", rootfs, tmp_path / "sb"],
                          capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout


def test_sandbox_to_sandbox_and_force(tmp_path: Path, rootfs: Path) -> None:
    convert_image(rootfs, tmp_path / "sb", "sandbox")
    assert (tmp_path / "sb" / "etc" / "hello.txt").read_text() == "hello from the image\n"
    with pytest.raises(ImageError, match="already exists"):
        convert_image(rootfs, tmp_path / "sb", "sandbox")
    (tmp_path / "sb" / "stale").write_text("x")
    convert_image(rootfs, tmp_path / "sb", "sandbox", force=True)
    assert not (tmp_path / "sb" / "stale").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rootfs", "sb"]


def test_fix_perms(tmp_path: Path, rootfs: Path) -> None:
    locked = rootfs / "locked"
    locked.mkdir()
    (locked / "secret").write_text("s")
    (locked / "secret").chmod(0)
    locked.chmod(0o500)
    write_image(rootfs, tmp_path / "a.simg", "simg", options=EPOCH)
    extract_image(tmp_path / "a.simg", tmp_path / "sb", fix_perms=True)
    assert (tmp_path / "sb" / "locked").stat().st_mode & 0o700 == 0o700
    assert (tmp_path / "sb" / "locked" / "secret").stat().st_mode & 0o600 == 0o600
    locked.chmod(0o700)


def test_failed_pack_leaves_no_target(tmp_path: Path, rootfs: Path) -> None:
    target = tmp_path / "bad.simg"
    with pytest.raises(BuildError, match="mksquashfs"):
        write_image(rootfs, target, "simg", options=PackOptions(mksquashfs_args=("-comp", "nosuch")))
    assert list(tmp_path.iterdir()) == [rootfs]


def test_existing_target_needs_force(tmp_path: Path, rootfs: Path) -> None:
    target = tmp_path / "a.simg"
    target.write_bytes(b"keep me")
    with pytest.raises(ImageError, match="already exists"):
        write_image(rootfs, target, "simg")
    assert target.read_bytes() == b"keep me"
    write_image(rootfs, target, "simg", force=True)
    assert probe(target).kind == "simg"


def test_mksquashfs_args_passed_on(tmp_path: Path, rootfs: Path) -> None:
    write_image(rootfs, tmp_path / "a.sqfs", "squashfs", options=PackOptions(mksquashfs_args=("-comp", "xz")))
    assert probe(tmp_path / "a.sqfs").compression == "xz"


def test_unprivileged_pack_is_all_root(tmp_path: Path, rootfs: Path) -> None:
    os.chown(rootfs / "etc" / "hello.txt", 1234, 1234)
    write_image(rootfs, tmp_path / "a.sqfs", "squashfs", options=PackOptions(all_root=True))
    write_image(rootfs, tmp_path / "b.sqfs", "squashfs", options=PackOptions(all_root=False))
    assert "1234/1234" not in run("unsquashfs", "-lln", tmp_path / "a.sqfs").stdout
    assert "1234/1234" in run("unsquashfs", "-lln", tmp_path / "b.sqfs").stdout


def test_format_for_target() -> None:
    assert format_for_target("x.sif") == "sif"
    assert format_for_target("x.SQFS") == "squashfs"
    assert format_for_target("Singularity.img") == "simg"
    assert format_for_target("d", sandbox=True) == "sandbox"
    with pytest.raises(UsageError, match="unknown image format") as e:
        format_for_target("x", fmt="sfi")
    assert e.value.hint == "did you mean 'sif'?"


def test_corrupt_image_extract_fails_cleanly(tmp_path: Path, rootfs: Path) -> None:
    write_image(rootfs, tmp_path / "a.simg", "simg")
    data = bytearray((tmp_path / "a.simg").read_bytes())
    data[31 + 200:31 + 5000] = bytes(4800)  # smash compressed data after the superblock
    (tmp_path / "a.simg").write_bytes(bytes(data))
    with pytest.raises(ImageError):
        extract_image(tmp_path / "a.simg", tmp_path / "sb")
    assert not (tmp_path / "sb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.simg", "rootfs"]


def test_force_replaces_across_kinds(tmp_path: Path, rootfs: Path) -> None:
    """--force turns a sandbox into an image file and back."""
    target = tmp_path / "t"
    convert_image(rootfs, target, "sandbox")
    write_image(rootfs, target, "simg", force=True)
    assert probe(target).kind == "simg"
    convert_image(target, target.with_name("t2"), "sandbox")
    write_image(rootfs, target, "sandbox", force=True)
    assert probe(target).kind == "sandbox"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rootfs", "t", "t2"]
