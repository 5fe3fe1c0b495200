"""Build arguments: ``--build-arg K=V``, ``--build-arg-file F``, ``%arguments`` defaults, and
the ``{{ name }}`` templating of a stage (apptainer-build-spec.md §A.10).

- Values come from the user map first, then the stage's ``%arguments`` defaults; a name
  found in neither is an error. A value is expanded one more level (``{{ y }}`` inside it).
- An occurrence on a "commented" line is left alone: Apptainer looks at the text from the
  line start (or the previous substitution) up to the occurrence and skips it when that
  text holds ``#`` followed by any character but ``!``.
- A user argument that no stage consumed is an error unless unused arguments only warn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from base.errors import Diagnostic, RecipeError, UsageError
from builder.recipe import gostr
from builder.recipe.hints import closest

__all__ = ["BuildArgs", "read_build_args", "read_defaults", "template", "TemplateResult"]

# Go RE2's \s is ASCII [\t\n\f\r ] and \w is [0-9A-Za-z_].
BUILD_VAR = re.compile(r"\{\{[\t\n\f\r ]*([0-9A-Za-z_]+)[\t\n\f\r ]*\}\}")
_COMMENTED = re.compile(r"#[^!]")


@dataclass(frozen=True)
class BuildArgs:
    """The user's build arguments and whether unused ones only warn."""

    values: dict[str, str] = field(default_factory=dict)
    warn_unused: bool = False


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ValueError(f"{text!r} is not a key=value pair")
    key, _, value = text.partition("=")
    key = gostr.trim_space(key)
    if not key:
        raise ValueError(f"missing key portion in {text!r}")
    return key, gostr.trim_space(value)


def read_build_args(cli: list[str], arg_file: str | None, warnings: list[str]) -> dict[str, str]:
    """The user map: the file's ``k=v`` lines, then ``--build-arg`` values (which win)."""
    values: dict[str, str] = {}
    if arg_file:
        try:
            text = gostr.from_bytes(Path(arg_file).read_bytes())
        except OSError as e:
            raise UsageError(f"reading build-arg file {arg_file}: {e.strerror}") from e
        for number, line in enumerate(text.split("\n"), 1):
            line = line[:-1] if line.endswith("\r") else line
            if not gostr.trim_space(line):
                continue
            try:
                key, value = _key_value(line)
            except ValueError as e:
                warnings.append(f"{arg_file}:{number}: skipping line: {e}")
                continue
            values[key] = value
    for arg in cli:
        try:
            key, value = _key_value(arg)
        except ValueError as e:
            raise UsageError(f"--build-arg {arg!r}: {e}", hint="write --build-arg NAME=VALUE") from e
        values[key] = value
    return values


def read_defaults(arguments: str, path: str, first_line: int, warnings: list[Diagnostic]) -> dict[str, str]:
    """The ``%arguments`` defaults of one stage: ``k=v`` lines, quotes kept."""
    defaults: dict[str, str] = {}
    for index, raw in enumerate(arguments.split("\n")):
        text = gostr.trim_space(raw[:-1] if raw.endswith("\r") else raw)
        if not text or text.startswith("#"):
            continue
        try:
            key, value = _key_value(text)
        except ValueError as e:
            warnings.append(Diagnostic(path, first_line + index, 1, f"%arguments line skipped: {e}"))
            continue
        defaults[key] = value
    return defaults


@dataclass
class TemplateResult:
    text: str
    consumed: set[str]


def template(
    text: str, user: dict[str, str], defaults: dict[str, str], *, path: str, first_line: int
) -> TemplateResult:
    """Replace ``{{ name }}`` in one stage's text as Apptainer's build does."""
    out: list[str] = []
    consumed: set[str] = set()
    done = 0
    for match in BUILD_VAR.finditer(text):
        start = match.start()
        newline = text.rfind("\n", done, start + 1)
        if _COMMENTED.search(text, newline if newline != -1 else done, start):
            continue
        name = match.group(1)
        value = user.get(name, defaults.get(name))
        if value is None:
            raise RecipeError(_undefined(text, match, user, defaults, path, first_line))
        out.append(text[done:start])
        out.append(_expand_once(value, user, defaults))
        consumed.add(name)
        done = match.end()
    out.append(text[done:])
    return TemplateResult("".join(out), consumed)


def _expand_once(value: str, user: dict[str, str], defaults: dict[str, str]) -> str:
    expanded = value
    for inner in BUILD_VAR.finditer(value):
        name = inner.group(1)
        if name in user:
            expanded = expanded.replace(inner.group(0), user[name])
        elif name in defaults:
            expanded = expanded.replace(inner.group(0), defaults[name])
    return expanded


def _undefined(text, match, user, defaults, path, first_line) -> Diagnostic:  # noqa: ANN001
    name = match.group(1)
    before = text[: match.start()]
    line = first_line + before.count("\n")
    column = match.start() - (before.rfind("\n") + 1) + 1
    guess = closest(name, sorted({*user, *defaults}))
    hint = f"did you mean {{{{ {guess} }}}}?" if guess else (
        f"pass --build-arg {name}=VALUE, or give it a default in %arguments ({name}=VALUE)"
    )
    return Diagnostic(path, line, column, f"build argument {name!r} has no value", hint=hint)
