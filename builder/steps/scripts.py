"""Section scripts: the interpreter rule (spec §B.2) and ``%pre``/``%setup`` on the host.

``interpreter_argv(name, args, script_path)`` builds ``/bin/sh -ex …`` exactly as
Apptainer's ``getSectionScriptArgs`` does, including the ``-c`` trap (the real interpreter
then runs without ``-e``, which we warn about). ``run_host_script`` runs ``%pre`` (before
the bootstrap, on an empty rootfs) or ``%setup`` on the host with
``SINGULARITY_ROOTFS``/``APPTAINER_ROOTFS`` set, from the build's working directory, as
the invoking user (also in a rootless build).
Failures raise ``BuildError`` naming the section, its line, exit code and output tail.
"""

from __future__ import annotations

import logging
import os

from builder.bundle import Bundle
from base.errors import BuildError
from builder.options import StepOptions
from builder.recipe import Stage
from builder.rootfs.command import run_captured

__all__ = ["interpreter_argv", "run_host_script", "host_script", "section_failure"]

log = logging.getLogger("sbuild.build")
_ENV_FILE = "/.singularity.d/env/91-environment.sh"


def interpreter_argv(name: str, args: str, script_path: str) -> list[str]:
    argv = ["/bin/sh", "-ex"]
    params = args.split("#", 1)[0].split()
    if "-c" in params:
        rest = params[params.index("-c") + 1:]
        if not rest:
            raise BuildError(f"bad {name} section '-c' parameter: missing arguments", section=name)
        log.warning("%%%s -c %s: the interpreter runs without -e, so a failing command does not stop the build",
                    name, " ".join(rest))
        return argv + params[:params.index("-c")] + ["-c", " ".join(rest) + " " + script_path]
    return argv + params + [script_path]


def section_failure(stage: Stage, name: str, exit_code: int, tail: list[str], bundle: Bundle | None) -> BuildError:
    section = stage.section(name)
    line = section.line if section else stage.first_line
    where = f" (stage {stage.name!r})" if stage.name else ""
    msg = f"%{name} failed with exit code {exit_code}{where}, section starts at recipe line {line}"
    return BuildError(msg, section=name, exit_code=exit_code, line=line, output_tail=list(tail))


def host_script(stage: Stage, name: str, opts: StepOptions) -> str:
    """The body of host section ``name`` (``pre``/``setup``) if it will run, else ""."""
    body = stage.scripts.get(name)
    if not body or not body.script.strip() or not opts.allows(name):
        return ""
    return body.script


def run_host_script(bundle: Bundle, stage: Stage, name: str, opts: StepOptions, *, output=None) -> None:  # noqa: ANN001
    """Run host section ``name`` (``pre`` or ``setup``) as spec §B.2 says."""
    if not host_script(stage, name, opts):
        return
    body = stage.scripts[name]
    path = bundle.scratch(name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(body.script)
    argv = interpreter_argv(name, body.args, str(path))
    env = dict(opts.host_env)
    rootfs = str(bundle.rootfs)
    env.update(APPTAINER_ROOTFS=rootfs, SINGULARITY_ROOTFS=rootfs,
               APPTAINER_ENVIRONMENT=_ENV_FILE, SINGULARITY_ENVIRONMENT=_ENV_FILE)
    status, tail = run_captured(argv, env=env, cwd=opts.cwd, output=output)
    if status != 0:
        raise section_failure(stage, name, status, tail, bundle)
