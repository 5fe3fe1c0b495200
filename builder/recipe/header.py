"""The header of a stage: ``Key: value`` lines, as Apptainer reads them.

Rules (apptainer-build-spec.md §A.3): blank and ``#``-led lines are skipped; a ``#``
anywhere else cuts the line; the key is lower-cased, the value trimmed; a value ending in
``\\`` continues on the next line with no separator (and a final ``\\n`` there becomes a
newline); an unknown key is an error; a duplicate key overwrites.

Where Apptainer panics (a blank or comment line while a continuation is pending) this
raises a located ``RecipeError``. Traps it accepts silently get warnings: a ``#`` glued to
a value (``From: repo#tag`` means ``From: repo``), a duplicate key, a continuation left
open at the end of the header.
"""

from __future__ import annotations

import re

from base.errors import Diagnostic, RecipeError
from builder.recipe import gostr
from builder.recipe.hints import header_key_hint
from builder.recipe.model import HEADER_KEYS, HeaderEntry
from builder.recipe.scan import Line

__all__ = ["parse_header", "is_valid_key"]

_VALID = frozenset(HEADER_KEYS)
_TRAILING_DIGITS = re.compile(r"[0-9]+$")


def is_valid_key(key: str) -> bool:
    if key in _VALID:
        return True
    numbered = _TRAILING_DIGITS.sub("&n", key)
    return numbered != key and numbered in _VALID


def _column(text: str) -> int:
    return len(text) - len(gostr.trim_left_space(text)) + 1


class _Continuation:
    """The key and value of a header line that ended in a backslash."""

    def __init__(self) -> None:
        self.key = ""
        self.value = ""
        self.line = 0
        self.entry_line = 0
        self.entry_column = 1


def parse_header(
    lines: tuple[Line, ...], path: str, offset: int, warnings: list[Diagnostic]
) -> tuple[dict[str, str] | None, list[HeaderEntry]]:
    """Parse the header lines of one stage; ``offset`` turns stage lines into file lines."""
    header: dict[str, str] = {}
    entries: list[HeaderEntry] = []
    cont = _Continuation()
    for line in _trimmed_span(lines):
        number = line.number + offset
        text = gostr.trim_space(line.go)
        if text == "" or text.startswith("#"):
            if cont.key:
                raise RecipeError(Diagnostic(
                    path, number, 1,
                    f"{'blank' if not text else 'comment'} line inside the continued value of header key {cont.key!r}",
                    hint=f"remove this line, or the trailing backslash on line {cont.line}",
                ))
            continue
        cut = text.split("#", 1)[0]
        if "#" in text:
            _warn_cut(text, cut, path, number, line, warnings)
        if cont.value == "":
            key_part, sep, value = cut.partition(":")
            if not sep:
                raise RecipeError(Diagnostic(
                    path, number, _column(line.go), f"header line {_shorten(cut)!r} has no ':' (expected 'Key: value')",
                    hint=_no_colon_hint(cut),
                ))
            key, value = gostr.lower(gostr.trim_space(key_part)), gostr.trim_space(value)
            entry_line, entry_column = number, _column(line.go)
        else:
            key, value = cont.key, cont.value + gostr.trim_space(cut)
            entry_line, entry_column = cont.entry_line, cont.entry_column
            cont.key = cont.value = ""
        if value.endswith("\\"):
            cont.key, cont.value, cont.line = key, value[:-1], number
            cont.entry_line, cont.entry_column = entry_line, entry_column
            if cont.value.endswith("\\n"):
                cont.value = cont.value[:-2] + "\n"
            continue
        if not is_valid_key(key):
            raise RecipeError(Diagnostic(
                path, entry_line, entry_column, f"invalid header keyword {_shorten(key)!r}",
                hint=header_key_hint(key),
            ))
        if key in header and header[key] != value:
            warnings.append(Diagnostic(
                path, entry_line, entry_column,
                f"header key {key!r} given again: this value replaces {header[key]!r}",
            ))
        header[key] = value
        entries.append(HeaderEntry(key, value, entry_line, entry_column))
    if cont.value:
        warnings.append(Diagnostic(
            path, cont.line, 1,
            f"header ends inside the continued value of {cont.key!r}: Apptainer drops that key",
            hint="remove the trailing backslash",
        ))
    return (header or None), entries


def _trimmed_span(lines: tuple[Line, ...]) -> tuple[Line, ...]:
    """The lines from the first to the last that are not blank (Go trims the token)."""
    keep = [i for i, line in enumerate(lines) if gostr.trim_space(line.go)]
    return lines[keep[0]: keep[-1] + 1] if keep else ()


def _warn_cut(text: str, cut: str, path: str, number: int, line: Line, warnings: list[Diagnostic]) -> None:
    if cut and not gostr.is_space(cut[-1]) and ":" in cut:
        column = _column(line.go) + len(cut)
        rest = text[len(cut):]
        warnings.append(Diagnostic(
            path, number, column,
            f"'#' starts a comment in a header, even inside a value: {rest!r} is ignored",
            hint=f"the value is {gostr.trim_space(cut.partition(':')[2])!r}; "
            "put a space before '#' if a comment is meant",
        ))


def _no_colon_hint(text: str) -> str:
    if text.startswith("\ufeff"):
        return "the file starts with a UTF-8 byte-order mark, which Apptainer rejects: save it without one"
    words = text.split()
    if words and gostr.lower(words[0]) in _VALID:
        return f"write '{words[0]}: {' '.join(words[1:])}'"
    return (
        "header lines are 'Key: value'; everything before the first %section line "
        "is the header, so commands belong in %post"
    )


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
