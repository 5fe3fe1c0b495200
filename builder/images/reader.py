"""Read files inside an image without mounting or extracting it.

``open_tree(path)`` gives a ``Tree`` over a sandbox directory or over the squashfs inside
a .simg, SIF or raw squashfs (PySquashfsImage at the probed offset). Paths are resolved
as inside the container: absolute symlinks point at the image's root, ``..`` stops at
the root, so nothing outside the image is ever read.

Limits: ext3 images cannot be read this way (they would need a mount); at most 40
symlinks are followed per lookup.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from base.errors import ImageError
from builder.images.probe import ImageInfo, probe

__all__ = ["Tree", "open_tree"]

_MAX_LINKS = 40


class Tree:
    """Read-only access to a container's root filesystem. Use as a context manager."""

    def __init__(self, info: ImageInfo) -> None:
        self.info = info

    # backend primitives, on paths with no symlink in their parents
    def _lstat_kind(self, path: str) -> str | None:  # "dir" | "file" | "link" | "other" | None
        raise NotImplementedError

    def _readlink(self, path: str) -> str:
        raise NotImplementedError

    def _read(self, path: str, limit: int | None = None) -> bytes:
        raise NotImplementedError

    def _listdir(self, path: str) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def resolve(self, path: str) -> str | None:
        """The link-free absolute path ``path`` leads to inside the image, or None."""
        todo = [p for p in PurePosixPath("/", path).parts[1:]]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            cur = "/" + "/".join(done + [part])
            kind = self._lstat_kind(cur)
            if kind is None:
                return None
            if kind == "link":
                hops += 1
                if hops > _MAX_LINKS:
                    return None
                target = self._readlink(cur)
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p] + todo
                continue
            done.append(part)
        return "/" + "/".join(done)

    def kind(self, path: str) -> str | None:
        real = self.resolve(path)
        return None if real is None else self._lstat_kind(real)

    def is_file(self, path: str) -> bool:
        return self.kind(path) == "file"

    def is_dir(self, path: str) -> bool:
        return self.kind(path) == "dir"

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        """The content (at most ``limit`` bytes) of the regular file at ``path`` (links
        followed), or None if there is none."""
        real = self.resolve(path)
        if real is None or self._lstat_kind(real) != "file":
            return None
        return self._read(real, limit)

    def read_text(self, path: str) -> str | None:
        data = self.read_bytes(path)
        return None if data is None else data.decode("utf-8", "replace")

    def listdir(self, path: str) -> list[str]:
        """Sorted names in the directory at ``path`` (empty if it is not one)."""
        real = self.resolve(path)
        if real is None or self._lstat_kind(real) != "dir":
            return []
        return sorted(self._listdir(real))


class _DirTree(Tree):
    def __init__(self, info: ImageInfo) -> None:
        super().__init__(info)
        self.root = Path(info.path)

    def _host(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def _lstat_kind(self, path: str) -> str | None:
        try:
            mode = os.lstat(self._host(path)).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return "link"
        return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"

    def _readlink(self, path: str) -> str:
        return os.readlink(self._host(path))

    def _read(self, path: str, limit: int | None = None) -> bytes:
        try:
            with open(self._host(path), "rb") as fh:
                return fh.read() if limit is None else fh.read(limit)
        except OSError as e:
            raise ImageError(f"reading {path} in {self.root}: {e.strerror}", path=str(self.root)) from e

    def _listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(self._host(path))
        except OSError:
            return []


class _SquashTree(Tree):
    def __init__(self, info: ImageInfo) -> None:
        super().__init__(info)
        from builder.images.squashfs import open_image

        self.image = open_image(info.path, info.fs_offset)

    def close(self) -> None:
        if self.image is not None:
            self.image.close()
            self.image = None

    def _node(self, path: str):
        return self.image.root if path == "/" else self.image.select(path)

    def _lstat_kind(self, path: str) -> str | None:
        node = self._node(path)
        if node is None:
            return None
        if node.is_symlink:
            return "link"
        return "dir" if node.is_dir else "file" if node.is_file else "other"

    def _readlink(self, path: str) -> str:
        target = self._node(path).readlink()
        return target.decode("utf-8", "surrogateescape") if isinstance(target, bytes) else target

    def _read(self, path: str, limit: int | None = None) -> bytes:
        try:
            node = self._node(path)
            if limit is None:
                return node.read_bytes()
            return next(iter(node.iter_bytes()), b"")[:limit]
        except Exception as e:  # corrupt data blocks surface as assorted exceptions
            raise ImageError(f"reading {path} in {self.info.path}: {type(e).__name__}: {e}",
                             path=str(self.info.path)) from e

    def _listdir(self, path: str) -> list[str]:
        return [c.name for c in self._node(path).iterdir()]


def open_tree(path: str | os.PathLike, info: ImageInfo | None = None) -> Tree:
    """A Tree over the image at ``path`` (probed unless ``info`` is given)."""
    info = info or probe(path)
    if info.fstype == "dir":
        return _DirTree(info)
    if info.fstype == "squashfs":
        return _SquashTree(info)
    raise ImageError(f"{info.path}: cannot read an {info.fstype} image without mounting it",
                     path=str(info.path))
