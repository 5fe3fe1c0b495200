"""Before the plan (root, squashfs): mount the image early and read its /bin/sh ahead.

Every action execs the image's /bin/sh (the action script's shell), and from a freshly
mounted squashfs that costs the kernel 13-18 ms of decompression, on one core (one
decompressor per superblock): the longest step of a launch. As root, in the CLI process
(it ends with the container), the image's squashfs is mounted as a detached mount (the new
mount API: ``fsmount`` returns an fd, nothing is attached to any mount namespace, nothing
to clean up) and a thread has the kernel read /bin/sh, then the env scripts the action
script sources, into its page cache (``posix_fadvise``, which holds no lock of ours) while
the main thread parses, imports the runtime, plans and forks the container. The
container's init inherits the fd and attaches that mount as its lower layer
(``RootPlan.lower``; one superblock, one page cache) instead of mounting the image again.
Before the thread starts, the paths the init looks up (its mount points, ``_LOOKED_UP``)
are looked up once: their directory and inode blocks are then decompressed and cached, and
the init's lookups do not wait behind the read-ahead for the decompressor.

When: ``start``, the first thing ``builder.cli.entry`` does as root, before the CLI's and
the runtime's modules are imported (~8 ms): the image is guessed from the raw command line
(after the action word, the first words that are neither options nor URIs and are a file
holding a squashfs: ``_candidates``). ``prefetch``, with the parsed command line, takes
that mount only when its image is the same file (device and inode) and is not opened
writable; otherwise it closes it and mounts the right one itself (a wrong guess costs a
mount, never a wrong one). A mount no launch took goes with the process (or ``abandon``).

The thread calls ``posix_fadvise`` first thing: any other call that released the GIL
before it would leave the thread waiting for the main thread's imports (up to the 5 ms
switch interval) while the decompression, the longest step of the launch, has not begun.
(Measured: doing the mount on an early thread instead, or in a forked child, is slower:
the thread waits for the GIL, the child costs a fork and copy-on-write faults.)

Best effort: anything unexpected returns None, and the container mounts the image itself.
Limits: root only (unprivileged squashfs goes through squashfuse or extraction), squashfs
only, and only the file /bin/sh resolves to (not the libraries of a dynamic shell). A
``.simg`` or raw squashfs is recognised here from its first bytes; a SIF goes through
``builder.images.probe`` (which ``run_action`` uses in any case, and which reports what is
wrong with a bad image).
"""

from __future__ import annotations

from base import lean_os as os

__all__ = ["start", "prefetch", "abandon", "Prefetched"]

_SIMG_MARK = b" run-singularity"
_ACTIONS = ("exec", "run", "shell", "test")  # builder.commands.run.ACTIONS (not imported: the layers, and its cost)
_GUESSES = 3  # words of the command line tried as the image, at most


class Prefetched:
    """What ``prefetch`` mounted: ``fd`` of the detached mount (close-on-exec; the container's
    init inherits a copy and attaches it, ``run_action`` closes this one when the run is
    over) and where the squashfs lies in the image file (``offset``, ``size``), which
    ``run_action`` then need not probe again."""

    __slots__ = ("fd", "offset", "size")

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self.fd, self.offset, self.size = fd, offset, size


_early: tuple[Prefetched, tuple[int, int]] | None = None  # ``start``'s mount, and the file's (device, inode)


def start(argv: list[str], program: str) -> None:
    """As root, when ``argv`` (the command line after the program name) is an action's: mount
    the likely image and start reading its /bin/sh ahead (see above)."""
    global _early
    if _early is not None or os.geteuid() != 0:
        return
    try:
        _early = _guess(argv, program)
    except Exception:  # noqa: BLE001 - best effort: the parsed command line decides again
        _early = None


def _guess(argv: list[str], program: str) -> tuple[Prefetched, tuple[int, int]] | None:
    for path in _candidates(argv, program):
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_mode & 0o170000 != 0o100000:  # not a regular file
            continue
        where = _locate(path, sif_only=True)
        if where is not None:
            mounted = _mount_and_read(path, where)
            return None if mounted is None else (mounted, (st.st_dev, st.st_ino))
    return None


def _candidates(argv: list[str], program: str) -> list[str]:
    """The words of an action's command line that may be its image, in order: after the
    action word (and any global flags before it; ``-c``/``--config`` takes a value), those
    that are neither options nor URIs (``instance://``, ``docker://``: no file to mount).
    Which words are option values is not known here: ``prefetch`` checks the guess."""
    if program == "run-singularity":  # `./image.simg ARGS`
        words = argv[:1]
    else:
        i = 0
        while i < len(argv) and argv[i].startswith("-"):
            i += 2 if argv[i] in ("-c", "--config") else 1
        if i >= len(argv) or argv[i] not in _ACTIONS:
            return []
        words = argv[i + 1:]
    found = [w for w in words if w and not w.startswith("-") and ":" not in w]
    return found[:_GUESSES]


def _take_early(image: str) -> Prefetched | None:
    """``start``'s mount when it is ``image``'s, else None (and that mount closed)."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    try:
        st = os.stat(image)
        if (st.st_dev, st.st_ino) == early[1]:
            return early[0]
    except OSError:
        pass
    os.close(early[0].fd)
    return None


def abandon() -> None:
    """Close ``start``'s mount when no launch will take it (a writable one; a process that
    ends closes it anyway); its read-ahead ends with the process."""
    global _early
    early, _early = _early, None
    if early is not None:
        os.close(early[0].fd)


def _squashfs_at(image: str) -> tuple[int, int] | None:
    """``(offset, bytes_used)`` of the squashfs in a raw squashfs or ``.simg`` file, or None
    (another kind, or anything odd: then ``builder.images.probe`` decides)."""
    head = _head(image)
    return None if head is None else _squashfs_in(*head)


def _head(image: str) -> tuple[bytes, int] | None:
    """The first 4 KiB of ``image`` and its size, or None when it cannot be read."""
    try:
        fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.pread(fd, 4096, 0), os.fstat(fd).st_size
    except OSError:
        return None
    finally:
        os.close(fd)


def _squashfs_in(head: bytes, size: int) -> tuple[int, int] | None:
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


def _locate(image: str, *, sif_only: bool = False) -> tuple[int, int] | None:
    """``(offset, size)`` of ``image``'s squashfs, or None; with ``sif_only`` (a guess), only
    a ``.simg``, a raw squashfs or a SIF, not any file the probe knows."""
    head = _head(image)
    found = None if head is None else _squashfs_in(*head)
    if found is not None:
        return found
    if sif_only and (head is None or head[0][32:41] != b"SIF_MAGIC"):
        return None
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
        abandon()
        return None
    taken = _take_early(image)
    if taken is not None:
        return taken
    where = _locate(image)
    return None if where is None else _mount_and_read(image, where)


def _mount_and_read(image: str, where: tuple[int, int]) -> Prefetched | None:
    """The squashfs at ``where`` in ``image`` mounted detached, its /bin/sh being read ahead
    on a thread; None when it could not be mounted."""
    mnt = _mount(image, where)
    if mnt < 0:
        return None
    shell = _shell(mnt)
    if shell >= 0:  # (no /bin/sh: the command is exec'd without the action script)
        _look_up(mnt)
        files = [shell, *_env_scripts(mnt)]
        import _thread

        started = _thread.allocate_lock()
        started.acquire()
        if _start_thread(_read_ahead, (files, started)):
            started.acquire()  # hand the GIL over now: the thread would wait up to 5 ms for it
        else:
            for fd in files:
                os.close(fd)
    return Prefetched(mnt, *where)


# what the container's init looks up in the image (its mount points) and the action
# script reads, before and after /bin/sh: looked up ahead, their directory and inode
# blocks are decompressed before the read-ahead holds the superblock's one decompressor
_LOOKED_UP = ("/dev", "/proc", "/sys", "/tmp", "/var/tmp", "/root", "/home", "/etc/localtime", "/etc/hosts",
              "/etc/resolv.conf", "/etc/passwd", "/etc/group", "/.singularity.d/env")


def _look_up(mnt: int) -> None:
    from runtime import _sys

    for path in _LOOKED_UP:
        try:
            os.close(_sys.open_in_root(mnt, path, os.O_PATH))
        except OSError:
            pass


def _env_scripts(mnt: int) -> list[int]:
    """fds of the image's /.singularity.d/env/*.sh (what the action script sources first)."""
    from runtime import _sys

    try:
        d = _sys.open_in_root(mnt, "/.singularity.d/env", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return []
    fds = []
    try:
        for name in sorted(os.listdir(d))[:32]:
            if name.endswith(".sh"):
                try:
                    fds.append(_sys.open_in_root(mnt, f"/.singularity.d/env/{name}", os.O_RDONLY))
                except OSError:
                    pass
    finally:
        os.close(d)
    return fds


def _mount(image: str, where: tuple[int, int]) -> int:
    """The squashfs at ``where`` in ``image`` as a detached mount: its fd, or -1."""
    from runtime import _sys

    try:
        dev, loop_fd = _sys.loop_attach(os.path.abspath(image), where[0], where[1], True)
        try:
            return _sys.fsmount_bdev("squashfs", dev, _sys.MOUNT_ATTR_RDONLY | _sys.MOUNT_ATTR_NODEV)
        finally:
            os.close(loop_fd)
    except OSError:  # e.g. no loop devices, or a kernel without the new mount API (< 5.2)
        return -1


def _shell(mnt: int) -> int:
    """An fd of the file the mount's /bin/sh resolves to (inside it), or -1."""
    from runtime import _sys

    try:
        return _sys.open_in_root(mnt, "/bin/sh", os.O_RDONLY)
    except OSError:
        return -1


def _start_thread(function, args: tuple) -> bool:  # noqa: ANN001
    """``function(*args)`` on a new thread that blocks every signal (it inherits the mask): a
    signal for the process, such as the SIGCHLD or SIGTERM that the main thread waits for,
    must never land in it. False when no thread could be started."""
    import _signal
    import _thread

    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    try:
        _thread.start_new_thread(function, args)
    except RuntimeError:  # (can't start new thread)
        return False
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    return True


def _read_ahead(fds: list[int], started) -> None:  # noqa: ANN001
    started.release()
    for fd in fds:
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)  # decompresses it, without the GIL
        except OSError:
            pass
        finally:
            os.close(fd)
