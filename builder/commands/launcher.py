"""The fast launcher that setup.sh writes in place of pip's console scripts.

One launcher per name (``sbuild``, ``apptainer``, ``singularity``, ``run-singularity``), the
same program: ``builder.cli`` reads the name it was called by from ``sys.argv[0]``. Python
starts without site (``-S``) and without pip's ``import re``, ~10 ms less per command;
``builder.cli`` loads site-packages for every command that needs them.
"""

from __future__ import annotations

import os
import sys

__all__ = ["write_launcher", "NAMES"]

NAMES = ("sbuild", "apptainer", "singularity", "run-singularity")

_LAUNCHER = '''#!{python} -S
# sbuild's launcher, written by builder.cli.write_launcher (setup.sh) in place of pip's
# console script: Python starts without site (-S) and without pip's `import re`, ~10 ms
# less per command; builder.cli loads site-packages for every command that needs them.
import sys
sys.path.append({root!r})
from builder.cli import entry
entry()
'''


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
