"""Find out what an image is and where its filesystem lies, without mounting it.

``probe(path)`` recognises a sandbox directory, a Singularity 2.x ``.simg`` (launch
line + squashfs, or + ext3 for old writable images), a SIF (its first PrimSys
partition), a raw squashfs file and a raw ext3 image, and checks the filesystem's
superblock the way Apptainer's runtime does (spec §D.1, §D.2). The runtime uses
``fs_offset``/``fs_size`` to loop-mount or squashfuse the filesystem.

Limits: reads at most the first few KiB plus the SIF descriptor table; it does not
verify the filesystem beyond its superblock. ``arch`` is known for SIF only (None
otherwise; see ``builder.images.elfarch`` to read it from the rootfs).
"""

from __future__ import annotations

from base import lean_os as os
from base.errors import ImageError
from base.records import Frozen
from builder.images import headers, sif

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ImageInfo", "probe"]

_HEAD = 4096
_SIMG_MARK = b" run-singularity"


class ImageInfo(Frozen):
    """What ``probe`` found.

    path: the image's path, a ``pathlib.Path`` (made when first read: the runtime, which
        never reads it, need not import pathlib)
    kind: "sandbox" | "simg" | "sif" | "squashfs" | "ext3"
    fstype: "squashfs" | "ext3" | "dir"
    fs_offset, fs_size: where the filesystem lies in the file, in bytes (0, 0 for a sandbox)
    arch: Go arch name ("amd64") for SIF, else None
    compression: squashfs compressor name ("gzip"), else None
    descriptors: the SIF's used descriptors (empty for other kinds)
    overlay: (offset, size) of a SIF ext3 overlay partition in the rootfs's group, if any
    """

    __slots__ = ("_path", "kind", "fstype", "fs_offset", "fs_size", "arch", "compression", "descriptors",
                 "overlay")
    _fields = ("path", *__slots__[1:])

    def __init__(self, path: str | os.PathLike, kind: str, fstype: str, fs_offset: int = 0, fs_size: int = 0,
                 arch: str | None = None, compression: str | None = None,
                 descriptors: tuple[sif.SifDescriptor, ...] = (), overlay: tuple[int, int] | None = None) -> None:
        object.__setattr__(self, "_path", path)
        for name, value in zip(self._fields[1:], (kind, fstype, fs_offset, fs_size, arch, compression,
                                                   descriptors, overlay)):
            object.__setattr__(self, name, value)

    @property
    def path(self) -> Path:
        from pathlib import Path

        return Path(self._path)


def _display(path: str) -> str:
    """``str(pathlib.PurePosixPath(path))`` without importing pathlib: the name in messages."""
    root = "//" if path.startswith("//") and not path.startswith("///") else "/" if path.startswith("/") else ""
    parts = [p for p in path.split("/") if p and p != "."]
    return (root + "/".join(parts)) or "."


def probe(path: str | os.PathLike) -> ImageInfo:
    """Identify the image at ``path``. Raises ImageError with a one-line message."""
    where = _display(os.fspath(path))
    try:
        st = os.stat(where)
    except FileNotFoundError:
        raise ImageError(f"image not found: {where}", path=where) from None
    except OSError as e:
        raise ImageError(f"cannot read image {where}: {e.strerror}", path=where) from e
    if os.path.isdir(where):
        return ImageInfo(where, "sandbox", "dir")
    try:
        with open(where, "rb") as fh:
            head = fh.read(_HEAD)
            if head[32:42] == sif.SIF_MAGIC:
                layout = sif.read_sif(fh, path=where)
                return _sif_info(where, fh, layout, st.st_size)
    except OSError as e:
        raise ImageError(f"cannot read image {where}: {e.strerror}", path=where) from e
    return _plain_info(where, head, st.st_size)


def _plain_info(where: str, head: bytes, size: int) -> ImageInfo:
    if not head:
        raise ImageError(f"{where}: empty file, not an image", path=where)
    if head.startswith(headers.SQUASHFS_MAGIC):
        sb = headers.parse_squashfs(head, available=size, where=where)
        return ImageInfo(where, "squashfs", "squashfs", 0, sb.bytes_used, compression=sb.compression)
    mark = head.find(_SIMG_MARK, 0, 2048)
    if mark > 0:
        off = mark + len(_SIMG_MARK) + 1
        body = head[off:]
        if body.startswith(headers.SQUASHFS_MAGIC):
            sb = headers.parse_squashfs(body, available=size - off, where=where)
            return ImageInfo(where, "simg", "squashfs", off, sb.bytes_used, compression=sb.compression)
        if body[headers.EXT_MAGIC_OFFSET:headers.EXT_MAGIC_OFFSET + 2] == headers.EXT_MAGIC:
            eb = headers.parse_ext3(body, available=size - off, where=where)
            return ImageInfo(where, "ext3", "ext3", off, eb.size)
        raise ImageError(f"{where}: singularity launch line but no squashfs or ext3 after it "
                         f"(bad magic at offset {off})", path=where)
    if head[headers.EXT_MAGIC_OFFSET:headers.EXT_MAGIC_OFFSET + 2] == headers.EXT_MAGIC:
        eb = headers.parse_ext3(head, available=size, where=where)
        return ImageInfo(where, "ext3", "ext3", 0, eb.size)
    raise ImageError(f"{where}: not an image: no SIF, squashfs or ext3 magic", path=where)


def _sif_info(where: str, fh, layout: sif.SifLayout, size: int) -> ImageInfo:
    part = layout.primary_partition()
    if part is None:
        raise ImageError(f"{where}: sif has no system partition (nothing to run)", path=where)
    fh.seek(part.offset)
    raw = fh.read(min(part.size, _HEAD))
    if part.fstype == sif.FS_SQUASH:
        sb = headers.parse_squashfs(raw, available=part.size, where=where)
        fstype, comp, fs_size = "squashfs", sb.compression, sb.bytes_used
    elif part.fstype == sif.FS_EXT3:
        fstype, comp, fs_size = "ext3", None, headers.parse_ext3(raw, available=part.size, where=where).size
    else:
        raise ImageError(f"{where}: sif system partition has unsupported filesystem type "
                         f"{part.fstype} (squashfs and ext3 only)", path=where)
    overlay = None
    for d in layout.descriptors:
        if (d.data_type == sif.DATA_PARTITION and d.parttype == sif.PART_OVERLAY
                and d.fstype == sif.FS_EXT3 and d.group_id == part.group_id):
            overlay = (d.offset, d.size)
            break
    arch = sif.arch_name(part.arch or "00")
    return ImageInfo(where, "sif", fstype, part.offset, fs_size, arch, comp, layout.descriptors, overlay)
