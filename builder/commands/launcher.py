"""The fast launchers: the one setup.sh writes, and the one ``pip install .`` installs.

One launcher per name (``sbuild``, ``apptainer``, ``singularity``, ``run-singularity``), the
same program: ``builder.cli`` reads the name it was called by from ``sys.argv[0]``. Python
starts without site (``-S``) and without the ``import re`` of pip's console scripts, ~10 ms
less per command; ``builder.cli`` loads site-packages for every command that needs them.

- ``write_launcher(path)``: setup.sh's, for this checkout: ``#!PYTHON -S`` and the checkout's
  directory on ``sys.path``.
- ``installed_script()``: the text of ``bin/<name>`` in the source tree, which pyproject.toml
  ships as wheel scripts (``script-files``) instead of console entry points. pip rewrites only
  a ``#!python`` first line and drops what follows it (``-S`` included: pip 23's
  ``fix_script``), so the script is a ``/bin/sh`` and Python polyglot: sh execs the
  ``python3`` beside it (a venv's bin; else the one on PATH) with ``-S`` on the same file,
  and Python puts that venv's site-packages on ``sys.path`` (running ``site`` only when the
  package is not there: a ``--user`` or system install). The installation owner's first
  command then replaces the four by ``direct_script``, the same Python code under a
  ``#!VENV/bin/python3 -S`` line (``go_direct``: without sh, ~0.8 ms less per command).
  ``tests/cli/test_install.py`` checks that the files match and that ``pip install .`` gives
  the four names, before and after.
"""

from __future__ import annotations

import os
import sys

__all__ = ["write_launcher", "installed_script", "NAMES"]

NAMES = ("sbuild", "apptainer", "singularity", "run-singularity")

_LAUNCHER = '''#!{python} -S
# sbuild's launcher, written by builder.commands.launcher.write_launcher (setup.sh) in place of pip's
# console script: Python starts without site (-S) and without pip's `import re`, ~10 ms
# less per command; builder.cli loads site-packages for every command that needs them.
import sys
sys.path[0] = {root!r}  # (in place of this script's directory)
from base.importcache import install
install()  # the launch's modules from one file (base.importcache)
from builder.cli import entry
entry()
'''


_SH = """#!/bin/sh
''':'
# sbuild's installed launcher (pyproject.toml script-files; builder.commands.launcher), one
# copy per name the program answers to: sbuild, apptainer, singularity, run-singularity.
# sh starts the interpreter beside this script (a venv's bin) without site processing (-S)
# and pip's `import re`, ~10 ms less per command than a console script; Python then runs
# this same file (the sh part is a string to it). The installation owner's first command
# replaces it by the same Python code under a `#!…/python3 -S` line (no sh: ~0.8 ms less).
p="${0%/*}/python3"
[ -x "$p" ] || p=python3
exec "$p" -S "$0" "$@"
'''
"""

_DIRECT = """#!{python} -S
# sbuild's installed launcher, as builder.commands.launcher.go_direct wrote it in place of
# the sh one pip installed (the same Python code, started without sh).
"""

_PYTHON = """import sys

# the venv's site-packages (without site, sys.prefix is the base interpreter's), in place of
# this script's directory: first only while base.importcache is found (no search through the
# standard library's directories; it imports nothing else), then last, where site puts it
venv = sys.executable.rpartition("/")[0].rpartition("/")[0]
sys.path[0] = f"{venv}/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
try:
    from base.importcache import install
except ImportError:  # not a venv (a --user or system install): let site find the package
    del sys.path[0]
    import site

    site.main()
    from base.importcache import install
else:
    sys.path.append(sys.path.pop(0))
install()  # the launch's modules from one file (base.importcache)
"""

_FINISH = """import posix

if posix.access(__file__.rpartition("/")[0], 3):  # (W_OK | X_OK: its owner) the sh hop goes at exit
    from builder.commands.launcher import go_direct

    go_direct(__file__)
"""

_ENTRY = """from builder.cli import entry
entry()
"""

_INSTALLED = _SH + _PYTHON + _FINISH + _ENTRY
_MAX_SHEBANG = 127  # bytes the kernel reads of a #! line before Linux 5.1 (pip's own limit for one)


def installed_script() -> str:
    """The text of the launcher ``pip install .`` installs under each name (``bin/<name>``)."""
    return _INSTALLED


def direct_script(python: str) -> str:
    """``installed_script()``'s Python code under a ``#!PYTHON -S`` line."""
    return _DIRECT.format(python=python) + _PYTHON + _ENTRY


def go_direct(script: str) -> None:
    """At exit, replace each of the four launchers beside ``script`` that pip installed
    (``installed_script()``, unchanged) by ``direct_script``, for the ``python3`` beside them.

    Only where .pyc files may be written (no ``PYTHONDONTWRITEBYTECODE``: the same rule as
    ``base.importcache``), where that ``python3`` exists and its path fits a ``#!`` line
    (no space, at most 127 bytes). Each file is replaced atomically, keeping its mode; any
    failure leaves the sh launcher, which works as before."""
    bindir = os.path.dirname(os.path.abspath(script))
    python = f"{bindir}/python3"
    if sys.dont_write_bytecode or " " in python or len(python) + 5 > _MAX_SHEBANG or not os.access(python, os.X_OK):
        return
    import atexit

    atexit.register(_replace_all, bindir, direct_script(python))


def _replace_all(bindir: str, text: str) -> None:
    for name in NAMES:
        path = f"{bindir}/{name}"
        try:
            with open(path) as f:
                if f.read() != _INSTALLED:
                    continue  # not ours as pip installed it (edited, or replaced already)
            _write_script(path, text, os.stat(path).st_mode & 0o7777)
        except OSError:
            pass  # (the sh launcher stays, and works)


def write_launcher(path: str) -> None:
    """Write the launcher script at ``path`` (atomically, mode 0755) for the running
    interpreter and this checkout or install; its file name is the name it answers to."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    _write_script(path, _LAUNCHER.format(python=sys.executable, root=root), 0o755)


def _write_script(path: str, text: str, mode: int) -> None:
    """``text`` at ``path`` with ``mode``, through a temporary file renamed into place (removed
    if anything fails)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
