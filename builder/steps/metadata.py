"""The metadata step (spec §B.6 "Metadata step", in Apptainer's order):
runscript.help, labels.json, the recipe copy (with bootstrap_history), 90-environment.sh,
startscript, runscript, test. Each item is gated by ``--section``.

Also the shebang rule (``handle_shebang``). It reads its options from the plan:
``--section`` (``plan.steps``), ``--force`` (``plan.force``), ``--arch``
(``plan.fetch.arch``) and ``SOURCE_DATE_EPOCH`` (``plan.pack``), and the automatic base
labels an agent put on the Bundle (``bundle.base_labels``).
"""

from __future__ import annotations

import logging
import os

from builder.bundle import Bundle
from builder.options import BuildPlan
from builder.recipe import Stage
from builder.rootfs import inside, write_file
from builder.steps.labels import write_labels

__all__ = ["write_metadata", "handle_shebang", "write_file"]

log = logging.getLogger("sbuild.build")


def handle_shebang(script: str, args: str) -> str:
    """Apptainer's ``handleShebangScript``: the file text for a runscript/startscript/test."""
    shebang = "#!/bin/sh"
    if script.strip().startswith("#!"):
        first, _, rest = script.partition("\n")
        shebang, script = first.strip(), rest
    if args:
        shebang += " " + args.split("#", 1)[0]
    return shebang + "\n\n" + script + "\n"


def _help(bundle: Bundle, stage: Stage, force: bool) -> None:
    body = stage.scripts.get("help")
    if not body or not body.script.strip():
        return
    path = inside(bundle.rootfs, ".singularity.d/runscript.help")
    if path.exists() and not force:
        log.warning("%s exists and is not overwritten (use --force)", "/.singularity.d/runscript.help")
        return
    write_file(path, body.script + "\n", 0o644)


def _deffile(bundle: Bundle, full_raw: bytes) -> None:
    path = inside(bundle.rootfs, ".singularity.d/Singularity")
    if os.path.lexists(path):
        history = inside(bundle.rootfs, ".singularity.d/bootstrap_history")
        history.mkdir(mode=0o755, parents=True, exist_ok=True)
        n = len(os.listdir(history))
        os.replace(path, history / f"Apptainer{n}")
    write_file(path, full_raw, 0o644)


def _environment(bundle: Bundle, stage: Stage) -> None:
    env = stage.scripts.get("environment")
    if not env or not env.script.strip():
        return
    path = inside(bundle.rootfs, ".singularity.d/env/90-environment.sh")
    if path.is_file() and not path.is_symlink():
        with open(path, "a", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write("\n" + env.script + "\n")
    else:
        write_file(path, "#!/bin/sh\n\n" + env.script + "\n", 0o755)


def _script(bundle: Bundle, stage: Stage, name: str) -> None:
    body = stage.scripts.get(name)
    if not body or not body.script.strip():
        return
    write_file(inside(bundle.rootfs, f".singularity.d/{name}"), handle_shebang(body.script, body.args), 0o755)


def write_metadata(bundle: Bundle, stage: Stage, full_raw: bytes, plan: BuildPlan, *, version: str) -> None:
    """Write /.singularity.d metadata for ``stage`` into the bundle (spec §B.1 step 9)."""
    opts = plan.steps
    if opts.allows("help"):
        _help(bundle, stage, plan.force)
    if opts.allows("labels"):
        has_help = bool(stage.scripts.get("help") and stage.scripts["help"].script.strip())
        write_labels(bundle.rootfs, labels=stage.labels, header=stage.header, has_help=has_help,
                     bootstrapped=bundle.bootstrapped, force=plan.force,
                     source_date_epoch=plan.pack.source_date_epoch, arch=plan.fetch.arch, version=version,
                     auto_labels=bundle.base_labels if bundle.bootstrapped else None)
    _deffile(bundle, full_raw)
    if opts.allows("environment"):
        _environment(bundle, stage)
    for name in ("startscript", "runscript", "test"):
        if opts.allows(name):
            _script(bundle, stage, name)
