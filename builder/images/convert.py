"""The pipeline's entry points: write a rootfs as an image, extract an image, convert.

- ``write_image(rootfs, target, fmt, …)``: the last build step. ``fmt`` is one of
  ``FORMATS``; ``format_for_target`` picks it from the target name as DESIGN.md says.
- ``extract_image(image, dest, …)``: any image or sandbox → a new sandbox directory.
- ``copy_image(image, target, …)``: an image already in the wanted format, copied.
- ``convert_image(source, target, fmt, …)``: sandbox → simg/sif/squashfs/ext3,
  image → sandbox, and between .simg, SIF and raw squashfs. Between squashfs-based
  formats the filesystem bytes are copied as they are (no unpack, no repack) unless
  ``fix_perms`` or extra mksquashfs arguments ask for a new filesystem.

Every target is written under a temporary name beside it and renamed into place only
when complete; a failure leaves no target and no temporary behind. The temporary
directory (``.TARGET.sbuild-*``) holds an owner record (``base.owner``): what a killed
process left there is reclaimed by the next build of that TARGET. An existing target
is an error unless ``force``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from base.errors import ImageError, UsageError
from base.owner import owned_dir, owned_temp_dir, remove_owned
from base.gojson import marshal
from builder.images import ext3, metadata, sandbox, sif, writers
from builder.images.elfarch import rootfs_arch
from builder.images.probe import ImageInfo, probe
from builder.images.reader import open_tree
from builder.images.squashfs import PackOptions, unpack

__all__ = ["FORMATS", "ImageResult", "format_for_target", "write_image", "extract_image",
           "convert_image", "copy_image", "create_overlay", "file_digest", "atomic_target"]

log = logging.getLogger("sbuild.images")

FORMATS = ("simg", "sif", "squashfs", "sandbox", "ext3")
_SQUASH_TARGETS = ("simg", "sif", "squashfs")
_SUFFIXES = {".sif": "sif", ".sqfs": "squashfs", ".squashfs": "squashfs"}
INSPECT_METADATA = "inspect-metadata.json"
OCI_CONFIG = "oci-config.json"


@dataclass(frozen=True)
class ImageResult:
    path: Path
    format: str
    size: int  # bytes (0 for a sandbox)


def format_for_target(target: str | os.PathLike, *, sandbox: bool = False, fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given, a sandbox if asked, else from the suffix
    (.sif → sif, .sqfs/.squashfs → squashfs, anything else → simg)."""
    if fmt:
        if fmt not in FORMATS:
            import difflib

            close = difflib.get_close_matches(fmt, FORMATS, n=1)
            raise UsageError(f"unknown image format {fmt!r}",
                             hint=f"did you mean {close[0]!r}?" if close else "one of " + ", ".join(FORMATS))
        return fmt
    if sandbox:
        return "sandbox"
    return _SUFFIXES.get(Path(target).suffix.lower(), "simg")


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@contextlib.contextmanager
def atomic_target(target: Path, force: bool) -> Iterator[Path]:
    """Yield a fresh temp path beside ``target`` (in a directory with an owner record, reclaimed
    if this process is killed); rename it into place on success, a file or a directory."""
    target = Path(target)
    parent = target.parent
    try:
        if not parent.is_dir():
            raise ImageError(f"cannot write {target}: directory {parent} does not exist", path=str(target))
        if os.path.lexists(target) and not force:
            raise ImageError(f"{target} already exists", path=str(target),
                             hint="use --force to overwrite it")
        owner = owned_dir(parent, f".{target.name}.sbuild-")  # reclaimed if this process is killed
    except OSError as e:
        raise ImageError(f"cannot write {target}: {e.strerror}", path=str(target)) from e
    tmp_dir = owner.path
    tmp = tmp_dir / "new"
    try:
        yield tmp
        if os.path.lexists(target) and (os.path.isdir(tmp) or
                                        (target.is_dir() and not target.is_symlink())):
            os.rename(target, tmp_dir / "old")  # rename(2) cannot replace across file/dir
        os.replace(tmp, target)
    finally:
        remove_owned(tmp_dir)  # (the owner record last: a kill here leaves it for the next reclaim)
        owner.release()


def _metadata_json(tree, deffile: bytes | None = None) -> bytes:
    text = deffile.decode("utf-8", "replace") if deffile else None
    return marshal(metadata.collect(tree, deffile=text)).encode()


def _pack_rootfs(rootfs: Path, out: Path, fmt: str, deffile: bytes, json_objects: dict[str, bytes] | None,
                 options: PackOptions, arch: str | None) -> None:
    if fmt == "squashfs":
        writers.write_squashfs(rootfs, out, options)
    elif fmt == "simg":
        writers.write_simg(rootfs, out, options)
    elif fmt == "ext3":
        ext3.write_ext3(rootfs, out)
    elif fmt == "sif":
        with open_tree(rootfs) as tree:
            found = rootfs_arch(tree)
            objects = dict(json_objects or {})
            if INSPECT_METADATA not in objects:
                objects[INSPECT_METADATA] = _metadata_json(tree, deffile)
        if arch and arch != found:
            log.warning("the rootfs is %s, not %s: the SIF says %s", found, arch, found)
        writers.write_sif_image(rootfs, out, options, deffile=deffile, json_objects=objects, arch=found)
    else:
        raise UsageError(f"cannot write format {fmt!r} from a rootfs")


def write_image(rootfs: Path, target: Path, fmt: str, *, deffile: bytes = b"",
                json_objects: dict[str, bytes] | None = None, options: PackOptions = PackOptions(),
                force: bool = False, fix_perms: bool = False, move: bool = False,
                arch: str | None = None) -> ImageResult:
    """Write the rootfs directory as ``target`` in format ``fmt``.

    deffile: the recipe text (SIF Deffile object); json_objects: SIF GenericJSON objects by
    name (``inspect-metadata.json`` is generated from the rootfs when absent); fix_perms
    changes the rootfs itself; move lets a sandbox target take the rootfs by rename.
    """
    rootfs, target = Path(rootfs), Path(target)
    format_for_target(target, fmt=fmt)
    if not rootfs.is_dir():
        raise ImageError(f"writing {target}: rootfs {rootfs} is not a directory", path=str(rootfs))
    if fix_perms:
        sandbox.fix_perms(rootfs)
    with atomic_target(target, force) as tmp:
        if fmt == "sandbox":
            sandbox.place_tree(rootfs, tmp, move=move)
        else:
            _pack_rootfs(rootfs, tmp, fmt, deffile, json_objects, options, arch)
    size = 0 if fmt == "sandbox" else target.stat().st_size
    log.debug("wrote %s (%s, %d bytes)", target, fmt, size)
    return ImageResult(target, fmt, size)


def _extract_into(info: ImageInfo, dest: Path) -> None:
    if info.kind == "sandbox":
        sandbox.copy_tree(info.path, dest)
    elif info.fstype == "squashfs":
        unpack(info.path, dest, offset=info.fs_offset)
    elif info.fstype == "ext3":
        ext3.extract_ext3(info.path, dest, offset=info.fs_offset)
    else:  # probe() only reports the kinds above
        raise ImageError(f"{info.path}: cannot extract a {info.kind} image", path=str(info.path))


def extract_image(image: Path, dest: Path, *, fix_perms: bool = False, force: bool = False) -> ImageInfo:
    """Extract any image (or copy a sandbox) into the new directory ``dest``."""
    info = probe(image)
    with atomic_target(Path(dest), force) as tmp:
        _extract_into(info, tmp)
        if fix_perms:
            sandbox.fix_perms(tmp)
    return info


def _sif_carry(info: ImageInfo) -> tuple[bytes | None, dict[str, bytes]]:
    """The Deffile and oci-config.json of a SIF source (None, {} for other kinds)."""
    if info.kind != "sif":
        return None, {}
    deffile, carried = None, {}
    with open(info.path, "rb") as fh:
        for d in info.descriptors:
            if d.data_type == sif.DATA_DEFFILE and deffile is None:
                fh.seek(d.offset)
                deffile = fh.read(d.size)
            elif d.data_type == sif.DATA_GENERIC_JSON and d.name == OCI_CONFIG:
                fh.seek(d.offset)
                carried[OCI_CONFIG] = fh.read(d.size)
    return deffile, carried


def _repackage(info: ImageInfo, out: Path, fmt: str, options: PackOptions) -> None:
    """squashfs-based image → another squashfs-based format, copying the filesystem."""
    start, length = info.fs_offset, info.fs_size
    if fmt == "squashfs":
        with open(out, "wb") as fh:
            writers.copy_range(info.path, start, length, fh)
            fh.write(bytes(writers.pad4k(length) - length))
    elif fmt == "simg":
        writers.simg_from_squashfs(info.path, start, length, out)
    else:
        deffile, objects = _sif_carry(info)
        with open_tree(info.path, info) as tree:
            if deffile is None:
                deffile = next((tree.read_bytes(f"/.singularity.d/{n}") for n in metadata.DEFFILE_NAMES
                                if tree.is_file(f"/.singularity.d/{n}")), b"")
            objects[INSPECT_METADATA] = _metadata_json(tree, deffile)
            arch = info.arch if info.kind == "sif" and info.arch != "unknown" else rootfs_arch(tree)
        writers.sif_from_squashfs(info.path, start, length, out, deffile=deffile or b"",
                                  json_objects=objects, arch=arch,
                                  source_date_epoch=options.source_date_epoch)


def convert_image(source: Path, target: Path, fmt: str, *, options: PackOptions = PackOptions(),
                  fix_perms: bool = False, force: bool = False) -> ImageResult:
    """Convert ``source`` (image or sandbox) to ``target`` in format ``fmt``."""
    source, target = Path(source), Path(target)
    format_for_target(target, fmt=fmt)
    info = probe(source)
    if fmt == "sandbox":
        extract_image(source, target, fix_perms=fix_perms, force=force)
        return ImageResult(target, fmt, 0)
    direct = (info.fstype == "squashfs" and fmt in _SQUASH_TARGETS and not fix_perms
              and not options.mksquashfs_args)
    if direct:
        with atomic_target(target, force) as tmp:
            _repackage(info, tmp, fmt, options)
        return ImageResult(target, fmt, target.stat().st_size)
    deffile, carried = _sif_carry(info)
    if info.kind == "sandbox" and not fix_perms:
        return write_image(source, target, fmt, deffile=deffile or _deffile_of(source),
                           json_objects=carried or None, options=options, force=force)
    with owned_temp_dir(target.parent, f".{target.name}.sbuild-convert-") as work:
        rootfs = work / "rootfs"
        _extract_into(info, rootfs)
        return write_image(rootfs, target, fmt, deffile=deffile or _deffile_of(rootfs),
                           json_objects=carried or None, options=options, force=force,
                           fix_perms=fix_perms)


def copy_image(image: Path, target: Path, *, force: bool = False, fmt: str | None = None) -> ImageResult:
    """Copy an image file, already in the wanted format, to ``target`` (mode 0755); the
    result names ``fmt`` when given, else what the copy probes as."""
    target = Path(target)
    with atomic_target(target, force) as tmp:
        shutil.copyfile(image, tmp)
        os.chmod(tmp, 0o755)
    return ImageResult(target, fmt or probe(target).kind, target.stat().st_size)


def _deffile_of(rootfs: Path) -> bytes:
    for name in metadata.DEFFILE_NAMES:
        p = rootfs / ".singularity.d" / name
        if p.is_file() and not p.is_symlink():
            return p.read_bytes()
    return b""


def create_overlay(target: Path, options: ext3.OverlayOptions = ext3.OverlayOptions(), *,
                   force: bool = False) -> ImageResult:
    """Create the ext3 overlay image ``target`` (``sbuild overlay create``)."""
    target = Path(target)
    with atomic_target(target, force) as tmp:
        ext3.write_overlay(tmp, options)
        probe(tmp)  # the runtime's own checks: journal, features
    return ImageResult(target, "ext3", target.stat().st_size)
