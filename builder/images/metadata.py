"""Container metadata as ``apptainer inspect`` reports it, and Go-compatible JSON.

``collect(tree)`` reads ``/.singularity.d`` (labels.json, runscript, startscript, test,
runscript.help, the recipe copy, ``env/10-docker*.sh`` and ``env/9*-environment.sh``)
and the SCIF apps under ``/scif/apps`` into the shape of Apptainer's
``inspect.Metadata`` (``{"data": {"attributes": …}, "type": "container"}``), the same
object a SIF stores as ``inspect-metadata.json`` (spec §D.2). File contents lose their
trailing newlines, as inspect's shell reader does.
The attributes are laid out in Go's struct field order (``ATTRIBUTE_ORDER``), for
``base.gojson`` to write as Go's ``encoding/json`` does.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from typing import Any

from base.gojson import unmarshal
from builder.images.reader import Tree

__all__ = ["collect", "read_metadata", "empty_metadata", "ATTRIBUTE_ORDER", "APP_ATTRIBUTE_ORDER"]

log = logging.getLogger("sbuild.images")

# Go struct field order (apptainer pkg/inspect/metadata.go)
ATTRIBUTE_ORDER = ("apps", "environment", "labels", "runscript", "test", "helpfile", "deffile",
                   "startscript")
APP_ATTRIBUTE_ORDER = ("environment", "labels", "runscript", "test", "helpfile")
_SD = "/.singularity.d"
DEFFILE_NAMES = ("Singularity", "Apptainer")


def empty_metadata() -> dict[str, Any]:
    return {"data": {"attributes": {}}, "type": "container"}


def _text(tree: Tree, path: str) -> str | None:
    data = tree.read_bytes(path)
    if data is None:
        return None
    return data.decode("utf-8", "replace").rstrip("\n")


def _labels(tree: Tree, path: str) -> dict[str, str]:
    raw = _text(tree, path)
    if not raw:
        return {}
    try:
        obj = unmarshal(raw)
    except ValueError as e:
        log.warning("unable to parse labels in %s: %s", path, e)
        return {}
    if not isinstance(obj, dict):
        log.warning("unable to parse labels in %s: not a JSON object", path)
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}


def _env_files(tree: Tree, prefix: str, docker: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    names = tree.listdir(f"{prefix}/env")
    patterns = (["10-docker*.sh"] if docker else []) + ["9*-environment.sh"]
    for pattern in patterns:
        for name in names:
            path = f"{prefix}/env/{name}"
            if fnmatch.fnmatchcase(name, pattern) and tree.is_file(path):
                out[path] = _text(tree, path) or ""
    return out


def _scripts(tree: Tree, prefix: str, attrs: dict[str, Any]) -> None:
    for key, name in (("runscript", "runscript"), ("test", "test"), ("helpfile", "runscript.help")):
        value = _text(tree, f"{prefix}/{name}")
        if value:
            attrs[key] = value


def _ordered(attrs: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    return {k: attrs[k] for k in order if attrs.get(k)}


def collect(tree: Tree, *, deffile: str | None = None) -> dict[str, Any]:
    """All metadata of the container in ``tree`` (``inspect --all``). ``deffile``, when
    given, is used instead of the recipe copy inside the image (a SIF's Deffile object)."""
    attrs: dict[str, Any] = {}
    apps: dict[str, Any] = {}
    for name in tree.listdir("/scif/apps"):
        prefix = f"/scif/apps/{name}/scif"
        if not tree.is_dir(prefix):
            continue
        app: dict[str, Any] = {"environment": _env_files(tree, prefix, docker=False),
                               "labels": _labels(tree, f"{prefix}/labels.json")}
        _scripts(tree, prefix, app)
        apps[name] = _ordered(app, APP_ATTRIBUTE_ORDER)
    attrs["apps"] = apps
    attrs["environment"] = dict(sorted(_env_files(tree, _SD, docker=True).items()))
    attrs["labels"] = dict(sorted(_labels(tree, f"{_SD}/labels.json").items()))
    _scripts(tree, _SD, attrs)
    if deffile is None:
        for name in DEFFILE_NAMES:
            deffile = _text(tree, f"{_SD}/{name}")
            if deffile:
                break
    if deffile:
        attrs["deffile"] = deffile.rstrip("\n")
    start = _text(tree, f"{_SD}/startscript")
    if start:
        attrs["startscript"] = start
    meta = empty_metadata()
    meta["data"]["attributes"] = _ordered(attrs, ATTRIBUTE_ORDER)
    return meta


def _sif_metadata(info) -> tuple[dict[str, Any] | None, str | None]:
    """(inspect-metadata.json object, Deffile text) stored in a SIF, each None if absent."""
    from builder.images import sif

    meta = deffile = None
    with open(info.path, "rb") as fh:
        for d in info.descriptors:
            if d.data_type == sif.DATA_DEFFILE and deffile is None:
                fh.seek(d.offset)
                deffile = fh.read(d.size).decode("utf-8", "replace")
            elif d.data_type == sif.DATA_GENERIC_JSON and d.name == "inspect-metadata.json" and meta is None:
                fh.seek(d.offset)
                try:
                    obj = unmarshal(fh.read(d.size))
                    if isinstance(obj.get("data", {}).get("attributes"), dict):
                        meta = obj
                    else:
                        log.warning("%s: inspect-metadata.json has no attributes, reading the image", info.path)
                except (ValueError, AttributeError) as e:
                    log.warning("%s: unable to read inspect-metadata.json (%s), reading the image", info.path, e)
    return meta, deffile


def read_metadata(path, info=None) -> dict[str, Any]:
    """All metadata of an image or sandbox, as ``apptainer inspect --all`` gives it.

    A SIF's ``inspect-metadata.json`` and Deffile objects are used when present (no
    squashfs read at all); otherwise the files are read from the filesystem.
    """
    from builder.images.probe import probe
    from builder.images.reader import open_tree

    info = info or probe(path)
    deffile = None
    if info.kind == "sif":
        meta, deffile = _sif_metadata(info)
        if meta is not None:
            attrs = meta["data"]["attributes"]
            if deffile and not attrs.get("deffile"):
                attrs["deffile"] = deffile.rstrip("\n")
            meta["data"]["attributes"] = {k: attrs[k] for k in ATTRIBUTE_ORDER if attrs.get(k)}
            return meta
    with open_tree(info.path, info) as tree:
        return collect(tree, deffile=deffile)
