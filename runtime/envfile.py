"""``--env-file``: the variables a POSIX-shell file assigns, read without running anything.

Apptainer runs the file with ``set -a`` in its embedded interpreter, where running commands
or opening files is an error, and keeps the variables it assigned. This reads the same
subset of the language: ``NAME=VALUE`` and ``export NAME=VALUE`` lines (several
assignments on one line too), ``#`` comments, single quotes (literal), double quotes and
bare words with ``$NAME``/``${NAME}`` expanded from the variables assigned so far, then the
host's (``environ``), and backslash escapes. A command, ``$(...)`` or a backquote is a
``UsageError``, as Apptainer refuses them. EUID, GID, HOME, IFS, OPTIND, PWD and UID are
not taken. Limits: no ``${NAME:-default}`` forms, no line continuations inside quotes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from base.errors import UsageError

__all__ = ["read_env_file"]

_SKIPPED = {"EUID", "GID", "HOME", "IFS", "OPTIND", "PWD", "UID"}
_NAME = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _expand(text: str, i: int, scope: Mapping[str, str], where: str) -> tuple[str, int]:
    """The value of the ``$`` reference at ``text[i]``; the index after it."""
    if text.startswith("$(", i) or text.startswith("$((", i):
        raise UsageError(f"{where}: running commands is not allowed in an environment file")
    if text.startswith("${", i):
        end = text.find("}", i)
        name = text[i + 2:end] if end > 0 else ""
        if not name or not set(name) <= _NAME:
            raise UsageError(f"{where}: unsupported expansion {text[i:end + 1] or text[i:]!r}")
        return scope.get(name, ""), end + 1
    j = i + 1
    while j < len(text) and text[j] in _NAME:
        j += 1
    return (scope.get(text[i + 1:j], "") if j > i + 1 else "$"), j


def _word(text: str, i: int, scope: Mapping[str, str], where: str) -> tuple[str, int]:
    """One shell word starting at ``text[i]``: its value and the index after it."""
    out, quote = [], None
    while i < len(text):
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = None
            else:
                out.append(c)
            i += 1
        elif c == "`":
            raise UsageError(f"{where}: running commands is not allowed in an environment file")
        elif c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif c == "$":
            value, i = _expand(text, i, scope, where)
            out.append(value)
        elif c == '"':
            quote = None if quote == '"' else '"'
            i += 1
        elif quote is None and c == "'":
            quote = "'"
            i += 1
        elif quote is None and (c.isspace() or c in ";&|<>()"):
            break
        else:
            out.append(c)
            i += 1
    if quote:
        raise UsageError(f"{where}: unterminated quote")
    return "".join(out), i


def _line(text: str, scope: dict[str, str], where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    i = 0
    while i < len(text):
        while i < len(text) and (text[i].isspace() or text[i] == ";"):
            i += 1
        if i >= len(text) or text[i] == "#":
            break
        if text.startswith("export", i) and (i + 6 == len(text) or text[i + 6].isspace()):
            i += 6
            continue
        eq = text.find("=", i)
        name = text[i:eq] if eq > i else ""
        if not name or not set(name) <= _NAME or name[0].isdigit():
            raise UsageError(f"{where}: only variable assignments are allowed in an environment file")
        value, i = _word(text, eq + 1, scope, where)
        scope[name] = found[name] = value
    return found


def read_env_file(path: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables ``path`` assigns, in order (later assignments win)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UsageError(f"reading environment file {path}: {(e.strerror or str(e)).lower()}") from e
    scope = dict(os.environ if environ is None else environ)
    out: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        out.update(_line(line, scope, f"{path}:{number}"))
    return {k: v for k, v in out.items() if k not in _SKIPPED}
