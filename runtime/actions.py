"""The actions step: the container's environment and action script, Apptainer's semantics (spec §F).

The launched process is the image's ``/bin/sh`` running ``ACTION_SCRIPT``: it sources
``/.singularity.d/env/*.sh`` in lexical order, applies the user's ``--env`` and host
``SINGULARITYENV_*``/``APPTAINERENV_*`` values right after ``99-base.sh`` (or at the end when
the image has no such file), then execs the action: ``exec`` runs the command, ``run`` the
runscript (or a shell), ``shell`` the shell, ``test`` the test script, ``start`` the
startscript. Images older than 2.3 (no env dir) get ``/environment`` sourced.

Apptainer sources the env scripts with its built-in shell interpreter, which knows
``source``; an image's /bin/sh may not (dash), so while they are sourced, ``source FILE``
is defined as ``. FILE`` where the shell lacks it (``%environment`` files that do
``source /opt/conda/etc/profile.d/conda.sh`` work as under Apptainer; arguments after
FILE are ignored, as dash's ``.`` takes none).

Limits: ``SING_USER_DEFINED_*`` PATH handling is left to the image's ``99-runtimevars.sh``.
"""

from __future__ import annotations

from base import lean_os as os
from runtime.description import DEFAULT_PATH

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["container_env", "action_argv", "ACTIONS"]

ACTIONS = ("exec", "run", "shell", "test", "start")

_PROXY = ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "ftp_proxy")
_DROP = {"PATH", "LD_LIBRARY_PATH", "PS1", "PROMPT_COMMAND"}
_REFUSED = {"HOME", "SINGULARITY_SHELL", "APPTAINER_SHELL", "SINGULARITY_APPNAME", "APPTAINER_APPNAME"}

_PRELUDE = r"""
if ! command -v source >/dev/null 2>&1; then eval 'source() { . "$1"; }'; __sb_src=1; fi
for __sb_f in /.singularity.d/env/*.sh; do
  [ -f "$__sb_f" ] || continue
  case "$__sb_f" in */90-environment.sh) [ -n "${PATH:-}" ] || PATH=__DEFAULT_PATH__;; esac
  . "$__sb_f"
  case "$__sb_f" in */99-base.sh) __sb_inject; __sb_done=1;; esac
done
if [ ! -d /.singularity.d/env ] && [ -f /environment ]; then . /environment; fi
[ -n "${__sb_done:-}" ] || __sb_inject
[ -z "${__sb_src:-}" ] || eval 'unset -f source'
unset __sb_f __sb_done __sb_src
unset -f __sb_inject 2>/dev/null
"""

_ACTION = {
    "exec": r"""
case "$1" in -*|"") false;; *) command -v "$1" >/dev/null 2>&1;; esac || {
  echo "FATAL:   \"$1\": executable file not found in \$PATH" >&2; exit 255; }
exec "$@"
""",
    "run": r"""
if [ -n "${SINGULARITY_APPNAME:-}" ]; then
  __sb_r=/scif/apps/$SINGULARITY_APPNAME/scif/runscript
  if [ ! -f "$__sb_r" ]; then echo "sbuild: no runscript for app $SINGULARITY_APPNAME" >&2; exit 1; fi
elif [ -f /.singularity.d/runscript ]; then __sb_r=/.singularity.d/runscript
elif [ -f /singularity ]; then __sb_r=/singularity
elif [ -f /apptainer ]; then __sb_r=/apptainer
else exec /bin/sh "$@"
fi
if [ -x "$__sb_r" ]; then exec "$__sb_r" "$@"; else exec /bin/sh "$__sb_r" "$@"; fi
""",
    "shell": r"""
if [ -n "${SINGULARITY_SHELL:-}" ]; then exec "$SINGULARITY_SHELL" "$@"
elif [ -x /bin/bash ]; then SHELL=/bin/bash; export SHELL; exec /bin/bash --norc "$@"
else SHELL=/bin/sh; export SHELL; exec /bin/sh "$@"
fi
""",
    "test": r"""
if [ -n "${SINGULARITY_APPNAME:-}" ]; then __sb_r=/scif/apps/$SINGULARITY_APPNAME/scif/test
else __sb_r=/.singularity.d/test
fi
if [ ! -f "$__sb_r" ]; then echo "INFO:    No test script found in container, exiting" >&2; exit 0; fi
if [ -x "$__sb_r" ]; then exec "$__sb_r" "$@"; else exec /bin/sh "$__sb_r" "$@"; fi
""",
    "start": r"""
if [ -n "${SINGULARITY_APPNAME:-}" ]; then __sb_r=/scif/apps/$SINGULARITY_APPNAME/scif/startscript
else __sb_r=/.singularity.d/startscript
fi
[ -f "$__sb_r" ] || exit 0
if [ -x "$__sb_r" ]; then exec "$__sb_r" "$@"; else exec /bin/sh "$__sb_r" "$@"; fi
""",
}


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _injections(host_env: Mapping[str, str], user_env: Mapping[str, str]) -> dict[str, str]:
    """``SINGULARITYENV_X``, then ``APPTAINERENV_X``, then ``--env X=…`` (last wins)."""
    out: dict[str, str] = {}
    for prefix in ("SINGULARITYENV_", "APPTAINERENV_"):
        for key, value in host_env.items():
            if key.startswith(prefix) and len(key) > len(prefix):
                out[key[len(prefix):]] = value
    out.update(user_env)
    return out


def _evaluated(value: str) -> str:
    """``value`` in double quotes: ``$V`` and ``$(cmd)`` expand, as Apptainer evaluates it."""
    return '"' + value.replace('"', '\\"') + '"'


def _script(action: str, inject: Mapping[str, str], no_eval: bool = False) -> str:
    lines = []
    quote = _quote if no_eval else _evaluated
    for key, value in inject.items():
        if key in _REFUSED:
            lines.append(f"echo {_quote(f'WARNING: Overwriting {key} environment variable is not permitted')} >&2")
        elif key == "PREPEND_PATH":
            lines.append(f"PATH={quote(value)}:\"$PATH\"; export PATH")
        elif key == "APPEND_PATH":
            lines.append(f"PATH=\"$PATH\":{quote(value)}; export PATH")
        elif key == "LD_LIBRARY_PATH":
            lines.append(f"LD_LIBRARY_PATH={quote(value)}:/.singularity.d/libs; export LD_LIBRARY_PATH")
        elif key.isidentifier():
            lines.append(f"{key}={quote(value)}; export {key}")
    body = "\n  ".join(lines) or ":"
    return (f"__sb_inject() {{\n  {body}\n}}\n" + _PRELUDE.replace("__DEFAULT_PATH__", DEFAULT_PATH)
            + _ACTION[action])


def container_env(
    host_env: Mapping[str, str],
    *,
    action: str,
    image: str,
    home: str,
    cleanenv: bool,
    shell: str | None = None,
    app: str | None = None,
    no_env: tuple[str, ...] = (),
) -> dict[str, str]:
    """The environment the action script starts with (before the image's env scripts);
    ``no_env``: host variables not to forward (``--no-env``)."""
    if cleanenv:
        env = {k: v for k, v in host_env.items() if k == "TERM" or k.lower() in _PROXY}
        env["LANG"] = "C"
    else:
        env = {k: v for k, v in host_env.items()
               if k not in _DROP and k not in no_env and not k.startswith(("SINGULARITY", "APPTAINER", "SBUILD_"))}
    name = os.path.basename(os.path.normpath(image)) if image else ""
    env.update({
        "PATH": DEFAULT_PATH,
        "HOME": home,
        "PS1": "Apptainer> ",
        "SINGULARITY_CONTAINER": image, "APPTAINER_CONTAINER": image,
        "SINGULARITY_NAME": name, "APPTAINER_NAME": name,
        "SINGULARITY_COMMAND": action, "APPTAINER_COMMAND": action,
        "SINGULARITY_ENVIRONMENT": "/.singularity.d/env/91-environment.sh",
        "APPTAINER_ENVIRONMENT": "/.singularity.d/env/91-environment.sh",
    })
    if shell:
        env["SINGULARITY_SHELL"] = env["APPTAINER_SHELL"] = shell
    if app:
        env["SINGULARITY_APPNAME"] = env["APPTAINER_APPNAME"] = app
    return env


def action_argv(
    action: str,
    args: list[str] | tuple[str, ...],
    *,
    host_env: Mapping[str, str],
    user_env: Mapping[str, str],
    shell: str = "/bin/sh",
    no_eval: bool = False,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(argv, fallback_argv)``: the image's /bin/sh running the action script, and what to
    exec directly (no env scripts) when the image has no /bin/sh. Injected values are
    shell-evaluated as in double quotes, or taken literally with ``no_eval``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    script = _script(action, _injections(host_env, user_env), no_eval)
    argv = ("/bin/sh", "-c", script, f"sbuild-{action}", *args)
    if action == "exec":
        fallback = tuple(args)
    elif action == "shell":
        fallback = (shell, *args)
    elif action == "run":
        fallback = ("/.singularity.d/runscript", *args)
    elif action == "test":
        fallback = ("/.singularity.d/test", *args)
    else:
        fallback = ("/.singularity.d/startscript", *args)
    return argv, fallback
