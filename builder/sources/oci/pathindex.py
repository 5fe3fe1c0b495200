"""What is on disk below a layer applier's root, answered from memory while that is exact;
entry names as paths (``clean_name``) and in messages (``shown``, ``entry_error``).

``PathIndex(root)`` starts *exact* when ``root`` is missing or empty: every path the
applier makes is recorded (``made``) and forgotten when removed (``gone``), so ``kind``
answers without an ``lstat``. It falls back to ``lstat`` for good (``exact`` False) when
the root was not empty, when more than ``_KNOWN_MAX`` paths are recorded, or when
forgetting removed trees has cost more than ``_PURGE_BUDGET`` path comparisons.

Limits: only the applier may write below the root while the index is exact (nothing else
does during a fetch).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat

from builder.sources.oci.errors import LayerError
from builder.sources.oci.fsops import lstat

__all__ = ["PathIndex", "clean_name", "entry_error", "shown"]

_KNOWN_MAX = 2_000_000      # paths remembered in exact mode, at most
_PURGE_BUDGET = 20_000_000  # path comparisons spent forgetting removed trees, at most
_SHOWN = 120                # characters of an entry name shown in a message, at most


def clean_name(name: str) -> str:
    """The entry name as a path relative to the root, with ``..`` unable to climb out."""
    cleaned = posixpath.normpath("/" + name)
    return cleaned.lstrip("/")


def shown(name: str) -> str:
    """``name`` quoted for a message, its middle elided when it is long (a 5000-level path)."""
    if len(name) <= _SHOWN:
        return repr(name)
    cut = _SHOWN // 2
    return repr(f"{name[:cut]}…{name[-cut:]}") + f" ({len(name)} characters, {name.count('/') + 1} levels)"


def entry_error(name: str, root: str, e: OSError) -> LayerError:
    """The error for an entry the filesystem refused, its name shortened if it is huge."""
    why = e.strerror or str(e)
    if e.errno == errno.ENAMETOOLONG:
        why += f" (the rootfs path and the entry exceed this host's PATH_MAX, {os.pathconf(root, 'PC_PATH_MAX')})"
    return LayerError(f"applying layer entry {shown(name)}: {why}")


class PathIndex:
    """Host path -> S_IFMT bits of what the applier made there; see the module docstring."""

    def __init__(self, root: str) -> None:
        self._known: dict[str, int] | None = None
        self._budget = _PURGE_BUDGET
        with contextlib.suppress(FileNotFoundError):
            with os.scandir(root) as it:
                if next(it, None) is None:
                    self._known = {}
        if not os.path.isdir(root):
            self._known = {}

    @property
    def exact(self) -> bool:
        return self._known is not None

    def kind(self, path: str) -> int | None:
        """S_IFMT bits of what is at ``path`` (not followed), or None."""
        if self._known is not None:
            return self._known.get(path)
        st = lstat(path)
        return None if st is None else stat.S_IFMT(st.st_mode)

    def made(self, path: str, kind: int) -> None:
        if self._known is not None:
            self._known[path] = kind
            if len(self._known) > _KNOWN_MAX:
                self._known = None

    def gone(self, path: str, was_dir: bool) -> None:
        if self._known is None:
            return
        self._known.pop(path, None)
        if was_dir:
            self._budget -= len(self._known)
            if self._budget < 0:
                self._known = None
                return
            prefix = path + "/"
            for key in [k for k in self._known if k.startswith(prefix)]:
                del self._known[key]
