"""The CLI's head start on a squashfs image: mount it early and read its /bin/sh ahead.

Every action execs the image's /bin/sh (the action script's shell), and from a freshly
mounted squashfs that costs the kernel ~13 ms of decompression, on one core, at the end of
the launch. As root, in the CLI process (``here`` mode: it ends with the container),
``stage`` runs before the rest of the runtime is imported: it gives the process a private
mount namespace, mounts the image's squashfs at ``<runtime dir>/stage`` and starts a thread
that has the kernel read /bin/sh into the page cache (``posix_fadvise``, which holds no
lock of ours), while the main thread imports the runtime, plans and forks the container.
The container's init copies this mount namespace, so it uses the same mount (one superblock,
one page cache) as its lower layer instead of mounting the image again (``RootPlan.lower``).

Best effort: anything unexpected returns None, and the container mounts the image itself.
Limits: root only (unprivileged squashfs goes through squashfuse or extraction), squashfs
only, and only the file /bin/sh resolves to (not the libraries of a dynamic shell).
"""

from __future__ import annotations

import os

__all__ = ["stage"]


def stage(image: str, *, writable: bool = False) -> str | None:
    """Mount ``image``'s squashfs at the stage directory and prefetch its /bin/sh; return
    the mount point, or None when this does not apply or did not work out."""
    if os.getuid() != 0 or writable or os.path.isdir(image):
        return None
    from builder.errors import SbuildError
    from builder.images.probe import probe
    from runtime import _sys
    from runtime.paths import resolve, runtime_dir

    try:
        info = probe(image)
        if info.fstype != "squashfs":
            return None
        path = os.path.join(runtime_dir(), "stage")
        os.makedirs(path, 0o700, exist_ok=True)
        _sys.unshare(_sys.CLONE_NEWNS)  # this process only: the CLI, which ends with the container
        _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)
        dev, fd = _sys.loop_attach(os.path.abspath(image), info.fs_offset, info.fs_size, True)
        try:
            _sys.mount(dev, path, "squashfs", _sys.MS_RDONLY | _sys.MS_NODEV, None)
        finally:
            os.close(fd)
    except (OSError, SbuildError):
        return None
    try:
        shell = os.open(path + resolve(path, "/bin/sh"), os.O_RDONLY | os.O_CLOEXEC)
    except Exception:  # noqa: BLE001 - no /bin/sh (the command is exec'd without the action script)
        return path
    import _signal
    import _thread

    # the thread blocks every signal (it inherits the mask): a signal for the process, such
    # as the SIGCHLD or SIGTERM that the main thread waits for, must never land in it
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    started = _thread.allocate_lock()
    started.acquire()
    try:
        _thread.start_new_thread(_prefetch, (path, shell, started))
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    started.acquire()  # hand the GIL over now: the thread would wait up to 5 ms for it
    return path


# What the container's setup and its action script look up first (runtime.rootfs.plan_targets,
# runtime.environ): looked up before /bin/sh is read, so that the setup, which runs meanwhile,
# finds them cached instead of waiting for the squashfs decompressor that the read holds.
_LOOKUPS = ("/proc", "/sys", "/dev", "/tmp", "/var/tmp", "/root", "/home", "/etc/passwd", "/etc/group",
            "/etc/localtime", "/etc/hosts", "/etc/resolv.conf", "/.singularity.d/env", "/environment")


def _prefetch(root: str, fd: int, started) -> None:  # noqa: ANN001
    started.release()
    try:
        for path in _LOOKUPS:
            try:
                os.lstat(root + path)  # (an absolute symlink on the way is followed on the host: a stat only)
            except OSError:
                pass
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)  # decompresses it, without the GIL
    except OSError:
        pass
    finally:
        os.close(fd)
