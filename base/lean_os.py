"""``os`` for the container launch, without importing ``os``.

Importing ``os`` costs ~1.1 ms on the 2-core bench machine (``python -S -c "import os"``
against ``"import posix"``, 300 interleaved runs: 9.14 against 8.00 ms median). Its
``environ`` is a ``MutableMapping``, which loads ``_collections_abc`` and its abstract
classes, and ``os.path`` loads ``posixpath`` and ``genericpath``. That is 4-5% of an
unprivileged ``exec``, whose target is the mount+chroot floor (``bench/runtime_launch.py``).
The modules on the launch path import this one as ``os``; everything else imports the real one.

What it holds:

- every public name of ``posix``, and ``_exit``: the very functions ``os`` re-exports;
- ``environ``: the real ``os.environ`` once ``os`` is imported (any process that loaded it,
  a test's monkeypatch), else a ``dict`` decoded once from ``posix.environ`` as ``os`` decodes
  it. Read only, as everywhere in sbuild (STYLE 14: nothing mutates the environment);
- ``path``: ``basename``, ``dirname``, ``join``, ``normpath``, ``abspath``, ``exists``,
  ``lexists``, ``isdir`` and ``isfile`` for ``str`` paths, with posixpath's results
  (``tests/base/test_lean_os.py`` compares them on generated paths); bytes paths and other
  names go to ``posixpath``;
- ``makedirs``, ``fsencode``, ``fdopen``, ``execvpe``, ``sep``, ``pathsep``, ``defpath``, as
  ``os`` defines them (``execvpe`` also runs after ``pivot_root``, where the host's standard
  library is out of reach).

Any other name is the real ``os``'s, imported on first use (module ``__getattr__``): a call
off the launch path is right, only not faster. ``tests/runtime/test_launch_imports.py`` checks
that an ``exec`` never imports ``os``.
"""

from __future__ import annotations

import sys
from posix import *  # noqa: F403 (os re-exports the same functions)
from posix import _exit, environ as _environb  # noqa: F401
from posix import execve, fspath, getcwd, lstat, mkdir, stat

del environ  # noqa: F821 (posix's, of bytes: ``environ`` is this module's __getattr__)

sep, pathsep, defpath = "/", ":", "/bin:/usr/bin"
_FS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
_S_IFMT, _S_IFDIR, _S_IFREG = 0o170000, 0o040000, 0o100000
_decoded: dict[str, str] | None = None


def __getattr__(name: str):
    global _decoded
    if "os" in sys.modules or name != "environ":
        import os  # the real one: loaded already, or a name this module does not hold

        return getattr(os, name)
    if _decoded is None:
        _decoded = {k.decode(*_FS): v.decode(*_FS) for k, v in _environb.items()}
    return _decoded


def fsencode(filename) -> bytes:
    filename = fspath(filename)
    return filename.encode(*_FS) if isinstance(filename, str) else filename


def fdopen(fd: int, *args, **kwargs):
    if not isinstance(fd, int):
        raise TypeError(f"invalid fd type ({type(fd)}, expected integer)")
    import io

    return io.open(fd, *args, **kwargs)


def makedirs(name, mode: int = 0o777, exist_ok: bool = False) -> None:
    """``os.makedirs``: the missing parents first (with the default mode), then ``name``."""
    name = fspath(name)
    bare = name.rstrip("/")
    parent = path.dirname(bare)
    if parent and not path.exists(parent):
        try:
            makedirs(parent, exist_ok=exist_ok)
        except FileExistsError:  # created meanwhile
            pass
        if path.basename(bare) == ".":  # "a/." is "a", made now
            return
    try:
        mkdir(name, mode)
    except OSError:
        if not exist_ok or not path.isdir(name):
            raise


def execvpe(file: str, args, env) -> None:
    """``os.execvpe``: ``file`` searched in ``env``'s PATH unless it holds a slash. If no
    directory has it, the error raised is the first that was not "not found" (a file found but
    not executable), else the last."""
    if "/" in file:
        execve(file, args, env)
    found = last = None
    for d in (env.get("PATH") or defpath).split(pathsep):
        try:
            execve(f"{d}/{file}" if d else file, args, env)
        except (FileNotFoundError, NotADirectoryError) as e:
            last = e
        except OSError as e:
            last, found = e, found or e
    raise found or last or FileNotFoundError(2, "No such file or directory", file)


def _mode(p, follow: bool = True) -> int:
    try:
        return (stat(p) if follow else lstat(p)).st_mode
    except (OSError, ValueError):
        return 0


class _Path:
    """``os.path`` for ``str`` paths (posixpath's results); anything else goes to posixpath."""

    @staticmethod
    def basename(p) -> str:
        p = fspath(p)
        return p[p.rfind("/") + 1:] if isinstance(p, str) else _posixpath().basename(p)

    @staticmethod
    def dirname(p) -> str:
        p = fspath(p)
        if not isinstance(p, str):
            return _posixpath().dirname(p)
        head = p[:p.rfind("/") + 1]
        return head.rstrip("/") or head  # "a/b/" -> "a/b", "//" -> "//"

    @staticmethod
    def join(a, *parts) -> str:
        out = fspath(a)
        if not isinstance(out, str):
            return _posixpath().join(a, *parts)
        for part in map(fspath, parts):
            if part.startswith("/"):
                out = part
            elif not out or out.endswith("/"):
                out += part
            else:
                out += "/" + part
        return out

    @staticmethod
    def normpath(p) -> str:
        p = fspath(p)
        if not isinstance(p, str):
            return _posixpath().normpath(p)
        if not p:
            return "."
        # POSIX keeps exactly two leading slashes; one, or three and more, become one
        lead = "//" if p.startswith("//") and not p.startswith("///") else "/" if p.startswith("/") else ""
        kept: list[str] = []
        for part in p.split("/"):
            if part in ("", "."):
                continue
            if part != ".." or (not lead and (not kept or kept[-1] == "..")):
                kept.append(part)
            elif kept:
                kept.pop()
        return (lead + "/".join(kept)) or "."

    @staticmethod
    def abspath(p) -> str:
        p = fspath(p)
        if not isinstance(p, str):
            return _posixpath().abspath(p)
        return path.normpath(p if p.startswith("/") else path.join(getcwd(), p))

    @staticmethod
    def exists(p) -> bool:
        return _mode(p) != 0

    @staticmethod
    def lexists(p) -> bool:
        return _mode(p, follow=False) != 0

    @staticmethod
    def isdir(p) -> bool:
        return _mode(p) & _S_IFMT == _S_IFDIR

    @staticmethod
    def isfile(p) -> bool:
        return _mode(p) & _S_IFMT == _S_IFREG

    def __getattr__(self, name: str):
        return getattr(_posixpath(), name)


def _posixpath():
    import posixpath

    return posixpath


path = _Path()
