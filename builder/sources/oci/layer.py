"""Apply OCI/Docker layer tars to a rootfs directory, as ``umoci unpack`` does.

``LayerApplier(root, rootless=...)`` applies one uncompressed layer stream at a time
(``apply(fileobj)``), in manifest order, then ``finish()`` sets the directory modes and
times that had to wait for the children. Rules (OCI image-spec layer.md, umoci
``oci/layer/tar_extract.go``):

- every entry name is cleaned lexically (``..`` and a leading ``/`` cannot climb out) and
  its parent directory is resolved *inside* the root: symlinks met on the way, absolute or
  relative, are interpreted with the rootfs as ``/`` (like ``securejoin``). The last
  component is never followed. Hardlink targets are resolved the same way. Nothing is
  ever written, linked or removed outside ``root``.
- whiteouts ``.wh.NAME`` remove NAME and opaque ``.wh..wh..opq`` remove a directory's
  lower-layer children; neither touches paths written earlier in the same layer, and a
  whiteout naming ``.`` or ``..`` is ignored with a warning.
- an existing non-directory (or a directory replaced by a non-directory) is removed
  before an entry is written; two directories merge (attributes replaced).
- owner (root only), then mode incl. setuid, then ``SCHILY.xattr.*`` (``security.selinux``
  and ``system.nfs4_acl`` never), then times; a zero mtime becomes now.
- rootless: no chown, char/block devices become empty regular files (umoci's rule),
  EPERM/ENOTSUP on xattrs are warned once and ignored, and directories stay ``u+rwx``
  until ``finish()`` so unreadable directories can still be filled.

Limits: sparse members are written densely; ``user.rootlesscontainers`` ownership xattrs
are not recorded.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import shutil
import stat
import tarfile
import time
from dataclasses import dataclass
from typing import BinaryIO

from builder.securejoin import resolve_inside
from builder.sources.oci.errors import LayerError
from builder.sources.oci.fsops import FileWriter, copy, is_dir, lstat, make_traversable, write_all

__all__ = ["LayerApplier", "LayerStats", "clean_name"]

log = logging.getLogger("sbuild.sources.oci")

_WH = ".wh."
_OPAQUE = ".wh..wh..opq"
_FORBIDDEN_XATTRS = {"security.selinux", "system.nfs4_acl"}
_CHUNK = 1 << 20


def clean_name(name: str) -> str:
    """The entry name as a path relative to the root, with ``..`` unable to climb out."""
    cleaned = posixpath.normpath("/" + name)
    return cleaned.lstrip("/")


@dataclass
class LayerStats:
    entries: int = 0
    whiteouts: int = 0
    bytes: int = 0


class LayerApplier:
    """Applies layer tar streams to ``root``; see the module docstring for the rules."""

    def __init__(self, root: str | os.PathLike, *, rootless: bool | None = None, writers: int = 4) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self._files = FileWriter(writers, self._write_file)
        self.rootless = (os.geteuid() != 0) if rootless is None else rootless
        self._dirs: dict[str, str] = {}          # cleaned rel dir -> host path (real dir)
        self._times: dict[str, tuple[int, int]] = {}  # host dir -> (atime_ns, mtime_ns)
        self._modes: dict[str, int] = {}         # rootless: host dir -> final mode
        self._upper: set[str] = set()
        self._warned: set[str] = set()
        self._now_ns = time.time_ns()

    # ----------------------------------------------------------------- public
    def apply(self, fileobj: BinaryIO) -> LayerStats:
        """Apply one uncompressed layer tar read from ``fileobj`` (streamed, never seeked)."""
        stats = LayerStats()
        self._upper = set()
        os.makedirs(self.root, exist_ok=True)
        try:
            tar = tarfile.open(fileobj=fileobj, mode="r|", errors="surrogateescape")
        except tarfile.TarError as e:
            raise LayerError(f"reading layer: not a tar archive: {e}") from e
        try:
            with tar:
                self._members(tar, stats)
            self._files.barrier()
        except BaseException:
            with contextlib.suppress(BaseException):
                self._files.barrier()
            raise
        return stats

    def _members(self, tar: tarfile.TarFile, stats: LayerStats) -> None:
        while True:
            try:
                member = tar.next()
            except tarfile.TarError as e:
                raise LayerError(f"reading layer: corrupt tar: {e}") from e
            if member is None:
                break
            tar.members.clear()  # stream mode keeps every TarInfo otherwise
            stats.entries += 1
            try:
                if self._entry(tar, member, stats):
                    stats.whiteouts += 1
            except OSError as e:
                raise LayerError(f"applying layer entry {member.name!r}: {e.strerror or e}") from e
            except (tarfile.TarError, EOFError) as e:
                raise LayerError(f"reading layer entry {member.name!r}: {e}") from e

    def finish(self) -> None:
        """Set directory modes (rootless) and times deferred while layers were applied."""
        for host in sorted(self._modes, key=len, reverse=True):
            if is_dir(host):
                os.chmod(host, self._modes[host])
        for host, (atime, mtime) in self._times.items():
            try:
                os.utime(host, ns=(atime, mtime), follow_symlinks=False)
            except FileNotFoundError:
                pass
        self._modes.clear()
        self._times.clear()
        self._files.close()

    def directory(self, rel: str, create: bool = True) -> str | None:
        """Host path of directory ``rel`` resolved inside the root (created when missing)."""
        return self._dir(clean_name(rel), create)

    # ------------------------------------------------------------ resolution
    def _join(self, rel: str) -> str:
        """Host path of ``rel`` with every existing symlink resolved inside the root."""
        try:
            return resolve_inside(self.root, rel)
        except OSError as e:
            raise LayerError(f"resolving {rel!r}: too many levels of symbolic links") from e

    def _dir(self, rel: str, create: bool = True) -> str | None:
        """Host path of directory ``rel`` (created with its parents when missing)."""
        hit = self._dirs.get(rel)
        if hit is not None:
            return hit
        host = self._join(rel)
        if self._files.blocks(host, self.root):
            self._files.barrier()  # a file being written is in the way: resolve after it exists
            host = self._join(rel)
        parts = host[len(self.root):].split("/")[1:] if host != self.root else []
        cur = self.root
        for part in parts:
            parent, cur = cur, cur + "/" + part
            try:
                st = os.lstat(cur)
            except (FileNotFoundError, NotADirectoryError):
                st = None
            if st is not None and stat.S_ISDIR(st.st_mode):
                continue
            if not create:
                return None
            self._touch_parent(parent)
            if st is not None:  # a non-directory where a directory must be
                self._remove(cur, st)
            os.mkdir(cur, 0o755)
            os.chmod(cur, 0o755)
        self._dirs[rel] = host
        return host

    # --------------------------------------------------------------- entries
    def _entry(self, tar: tarfile.TarFile, m: tarfile.TarInfo, stats: LayerStats) -> bool:
        rel = clean_name(m.name)
        parent_rel, _, base = rel.rpartition("/")
        if base.startswith(_WH):
            self._whiteout(parent_rel, base)
            return True
        if not rel:
            if not m.isdir():
                raise LayerError(f"refusing entry {m.name!r}: it would replace the root directory")
            self._metadata(self.root, m, is_dir=True)
            return False
        parent = self._dir(parent_rel)
        path = parent + "/" + base
        self._upper.add(path)
        if path in self._files:
            self._files.wait(path)
        if m.islnk():
            self._hardlink(path, m)
            return False
        existing = lstat(path)
        if existing is not None and not (m.isdir() and stat.S_ISDIR(existing.st_mode)):
            self._touch_parent(parent)
            self._remove(path, existing)
            existing = None
        if existing is None:
            self._touch_parent(parent)
        if m.isreg():
            stats.bytes += self._regular(tar, path, m)
        elif m.isdir():
            if existing is None:
                os.mkdir(path, 0o700)
            self._metadata(path, m, is_dir=True)
        elif m.issym():
            os.symlink(m.linkname, path)
            self._metadata(path, m, is_link=True)
        elif m.ischr() or m.isblk():
            self._device(path, m)
        elif m.isfifo():
            os.mkfifo(path, 0o600)
            self._metadata(path, m)
        else:
            self._warn(f"type:{m.type!r}", f"skipping {m.name!r}: unsupported tar entry type {m.type!r}")
        return False

    def _regular(self, tar: tarfile.TarFile, path: str, m: tarfile.TarInfo) -> int:
        if self._files.wants(m):
            data = tar.fileobj.read(m.size) if m.size else b""
            if len(data) != m.size:
                raise EOFError("unexpected end of layer data")
            self._files.submit(path, m, data)
            return m.size
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with open(fd, "wb", closefd=False, buffering=0) as out:
                if m.sparse is not None:
                    src = tar.extractfile(m)
                    shutil.copyfileobj(src, out, _CHUNK)
                else:
                    copy(tar.fileobj, out, m.size)
            self._metadata(fd, m, path=path)
        finally:
            os.close(fd)
        return m.size

    def _write_file(self, path: str, m: tarfile.TarInfo, data: bytes) -> None:
        """Run by the writer threads: create, fill and label one regular file."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            write_all(fd, data)
            self._metadata(fd, m, path=path)
        finally:
            os.close(fd)

    def _hardlink(self, path: str, m: tarfile.TarInfo) -> None:
        target_rel = clean_name(m.linkname)
        t_parent_rel, _, t_base = target_rel.rpartition("/")
        t_parent = self._dir(t_parent_rel, create=False) if t_base else None
        target = None if t_parent is None else t_parent + "/" + t_base
        if target in self._files:
            self._files.wait(target)
        tst = None if target is None else lstat(target)
        if tst is None or stat.S_ISDIR(tst.st_mode):
            raise LayerError(f"hardlink {m.name!r}: target {m.linkname!r} is missing or a directory")
        if target == path:
            return
        parent = path.rpartition("/")[0]
        self._touch_parent(parent)
        existing = lstat(path)
        if existing is not None:
            self._remove(path, existing)
        os.link(target, path, follow_symlinks=False)

    def _device(self, path: str, m: tarfile.TarInfo) -> None:
        if self.rootless:
            self._warn(f"dev:{m.name}", f"rootless: creating empty file in place of device "
                                        f"{m.devmajor}:{m.devminor} ({m.name})")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                self._metadata(fd, m, path=path)
            finally:
                os.close(fd)
            return
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        self._metadata(path, m)

    # -------------------------------------------------------------- whiteouts
    def _whiteout(self, parent_rel: str, base: str) -> None:
        parent = self._dir(parent_rel, create=False)
        if parent is None:
            return  # nothing below to hide
        if base == _OPAQUE:
            self._opaque(parent)
            return
        name = base[len(_WH):]
        if name in ("", ".", "..") or name.startswith(_WH):
            self._warn(f"wh:{name}", f"ignoring invalid whiteout {base!r} in /{parent_rel}")
            return
        path = parent + "/" + name
        if path in self._upper:
            return
        st = lstat(path)
        if st is not None:
            self._touch_parent(parent)
            self._remove(path, st)

    def _opaque(self, directory: str) -> None:
        self._upper.add(directory)
        stack = [directory]
        while stack:
            current = stack.pop()
            with os.scandir(current) as it:
                children = [e.path for e in it]
            for child in children:
                st = os.lstat(child)
                if child not in self._upper:
                    self._touch_parent(current)
                    self._remove(child, st)
                elif stat.S_ISDIR(st.st_mode):
                    stack.append(child)

    def _remove(self, path: str, st: os.stat_result) -> None:
        self._files.barrier()
        if stat.S_ISDIR(st.st_mode):
            if self.rootless:
                make_traversable(path)
            shutil.rmtree(path)
            self._forget(path)
        else:
            os.unlink(path)
            if stat.S_ISLNK(st.st_mode):
                self._dirs.clear()

    def _forget(self, path: str) -> None:
        self._dirs.clear()
        prefix = path + "/"
        for table in (self._times, self._modes):
            for key in [k for k in table if k == path or k.startswith(prefix)]:
                del table[key]

    # --------------------------------------------------------------- metadata
    def _touch_parent(self, parent: str) -> None:
        """Remember a directory's times before we change its contents (restored by finish)."""
        if parent not in self._times:
            st = os.lstat(parent)
            self._times[parent] = (st.st_atime_ns, st.st_mtime_ns)

    def _metadata(self, target: int | str, m: tarfile.TarInfo, *, path: str | None = None,
                  is_dir: bool = False, is_link: bool = False) -> None:
        path = path or target  # type: ignore[assignment]
        if not self.rootless:
            if isinstance(target, int):
                os.fchown(target, m.uid, m.gid)
            else:
                os.chown(target, m.uid, m.gid, follow_symlinks=False)
        mode = m.mode & 0o7777
        if is_dir and self.rootless:
            self._modes[path] = mode
            mode |= 0o700
        if not is_link:
            if isinstance(target, int):
                os.fchmod(target, mode)
            else:
                os.chmod(target, mode)
        self._xattrs(target, m, path)
        mtime_ns = int(m.mtime * 1e9) if m.mtime else self._now_ns
        atime = m.pax_headers.get("atime")
        atime_ns = int(float(atime) * 1e9) if atime and float(atime) else mtime_ns
        if is_dir:
            self._times[path] = (atime_ns, mtime_ns)
        elif isinstance(target, int):
            os.utime(target, ns=(atime_ns, mtime_ns))
        else:
            os.utime(target, ns=(atime_ns, mtime_ns), follow_symlinks=False)

    def _xattrs(self, target: int | str, m: tarfile.TarInfo, path: str) -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if name in _FORBIDDEN_XATTRS:
                continue
            raw = value.encode("utf-8", "surrogateescape")
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, raw)
                else:
                    os.setxattr(target, name, raw, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES):
                    raise
                self._warn(f"xattr:{name}", f"cannot set xattr {name} on {path[len(self.root):]}: "
                                            f"{e.strerror} (ignored)")

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)
