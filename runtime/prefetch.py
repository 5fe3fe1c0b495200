"""Before the plan (root, squashfs): mount the image early and read its /bin/sh ahead.

Every action execs the image's /bin/sh (the action script's shell), and from a freshly
mounted squashfs that costs the kernel ~13 ms of decompression, on one core, at the end of
the launch. As root, in the CLI process (``here`` mode: it ends with the container),
``prefetch`` runs before the rest of the runtime is imported: it mounts the image's squashfs
as a detached mount (the new mount API: ``fsmount`` returns an fd, nothing is attached to
any mount namespace, nothing to clean up) and starts a thread that has the kernel read
/bin/sh into the page cache (``posix_fadvise``, which holds no lock of ours), while the
main thread imports the runtime, plans and forks the container. The container's init
inherits the fd and attaches that mount as its lower layer (``RootPlan.lower``; one
superblock, one page cache) instead of mounting the image again.

The thread calls ``posix_fadvise`` first thing: any other call that released the GIL
before it would leave the thread waiting for the main thread's imports (up to the 5 ms
switch interval) while the decompression, the longest step of the launch, has not begun.

Best effort: anything unexpected returns None, and the container mounts the image itself.
Limits: root only (unprivileged squashfs goes through squashfuse or extraction), squashfs
only, and only the file /bin/sh resolves to (not the libraries of a dynamic shell). A
``.simg`` or raw squashfs is recognised here from its first bytes; other files (SIF) go
through ``builder.images.probe`` (which ``run_action`` uses in any case, and which reports
what is wrong with a bad image).
"""

from __future__ import annotations

import os

__all__ = ["prefetch", "Prefetched"]

_SIMG_MARK = b" run-singularity"


class Prefetched:
    """What ``prefetch`` mounted: ``fd`` of the detached mount (close-on-exec; the container's
    init inherits a copy and attaches it, ``run_action`` closes this one when the run is
    over) and where the squashfs lies in the image file (``offset``, ``size``), which
    ``run_action`` then need not probe again."""

    __slots__ = ("fd", "offset", "size")

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self.fd, self.offset, self.size = fd, offset, size


def _squashfs_at(image: str) -> tuple[int, int] | None:
    """``(offset, bytes_used)`` of the squashfs in a raw squashfs or ``.simg`` file, or None
    (another kind, or anything odd: then ``builder.images.probe`` decides)."""
    try:
        fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        head = os.pread(fd, 4096, 0)
        size = os.fstat(fd).st_size
    except OSError:
        return None
    finally:
        os.close(fd)
    offset = 0
    if not head.startswith(b"hsqs"):
        mark = head.find(_SIMG_MARK, 0, 2048)
        offset = mark + len(_SIMG_MARK) + 1
        if mark <= 0 or head[offset:offset + 4] != b"hsqs":
            return None
    used = int.from_bytes(head[offset + 40:offset + 48], "little")
    return (offset, used) if 96 <= used <= size - offset and _tables_fit(head[offset:offset + 96]) else None


def _tables_fit(sb: bytes) -> bool:
    """The inode and directory tables in order inside the image and the root inode inside
    the inode table (a damaged root reference mounts as an empty tree): else probe decides."""
    inodes, used = int.from_bytes(sb[4:8], "little"), int.from_bytes(sb[40:48], "little")
    root, inode_table, dir_table = (int.from_bytes(sb[i:i + 8], "little") for i in (32, 64, 72))
    return inodes >= 1 and 96 <= inode_table < dir_table <= used and (root >> 16) < dir_table - inode_table


def _locate(image: str) -> tuple[int, int] | None:
    found = _squashfs_at(image)
    if found is not None:
        return found
    from base.errors import SbuildError
    from builder.images.probe import probe

    try:
        info = probe(image)
    except SbuildError:
        return None
    return (info.fs_offset, info.fs_size) if info.fstype == "squashfs" else None


def prefetch(image: str, *, writable: bool = False) -> Prefetched | None:
    """Mount ``image``'s squashfs detached and prefetch its /bin/sh; None when this does not
    apply or did not work out."""
    if os.getuid() != 0 or writable or os.path.isdir(image):
        return None
    where = _locate(image)
    if where is None:
        return None
    from runtime import _sys

    try:
        dev, loop_fd = _sys.loop_attach(os.path.abspath(image), where[0], where[1], True)
        try:
            mnt = _sys.fsmount_bdev("squashfs", dev, _sys.MOUNT_ATTR_RDONLY | _sys.MOUNT_ATTR_NODEV)
        finally:
            os.close(loop_fd)
    except OSError:  # e.g. no loop devices, or a kernel without the new mount API (< 5.2)
        return None
    try:
        shell = _sys.open_in_root(mnt, "/bin/sh", os.O_RDONLY)
    except OSError:  # no /bin/sh (the command is exec'd without the action script)
        return Prefetched(mnt, *where)
    import _signal
    import _thread

    # the thread blocks every signal (it inherits the mask): a signal for the process, such
    # as the SIGCHLD or SIGTERM that the main thread waits for, must never land in it
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    started = _thread.allocate_lock()
    started.acquire()
    try:
        _thread.start_new_thread(_read_ahead, (shell, started))
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    started.acquire()  # hand the GIL over now: the thread would wait up to 5 ms for it
    return Prefetched(mnt, *where)


def _read_ahead(fd: int, started) -> None:  # noqa: ANN001
    started.release()
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)  # decompresses it, without the GIL
    except OSError:
        pass
    finally:
        os.close(fd)
