"""The base environment every bootstrap agent writes into a rootfs (spec §B.6).

``write_base_env(rootfs, overwrite=...)`` creates the ``/.singularity.d`` skeleton, the
standard directories, the compatibility symlinks and the base files (actions, env scripts,
default runscript/startscript, empty /etc/hosts and /etc/resolv.conf). Agents that fill a
fresh rootfs call it with ``overwrite=True``; ``localimage`` with ``overwrite=False`` so
that an image's own files are kept. Paths are resolved inside the rootfs: an existing
symlink in the image never makes us write on the host.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from builder.rootfs.paths import inside, write_file

__all__ = ["write_base_env", "BASE_FILES"]

_HEADER = "#!/bin/sh\n# Written by sbuild (Apptainer-compatible layout).\n"
_SOURCE_ENV = """for script in /.singularity.d/env/*.sh; do
    if [ -f "$script" ]; then
        . "$script"
    fi
done
"""

_ACTIONS = {
    "exec": _HEADER + _SOURCE_ENV + 'exec "$@"\n',
    "run": _HEADER + _SOURCE_ENV + """
if test -n "${SINGULARITY_APPNAME:-}"; then
    if test -x "/scif/apps/${SINGULARITY_APPNAME:-}/scif/runscript"; then
        exec "/scif/apps/${SINGULARITY_APPNAME:-}/scif/runscript" "$@"
    fi
    echo "No Apptainer runscript for contained app: ${SINGULARITY_APPNAME:-}"
    exit 1
elif test -x "/.singularity.d/runscript"; then
    exec "/.singularity.d/runscript" "$@"
else
    echo "No Apptainer runscript found, executing /bin/sh"
    exec /bin/sh "$@"
fi
""",
    "shell": _HEADER + _SOURCE_ENV + """
if test -n "$SINGULARITY_SHELL" -a -x "$SINGULARITY_SHELL"; then
    exec "$SINGULARITY_SHELL" "$@"
elif test -x /bin/bash; then
    SHELL=/bin/bash
    PS1="Apptainer $SINGULARITY_NAME:\\w> "
    export SHELL PS1
    exec /bin/bash --norc "$@"
elif test -x /bin/sh; then
    SHELL=/bin/sh
    export SHELL
    exec /bin/sh "$@"
else
    echo "ERROR: /bin/sh does not exist in container" 1>&2
fi
exit 1
""",
    "start": _HEADER + _SOURCE_ENV + """
# if we are here, start notification is not sent to the parent
kill -CONT 1
if test -x "/.singularity.d/startscript"; then
    exec "/.singularity.d/startscript"
fi
""",
    "test": _HEADER + _SOURCE_ENV + """
if test -n "${SINGULARITY_APPNAME:-}"; then
    if test -x "/scif/apps/${SINGULARITY_APPNAME:-}/scif/test"; then
        exec "/scif/apps/${SINGULARITY_APPNAME:-}/scif/test" "$@"
    fi
    echo "No tests for contained app: ${SINGULARITY_APPNAME:-}"
    exit 1
elif test -x "/.singularity.d/test"; then
    exec "/.singularity.d/test" "$@"
else
    echo "No test found in container, executing /bin/sh -c true"
    exec /bin/sh -c true
fi
""",
}

_APPS_ENV = _HEADER + """
if test -n "${SINGULARITY_APPNAME:-}"; then
    # The active app should be exported
    export SINGULARITY_APPNAME

    if test -d "/scif/apps/${SINGULARITY_APPNAME:-}/"; then
        SCIF_APPS="/scif/apps"
        SCIF_APPROOT="/scif/apps/${SINGULARITY_APPNAME:-}"
        export SCIF_APPROOT SCIF_APPS
        PATH="/scif/apps/${SINGULARITY_APPNAME:-}:$PATH"

        # Automatically add application bin to path
        if test -d "/scif/apps/${SINGULARITY_APPNAME:-}/bin"; then
            PATH="/scif/apps/${SINGULARITY_APPNAME:-}/bin:$PATH"
        fi

        # Automatically add application lib to LD_LIBRARY_PATH
        if test -d "/scif/apps/${SINGULARITY_APPNAME:-}/lib"; then
            LD_LIBRARY_PATH="/scif/apps/${SINGULARITY_APPNAME:-}/lib:$LD_LIBRARY_PATH"
            export LD_LIBRARY_PATH
        fi

        # Automatically source environment
        if [ -f "/scif/apps/${SINGULARITY_APPNAME:-}/scif/env/01-base.sh" ]; then
            . "/scif/apps/${SINGULARITY_APPNAME:-}/scif/env/01-base.sh"
        fi
        if [ -f "/scif/apps/${SINGULARITY_APPNAME:-}/scif/env/90-environment.sh" ]; then
            . "/scif/apps/${SINGULARITY_APPNAME:-}/scif/env/90-environment.sh"
        fi

        export PATH
    else
        echo "Could not locate the container application: ${SINGULARITY_APPNAME}"
        exit 1
    fi
fi
"""

_BASE_99 = _HEADER + """
if [ -z "$LD_LIBRARY_PATH" ]; then
    LD_LIBRARY_PATH="/.singularity.d/libs"
else
    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/.singularity.d/libs"
fi

PS1="Apptainer> "
export LD_LIBRARY_PATH PS1
"""

_RUNTIMEVARS = _HEADER + """
if [ -n "${SING_USER_DEFINED_PREPEND_PATH:-}" ]; then
    PATH="${SING_USER_DEFINED_PREPEND_PATH}:${PATH}"
fi

if [ -n "${SING_USER_DEFINED_APPEND_PATH:-}" ]; then
    PATH="${PATH}:${SING_USER_DEFINED_APPEND_PATH}"
fi

if [ -n "${SING_USER_DEFINED_PATH:-}" ]; then
    PATH="${SING_USER_DEFINED_PATH}"
fi

unset SING_USER_DEFINED_PREPEND_PATH \\
      SING_USER_DEFINED_APPEND_PATH \\
      SING_USER_DEFINED_PATH

export PATH
"""

# path inside the rootfs -> (mode, content)
BASE_FILES: dict[str, tuple[int, str]] = {
    "etc/hosts": (0o644, ""),
    "etc/resolv.conf": (0o644, ""),
    **{f".singularity.d/actions/{name}": (0o755, text) for name, text in _ACTIONS.items()},
    ".singularity.d/env/01-base.sh": (0o755, _HEADER),
    ".singularity.d/env/90-environment.sh": (0o755, _HEADER + "# Custom environment shell code should follow\n"),
    ".singularity.d/env/95-apps.sh": (0o755, _APPS_ENV),
    ".singularity.d/env/99-base.sh": (0o755, _BASE_99),
    ".singularity.d/env/99-runtimevars.sh": (0o755, _RUNTIMEVARS),
    ".singularity.d/runscript": (0o755, _HEADER + '\necho "There is no runscript defined for this container\\n";\n'),
    ".singularity.d/startscript": (0o755, _HEADER),
}

_DIRS = (".singularity.d/libs", ".singularity.d/actions", ".singularity.d/env",
         "dev", "proc", "root", "var/tmp", "tmp", "etc", "sys", "home")

_LINKS = {
    "singularity": ".singularity.d/runscript",
    ".run": ".singularity.d/actions/run",
    ".exec": ".singularity.d/actions/exec",
    ".test": ".singularity.d/actions/test",
    ".shell": ".singularity.d/actions/shell",
    "environment": ".singularity.d/env/90-environment.sh",
}


def write_base_env(rootfs: Path, *, overwrite: bool) -> None:
    """Write the base environment into ``rootfs`` (spec §B.6 ``makeBaseEnv``)."""
    rootfs = Path(rootfs)
    mode = rootfs.stat().st_mode
    if not mode & stat.S_IWUSR:
        os.chmod(rootfs, stat.S_IMODE(mode) | stat.S_IWUSR)
    for rel in _DIRS:
        path = inside(rootfs, rel)
        if not os.path.lexists(path):
            os.makedirs(path, mode=0o755, exist_ok=True)
            os.chmod(path, 0o755)
    for name, target in _LINKS.items():
        path = rootfs / name
        if os.path.islink(path):
            if os.readlink(path) == target:
                continue
            os.unlink(path)
        elif os.path.lexists(path):
            continue
        os.symlink(target, path)
    for rel, (fmode, text) in BASE_FILES.items():
        _write_base_file(inside(rootfs, rel), fmode, text, overwrite)


def _write_base_file(path: Path, mode: int, text: str, overwrite: bool) -> None:
    if os.path.lexists(path):
        if not overwrite or not path.is_file() or path.is_symlink():
            return
        os.chmod(path, mode)
    write_file(path, text, mode)
