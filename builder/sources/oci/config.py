"""OCI image config -> the files Apptainer writes for a docker/OCI base (spec §C).

Pure functions produce the text; ``write_docker_metadata`` writes them into a rootfs:

- ``env_script(env)``: ``/.singularity.d/env/10-docker2singularity.sh``; image values are
  defaults (``export K="${K:-"V"}"``) except PATH, which is forced; invalid names skipped.
  Values are escaped as Apptainer does (shell escape, then Go ``%q``).
- ``runscript(entrypoint, cmd)``: ``/.singularity.d/runscript`` with ``OCI_ENTRYPOINT``,
  ``OCI_CMD`` and Apptainer's template (eval mode and ``SINGULARITY_NO_EVAL`` mode).
- ``labels_json(labels)``: Go ``json.MarshalIndent(labels, "", "\\t")`` (sorted keys,
  ``<>&`` escaped, ``{}`` when the image has no labels, where Go writes ``null``).
- ``base_labels(image)``: ``org.opencontainers.image.base.name/digest``.
- ``oci_config_json(image)``: the ``config`` object for the SIF ``oci-config.json``, in the
  field order and ``omitempty`` form of go-containerregistry's ``v1.Config`` (Apptainer 1.5).

Every path is resolved inside the rootfs (an image whose ``/.singularity.d`` or
``/etc/hosts`` is a symlink to ``/`` cannot make us write on the host).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from base.errors import ImageError
from base.gojson import marshal, marshal_indent, unmarshal
from builder.sources.oci.layer import LayerApplier
from builder.sources.oci.platform import Platform

__all__ = ["ImageConfig", "env_script", "runscript", "labels_json", "base_labels",
           "oci_config_json", "write_docker_metadata"]

_VAR = re.compile(r"^[a-zA-Z_]{1,}[a-zA-Z0-9_]{0,}$")


def _parse(raw: bytes) -> dict:
    """The config blob as an object; invalid or too deeply nested JSON is an ``ImageError``."""
    try:
        doc = unmarshal(raw or b"{}")
    except ValueError as e:
        raise ImageError(f"reading the image config: not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ImageError("reading the image config: not a JSON object")
    config = doc.get("config")
    if config is not None and not isinstance(config, dict):
        raise ImageError("reading the image config: config is not a JSON object")
    for key in ("Env", "Entrypoint", "Cmd"):  # []string in Go's v1.Config: anything else fails there
        value = (config or {}).get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ImageError(f"reading the image config: config.{key} is not a list of strings")
    if not isinstance((config or {}).get("Labels") or {}, dict):
        raise ImageError("reading the image config: config.Labels is not a JSON object")
    return doc


@dataclass(frozen=True)
class ImageConfig:
    """What a fetch learned about the image; ``raw`` is the config blob as served."""

    raw: bytes
    platform: Platform
    digest: str | None = None          # manifest digest the reference resolved to
    tag: str | None = None
    name: str | None = None            # reference for org.opencontainers.image.base.name
    config_digest: str | None = None
    parsed: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_blob(cls, raw: bytes, platform: Platform, **kw: Any) -> "ImageConfig":
        return cls(raw=raw, platform=platform, parsed=_parse(raw), **kw)

    @property
    def config(self) -> dict:
        return self.parsed.get("config") or {}

    @property
    def env(self) -> list[str]:
        return list(self.config.get("Env") or [])

    @property
    def entrypoint(self) -> list[str]:
        return list(self.config.get("Entrypoint") or [])

    @property
    def cmd(self) -> list[str]:
        return list(self.config.get("Cmd") or [])

    @property
    def labels(self) -> dict[str, str] | None:
        return self.config.get("Labels")

    @property
    def created(self) -> str | None:
        return self.parsed.get("created")


def _shell_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")


def _go_quote(s: str) -> str:
    """Go's ``strconv.Quote``."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                        "\t": "\\t", "\v": "\\v"}[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def env_script(env: list[str]) -> str:
    lines = ["#!/bin/sh\n"]
    for element in env:
        name, sep, value = element.partition("=")
        if not _VAR.match(name):
            continue
        if not sep:
            lines.append(f'export {name}="${{{name}:-}}"\n')
        elif name == "PATH":
            lines.append(f"export {name}={_go_quote(_shell_escape(value))}\n")
        else:
            lines.append(f'export {name}="${{{name}:-{_go_quote(_shell_escape(value))}}}"\n')
    return "".join(lines)


def _single(s: str) -> str:
    return s.replace("'", "'\"'\"'")


def _args_quoted(args: list[str]) -> str:
    return " ".join(f'"{_shell_escape(a)}"' for a in args)


_RUN_NO_EVAL = """
# When SINGULARITY_NO_EVAL set, use OCI compatible behavior that does
# not evaluate resolved CMD / ENTRYPOINT / ARGS through the shell, and
# does not modify expected quoting behavior of args.
if [ -n "$SINGULARITY_NO_EVAL" ]; then
    # ENTRYPOINT only - run entrypoint plus args
    if [ -z "$OCI_CMD" ] && [ -n "$OCI_ENTRYPOINT" ]; then
        {ep}
        exec "$@"
    fi

    # CMD only - run CMD or override with args
    if [ -n "$OCI_CMD" ] && [ -z "$OCI_ENTRYPOINT" ]; then{cmd_only}
        exec "$@"
    fi

    # ENTRYPOINT and CMD - run ENTRYPOINT with CMD as default args
    # override with user provided args{both}
    exec "$@"
fi
"""

_RUN_EVAL = """
# Standard Apptainer behavior evaluates CMD / ENTRYPOINT / ARGS
# combination through shell before exec, and requires special quoting
# due to concatenation of CMDLINE_ARGS.
CMDLINE_ARGS=""
# prepare command line arguments for evaluation
for arg in "$@"; do
        CMDLINE_ARGS="${CMDLINE_ARGS} \\"$arg\\""
done

# ENTRYPOINT only - run entrypoint plus args
if [ -z "$OCI_CMD" ] && [ -n "$OCI_ENTRYPOINT" ]; then
    if [ $# -gt 0 ]; then
        SINGULARITY_OCI_RUN="${OCI_ENTRYPOINT} ${CMDLINE_ARGS}"
    else
        SINGULARITY_OCI_RUN="${OCI_ENTRYPOINT}"
    fi
fi

# CMD only - run CMD or override with args
if [ -n "$OCI_CMD" ] && [ -z "$OCI_ENTRYPOINT" ]; then
    if [ $# -gt 0 ]; then
        SINGULARITY_OCI_RUN="${CMDLINE_ARGS}"
    else
        SINGULARITY_OCI_RUN="${OCI_CMD}"
    fi
fi

# ENTRYPOINT and CMD - run ENTRYPOINT with CMD as default args
# override with user provided args
if [ $# -gt 0 ]; then
    SINGULARITY_OCI_RUN="${OCI_ENTRYPOINT} ${CMDLINE_ARGS}"
else
    SINGULARITY_OCI_RUN="${OCI_ENTRYPOINT} ${OCI_CMD}"
fi

# Evaluate shell expressions first and set arguments accordingly,
# then execute final command as first container process
eval "set ${SINGULARITY_OCI_RUN}"
exec "$@"
"""


def runscript(entrypoint: list[str], cmd: list[str]) -> str:
    """The runscript Apptainer generates for ENTRYPOINT/CMD (its Go template, rendered)."""
    head = "#!/bin/sh\n"
    head += f"OCI_ENTRYPOINT='{_single(_args_quoted(entrypoint))}'\n" if entrypoint else "OCI_ENTRYPOINT=''\n"
    head += f"OCI_CMD='{_single(_args_quoted(cmd))}'\n" if cmd else "OCI_CMD=''\n"
    pc = "".join(f"set -- '{_single(c)}' \"$@\"\n" for c in reversed(cmd))
    pe = "".join(f"set -- '{_single(e)}' \"$@\"\n" for e in reversed(entrypoint))
    cmd_only = f"\n        if [ $# -eq 0 ]; then\n            {pc}\n        fi" if pc else ""
    if pe:
        both = (f"\n    if [ $# -gt 0 ]; then\n        {pe}\n\telse\n        {pc}\n        {pe}\n    fi")
    elif pc:
        both = f"\n    if [ $# -eq 0 ]; then\n        {pc}\n    fi"
    else:
        both = ""
    body = (_RUN_NO_EVAL.replace("{ep}", pe).replace("{cmd_only}", cmd_only).replace("{both}", both))
    return head + body + _RUN_EVAL


def labels_json(labels: dict[str, str] | None) -> str:
    """Go ``json.MarshalIndent(labels, "", "\\t")``; an image without labels gets ``{}``, not
    ``null`` (which readers of labels.json, sbuild's own included, take for a broken file)."""
    return marshal_indent(labels or {}, sort_keys=True)


def base_labels(image: ImageConfig) -> dict[str, str]:
    out = {}
    if image.name:
        out["org.opencontainers.image.base.name"] = image.name
    if image.digest:
        out["org.opencontainers.image.base.digest"] = image.digest
    return out


# go-containerregistry v1.Config, in field order (Apptainer 1.5 stores json.Marshal of it)
_GO_CONFIG = (("AttachStderr", bool), ("AttachStdin", bool), ("AttachStdout", bool), ("Cmd", list),
              ("Healthcheck", "health"), ("Domainname", str), ("Entrypoint", list), ("Env", list),
              ("Hostname", str), ("Image", str), ("Labels", "labels"), ("OnBuild", list),
              ("OpenStdin", bool), ("StdinOnce", bool), ("Tty", bool), ("User", str),
              ("Volumes", "set"), ("WorkingDir", str), ("ExposedPorts", "set"), ("ArgsEscaped", bool),
              ("NetworkDisabled", bool), ("MacAddress", str), ("StopSignal", str), ("Shell", list))
_GO_HEALTH = (("Test", list), ("Interval", int), ("Timeout", int), ("StartPeriod", int), ("Retries", int))


def _go_fields(src: dict, fields: tuple) -> dict:
    """``src`` as Go would re-marshal it into a struct: field order, ``omitempty``, unknown
    keys dropped (values of the wrong type are dropped too, where Go would fail)."""
    out: dict[str, Any] = {}
    for name, kind in fields:
        value = src.get(name)
        if not value:
            continue  # omitempty: false, 0, "", null, [] and {} are left out
        if kind == "health" and isinstance(value, dict):
            out[name] = _go_fields(value, _GO_HEALTH)
        elif kind == "labels" and isinstance(value, dict):
            out[name] = {k: v for k, v in sorted(value.items()) if isinstance(v, str)}
        elif kind == "set" and isinstance(value, dict):
            out[name] = {k: {} for k in sorted(value)}
        elif kind == list and isinstance(value, list):
            out[name] = [v for v in value if isinstance(v, str)]
        elif isinstance(kind, type) and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            out[name] = value
    return out


def oci_config_json(image: ImageConfig) -> bytes:
    """The SIF ``oci-config.json`` object: the image's ``config``, byte for byte as
    Apptainer writes it (``json.Marshal`` of go-containerregistry's ``v1.Config``)."""
    return marshal(_go_fields(image.config, _GO_CONFIG)).encode()


def write_docker_metadata(rootfs: str | os.PathLike, image: ImageConfig) -> None:
    """Write 10-docker2singularity.sh, the runscript and labels.json; empty hosts/resolv.conf."""
    root = LayerApplier(rootfs, rootless=True)  # only its in-root path resolution is used
    sd = root.directory(".singularity.d/env")
    assert sd is not None
    _write(sd + "/10-docker2singularity.sh", env_script(image.env), 0o755)
    meta = os.path.dirname(sd)
    _write(meta + "/runscript", runscript(image.entrypoint, image.cmd), 0o755)
    _write(meta + "/labels.json", labels_json(image.labels), 0o644)
    etc = root.directory("etc")
    assert etc is not None
    for name in ("hosts", "resolv.conf"):
        _write(etc + "/" + name, "", 0o644)


def _write(path: str, text: str, mode: int) -> None:
    """Atomically replace ``path`` (never following a symlink at ``path``)."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".sbuild-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
