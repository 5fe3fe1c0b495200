"""Copy into a rootfs without ever leaving it: the engine behind ``%files`` and ``%appfiles``.

Every destination path is resolved inside the rootfs as securejoin does: a symlink there is
followed as if the rootfs were ``/`` (an absolute target restarts at the rootfs, ``..`` stops
at it), missing directories are created 0755. The walk goes component by component through
directory fds opened with ``O_NOFOLLOW``, and every file is created or opened relative to
such an fd, so no link a base image planted (absolute, relative, dangling, on the
destination, on a parent, or met deep in a recursive copy) can make a write land outside the
rootfs; a component swapped for a link while we walk fails instead of being followed.

Two flavours, after the two ``cp`` calls Apptainer makes (spec §B.3):

- ``copy_from_host`` is ``cp -fLr SRC DST``: host sources are dereferenced; new files and
  directories get the source's permission bits without setuid/setgid, less the umask; an
  existing file is truncated and rewritten (removed and recreated when it cannot be opened),
  keeping its mode and owner; owners are the caller's, times are not kept.
- ``copy_from_stage`` is ``cp -a -T``: the source is resolved inside the other stage's rootfs
  (only its top-level link is dereferenced, inside that rootfs); links are copied as links,
  hard links inside the copy are kept, and owners, modes, times and xattrs are preserved as
  far as the caller may (like cp, failures to chown or set an xattr are not errors).

Both: a destination that is an existing directory receives the source under its own name;
a ``DST`` ending in ``/`` is created as a directory. Safer than cp on purpose: a device node,
fifo or socket at a destination is replaced, never opened; a link to a directory met during
a recursive copy is followed inside the rootfs (cp refuses it). Holes in sparse files stay
holes. Limits: each directory level of a copy holds two fds, so a tree deeper than the
process's fd limit fails with EMFILE; xattrs of symlinks are not copied.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass, field

from base.securejoin import open_inside

__all__ = ["copy_from_host", "copy_from_stage"]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


@dataclass
class _Dir:
    """An open directory of the rootfs and its path there ("" for the rootfs itself)."""

    fd: int
    path: str

    def child(self, name: str) -> str:
        return f"{self.path}/{name}"


def _walk(root: int, path: str, *, create: bool, follow_last: bool = True) -> tuple[_Dir, str | None]:
    fd, where, name = open_inside(root, path, create=create, follow_last=follow_last)
    return _Dir(fd, where), name


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _mkdir(dir_fd: int, name: str, mode: int) -> bool:
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
        return True
    except FileExistsError:
        return False


def _remove(d: _Dir, name: str) -> None:
    try:
        os.unlink(name, dir_fd=d.fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise OSError(errno.EISDIR, "cannot overwrite directory with non-directory", d.child(name)) from None


def _copy_data(src: int, dst: int, size: int) -> None:
    """The bytes of ``src`` into the new ``dst``; holes stay holes."""
    if size == 0:  # /proc-like files report 0: read to the end
        _copy_range(src, dst, 0, None)
        return
    pos = 0
    while pos < size:
        try:
            start = os.lseek(src, pos, os.SEEK_DATA)
            end = min(os.lseek(src, start, os.SEEK_HOLE), size)
        except OSError as e:
            if e.errno == errno.ENXIO:
                break
            if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            start, end = pos, size
        if start >= size:
            break
        _copy_range(src, dst, start, end - start)
        pos = end
    if pos < size:  # a hole at the end
        os.ftruncate(dst, size)


def _copy_range(src: int, dst: int, offset: int, count: int | None) -> None:
    while count is None or count > 0:
        want = _CHUNK if count is None else min(count, _CHUNK)
        data = os.pread(src, want, offset)
        if not data:
            return
        view = memoryview(data)
        while view:
            n = os.pwrite(dst, view, offset)
            view, offset = view[n:], offset + n
        if count is not None:
            count -= len(data)


@dataclass
class _Frame:
    """A source directory being copied into ``dst``."""

    src: int
    path: str  # the source's path, for messages
    names: list[str]
    dst: _Dir
    st: os.stat_result
    restore: int | None  # host flavour: the mode to give a new directory once it is filled


@dataclass
class _Copier:
    root: int
    archive: bool  # cp -a (stage) rather than cp -fLr (host)
    made: set = field(default_factory=set)  # (dev, ino) of the directories this copy created
    links: dict = field(default_factory=dict)  # archive: (dev, ino) -> rootfs path of the first copy

    def copy(self, src_dir: int | None, src_name: str, src_path: str, dst: _Dir, name: str) -> None:
        stack: list[_Frame] = []
        try:
            frame = self._entry(src_dir, src_name, src_path, dst, name, stack)
            if frame:
                stack.append(frame)
            while stack:
                top = stack[-1]
                if not top.names:
                    self._finish(stack.pop())
                    continue
                child = top.names.pop()
                frame = self._entry(top.src, child, f"{top.path}/{child}", top.dst, child, stack)
                if frame:
                    stack.append(frame)
        finally:
            for f in stack:
                os.close(f.src)
                os.close(f.dst.fd)

    def _stat(self, src_dir: int | None, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=src_dir, follow_symlinks=not self.archive)

    def _open(self, src_dir: int | None, name: str, flags: int) -> int:
        return os.open(name, flags | os.O_CLOEXEC | (os.O_NOFOLLOW if self.archive else 0), dir_fd=src_dir)

    def _entry(self, src_dir: int | None, src_name: str, src_path: str, dst: _Dir, name: str,
               stack: list[_Frame]) -> _Frame | None:
        """Copy one entry; a directory is created (or found) and returned to be filled."""
        try:
            st = self._stat(src_dir, src_name)
            if stat.S_ISDIR(st.st_mode):
                return self._directory(src_dir, src_name, src_path, st, dst, name, stack)
            if stat.S_ISREG(st.st_mode):
                self._file(src_dir, src_name, st, dst, name)
            elif stat.S_ISLNK(st.st_mode):
                _remove(dst, name)
                os.symlink(os.readlink(src_name, dir_fd=src_dir), name, dir_fd=dst.fd)
                self._owner_times(dst, name, st)
            else:
                _remove(dst, name)
                os.mknod(name, st.st_mode & (0o7777 if self.archive else 0o1777) | stat.S_IFMT(st.st_mode),
                         st.st_rdev, dir_fd=dst.fd)
                self._owner_times(dst, name, st)
        except OSError as e:
            if e.filename2 is not None:
                raise
            where = e.filename if isinstance(e.filename, str) and e.filename.startswith("/") else dst.child(name)
            raise OSError(e.errno, e.strerror, src_path, None, where) from e
        return None

    def _target(self, dst: _Dir, name: str) -> tuple[_Dir, str, os.stat_result | None]:
        """Where an entry named ``name`` in ``dst`` lands: a link there is followed inside the
        rootfs. The returned directory's fd is new (the caller closes it)."""
        st = _lstat(dst.fd, name)
        if st is None or not stat.S_ISLNK(st.st_mode):
            return _Dir(os.dup(dst.fd), dst.path), name, st
        parent, last = _walk(self.root, dst.child(name), create=True)
        if last is None:
            return parent, ".", os.fstat(parent.fd)
        return parent, last, _lstat(parent.fd, last)

    def _directory(self, src_dir, src_name, src_path, st, dst: _Dir, name: str, stack: list[_Frame]) -> _Frame:
        key = (st.st_dev, st.st_ino)
        if key in self.made or any((f.st.st_dev, f.st.st_ino) == key for f in stack):
            raise OSError(errno.ELOOP, "cannot copy a directory into itself", dst.child(name))
        parent, last, cur = self._target(dst, name)
        try:
            if cur is not None and not stat.S_ISDIR(cur.st_mode):
                raise OSError(errno.ENOTDIR, "cannot overwrite non-directory with directory", parent.child(last))
            created = cur is None and _mkdir(parent.fd, last, 0o700 if self.archive else st.st_mode & 0o1777)
            fd = os.open(last, _DIR, dir_fd=parent.fd)
            into = _Dir(fd, parent.path if last == "." else parent.child(last))
        finally:
            os.close(parent.fd)
        restore = None
        if created:
            mine = os.fstat(fd)
            self.made.add((mine.st_dev, mine.st_ino))
            if not self.archive and mine.st_mode & 0o700 != 0o700:
                restore = stat.S_IMODE(mine.st_mode)
                os.fchmod(fd, restore | 0o700)  # cp too: fill it first, then lock it
        try:
            src = self._open(src_dir, src_name, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            os.close(fd)
            raise
        return _Frame(src, src_path, sorted(os.listdir(src), reverse=True), into, st, restore)

    def _finish(self, frame: _Frame) -> None:
        try:
            if self.archive:
                self._preserve(frame.dst.fd, frame.st, frame.src)
            elif frame.restore is not None:
                os.fchmod(frame.dst.fd, frame.restore)
        finally:
            os.close(frame.src)
            os.close(frame.dst.fd)

    def _file(self, src_dir, src_name, st, dst: _Dir, name: str) -> None:
        key = (st.st_dev, st.st_ino)
        if self.archive and st.st_nlink > 1 and key in self.links:
            self._hardlink(self.links[key], dst, name)
            return
        src = self._open(src_dir, src_name, os.O_RDONLY | os.O_NONBLOCK)
        try:
            real = os.fstat(src)
            if not stat.S_ISREG(real.st_mode):
                raise OSError(errno.EINVAL, "the source changed while it was copied", src_name)
            parent, last, cur = self._target(dst, name)
            try:
                out = self._open_dest(parent, last, cur, real)
                try:
                    _copy_data(src, out, real.st_size)
                    if self.archive:
                        self._preserve(out, real, src)
                finally:
                    os.close(out)
                if self.archive and st.st_nlink > 1:
                    self.links[key] = parent.child(last)
            finally:
                os.close(parent.fd)
        finally:
            os.close(src)

    def _open_dest(self, parent: _Dir, name: str, cur: os.stat_result | None, st: os.stat_result) -> int:
        """An fd to write the file ``name`` in ``parent``: the existing regular file truncated,
        or a new one (anything else there, or a file we may not open, is removed first)."""
        if cur is not None and stat.S_ISDIR(cur.st_mode):
            raise OSError(errno.EISDIR, "cannot overwrite directory with non-directory", parent.child(name))
        if cur is not None and stat.S_ISREG(cur.st_mode):
            try:
                fd = os.open(name, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                             dir_fd=parent.fd)
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    return fd
                os.close(fd)
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EPERM, errno.ETXTBSY, errno.ELOOP, errno.ENXIO):
                    raise
        if cur is not None:
            _remove(parent, name)
        mode = 0o600 if self.archive else st.st_mode & 0o1777
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                       dir_fd=parent.fd)

    def _hardlink(self, first: str, dst: _Dir, name: str) -> None:
        parent, last = _walk(self.root, first, create=False, follow_last=False)
        try:
            _remove(dst, name)
            os.link(last, name, src_dir_fd=parent.fd, dst_dir_fd=dst.fd, follow_symlinks=False)
        finally:
            os.close(parent.fd)

    def _preserve(self, fd: int, st: os.stat_result, src: int) -> None:
        """cp -a's attributes on an open file or directory: owner, mode, xattrs, times."""
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EINVAL):
                raise
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
        try:
            names = os.listxattr(src)
        except OSError:
            names = []
        for attr in names:
            try:
                os.setxattr(fd, attr, os.getxattr(src, attr))
            except OSError:
                pass
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _owner_times(self, dst: _Dir, name: str, st: os.stat_result) -> None:
        if not self.archive:
            return
        try:
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst.fd, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EINVAL):
                raise
        if not stat.S_ISLNK(st.st_mode):  # a device or fifo: chmod through an O_PATH fd, never a link
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst.fd)
            try:
                if stat.S_IFMT(os.fstat(fd).st_mode) == stat.S_IFMT(st.st_mode):
                    os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(st.st_mode))
            finally:
                os.close(fd)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst.fd, follow_symlinks=False)


def _destination(root: int, dst: str, name: str) -> tuple[_Dir, str]:
    """Where ``cp SRC DST`` puts a source called ``name``: DST itself, or DST/name when DST
    is a directory (created when DST ends with ``/``). The caller closes the fd."""
    parent, last = _walk(root, dst, create=True)
    if last is None:
        return parent, name
    cur = _lstat(parent.fd, last)
    if cur is None and not dst.endswith("/"):
        return parent, last
    try:
        if cur is None:
            _mkdir(parent.fd, last, 0o755)
        elif not stat.S_ISDIR(cur.st_mode):
            if dst.endswith("/"):
                raise OSError(errno.ENOTDIR, "not a directory", parent.child(last))
            return _Dir(os.dup(parent.fd), parent.path), last
        return _Dir(os.open(last, _DIR, dir_fd=parent.fd), parent.child(last)), name
    finally:
        os.close(parent.fd)


def _open_root(stack: contextlib.ExitStack, rootfs: str | os.PathLike) -> int:
    fd = os.open(os.fspath(rootfs), _DIR & ~os.O_NOFOLLOW)
    stack.callback(os.close, fd)
    return fd


def copy_from_host(src: str, rootfs: str | os.PathLike, dst: str) -> str:
    """``cp -fLr SRC DST`` with DST inside ``rootfs``; returns the path written in the rootfs.

    Raises ``OSError`` on failure: ``filename`` the source, ``filename2`` (when known) the
    path in the rootfs.
    """
    with contextlib.ExitStack() as stack:
        root = _open_root(stack, rootfs)
        into, last = _destination(root, dst, os.path.basename(src.rstrip("/")) or ".")
        stack.callback(os.close, into.fd)
        _Copier(root, archive=False).copy(None, src, src, into, last)
        return into.child(last)


def copy_from_stage(src_root: str | os.PathLike, src: str, rootfs: str | os.PathLike, dst: str) -> str:
    """``cp -a -T`` of ``src`` resolved inside ``src_root`` to DST inside ``rootfs`` (DST/name
    when DST is a directory); returns the path written in the rootfs.

    Raises ``OSError`` on failure (``ENOENT`` when ``src`` is not in the source rootfs).
    """
    with contextlib.ExitStack() as stack:
        sdir, sname = _walk(_open_root(stack, src_root), src, create=False)
        stack.callback(os.close, sdir.fd)
        if sname is not None and _lstat(sdir.fd, sname) is None:
            raise OSError(errno.ENOENT, "not found in the source stage", src)
        name = sname or "."
        root = _open_root(stack, rootfs)
        into, last = _destination(root, dst, os.path.basename(src.rstrip("/")) or name)
        stack.callback(os.close, into.fd)
        _Copier(root, archive=True).copy(sdir.fd, name, sdir.child(sname) if sname else src, into, last)
        return into.child(last)
