"""Parse one build stage exactly as Apptainer's ``ParseDefinitionFile`` does.

Apptainer's scanner cuts the text into a header token and section tokens; the first
token is whitespace-trimmed (so an indented first section works, and a headerless
file's first section loses its trailing newline), later ones are not. Every rejection
becomes a ``RecipeError`` with the file line and a hint; a stage with nothing in it
raises ``EmptyStage``, which the multi-stage split drops silently as Apptainer does.
"""

from __future__ import annotations

from base.errors import Diagnostic, RecipeError
from builder.recipe import gostr
from builder.recipe.header import parse_header
from builder.recipe.hints import section_hint
from builder.recipe.lint import bashism_warnings
from builder.recipe.model import APP_SECTIONS, STANDARD_SECTIONS, FilesBlock, Script, Section, Stage
from builder.recipe.scan import MAX_TOKEN, Token, scan, token_too_long
from builder.recipe.sections import (
    add_script,
    files_args_warning,
    merge_files,
    parse_files,
    parse_labels,
    read_section,
)

__all__ = ["parse_definition", "EmptyStage"]

_APP = frozenset(APP_SECTIONS)
_STANDARD = frozenset(STANDARD_SECTIONS)


class EmptyStage(Exception):
    """The text holds no header, no section content, no labels, files or apps."""

    def __init__(self, first_line: int) -> None:
        super().__init__("empty definition file")
        self.first_line = first_line


def parse_definition(text: str, *, path: str = "<recipe>", first_line: int = 1) -> Stage:
    """Parse one stage's text; ``first_line`` is the file line its text starts on."""
    offset = first_line - 1
    tokens = scan(text)
    if not tokens:
        raise EmptyStage(first_line)
    _check_token_sizes(tokens, text, path, offset)
    warnings: list[Diagnostic] = []
    header, entries = None, []
    sections: list[Section] = []
    first, rest = tokens[0], tokens[1:]
    first_go = gostr.trim_space(first.go)
    if first_go and not first.section:
        header, entries = parse_header(first.lines, path, offset, warnings)
    elif first_go:
        sections.append(_first_section(first, first_go, path, offset, warnings))
    for token in rest:
        sections.append(read_section(token, token.lines[0].go[:-1], token.go.partition("\n")[2], offset, path))
    return _populate(text, first_line, tokens, header, entries, sections, path, warnings)


def _check_token_sizes(tokens: list[Token], text: str, path: str, offset: int) -> None:
    bad = token_too_long(tokens, len(gostr.to_bytes(text)))
    if bad is None:
        return
    token = tokens[bad]
    what = "section" if token.section else "header"
    raise RecipeError(Diagnostic(
        path, token.lines[0].number + offset, 1,
        f"this {what} is too large: Apptainer's parser reads at most {MAX_TOKEN // 1024} KiB "
        "of a section (with the first line of the next one) and rejects the file",
        hint="move long scripts into a file and copy it in with %files, then run it from %post",
    ))


def _first_section(token: Token, trimmed: str, path: str, offset: int, warnings: list[Diagnostic]) -> Section:
    """The first token of a headerless stage: trimmed, so it must have a body line."""
    section_line, sep, body = trimmed.partition("\n")
    number = token.lines[0].number + offset
    if not sep:
        raise RecipeError(Diagnostic(
            path, number, 1,
            f"{section_line.split(' ', 1)[0]} is the first section of a file without a header, and it is empty",
            hint="add a header ('Bootstrap: ...'), or put at least one line in this section",
        ))
    if token.lines[0].go[:1] != "%":
        warnings.append(Diagnostic(
            path, number, 1,
            "indented section line: accepted only because it opens a file without a header",
            hint="start section lines in column 1",
        ))
    return read_section(token, section_line, body, offset, path)


def _populate(
    text: str,
    first_line: int,
    tokens: list[Token],
    header: dict[str, str] | None,
    entries: list,
    sections: list[Section],
    path: str,
    warnings: list[Diagnostic],
) -> Stage:
    scripts: dict[str, Script] = {}
    files: list[FilesBlock] = []
    app_order: list[str] = []
    for section in sections:
        if section.key == "files":
            merge_files(files, parse_files(section, path, warnings))
            note = files_args_warning(section, path)
            if note:
                warnings.append(note)
            continue
        add_script(scripts, section)
        if section.app is not None and section.app not in app_order:
            app_order.append(section.app)
        _warn_script_args(section, path, warnings)
        warnings.extend(bashism_warnings(section, path))
    custom = {key: s.script for key, s in scripts.items() if key not in _STANDARD}
    _reject_invalid_sections(sections, custom, path)
    standard = {name: scripts.get(name, Script()) for name in STANDARD_SECTIONS if name != "files"}
    stage = Stage(
        raw=text, first_line=first_line, tokens=tokens, header=header, header_entries=entries,
        sections=sections, scripts=standard, labels=parse_labels(standard["labels"].script),
        files=files, custom_data=custom or None, app_order=app_order, warnings=warnings, path=path,
    )
    if _is_empty(stage):
        raise EmptyStage(first_line)
    return stage


def _reject_invalid_sections(sections: list[Section], custom: dict[str, str], path: str) -> None:
    invalid = {key for key in custom if key.split(" ", 1)[0] not in _APP}
    if not invalid:
        return
    diagnostics = []
    for section in sections:
        if section.key in invalid:
            line_text = section.token.lines[0].text.rstrip("\r\n")
            column = len(line_text) - len(gostr.trim_left_space(line_text)) + 1
            what = "indented section line" if column > 1 else "invalid section"
            diagnostics.append(Diagnostic(
                path, section.line, column, f"{what} {_shorten(line_text.strip(' '))!r}",
                hint=section_hint(line_text, section.key),
            ))
    raise RecipeError(diagnostics)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _warn_script_args(section: Section, path: str, warnings: list[Diagnostic]) -> None:
    """``%post -c /bin/bash`` runs bash without -e: a failing command does not stop the build."""
    if section.name not in ("pre", "setup", "post") or not section.args:
        return
    params = gostr.fields(section.args.split("#", 1)[0])
    if "-c" not in params:
        return
    rest = params[params.index("-c") + 1:]
    if not rest:
        return  # a build error, reported by the build checks
    errexit = any(
        (p.startswith("-") and not p.startswith("--") and "e" in p[1:])
        or (p == "errexit" and i > 0 and rest[i - 1] == "-o")
        for i, p in enumerate(rest)
    )
    if not errexit:
        interpreter = " ".join(rest)
        warnings.append(Diagnostic(
            path, section.line, 1,
            f"%{section.name} -c {interpreter} runs the script under {interpreter} without -e: "
            "a failing command does not stop the build",
            hint=f"write %{section.name} -c {rest[0]} -e {' '.join(rest[1:])}".rstrip()
            + " to stop at the first failing command",
        ))


def _is_empty(stage: Stage) -> bool:
    return (
        stage.header is None
        and not stage.labels
        and not stage.files
        and stage.custom_data is None
        and not stage.app_order
        and all(s.args == "" and s.script == "" for s in stage.scripts.values())
    )
