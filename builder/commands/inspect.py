"""``sbuild inspect``: show an image's labels, scripts, environment and recipe.

Works on .simg, SIF, raw squashfs and sandboxes without mounting and without root: a
SIF's ``inspect-metadata.json`` and Deffile objects are read from its descriptors,
anything else through PySquashfsImage or the directory. Output follows
``apptainer inspect``: labels by default, ``key: value`` sorted; ``--json`` prints the
``{"data": {"attributes": …}, "type": "container"}`` object, tab-indented.
"""

from __future__ import annotations

import argparse
from typing import Any

from builder.commands import add_output_flags

__all__ = ["register", "select"]

_SECTIONS = ("labels", "deffile", "helpfile", "runscript", "startscript", "test", "environment")
_APP_SECTIONS = ("labels", "helpfile", "runscript", "test", "environment")


def register(subparsers, only: str | None = None) -> None:
    p = subparsers.add_parser(
        "inspect", help="show the metadata of an image",
        description="Show an image's labels (default), scripts, environment or recipe, "
                    "without mounting it.")
    p.add_argument("image", metavar="IMAGE", help=".simg, .sif, squashfs image or sandbox directory")
    p.add_argument("-l", "--labels", action="store_true", help="show the labels (default)")
    p.add_argument("-d", "--deffile", action="store_true", help="show the recipe the image was built from")
    p.add_argument("-r", "--runscript", action="store_true", help="show the runscript")
    p.add_argument("-s", "--startscript", action="store_true", help="show the startscript")
    p.add_argument("-t", "--test", action="store_true", help="show the test script")
    p.add_argument("-e", "--environment", action="store_true", help="show the environment scripts")
    p.add_argument("-H", "--helpfile", action="store_true", help="show the runscript help")
    p.add_argument("--app", metavar="NAME", default="", help="inspect the SCIF app NAME")
    p.add_argument("--list-apps", action="store_true", help="list the SCIF apps")
    p.add_argument("--all", action="store_true", help="show everything (implies --json)")
    p.add_argument("-j", "--json", action="store_true", help="print JSON instead of sections")
    p.add_argument("--signatures", action="store_true", help="list who signed a SIF (not verified: see verify)")
    add_output_flags(p)
    p.set_defaults(handler=_inspect)


def select(full: dict[str, Any], wanted: set[str], app: str = "", list_apps: bool = False) -> dict[str, Any]:
    """The part of ``full`` (``read_metadata``) that ``apptainer inspect`` shows for the
    sections in ``wanted`` and the app ``app``."""
    from builder.images.metadata import APP_ATTRIBUTE_ORDER, ATTRIBUTE_ORDER

    attrs = full["data"]["attributes"]
    apps = attrs.get("apps", {})
    out: dict[str, Any] = {}
    if list_apps:
        out["apps"] = {name: {} for name in apps}
    if app:
        src = apps.get(app, {})
        sub = {k: src[k] for k in APP_ATTRIBUTE_ORDER if k in wanted and src.get(k)}
        out.setdefault("apps", {})[app] = sub
        if "deffile" in wanted and attrs.get("deffile"):
            out["deffile"] = attrs["deffile"]
    else:
        for key in _SECTIONS:
            if key in wanted and attrs.get(key):
                out[key] = attrs[key]
    ordered = {k: out[k] for k in ATTRIBUTE_ORDER if k in out and (out[k] or k == "apps")}
    if not ordered.get("apps"):
        ordered.pop("apps", None)
    return {"data": {"attributes": ordered}, "type": "container"}


def _text(meta: dict[str, Any], app: str, list_apps: bool) -> str:
    attrs = meta["data"]["attributes"]
    app_attrs = attrs.get("apps", {}).get(app, {}) if app else {}
    lines: list[str] = []
    if list_apps:
        lines += sorted(attrs.get("apps", {}))
    for key in ("deffile", "runscript", "startscript", "test", "helpfile"):
        value = attrs.get(key) or (app_attrs.get(key) if key != "startscript" else None)
        if value:
            lines.append(value)
    env = attrs.get("environment") or app_attrs.get("environment") or {}
    for name in sorted(env):
        lines.append(f"=== {name} ===\n{env[name]}\n")
    labels = attrs.get("labels") or app_attrs.get("labels") or {}
    lines += [f"{k}: {labels[k]}" for k in sorted(labels)]
    return "".join(line + "\n" for line in lines)


def _inspect(args: argparse.Namespace) -> int:
    from base.errors import ImageError
    from base.gojson import marshal_indent
    from builder.commands.uri import image_path
    from builder.images.metadata import read_metadata

    if args.signatures:
        from builder.signing.report import print_signers

        return print_signers(image_path(args.image, args), as_json=args.json)
    full = read_metadata(image_path(args.image, args))
    app = "" if args.all else args.app
    apps = full["data"]["attributes"].get("apps", {})
    if app and app not in apps:
        raise ImageError(f"{args.image}: no app named {app!r}",
                         hint=("apps in this image: " + ", ".join(sorted(apps))) if apps else "this image has no apps")
    if args.all:
        print(marshal_indent(full))
        return 0
    wanted = {s for s in _SECTIONS if getattr(args, s)}
    if not wanted and not args.list_apps:
        wanted = {"labels"}
    meta = select(full, wanted, app, args.list_apps)
    if args.json:
        print(marshal_indent(meta))
    else:
        print(_text(meta, app, args.list_apps), end="")
    return 0
