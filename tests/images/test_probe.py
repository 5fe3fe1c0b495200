"""probe(): what kind of image a path is and where its filesystem lies; hostile inputs."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from base.errors import ImageError
from builder.images import sif
from builder.images.probe import probe

from .conftest import need, run

LAUNCH = b"#!/usr/bin/env run-singularity\n"


@pytest.fixture
def sqfs(tmp_path: Path, rootfs: Path) -> Path:
    out = tmp_path / "r.sqfs"
    run(need("mksquashfs"), rootfs, out, "-noappend", "-quiet", "-all-root")
    return out


def test_squashfs_and_simg_offsets(tmp_path: Path, sqfs: Path) -> None:
    info = probe(sqfs)
    assert (info.kind, info.fstype, info.fs_offset, info.compression) == ("squashfs", "squashfs", 0, "gzip")
    assert info.fs_size <= sqfs.stat().st_size
    simg = tmp_path / "r.simg"
    simg.write_bytes(LAUNCH + sqfs.read_bytes())
    info = probe(simg)
    assert (info.kind, info.fs_offset, info.fs_size) == ("simg", 31, probe(sqfs).fs_size)


def test_sandbox_directory(rootfs: Path) -> None:
    info = probe(rootfs)
    assert (info.kind, info.fstype) == ("sandbox", "dir")


def test_sif_locates_primary_partition(tmp_path: Path, sqfs: Path) -> None:
    out = tmp_path / "r.sif"
    objs = [sif.SifObject(sif.DATA_DEFFILE, b"Bootstrap: scratch\n"),
            sif.SifObject(sif.DATA_PARTITION, str(sqfs), fstype=sif.FS_SQUASH,
                          parttype=sif.PART_PRIMSYS, arch="amd64")]
    with open(out, "wb") as fh:
        sif.write_sif(fh, objs)
    info = probe(out)
    assert (info.kind, info.fstype, info.arch) == ("sif", "squashfs", "amd64")
    assert info.fs_offset % 4096 == 0
    assert out.read_bytes()[info.fs_offset:info.fs_offset + 4] == b"hsqs"
    assert [d.data_type for d in info.descriptors] == [sif.DATA_DEFFILE, sif.DATA_PARTITION]


def test_ext3_with_journal(tmp_path: Path) -> None:
    img = tmp_path / "o.img"
    img.write_bytes(b"")
    run("truncate", "-s", "8M", img)
    run(need("mkfs.ext3"), "-q", "-F", img)
    info = probe(img)
    assert (info.kind, info.fstype, info.fs_offset, info.fs_size) == ("ext3", "ext3", 0, 8 << 20)


@pytest.mark.parametrize("opts, message", [
    (["-O", "^has_journal"], "no journal"),
    (["-t", "ext4"], "unsupported ext features"),
])
def test_ext_rejected(tmp_path: Path, opts: list[str], message: str) -> None:
    img = tmp_path / "o.img"
    run("truncate", "-s", "8M", img)
    run(need("mke2fs"), "-q", "-F", *opts, img)
    with pytest.raises(ImageError, match=message):
        probe(img)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="image not found"):
        probe(tmp_path / "nope.sif")


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"\0" * 5000])
def test_bad_magic(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "x.img"
    p.write_bytes(content)
    with pytest.raises(ImageError) as e:
        probe(p)
    assert "\n" not in e.value.message and str(p) in e.value.message


def test_simg_header_without_filesystem(tmp_path: Path) -> None:
    p = tmp_path / "x.simg"
    p.write_bytes(LAUNCH + b"notsquashfs" * 300)
    with pytest.raises(ImageError, match="bad magic"):
        probe(p)


def test_truncated_squashfs(tmp_path: Path, sqfs: Path) -> None:
    data = sqfs.read_bytes()
    cut = tmp_path / "cut.simg"
    cut.write_bytes(LAUNCH + data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated squashfs"):
        probe(cut)


def test_corrupt_squashfs_compressor(tmp_path: Path, sqfs: Path) -> None:
    data = bytearray(sqfs.read_bytes())
    struct.pack_into("<H", data, 20, 99)
    p = tmp_path / "bad.sqfs"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="unknown squashfs compression"):
        probe(p)


def test_sif_without_partition(tmp_path: Path) -> None:
    p = tmp_path / "nopart.sif"
    p.write_bytes(sif.sif_bytes([sif.SifObject(sif.DATA_DEFFILE, b"Bootstrap: scratch\n")]))
    with pytest.raises(ImageError, match="no system partition"):
        probe(p)


def test_truncated_sif(tmp_path: Path, sqfs: Path) -> None:
    whole = sif.sif_bytes([sif.SifObject(sif.DATA_PARTITION, sqfs.read_bytes(), fstype=sif.FS_SQUASH,
                                         parttype=sif.PART_PRIMSYS, arch="amd64")])
    cuts = {100: "not a sif file: only 100 bytes", 5000: "truncated sif: descriptor table ends at",
            len(whole) - 10: r"truncated sif: object 1 \(FS\) ends at"}
    for n, message in cuts.items():
        p = tmp_path / f"cut{n}.sif"
        p.write_bytes(whole[:n])
        with pytest.raises(ImageError, match=message):
            probe(p)


def test_sif_bad_version(tmp_path: Path) -> None:
    data = bytearray(sif.sif_bytes([]))
    data[42:45] = b"02\0"
    p = tmp_path / "v2.sif"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="unsupported sif version"):
        probe(p)
