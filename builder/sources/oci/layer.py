"""Apply OCI/Docker layer tars to a rootfs directory, as ``umoci unpack`` does.

``LayerApplier(root, rootless=...)`` applies one uncompressed layer stream at a time
(``apply(fileobj)``, read with ``tarstream.TarReader``), in manifest order, then
``finish()`` sets the directory modes and times that had to wait for the children.
Rules (OCI image-spec layer.md, umoci ``oci/layer/tar_extract.go``):

- every entry name is cleaned lexically (``..`` and a leading ``/`` cannot climb out) and
  its parent directory is resolved *inside* the root: symlinks met on the way, absolute or
  relative, are interpreted with the rootfs as ``/`` (``base.securejoin``). The last
  component is never followed. Hardlink targets are resolved the same way. Nothing is
  ever written, linked or removed outside ``root``.
- whiteouts ``.wh.NAME`` remove NAME and opaque ``.wh..wh..opq`` remove a directory's
  lower-layer children; neither touches paths written earlier in the same layer, and a
  whiteout naming ``.`` or ``..`` is ignored with a warning.
- an existing non-directory (or a directory replaced by a non-directory) is removed
  before an entry is written; two directories merge (attributes replaced, xattrs too).
- owner (root only), then mode incl. setuid, then ``SCHILY.xattr.*`` (``security.selinux``
  and ``system.nfs4_acl`` never), then times; a zero mtime becomes now.
- rootless: no chown; a non-root owner is recorded in the ``user.rootlesscontainers``
  xattr (protobuf, root ids written as ``uint32(-1)``: umoci's encoding); char/block
  devices become empty regular files (umoci's rule); EPERM/ENOTSUP on xattrs are warned
  once and ignored (so symlinks carry no owner record); directories stay ``u+rwx`` until
  ``finish()`` so unreadable directories can still be filled.

Speed: while the rootfs holds only what this applier made (it started empty), existence
is answered from memory instead of ``lstat`` (``pathindex.PathIndex``); small regular
files and symlinks go to ``fsops.FileWriter`` threads when creating files is slow.

Depth: resolving a parent and removing a tree are loops, not recursions, so an entry
thousands of levels deep is applied while the host path fits in ``PATH_MAX`` and is
refused with a ``LayerError`` naming it (shortened) beyond.

Limits: sparse members are written with holes (``ftruncate`` + ``pwrite``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import stat
import time
from dataclasses import dataclass
from typing import BinaryIO

from base.fsutil import remove_tree
from base.securejoin import resolve_inside
from builder.sources.oci.errors import LayerError
from builder.sources.oci.fsops import (FileWriter, Metadata, SpaceGuard, clear_xattrs, is_dir,
                                       write_all, write_sparse)
from builder.sources.oci.pathindex import PathIndex, clean_name, entry_error
from builder.sources.oci.tarstream import Entry, TarReader

__all__ = ["LayerApplier", "LayerStats", "clean_name"]

log = logging.getLogger("sbuild.sources.oci")

_WH = ".wh."
_OPAQUE = ".wh..wh..opq"
_DIR, _LNK = stat.S_IFDIR, stat.S_IFLNK


@dataclass
class LayerStats:
    entries: int = 0
    whiteouts: int = 0
    bytes: int = 0


class LayerApplier:
    """Applies layer tar streams to ``root``; see the module docstring for the rules."""

    def __init__(self, root: str | os.PathLike, *, rootless: bool | None = None, writers: int = 4,
                 threaded: bool | None = None) -> None:
        """``threaded``: small files always (True), never (False) or adaptively (None) go to
        ``writers`` threads (see ``fsops.FileWriter``)."""
        self.root = os.path.abspath(os.fspath(root))
        self.rootless = (os.geteuid() != 0) if rootless is None else rootless
        self._meta = Metadata(self.rootless, time.time_ns(), self._warn)
        self._files = FileWriter(writers, threaded=threaded)
        self._space = SpaceGuard(self.root)
        self._dirs: dict[str, str] = {}          # cleaned rel dir -> host path (real dir)
        self._times: dict[str, tuple[int, int]] = {}  # host dir -> (atime_ns, mtime_ns)
        self._modes: dict[str, int] = {}         # rootless: host dir -> final mode
        self._upper: set[str] = set()
        self._warned: set[str] = set()
        self._index = PathIndex(self.root)
        self._kind, self._made, self._gone = self._index.kind, self._index.made, self._index.gone

    # ----------------------------------------------------------------- public
    def apply(self, fileobj: BinaryIO, *, layer: str | None = None) -> LayerStats:
        """Apply one uncompressed layer tar read from ``fileobj`` (streamed, never seeked);
        a ``LayerError`` names ``layer`` (its digest) when given."""
        stats = LayerStats()
        self._upper = set()
        os.makedirs(self.root, exist_ok=True)
        reader = TarReader(fileobj.read)
        try:
            while (entry := reader.next()) is not None:
                stats.entries += 1
                try:
                    if self._entry(reader, entry, stats):
                        stats.whiteouts += 1
                except OSError as e:
                    raise entry_error(entry.name, self.root, e) from e
            self._files.barrier()
        except BaseException as e:
            with contextlib.suppress(BaseException):
                self._files.barrier()
            if layer is None or not isinstance(e, LayerError):
                raise
            raise LayerError(f"layer {layer}: {e.message}", hint=e.hint) from e
        return stats

    def finish(self) -> None:
        """Set directory times, then modes (rootless: a parent's final mode may shut out its
        children, and a chmod keeps the mtime), deferred while layers were applied."""
        for host, (atime, mtime) in self._times.items():
            with contextlib.suppress(FileNotFoundError):
                os.utime(host, ns=(atime, mtime), follow_symlinks=False)
        for host in sorted(self._modes, key=len, reverse=True):
            if is_dir(host):
                os.chmod(host, self._modes[host])
        self._modes.clear()
        self._times.clear()
        self._files.close()

    def directory(self, rel: str, create: bool = True) -> str | None:
        """Host path of directory ``rel`` resolved inside the root (created when missing)."""
        return self._dir(clean_name(rel), create)

    # ------------------------------------------------------------ resolution
    def _dir(self, rel: str, create: bool = True) -> str | None:
        """Host path of directory ``rel`` (created with its parents when missing). A loop,
        not a recursion: an entry may be thousands of levels deep."""
        hit = self._dirs.get(rel)
        if hit is not None or not rel:
            return hit or self.root
        cut = len(rel)
        while cut > 0 and rel[:cut] not in self._dirs:  # the deepest parent already resolved
            cut = max(rel.rfind("/", 0, cut), 0)
        parent = self._dirs[rel[:cut]] if cut > 0 else self.root
        while cut < len(rel):
            end = rel.find("/", cut + 1)
            end = len(rel) if end < 0 else end
            parent = self._step(parent, rel[:end], rel[cut + (cut > 0):end], create)
            if parent is None:
                return None
            cut = end
        return parent

    def _step(self, parent: str, rel: str, base: str, create: bool) -> str | None:
        """Host path of directory ``rel``, the child ``base`` of the resolved ``parent``."""
        host = parent + "/" + base
        if host in self._files:
            self._files.wait(host)  # a file still being written is in the way
        kind = self._kind(host)
        if kind == _LNK:
            return self._dir_via_links(rel, create)
        if kind != _DIR:
            if not create:
                return None
            self._touch_parent(parent)
            if kind is not None:  # a non-directory where a directory must be
                self._remove(host, kind)
            self._mkdir(host)
        self._dirs[rel] = host
        return host

    def _mkdir(self, host: str) -> None:
        os.mkdir(host, 0o755)
        os.chmod(host, 0o755)
        self._made(host, _DIR)

    def _dir_via_links(self, rel: str, create: bool) -> str | None:
        """``_dir`` for a path through a symlink: resolve it inside the root, then walk it."""
        self._files.barrier()  # every symlink on the way must exist on disk
        try:
            host = resolve_inside(self.root, rel)
        except OSError as e:
            raise LayerError(f"resolving {rel!r}: too many levels of symbolic links") from e
        parts = host[len(self.root):].split("/")[1:] if host != self.root else []
        cur = self.root
        for part in parts:
            parent, cur = cur, cur + "/" + part
            if cur in self._files:
                self._files.wait(cur)
            kind = self._kind(cur)
            if kind == _DIR:
                continue
            if not create:
                return None
            self._touch_parent(parent)
            if kind is not None:
                self._remove(cur, kind)
            self._mkdir(cur)
        self._dirs[rel] = host
        return host

    # --------------------------------------------------------------- entries
    def _entry(self, tar: TarReader, m: Entry, stats: LayerStats) -> bool:
        rel = clean_name(m.name)
        parent_rel, _, base = rel.rpartition("/")
        if base.startswith(_WH):
            self._whiteout(parent_rel, base)
            return True
        if not rel:
            if not m.isdir():
                raise LayerError(f"refusing entry {m.name!r}: it would replace the root directory")
            self._meta.apply(self.root, m, is_dir=True, deferred=self._defer)
            return False
        parent = self._dir(parent_rel)
        assert parent is not None
        path = parent + "/" + base
        self._upper.add(path)
        if path in self._files:
            self._files.wait(path)
        if m.islnk():
            self._hardlink(path, m)
            return False
        kind = self._kind(path)
        merge = m.isdir() and kind == _DIR
        if kind is not None and not merge:
            self._touch_parent(parent)
            self._remove(path, kind)
        elif kind is None:
            self._touch_parent(parent)
        if m.isreg():
            stats.bytes += self._regular(tar, path, m)
        elif m.isdir():
            if merge:
                clear_xattrs(path)
            else:
                os.mkdir(path, 0o700)
                self._made(path, _DIR)
            self._meta.apply(path, m, is_dir=True, deferred=self._defer)
        elif m.issym():
            self._made(path, _LNK)
            if self._files.threaded:
                self._files.submit(path, functools.partial(self._symlink, path, m))
            else:
                self._symlink(path, m)
        elif m.ischr() or m.isblk():
            self._device(path, m)
        elif m.isfifo():
            os.mkfifo(path, 0o600)
            self._made(path, stat.S_IFIFO)
            self._meta.apply(path, m)
        else:
            self._warn(f"type:{m.type!r}", f"skipping {m.name!r}: unsupported tar entry type {m.type!r}")
        return False

    def _regular(self, tar: TarReader, path: str, m: Entry) -> int:
        self._space.spend(m.size, m.name)  # a file that cannot fit is refused before it is written
        if self._files.wants(m):
            data = tar.data(m)
            self._made(path, stat.S_IFREG)
            self._files.submit(path, functools.partial(self._write_file, path, m, data), len(data))
            return m.size
        started = time.perf_counter_ns()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self._files.timed(m, time.perf_counter_ns() - started)
        self._made(path, stat.S_IFREG)
        try:
            if m.sparse is not None:
                write_sparse(fd, tar.chunks(m), m.sparse, m.realsize)
            else:
                for piece in tar.chunks(m):
                    write_all(fd, piece)
            self._meta.apply(fd, m, path=path)
        finally:
            os.close(fd)
        return m.size

    def _symlink(self, path: str, m: Entry) -> None:
        os.symlink(m.linkname, path)
        self._meta.apply(path, m, is_link=True)

    def _write_file(self, path: str, m: Entry, data: bytes) -> None:
        """Run by the writer threads: create, fill and label one regular file."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if data:
                write_all(fd, data)
            self._meta.apply(fd, m, path=path)
        finally:
            os.close(fd)

    def _hardlink(self, path: str, m: Entry) -> None:
        target_rel = clean_name(m.linkname)
        t_parent_rel, _, t_base = target_rel.rpartition("/")
        t_parent = self._dir(t_parent_rel, create=False) if t_base else None
        target = None if t_parent is None else t_parent + "/" + t_base
        if target in self._files:
            self._files.wait(target)  # type: ignore[arg-type]
        t_kind = None if target is None else self._kind(target)
        if t_kind is None or t_kind == _DIR:
            raise LayerError(f"hardlink {m.name!r}: target {m.linkname!r} is missing or a directory")
        if target == path:
            return
        self._touch_parent(path.rpartition("/")[0])
        kind = self._kind(path)
        if kind is not None:
            self._remove(path, kind)
        os.link(target, path, follow_symlinks=False)  # type: ignore[arg-type]
        self._made(path, t_kind)

    def _device(self, path: str, m: Entry) -> None:
        if self.rootless:
            self._warn(f"dev:{m.name}", f"rootless: creating empty file in place of device "
                                        f"{m.devmajor}:{m.devminor} ({m.name})")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            self._made(path, stat.S_IFREG)
            try:
                self._meta.apply(fd, m, path=path)
            finally:
                os.close(fd)
            return
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        self._made(path, kind)
        self._meta.apply(path, m)

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
        if path in self._files:
            self._files.wait(path)
        kind = self._kind(path)
        if kind is not None:
            self._touch_parent(parent)
            self._remove(path, kind)

    def _opaque(self, directory: str) -> None:
        self._upper.add(directory)
        self._files.barrier()
        stack = [directory]
        while stack:
            current = stack.pop()
            with os.scandir(current) as it:
                children = [e.path for e in it]
            for child in children:
                kind = stat.S_IFMT(os.lstat(child).st_mode)
                if child not in self._upper:
                    self._touch_parent(current)
                    self._remove(child, kind)
                elif kind == _DIR:
                    stack.append(child)

    def _remove(self, path: str, kind: int) -> None:
        self._files.barrier()
        if kind == _DIR:
            remove_tree(path, ignore_errors=False)  # a loop: the tree may be 4000 levels deep
            self._forget(path)
        else:
            os.unlink(path)
            if kind == _LNK:
                self._dirs.clear()
        self._gone(path, kind == _DIR)

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

    def _defer(self, path: str, mode: int | None, times: tuple[int, int]) -> None:
        """Directory mode (rootless) and times are set by ``finish``."""
        if mode is not None:
            self._modes[path] = mode
        self._times[path] = times

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

