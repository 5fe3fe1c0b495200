"""SCIF apps (spec §B.6 "Apps", Apptainer's ``internal/pkg/build/apps``): step 3 of a stage.

For each app ``N`` in the recipe's app order: the directories ``/scif/apps/N/{scif,bin,lib,
scif/env}`` and ``/scif/data/N/{input,output}``; ``scif/env/01-base.sh`` (the SCIF_*
variables); ``%appenv`` → ``scif/env/90-environment.sh`` (raw body); ``%apprun``,
``%appstart``, ``%apptest`` → ``scif/runscript``, ``scif/startscript``, ``scif/test``
(``#!/bin/sh\\n\\n`` + body, no shebang or args handling); ``%apphelp`` →
``scif/runscript.help``; ``%applabels`` → ``scif/labels.json``; ``%appfiles`` copied from
the host like ``cp -fLr`` (by ``builder.rootfs.copy``, never through a link out of the
rootfs). Then ``/.singularity.d/env/94-appsbase.sh`` with each app's
exports (an empty file without apps). ``install_blocks`` gives what is appended to
``%post``.

Everything is written inside the rootfs (paths resolved like securejoin); an app name that
is not a plain file name (``/``, ``.``, ``..``) is refused instead of writing elsewhere.
"""

from __future__ import annotations

import logging
import os
import re

from builder.bundle import Bundle
from base.errors import BuildError
from base.gojson import marshal_indent
from builder.recipe import Stage
from builder.rootfs import copy_from_host, inside, write_file

__all__ = ["write_apps", "install_blocks", "app_body", "appfiles_pairs"]

log = logging.getLogger("sbuild.build")

_SANITISE = re.compile(r"[^a-zA-Z0-9_]")

_ENV_01 = """#!/bin/sh

SCIF_APPNAME={n}
SCIF_APPROOT="/scif/apps/{n}"
SCIF_APPMETA="/scif/apps/{n}/scif"
SCIF_DATA="/scif/data"
SCIF_APPDATA="/scif/data/{n}"
SCIF_APPINPUT="/scif/data/{n}/input"
SCIF_APPOUTPUT="/scif/data/{n}/output"
export SCIF_APPDATA SCIF_APPNAME SCIF_APPROOT SCIF_APPMETA SCIF_APPINPUT SCIF_APPOUTPUT SCIF_DATA
"""

_GLOBAL_94 = """## App Global Exports For: {s}

SCIF_APPDATA_{s}=/scif/data/{s}
SCIF_APPMETA_{s}=/scif/apps/{s}/scif
SCIF_APPROOT_{s}=/scif/apps/{s}
SCIF_APPBIN_{s}=/scif/apps/{s}/bin
SCIF_APPLIB_{s}=/scif/apps/{s}/lib

export SCIF_APPDATA_{s} SCIF_APPMETA_{s} SCIF_APPROOT_{s} SCIF_APPBIN_{s} SCIF_APPLIB_{s}
"""

# file under scif/ -> the export 94-appsbase.sh adds when it exists
_GLOBAL_IF = (
    ("env/90-environment.sh", 'export SCIF_APPENV_{s}="/scif/apps/{s}/scif/env/90-environment.sh"\n'),
    ("labels.json", 'export SCIF_APPLABELS_{s}="/scif/apps/{s}/scif/labels.json"\n'),
    ("runscript", 'export SCIF_APPRUN_{s}="/scif/apps/{s}/scif/runscript"\n'),
    ("startscript", 'export SCIF_APPSTART_{s}="/scif/apps/{s}/scif/startscript"\n'),
)

_SCRIPTS = (("apprun", "runscript"), ("appstart", "startscript"), ("apptest", "test"))


def app_body(stage: Stage, section: str, app: str) -> str:
    """The (concatenated) body of ``%<section> <app>``; "" when the recipe has none."""
    return (stage.custom_data or {}).get(f"{section} {app}", "")


def install_blocks(stage: Stage) -> str:
    """What Apptainer appends to ``%post``: one block per app, even without ``%appinstall``."""
    text = ""
    for app in stage.app_order:
        root = f"/scif/apps/{app}"
        text += f"\ncd /\n. {root}/scif/env/01-base.sh\n\ncd {root}\n{app_body(stage, 'appinstall', app)}\n\ncd /\n"
    return text


def _check_name(stage: Stage, app: str) -> None:
    if not app or "/" in app or app in (".", "..") or "\0" in app:
        line = next((s.line for s in stage.sections if s.app == app or s.key.endswith(f" {app}")),
                    stage.first_line)
        raise BuildError(f"app name {app!r} (recipe line {line}) is not a plain name: "
                         "it would be written outside /scif/apps", line=line,
                         hint="use letters, digits, '_', '-' or '.' in app names")


def _mkdirs(rootfs, app: str) -> None:
    for rel in (f"scif/apps/{app}", f"scif/apps/{app}/scif", f"scif/apps/{app}/bin", f"scif/apps/{app}/lib",
                f"scif/apps/{app}/scif/env", f"scif/data/{app}/input", f"scif/data/{app}/output"):
        path = inside(rootfs, rel)
        path.mkdir(mode=0o755, parents=True, exist_ok=True)


def _labels(body: str, app: str) -> str:
    labels = {"SCIF_APP_NAME": app}
    for line in body.strip().split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        labels[key.strip()] = value.strip()
    return marshal_indent(labels, sort_keys=True)


def appfiles_pairs(body: str) -> list[tuple[str, str]]:
    """``%appfiles`` lines as (src, dst): trimmed, '#' lines skipped, inline '#…' cut,
    split on the first space; dst defaults to src."""
    pairs = []
    for line in body.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        src, _, dst = line.split("#", 1)[0].strip().partition(" ")
        pairs.append((src, dst or src))
    return pairs


def _copy_files(bundle: Bundle, stage: Stage, app: str, cwd: str) -> None:
    for src, dst in appfiles_pairs(app_body(stage, "appfiles", app)):
        host_src = src if os.path.isabs(src) else os.path.join(cwd, src)
        try:
            copy_from_host(host_src, bundle.rootfs, f"/scif/apps/{app}/{dst}".rstrip("/"))
        except OSError as e:
            raise BuildError(f"%appfiles {app}: copying {src} to {dst}: {e.strerror or e}",
                             section="appfiles") from e


def _write_app(bundle: Bundle, stage: Stage, app: str, cwd: str) -> str:
    """Create app ``app``; return its part of 94-appsbase.sh."""
    _check_name(stage, app)
    _mkdirs(bundle.rootfs, app)
    meta = inside(bundle.rootfs, f"scif/apps/{app}/scif")
    write_file(meta / "env" / "01-base.sh", _ENV_01.format(n=app), 0o755)
    env = app_body(stage, "appenv", app)
    if env:
        write_file(meta / "env" / "90-environment.sh", env, 0o755)
    for section, name in _SCRIPTS:
        body = app_body(stage, section, app)
        if body:
            write_file(meta / name, f"#!/bin/sh\n\n{body}\n", 0o755)
    help_text = app_body(stage, "apphelp", app)
    if help_text:
        write_file(meta / "runscript.help", help_text, 0o644)
    _copy_files(bundle, stage, app, cwd)
    write_file(meta / "labels.json", _labels(app_body(stage, "applabels", app), app), 0o644)
    s = _SANITISE.sub("_", app)
    text = _GLOBAL_94.format(s=s)
    for rel, line in _GLOBAL_IF:
        if (meta / rel).exists():
            text += line.format(s=s)
    return text


def write_apps(bundle: Bundle, stage: Stage, *, cwd: str) -> None:
    """Create every app of ``stage`` and write /.singularity.d/env/94-appsbase.sh (always)."""
    text = "".join(_write_app(bundle, stage, app, cwd) for app in stage.app_order)
    if stage.app_order:
        log.debug("apps: %s", ", ".join(stage.app_order))
    write_file(inside(bundle.rootfs, ".singularity.d/env/94-appsbase.sh"), text, 0o755)
