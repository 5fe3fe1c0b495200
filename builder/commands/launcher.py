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
  package is not there: a ``--user`` or system install). ``tests/cli/test_install.py``
  checks that the files match and that ``pip install .`` gives the four names.
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


_INSTALLED = """#!/bin/sh
''':'
# sbuild's installed launcher (pyproject.toml script-files; builder.commands.launcher), one
# copy per name the program answers to: sbuild, apptainer, singularity, run-singularity.
# sh starts the interpreter beside this script (a venv's bin) without site processing (-S)
# and pip's `import re`, ~10 ms less per command than a console script; Python then runs
# this same file (the sh part is a string to it).
p="${0%/*}/python3"
[ -x "$p" ] || p=python3
exec "$p" -S "$0" "$@"
'''
import sys

del sys.path[0]  # this script's directory
# the venv's site-packages (without site, sys.prefix is the base interpreter's)
venv = sys.executable.rpartition("/")[0].rpartition("/")[0]
sys.path.append(f"{venv}/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages")
try:
    from base.importcache import install
except ImportError:  # not a venv (a --user or system install): let site find the package
    import site

    site.main()
    from base.importcache import install
install()  # the launch's modules from one file (base.importcache)
from builder.cli import entry
entry()
"""


def installed_script() -> str:
    """The text of the launcher ``pip install .`` installs under each name (``bin/<name>``)."""
    return _INSTALLED


def write_launcher(path: str) -> None:
    """Write the launcher script at ``path`` (atomically, mode 0755) for the running
    interpreter and this checkout or install; its file name is the name it answers to."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = _LAUNCHER.format(python=sys.executable, root=root)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
