"""Extract a squashfs (at an offset inside a file) into a directory: the one extractor.

``unpack`` runs unsquashfs into a new directory; rootless it skips ``dev/`` (device nodes
cannot be made; an empty ``dev/`` is left) and keeps user xattrs only where the target
filesystem takes them, as Apptainer does. Without unsquashfs (or with
``use_unsquashfs=False``) it falls back to PySquashfsImage: slower, same tree.
``open_image`` opens a squashfs with PySquashfsImage for reading files without extracting
(lz4 images included: PySquashfsImage's own lz4 support is broken).

Both halves use it: ``builder.images`` (``build --sandbox`` from an image, inspect) and the
runtime (the extraction cache of unprivileged runs), which may not import the builder's
image writers; hence here. Imports are made on first use: ``import base.squashfs`` is
cheap. A failed extraction (unsquashfs's non-zero exit, a corrupt block) is an
``ImageError`` naming the image and the extractor's message; the caller removes the partial
tree (it extracts into a temporary directory). Limits: a non-gzip compressor needs ``zstandard``/``lz4``/``python-lzo`` for the
PySquashfsImage fallback.
"""

from __future__ import annotations

import os

from base.errors import CapabilityError, ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable

__all__ = ["unpack", "open_image", "output_tail"]


def _log():  # noqa: ANN202
    import logging

    return logging.getLogger("sbuild.images")


def output_tail(proc: subprocess.CompletedProcess, n: int = 20) -> list[str]:
    """The last ``n`` non-blank lines of a finished program's stdout and stderr."""
    text = (proc.stdout or "") + (proc.stderr or "")
    return [l for l in text.splitlines() if l.strip()][-n:]


def _user_xattrs_ok(directory: str) -> bool:
    probe = os.path.join(directory, f".sbuild-xattr-{os.getpid()}")
    try:
        with open(probe, "wb"):
            pass
        os.setxattr(probe, "user.sbuild", b"1")
        return True
    except OSError:
        return False
    finally:
        try:
            os.unlink(probe)
        except FileNotFoundError:
            pass


def unpack(image: str | os.PathLike, dest: str | os.PathLike, *, offset: int = 0, rootless: bool | None = None,
           use_unsquashfs: bool = True, runner: Callable[..., subprocess.CompletedProcess] | None = None) -> None:
    """Extract the squashfs at ``offset`` in ``image`` into ``dest``, which must not exist.
    ``use_unsquashfs=False`` forces the PySquashfsImage path (used when unsquashfs is missing)."""
    import shutil
    import subprocess

    image, dest = os.fspath(image), os.fspath(dest)
    rootless = os.geteuid() != 0 if rootless is None else rootless
    if os.path.lexists(dest):
        raise ImageError(f"unpacking into {dest}: already exists", path=dest)
    tool = shutil.which("unsquashfs") or shutil.which("unsquashfs", path="/usr/sbin:/usr/bin")
    if tool is None or not use_unsquashfs:
        _log().info("unsquashfs not found, extracting with PySquashfsImage (slower)")
        _py_unpack(image, dest, offset=offset, rootless=rootless)
        return
    cmd = [tool, "-no-progress", "-quiet", "-d", dest]
    if offset:
        cmd += ["-offset", str(offset)]
    if rootless:  # device nodes cannot be made: skip dev/ and make it empty afterwards
        cmd.append("-user-xattrs" if _user_xattrs_ok(os.path.dirname(os.path.abspath(dest))) else "-no-xattrs")
        cmd += ["-excludes", image, "dev"]
    else:
        cmd.append(image)
    _log().debug("running %s", " ".join(cmd))
    proc = (runner or subprocess.run)(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError(f"unpacking {image} with unsquashfs: exit status {proc.returncode}: "
                         + " / ".join(output_tail(proc, 3)), path=image)
    _check_not_empty(image, offset, dest)
    if rootless:
        os.makedirs(os.path.join(dest, "dev"), 0o755, exist_ok=True)


def open_image(path: str | os.PathLike, offset: int = 0):  # noqa: ANN201 - a PySquashfsImage.SquashFsImage
    """A PySquashfsImage.SquashFsImage for the squashfs at ``offset`` (caller closes it)."""
    from base import sitepackages

    sitepackages.load()  # PySquashfsImage is a third-party package
    try:
        import PySquashfsImage
    except ImportError as e:  # a dependency of sbuild; only missing in a broken install
        raise CapabilityError("PySquashfsImage is not installed",
                              hint="pip install PySquashfsImage, or install squashfs-tools (unsquashfs)") from e
    _fix_lz4(PySquashfsImage)
    try:  # the file is ours to close when the image cannot be read (from_file leaks it)
        fh = open(path, "rb")
    except OSError as e:
        raise ImageError(f"reading squashfs in {path}: {e.strerror}", path=os.fspath(path)) from e
    try:
        return PySquashfsImage.SquashFsImage(fh, offset=offset)
    except ModuleNotFoundError as e:
        fh.close()
        raise CapabilityError(f"reading {path}: the squashfs compressor needs the python module "
                              f"{e.name!r}", hint=f"pip install {e.name}") from e
    except Exception as e:
        fh.close()
        raise ImageError(f"reading squashfs in {path}: {type(e).__name__}: {e}", path=os.fspath(path)) from e


def _fix_lz4(mod) -> None:  # noqa: ANN001
    """PySquashfsImage decodes lz4 as frames; squashfs stores raw lz4 blocks."""
    from PySquashfsImage import compressor
    from PySquashfsImage.const import Compression

    current = compressor.compressors.get(Compression.LZ4)
    if current is None or getattr(current, "_sbuild_fixed", False):
        return

    class _Lz4Block(compressor.Compressor):
        name = "lz4"
        _sbuild_fixed = True

        def __init__(self) -> None:
            import lz4.block

            self._lib = lz4.block

        def uncompress(self, src, size, outsize):  # noqa: ANN001, ANN201
            return self._lib.decompress(src, uncompressed_size=outsize)

    compressor.compressors[Compression.LZ4] = _Lz4Block
    mod.compressors[Compression.LZ4] = _Lz4Block


def _check_not_empty(image: str, offset: int, dest: str) -> None:
    """unsquashfs exits 0 with an empty tree when the superblock's root inode points at the
    wrong place: an image whose superblock counts more inodes than the root is corrupt."""
    import struct

    with open(image, "rb") as fh:
        fh.seek(offset + 4)
        (inodes,) = struct.unpack("<I", fh.read(4).ljust(4, b"\0"))
    if inodes > 1 and not os.listdir(dest):
        raise ImageError(f"unpacking {image}: unsquashfs extracted an empty tree from an image of {inodes} "
                         "inodes (its root inode is unreadable)", path=image, hint="the image may be corrupt")


def _py_unpack(image: str, dest: str, *, offset: int, rootless: bool) -> None:
    with open_image(image, offset) as im:
        from PySquashfsImage.extract import extract_dir

        try:
            extract_dir(im.root, dest, quiet=True)
        except Exception as e:  # noqa: BLE001 - a corrupt block is a zlib.error, a struct.error, …
            raise ImageError(f"unpacking {image} with PySquashfsImage: {type(e).__name__}: {e}", path=image,
                             hint="the image may be corrupt") from e
    if rootless:
        os.makedirs(os.path.join(dest, "dev"), 0o755, exist_ok=True)
