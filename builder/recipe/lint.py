"""Bash-only syntax in sections that run under ``/bin/sh`` (a warning, never an error).

Apptainer runs ``%post`` and ``%test`` with the image's ``/bin/sh`` and ``%pre`` and
``%setup`` with the host's, unless ``-c`` names another interpreter, and writes
``%runscript``/``%startscript``/``%test`` (and the app ones) behind ``#!/bin/sh`` unless
they start with their own ``#!``. On Debian and Ubuntu that shell is dash: ``source``, ``[[``, ``function f``,
arrays, ``&>``, ``<<<``, ``pushd`` fail there ("source: not found"), one of the most
asked-about build failures. This finds the common ones, outside comments, quoted strings
(also across lines) and here-documents, and names the first line of each kind.

``%environment`` is not checked: Apptainer sources it with its built-in interpreter,
which accepts bash syntax.

Limits: a line-based look, not a shell parser. An image whose /bin/sh is bash (RHEL,
Fedora), or busybox's ash, which knows some of these, runs such scripts: a warning, so.
"""

from __future__ import annotations

import re

from base.errors import Diagnostic

__all__ = ["bashism_warnings"]

_SH_SECTIONS = {"pre", "setup", "post", "test", "runscript", "startscript",
                "appinstall", "apprun", "apptest", "appstart"}
_HOST_SECTIONS = {"pre", "setup"}
_ARGS_SECTIONS = {"pre", "setup", "post", "test"}  # -c INTERPRETER chooses the shell
_SHEBANG_SECTIONS = {"runscript", "startscript", "test", "apprun", "apptest", "appstart"}
_SH_NAMES = {"sh", "dash", "ash", "busybox"}

_KINDS = (
    ("source", re.compile(r"(?:^\s*|[;&|({]\s*|\b(?:then|do|else)\s+)source\s+\S"), "`source FILE`", "use `. FILE`"),
    ("[[", re.compile(r"(?:^|[\s;&|(!])\[\[\s"), "`[[ … ]]`", "use `[ … ]`"),
    ("function", re.compile(r"^\s*function\s+[A-Za-z_][\w-]*"), "`function NAME`", "write `NAME() { … }`"),
    ("&>", re.compile(r"(?<![0-9>&])&>(?!&)"), "`&>`", "write `>FILE 2>&1`"),
    ("<<<", re.compile(r"<<<"), "a here-string `<<<`", "pipe with `printf '%s\\n' … |`"),
    ("array", re.compile(r"(?:^|[\s;&])[A-Za-z_]\w*\+?=\("), "an array", "use positional parameters or a loop"),
    ("pushd", re.compile(r"(?:^|[\s;&|])(?:pushd|popd)(?:\s|$)"), "`pushd`/`popd`", "use `cd` (in a subshell)"),
    ("echo -e", re.compile(r"(?:^|[\s;&|])echo\s+-e\s"), "`echo -e`", "use `printf` (dash's echo prints -e)"),
)
_WORDS = ("source", "[[", "function", "&>", "<<<", "=(", "pushd", "popd", "echo")  # in every match
_SPECIAL = re.compile(r"['\"\\\\#]")
_CLOSE = {"'": re.compile(r"[^']*'"), '"': re.compile(r'(?:[^"\\]|\\.)*"')}
_HEREDOC = re.compile(r"<<(-?)\s*\\?(['\"]?)([A-Za-z_][\w.-]*)\2")


def _strip(text: str, quote: str | None) -> tuple[str, str | None]:
    """``text`` without its quoted strings (each left as ``''``) and its comment; ``quote``
    is the quote still open from the line before, and the one open after this line."""
    if quote is None and not _SPECIAL.search(text):
        return text, None  # most lines: nothing to strip
    out: list[str] = []
    i = 0
    while i < len(text):
        if quote is not None:  # inside a string: find where it closes
            end = _CLOSE[quote].match(text, i)
            if end is None:
                return "".join(out), quote
            out.append("''")
            quote, i = None, end.end()
            continue
        m = _SPECIAL.search(text, i)
        if m is None:
            out.append(text[i:])
            break
        j = m.start()
        out.append(text[i:j])
        c = text[j]
        if c == "#" and (j == 0 or text[j - 1] in " \t;&|("):
            break  # a comment
        if c == "\\":
            out.append(text[j:j + 2])
            i = j + 2
        elif c == "#":
            out.append(c)
            i = j + 1
        else:
            quote, i = c, j + 1
    return "".join(out), quote


def _interpreter(args: str | None) -> str | None:
    """The ``-c`` interpreter's file name, or None when the section has none."""
    params = (args or "").split("#", 1)[0].split()
    if "-c" in params and params.index("-c") + 1 < len(params):
        return params[params.index("-c") + 1].rsplit("/", 1)[-1]
    return None


def _runs_under_sh(section) -> bool:  # noqa: ANN001
    if section.name not in _SH_SECTIONS:
        return False
    if section.name in _ARGS_SECTIONS:
        interpreter = _interpreter(section.args)
        if interpreter is not None:
            return interpreter in _SH_NAMES
    if section.name in _SHEBANG_SECTIONS:
        first = next((line.strip() for line in section.body.splitlines() if line.strip()), "")
        if first.startswith("#!"):
            words = [w.rsplit("/", 1)[-1] for w in first[2:].split()]
            if words[:1] == ["env"]:
                words = words[1:]
            return not words or words[0] in _SH_NAMES
    return True


def _code_lines(section):  # noqa: ANN001, ANN202
    """(file line number, code) for the body's lines outside here-documents, with comments
    and quoted strings removed."""
    lines = section.token.lines
    base = section.line - lines[0].number
    ending: tuple[str, bool] | None = None
    quote: str | None = None
    for line in lines[1:]:
        text = line.text.rstrip("\r\n")
        if ending is not None:
            word, dash = ending
            if (text.lstrip("\t") if dash else text) == word:
                ending = None
            continue
        if quote is None and "<<" in text:
            doc = _HEREDOC.search(text.replace("<<<", ""))
            if doc is not None:  # the body, from the next line on, is data
                ending = (doc.group(3), doc.group(1) == "-")
        code, quote = _strip(text, quote)
        yield base + line.number, code


def bashism_warnings(section, path: str) -> list[Diagnostic]:  # noqa: ANN001
    """One warning per kind of bash-only syntax in ``section``, at its first line."""
    if not _runs_under_sh(section):
        return []
    found: dict[str, tuple[int, str, str]] = {}
    for number, code in _code_lines(section):
        if not any(word in code for word in _WORDS):
            continue
        for kind, pattern, what, instead in _KINDS:
            if kind not in found and pattern.search(code):
                found[kind] = (number, what, instead)
    where = f"%{section.name}" + (f" {section.app}" if section.app else "")
    if section.name in _ARGS_SECTIONS:
        fix = f", or run the section with bash: %{section.name} -c /bin/bash -e"
    elif section.name in _SHEBANG_SECTIONS:
        fix = ", or run the section with bash: make #!/bin/bash its first line"
    else:
        fix = ", or move it to a script that %post runs with bash"  # %appinstall: part of %post
    whose = "the host's" if section.name in _HOST_SECTIONS else "the image's"
    return [Diagnostic(path, number, 1,
                       f"{what} is bash syntax, but {where} runs under {whose} /bin/sh "
                       "(dash on Debian and Ubuntu, where it fails)",
                       hint=instead + fix)
            for number, what, instead in sorted(found.values())]
