"""Temporary directories that say whether the process that made them still lives.

A build's bundle (``sbuild-bundle-*`` in TMPDIR), a half-written image beside its TARGET
(``.NAME.sbuild-*``) and an extraction in the rootfs cache (``.extract-*``) are directories
that a crash or SIGKILL leaves behind. Each one made by ``owned_dir`` holds an owner
record, ``.sbuild-owner``: a file its process keeps an exclusive ``flock`` on for as long
as it lives (or until ``release``). The kernel drops the lock when the process dies, so
the record survives the crash and shows that nobody owns the directory any more.

``reclaim(parent, prefixes)`` removes the directories under ``parent`` whose name starts
with one of ``prefixes``, that belong to this user and whose owner record is free (the
removal holds the lock: no other reclaimer races it). It never touches a directory whose
owner lives (another build), one without a record (being made right now, kept on purpose
with ``disown``, or made by something else), nor a symbolic link. The record is created
under another name, locked, then renamed into place, so that it is never seen unlocked
while its owner lives.

``held_file(directory, prefix)`` is the same for a single temp file (a download into the
blob cache): the file itself is the record, held (``flock``, shared: readers of a
download in progress may share it) from the moment it has its name; whoever may take
it exclusively knows its writer is gone.

Limits: a TMPDIR shared by several hosts must carry its locks between them (NFS does,
unless mounted with ``local_lock=flock``; then one host could reclaim another's live
temps). A child forked by the owner shares the lock and keeps it while it runs. A process
killed between ``mkdtemp`` and the record's rename leaves an empty directory nobody
reclaims (``held_file`` leaves nothing, but for the fallback where ``O_TMPFILE`` is
missing). Only the standard library and ``base`` are imported.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from base.fsutil import remove_tree

__all__ = ["Owned", "owned_dir", "owned_temp_dir", "reclaim", "remove_owned", "held_file", "OWNER",
           "TMPDIR_PREFIXES"]

OWNER = ".sbuild-owner"
# what sbuild makes in TMPDIR: build bundles, --disable-cache blob caches, unpacked OCI
# archives, gunzipped shub images (a build reclaims the dead ones: builder.bundle)
TMPDIR_PREFIXES = ("sbuild-bundle-", "sbuild-blobs-", "sbuild-oci-", "sbuild-shub-")


class Owned:
    """A directory made by ``owned_dir``: ``path``; its owner record is locked until
    ``release`` (or this process's end)."""

    __slots__ = ("path", "_fd")

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        """Let go of the record: the directory may be reclaimed once it is no longer wanted."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def disown(self) -> None:
        """Keep the directory for good (``--no-cleanup``): no record, so nobody reclaims it."""
        with contextlib.suppress(OSError):
            os.unlink(self.path / OWNER)
        self.release()


def owned_dir(parent: str | os.PathLike | None, prefix: str, mode: int | None = None) -> Owned:
    """A new directory ``parent/prefix…`` (``tempfile.mkdtemp``) with a locked owner record.
    ``mode``: the directory's mode (mkdtemp's 0700 when None). OSError as mkdtemp raises it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        fd = os.open(path / f"{OWNER}.new", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, f"{os.getpid()}\n".encode())
            os.rename(path / f"{OWNER}.new", path / OWNER)
        except BaseException:
            os.close(fd)
            raise
        if mode is not None:
            os.chmod(path, mode)
    except BaseException:
        remove_tree(path)
        raise
    return Owned(path, fd)


def remove_owned(path: str | os.PathLike) -> None:
    """``remove_tree(path)`` with the owner record last: a removal cut short (a signal, a
    killed helper) leaves the record, so the next ``reclaim`` finishes the job."""
    try:
        names = os.listdir(path)
    except OSError:
        names = []
    for name in names:
        if name != OWNER:
            remove_tree(os.path.join(path, name))
    try:
        left = set(os.listdir(path)) - {OWNER}
    except OSError:
        left = set()
    if not left:
        remove_tree(path)


@contextlib.contextmanager
def owned_temp_dir(parent: str | os.PathLike | None, prefix: str):  # noqa: ANN201 - Iterator[Path]
    """``owned_dir`` as a context manager: the directory is removed (``remove_owned``) at the end."""
    owned = owned_dir(parent, prefix)
    try:
        yield owned.path
    finally:
        remove_owned(owned.path)
        owned.release()


def reclaim(parent: str | os.PathLike, prefixes: Iterable[str],
            remove: Callable[[Path], None] = remove_owned) -> list[Path]:
    """Remove the dead owners' directories ``parent/PREFIX*`` (see the module docstring);
    ``remove(path)`` deletes one (default ``remove_owned``). Returns what it removed."""
    prefixes = tuple(prefixes)
    try:
        names = [n for n in os.listdir(parent) if n.startswith(prefixes)]
    except OSError:
        return []
    removed = []
    for name in sorted(names):
        path = Path(parent, name)
        with _dead_owner(path) as dead:
            if dead:
                remove(path)
                removed.append(path)
    return removed


@contextlib.contextmanager
def _dead_owner(path: Path):  # noqa: ANN202 - Iterator[bool]
    """True (holding the record's lock) when ``path`` is this user's directory whose owner
    record nobody holds."""
    try:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            yield False
            return
        dirfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield False
        return
    try:
        fd = os.open(OWNER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError:
        os.close(dirfd)
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
        os.close(dirfd)


def held_file(directory: str | os.PathLike, prefix: str) -> tuple[int, Path]:
    """A new temp file ``directory/PREFIX…`` (made if missing), open for writing and held by
    this process under that name from the start: made without a name (``O_TMPFILE``),
    locked, then linked in, so that a process killed at any point leaves no name behind.
    Where the file system has no ``O_TMPFILE`` (NFS) or /proc is missing: made under another
    name (``.new-…``), locked, then renamed (a kill between the two leaves that name).
    Returns (fd, path); closing the fd lets go of it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError:
        return _held_renamed(directory, prefix)
    dirfd = -1
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        for _attempt in range(100):
            name = f"{prefix}{os.urandom(6).hex()}"
            try:  # (linkat with AT_SYMLINK_FOLLOW: os.link uses it only given a dir fd)
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dirfd, follow_symlinks=True)
                return fd, directory / name
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "no free temp file name", str(directory))
    except FileExistsError:
        os.close(fd)
        raise
    except OSError:  # (no /proc: link by name instead)
        os.close(fd)
        return _held_renamed(directory, prefix)
    except BaseException:
        os.close(fd)
        raise
    finally:
        if dirfd >= 0:
            os.close(dirfd)


def _held_renamed(directory: Path, prefix: str) -> tuple[int, Path]:
    fd, name = tempfile.mkstemp(prefix=".new-", dir=directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        path = directory / (prefix + Path(name).name[len(".new-"):])
        os.rename(name, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return fd, path
