"""Hints for rejected recipes: "did you mean", and the reason behind Apptainer's traps."""

from __future__ import annotations

import difflib
import re

from builder.recipe.model import APP_SECTIONS, HEADER_KEYS, STANDARD_SECTIONS

__all__ = ["HEADER_TITLES", "closest", "section_hint", "header_key_hint", "shell_var_hint"]

HEADER_TITLES = {
    "bootstrap": "Bootstrap", "from": "From", "includecmd": "IncludeCmd",
    "mirrorurl": "MirrorURL", "updateurl": "UpdateURL", "osversion": "OSVersion",
    "include": "Include", "library": "Library", "registry": "Registry",
    "namespace": "Namespace", "stage": "Stage", "product": "Product", "user": "User",
    "regcode": "Regcode", "productpgp": "ProductPGP", "registerurl": "RegisterURL",
    "modules": "Modules", "fingerprints": "Fingerprints", "confurl": "ConfURL",
    "setopt": "SetOpt", "target": "Target", "frontend": "Frontend", "filename": "Filename",
    "buildargs": "BuildArgs",
}


def closest(word: str, choices: list[str] | tuple[str, ...], cutoff: float = 0.6) -> str | None:
    """The choice most like ``word``, if one is close enough."""
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=cutoff)
    return matches[0] if matches else None


def section_hint(line_text: str, name: str) -> str:
    """Why a section line is not a valid section, and what to write instead."""
    stripped = line_text.rstrip("\r\n")
    if stripped and stripped[0] != "%":
        return (
            "start section lines in column 1; if this is script text, note that any line whose "
            "first word begins with '%' ends the section above, so make that word not start "
            "with '%' (e.g. quote it)"
        )
    word = stripped.lstrip("%")
    if word[:1] in (" ", "") or word.startswith("\t"):
        return "write the section name right after '%', e.g. %post"
    if "\t" in name:
        base = name.split("\t", 1)[0]
        return f"separate the section name from its arguments with a space, not a tab: %{base} ..."
    if name.endswith(":") and name[:-1] in STANDARD_SECTIONS + APP_SECTIONS:
        return f"drop the colon: %{name[:-1]}"
    first = name.split(" ", 1)[0]
    if first.lower() in APP_SECTIONS:
        return f"app section names must be lower case: %{first.lower()}"
    if first == "appsetup":
        return "there is no %appsetup: use %appinstall (runs in the container) or %setup"
    if not re.fullmatch(r"[A-Za-z_-]+:?", first):
        return (
            "a line whose first word begins with '%' opens a section, even inside a script; "
            "make this line's first word not start with '%' (e.g. quote it or prefix it with a command)"
        )
    word = first.lower().rstrip(":")
    prefixed = [s for s in STANDARD_SECTIONS if s.startswith(word) or word.startswith(s)]
    guess = prefixed[0] if prefixed else (
        closest(word, STANDARD_SECTIONS) or closest(word, APP_SECTIONS)
    )
    if guess:
        return f"did you mean %{guess}?"
    return "valid sections: " + ", ".join("%" + s for s in STANDARD_SECTIONS + APP_SECTIONS)


def header_key_hint(key: str) -> str:
    """A hint for an unknown header keyword."""
    if key.startswith("\ufeff"):
        return "the file starts with a UTF-8 byte-order mark, which Apptainer rejects: save it without one"
    if key.startswith("%"):
        return "sections start with '%' at the beginning of a line"
    if any(c.isspace() for c in key):
        return (
            "header lines are 'Key: value'; everything before the first %section line is the "
            "header, so commands belong in %post"
        )
    guess = closest(key, [k for k in HEADER_KEYS if k != "otherurl&n"], cutoff=0.7)
    if guess:
        return f"did you mean {HEADER_TITLES.get(guess, guess)}:?"
    return "valid keys: " + ", ".join(HEADER_TITLES.get(k, "OtherURL<N>") for k in HEADER_KEYS)


_SHELL_VAR = re.compile(r"\$\{?([0-9A-Za-z_]+)\}?")


def shell_var_hint(value: str, build_args: set[str]) -> str | None:
    """``${VAR}`` in a header where a build argument VAR exists: suggest ``{{ VAR }}``."""
    for match in _SHELL_VAR.finditer(value):
        if match.group(1) in build_args:
            name = match.group(1)
            return f"headers do not expand shell variables: did you mean {{{{ {name} }}}}?"
    return None
