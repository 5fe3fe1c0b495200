"""Single-file image writers over mksquashfs: raw squashfs, .simg and SIF.

Each writes to the exact path it is given (``builder.images.convert`` handles temp names
and renames). mksquashfs writes straight into the final file at an offset, so a .simg or
SIF costs no more than a bare ``mksquashfs``:

- squashfs: ``mksquashfs ROOTFS OUT``.
- .simg: squashfs at offset 31, then the launch line ``#!/usr/bin/env run-singularity\\n``
  in front (spec §D.1); mode 0755.
- SIF: Deffile, GenericJSON objects sorted by name, then the squashfs PrimSys partition
  (4096-aligned) with the rootfs's architecture; nil UUID and Go zero time when
  ``source_date_epoch`` is set (spec §D.2); mode 0755.

``sif_from_squashfs`` / ``simg_from_squashfs`` repackage an existing squashfs (a byte
range of another file) without unpacking it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from base.errors import ImageError
from builder.images import sif
from builder.images.headers import SIMG_LAUNCH
from builder.images.squashfs import PackOptions, Runner, pack

__all__ = ["write_squashfs", "write_simg", "write_sif_image", "simg_from_squashfs",
           "sif_from_squashfs", "sif_objects", "copy_range", "pad4k"]

log = logging.getLogger("sbuild.images")
_CHUNK = 1 << 20


def write_squashfs(rootfs: Path, out: Path, opts: PackOptions, **kw) -> None:
    pack(rootfs, out, opts, **kw)


def write_simg(rootfs: Path, out: Path, opts: PackOptions, **kw) -> None:
    pack(rootfs, out, opts, offset=len(SIMG_LAUNCH), **kw)
    with open(out, "r+b") as fh:
        fh.write(SIMG_LAUNCH)
    os.chmod(out, 0o755)


def sif_objects(deffile: bytes, json_objects: dict[str, bytes], arch: str,
                partition: bytes | str | None, size: int | None = None) -> list[sif.SifObject]:
    """The objects Apptainer's SIF assembler writes, in its order."""
    objects = []
    if deffile:
        objects.append(sif.SifObject(sif.DATA_DEFFILE, deffile))
    for name in sorted(json_objects):
        if json_objects[name]:
            objects.append(sif.SifObject(sif.DATA_GENERIC_JSON, json_objects[name], name=name))
    objects.append(sif.SifObject(sif.DATA_PARTITION, partition, fstype=sif.FS_SQUASH,
                                 parttype=sif.PART_PRIMSYS, arch=arch, size=size))
    return objects


def _create_opts(source_date_epoch: int | None) -> sif.SifCreateOptions:
    return sif.SifCreateOptions(deterministic=source_date_epoch is not None)


def write_sif_image(rootfs: Path, out: Path, opts: PackOptions, *, deffile: bytes,
                    json_objects: dict[str, bytes], arch: str, runner: Runner | None = None) -> None:
    """Write a SIF of ``rootfs``; mksquashfs writes the partition in place."""
    create = _create_opts(opts.source_date_epoch)
    placeholder = sif_objects(deffile, json_objects, arch, None, 0)
    offset = sif.plan_offsets(placeholder, create)[-1]
    kw = {"runner": runner} if runner else {}
    size = pack(rootfs, out, opts, offset=offset, **kw)
    objects = sif_objects(deffile, json_objects, arch, None, size)
    with open(out, "r+b") as fh:
        sif.write_sif(fh, objects, create)
    os.chmod(out, 0o755)


def copy_range(src: Path, start: int, length: int, dst_fh) -> None:
    """Copy ``length`` bytes of ``src`` from ``start`` to the open file ``dst_fh``."""
    with open(src, "rb") as fh:
        fh.seek(start)
        left = length
        while left:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                raise ImageError(f"reading {src}: file ended {left} bytes early", path=str(src))
            dst_fh.write(chunk)
            left -= len(chunk)


def pad4k(size: int) -> int:
    """``size`` rounded up to 4 KiB, as mksquashfs pads its output."""
    return -(-size // 4096) * 4096


def simg_from_squashfs(src: Path, start: int, length: int, out: Path) -> None:
    """A .simg whose squashfs is ``length`` bytes of ``src`` from ``start``."""
    with open(out, "wb") as fh:
        fh.write(SIMG_LAUNCH)
        copy_range(src, start, length, fh)
        fh.write(bytes(pad4k(length) - length))
    os.chmod(out, 0o755)


def sif_from_squashfs(src: Path, start: int, length: int, out: Path, *, deffile: bytes,
                      json_objects: dict[str, bytes], arch: str,
                      source_date_epoch: int | None) -> None:
    """A SIF whose partition is the squashfs at ``src[start:start+length]``."""
    create = _create_opts(source_date_epoch)
    size = pad4k(length)
    objects = sif_objects(deffile, json_objects, arch, None, size)
    offset = sif.plan_offsets(objects, create)[-1]
    with open(out, "wb") as fh:
        sif.write_sif(fh, objects, create)
        fh.seek(offset)
        copy_range(src, start, length, fh)
        fh.write(bytes(size - length))
    os.chmod(out, 0o755)

