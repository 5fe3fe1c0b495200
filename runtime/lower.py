"""Part of the plan: the image as the container's lower layer, for a given identity.

As root (no user namespace) squashfs and ext3 filesystems are loop-mounted in place, at their
offset inside the file. In a user namespace the kernel will not mount them, so a squashfs
is mounted with squashfuse when /dev/fuse is usable, otherwise extracted once into a cache
directory keyed by the digest of its bytes (``base.squashfs.unpack``: unsquashfs, or
PySquashfsImage when unsquashfs is missing) and reused. The extraction goes to a temporary
directory beside the entry (``.extract-*``, with an owner record: ``base.owner``) renamed
into place only when complete; a failed one is an ``ImageError`` and leaves nothing, a
killed one is reclaimed by the next extraction or ``cache clean``. The cache index maps a file's
(device, inode, size, mtime) to that digest so that the digest is computed once per file.
When the cache directory cannot be written (``HOME=/nonexistent``, a read-only home), the
cache is disabled as Apptainer disables its own: a WARNING names the directory and
``APPTAINER_CACHEDIR``, and the image is extracted into ``$TMPDIR/sbuild-extract-*`` for this
run only (an owner record: removed when the last process of the run ends, or reclaimed by
the next such run after a kill).
Limits: ext3 images cannot be used unprivileged (no kernel mount, no extractor here).
"""

from __future__ import annotations

from base import lean_os as os
from base.errors import CapabilityError, ImageError
from runtime.paths import cache_dir
from runtime.description import record

__all__ = ["Lower", "probe", "lower_for", "fuse_usable"]


@record
class Lower:
    """How the container's init mounts the image (``RootPlan.fstype``, ``image``, ``offset``, ``size``)."""

    fstype: str  # dir | squashfs | ext3 | squashfuse
    path: str
    offset: int = 0
    size: int = 0
    kind: str = "sandbox"


def probe(path: str):
    """``builder.images.probe.probe``: the project's one image reader."""
    from builder.images.probe import probe as shared_probe

    return shared_probe(path)


def lower_for(image: str, *, userns: bool, writable: bool) -> Lower:
    info = probe(image)  # (a sandbox directory never comes here: runtime.plan._source takes it)
    kind, fstype = info.kind, info.fstype
    if kind == "sandbox":
        return Lower("dir", os.path.abspath(image), kind=kind)
    if writable and fstype == "squashfs":
        raise ImageError(f"opening {image} writable: a squashfs image is read-only",
                         path=image, hint="use --writable-tmpfs or --overlay, or build a sandbox")
    if not userns:
        return Lower(fstype, os.path.abspath(image), info.fs_offset, info.fs_size, kind)
    if fstype != "squashfs":
        raise CapabilityError(f"using {image} unprivileged: an {fstype} image needs root to mount",
                              hint="run as root, or convert it: sbuild build --sandbox DIR " + image)
    if fuse_usable():
        return Lower("squashfuse", os.path.abspath(image), info.fs_offset, info.fs_size, kind)
    return Lower("dir", _extracted(image, info.fs_offset, info.fs_size), kind=kind)


def fuse_usable() -> bool:
    """squashfuse is installed and this user may open /dev/fuse (it is often mode 0600)."""
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return False
    from shutil import which  # (~7 ms of imports: only when /dev/fuse is usable)

    return which("squashfuse") is not None


def _digest(image: str, offset: int, size: int) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(image, "rb") as f:
        f.seek(offset)
        left = size
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                raise ImageError(f"reading {image}: truncated image", path=image)
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def _extracted(image: str, offset: int, size: int) -> str:
    root = cache_dir()
    try:
        os.makedirs(os.path.join(root, "index"), 0o700, exist_ok=True)
        if not os.access(root, os.W_OK | os.X_OK) or not os.access(os.path.join(root, "index"), os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable", root)
    except OSError as e:
        return _uncached(image, offset, root, e)
    st = os.stat(image)
    key = os.path.join(root, "index", f"{st.st_dev}-{st.st_ino}-{st.st_size}-{st.st_mtime_ns}-{offset}")
    try:
        with open(key) as f:
            digest = f.read().strip()
        if os.path.isdir(os.path.join(root, digest)):
            return os.path.join(root, digest)
    except OSError:
        pass
    import fcntl

    digest = _digest(image, offset, size)
    target = os.path.join(root, digest)
    with open(os.path.join(root, f"{digest}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isdir(target):
            _extract(image, offset, target)
    tmp = f"{key}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(digest)
    os.replace(tmp, key)
    return target


def _uncached(image: str, offset: int, root: str, error: OSError) -> str:
    """``image`` extracted into a directory of this run's own (the cache is unusable)."""
    import atexit
    import logging
    import shutil
    import tempfile

    from base.owner import owned_dir, reclaim
    from base.squashfs import unpack

    logging.getLogger("sbuild.runtime").warning(
        "Cache disabled: cache directory %s is not writable (%s); extracting %s for this run only "
        "(set APPTAINER_CACHEDIR to a writable directory to extract it once)",
        root, error.strerror or error, image)
    parent = tempfile.gettempdir()
    reclaim(parent, ["sbuild-extract-"])  # what killed runs left
    work = owned_dir(parent, "sbuild-extract-")
    atexit.register(_discard, work, os.getpid())
    out = os.path.join(work.path, "rootfs")
    unpack(image, out, offset=offset, rootless=True, use_unsquashfs=shutil.which("unsquashfs") is not None)
    os.chmod(out, 0o755)
    return out


def _discard(work, pid: int) -> None:  # noqa: ANN001 - base.owner.Owned
    """At exit (of the process that extracted, not of a forked child): remove the run's
    extraction unless a process of the run (an instance) still holds its owner record."""
    if os.getpid() != pid:
        return
    from base.owner import reclaim

    work.release()
    reclaim(os.path.dirname(work.path), [os.path.basename(work.path)])


def _extract(image: str, offset: int, target: str) -> None:
    """Extract into ``target`` through a temporary directory beside it (``base.squashfs``,
    the project's one extractor; unsquashfs is looked up on PATH only, as ever)."""
    import logging
    import shutil

    from base.fsutil import remove_tree
    from base.owner import owned_dir, reclaim
    from base.squashfs import unpack

    parent = os.path.dirname(target)
    reclaim(parent, [".extract-"])  # what killed extractions left (``cache clean`` does it too)
    work = owned_dir(parent, ".extract-")
    out = os.path.join(work.path, "rootfs")
    logging.getLogger("sbuild.runtime").info("extracting %s into the cache (once)", image)
    try:
        unpack(image, out, offset=offset, rootless=True, use_unsquashfs=shutil.which("unsquashfs") is not None)
        os.chmod(out, 0o755)
        os.rename(out, target)  # complete: a failed or killed extraction never has the entry's name
    finally:
        remove_tree(work.path)
        work.release()
