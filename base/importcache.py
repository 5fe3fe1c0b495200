"""The launch's modules in one file: one read instead of a path search and a .pyc per module.

A launch (``sbuild exec IMG CMD``) loads ~25 modules. Importing them from their .pyc files
costs ~0.7-1 ms more than from one file (``python -S`` importing the launch modules, 200
interleaved runs on the 2-core bench machine: 6.58 against 5.85 ms median in setup.sh's
layout, 6.71 against 5.69 in pip's): each import walks ``sys.path``, lists directories,
stats the source, opens and reads its .pyc. This
module keeps their compiled code, and the paths of the C extensions the launch loads, in
``base/__pycache__/launch.<cache tag>.imports``, and serves them from a finder placed first
on ``sys.meta_path`` (``install``, which the launchers call before importing ``builder.cli``).

The file is a .pyc's equivalent and is trusted as one: it lies beside the .pyc files, and
each module in it is used only while its source has the size and mtime (ns) recorded for it
(one ``stat``, as the .pyc check makes), by the interpreter whose ``MAGIC_NUMBER`` and
optimisation level wrote it. A module that changed, a module not in the file, a file that is
missing, unreadable, truncated or from another interpreter: that module, or all, is imported
as usual, and the code that runs is always the current source's.

Written (``write``): by ``python -m base.importcache`` (setup.sh), and at the end of a
command that found the file missing or a module in it stale, when the process may write
.pyc files (not with ``PYTHONDONTWRITEBYTECODE``) and the directory is writable. It holds
the modules of ``LAUNCH`` with what they import, and every other of sbuild's modules the
command loaded; written to a temporary name, then renamed into place. ``__file__`` and
the code's file names are the sources' (tracebacks show their lines).
Limits: an installation no one may write to keeps no file (each import goes the usual way);
its modules' ``__loader__`` is the finder, which serves no package data (none of them has any).
"""

import marshal  # (no ``from __future__ import annotations``: it would be found the slow way, first)
import sys
from posix import stat

__all__ = ["install", "write", "LAUNCH", "path_for"]

# the modules a launch imports (on any of its paths: root, unprivileged, sandbox, image,
# the flags workflow engines send), each with what it imports
LAUNCH = ("builder.cli", "builder.commands.run", "runtime.process", "runtime.plan", "runtime.prefetch",
          "runtime.lower", "runtime.features", "builder.images.probe", "base.cachedir")
_EXTENSIONS = ("_ctypes", "_struct")  # (and __future__, from the standard library's source)
_PACKAGES = ("base", "builder", "runtime")
_FORMAT = 1
_bootstrap = sys.modules["_frozen_importlib_external"]  # importlib's path machinery (loaded at start)
_ModuleSpec = sys.modules["_frozen_importlib"].ModuleSpec
_ROOT = __file__.rpartition("/base/")[0]


def path_for(root: str = _ROOT) -> str | None:
    tag = sys.implementation.cache_tag
    opt = f".opt-{sys.flags.optimize}" if sys.flags.optimize else ""
    return f"{root}/base/__pycache__/launch.{tag}{opt}.imports" if tag else None


class _Finder:
    """``sys.meta_path``'s first finder, and the loader of what it finds: a module of the file
    whose source is unchanged. (A ``SourceFileLoader`` and ``spec_from_file_location`` per
    module cost half the gain: 0.5 against 1.0 ms.)"""

    def __init__(self, entries: dict) -> None:
        self.entries = entries  # name -> (path, mtime_ns, size, code bytes, or None for an extension)
        self.stale = False

    def find_spec(self, name: str, path=None, target=None):  # noqa: ANN001, ANN201
        entry = self.entries.get(name)
        if entry is None:
            return None
        origin, mtime, size, code = entry
        try:
            st = stat(origin)
        except OSError:
            st = None
        if st is None or st.st_mtime_ns != mtime or st.st_size != size:
            self.stale = True
            return None
        if code is None:
            return _bootstrap.spec_from_file_location(name, origin, loader=_bootstrap.ExtensionFileLoader(name, origin))
        package = origin.endswith("/__init__.py")
        spec = _ModuleSpec(name, self, origin=origin, is_package=package)
        spec.has_location = True  # (__file__ is the source's)
        if package:
            spec.submodule_search_locations = [origin.rpartition("/")[0]]
        return spec

    def create_module(self, spec):  # noqa: ANN001, ANN201 - the default module
        return None

    def exec_module(self, module) -> None:  # noqa: ANN001
        exec(marshal.loads(self.entries[module.__name__][3]), module.__dict__)


def install() -> None:
    """Serve the launch's modules from the file, if there is a valid one; have it written at
    exit if it is missing or was found stale (and .pyc files may be written)."""
    where = path_for()
    entries = None
    if where is not None:
        try:
            with open(where, "rb") as f:
                fmt, magic, opt, entries = marshal.loads(f.read())
            if (fmt, magic, opt) != (_FORMAT, _bootstrap.MAGIC_NUMBER, sys.flags.optimize):
                entries = None
        except Exception:  # (missing, unreadable, truncated or foreign: imports go the usual way)
            entries = None
    finder = _Finder(entries or {})
    if entries:
        sys.meta_path.insert(0, finder)
    if where is not None and not sys.dont_write_bytecode:
        import atexit

        atexit.register(_refresh, finder, where)


def _refresh(finder: _Finder, where: str) -> None:
    """At exit: rewrite the file if it was missing or stale and this user may (best effort,
    silent: checked first, so that a user who may not pays one ``access`` call)."""
    if finder.entries and not finder.stale:
        return
    from base import lean_os as os

    cache = os.path.dirname(where)  # (__pycache__: write makes it when missing)
    if not os.access(cache if os.path.exists(cache) else os.path.dirname(cache), os.W_OK | os.X_OK):
        return
    try:
        write(where)
    except Exception:  # noqa: S110 - a cache: a failed write only means slower imports
        pass


def write(where: str | None = None) -> str:
    """Write the file (``LAUNCH``'s modules and every loaded one of sbuild's): its path."""
    import importlib

    where = where or path_for()
    if where is None:
        raise RuntimeError("this interpreter has no cache tag (sys.implementation.cache_tag)")
    for name in (*LAUNCH, "__future__", *_EXTENSIONS):
        importlib.import_module(name)
    entries = {}
    for name, module in list(sys.modules.items()):
        origin = getattr(getattr(module, "__spec__", None), "origin", None)
        if not isinstance(origin, str) or not origin.startswith("/"):
            continue  # built into the interpreter, frozen, or no file
        ours = name.partition(".")[0] in _PACKAGES and origin.startswith(_ROOT + "/")
        if not (ours or name == "__future__" or name in _EXTENSIONS):
            continue
        st = stat(origin)
        code = None
        if name not in _EXTENSIONS:
            with open(origin, "rb") as f:
                code = marshal.dumps(compile(f.read(), origin, "exec", dont_inherit=True, optimize=sys.flags.optimize))
        entries[name] = (origin, st.st_mtime_ns, st.st_size, code)
    from base import lean_os as os

    os.makedirs(os.path.dirname(where), exist_ok=True)
    tmp = f"{where}.{os.getpid()}.tmp"
    try:
        with open(tmp, "xb") as f:
            f.write(marshal.dumps((_FORMAT, _bootstrap.MAGIC_NUMBER, sys.flags.optimize, entries)))
        os.replace(tmp, where)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return where


if __name__ == "__main__":
    print(write())
