"""Sections of a stage as Apptainer reads them: names, arguments, ``%files`` and ``%labels``.

Rules (apptainer-build-spec.md §A.4–§A.7): the name is the section line with leading
``%`` removed, lower-cased, up to the first ASCII space (not a tab); the arguments are the
rest, untrimmed; repeated sections concatenate their bodies; app sections are keyed by
``"<word> <app>"`` in the word's original case; ``%files`` sections with the same argument
string merge.
"""

from __future__ import annotations

import re

from base.errors import Diagnostic, RecipeError
from builder.recipe import gostr
from builder.recipe.model import APP_SECTIONS, FileTransfer, FilesBlock, Script, Section
from builder.recipe.scan import Token

__all__ = ["read_section", "parse_files", "parse_labels", "files_lines"]

_APP = frozenset(APP_SECTIONS)

# Apptainer's fileSplitter, with Go RE2's ASCII-only \s and \w spelled out.
_S = r"\t\n\f\r "
_FILE_WORD = re.compile(
    rf"""([^{_S}"']*{{{{[{_S}]*[0-9A-Za-z_]+[{_S}]*}}}}*[^{_S}{{}}"']*)+|([^{_S}"']+|"([^"]*)"|'([^']*))"""
)


def read_section(token: Token, section_line: str, body: str, offset: int, path: str) -> Section:
    """One section token, given its (possibly trimmed) section line and body."""
    number = token.lines[0].number + offset
    end = token.lines[-1].number + offset
    unprefixed = section_line.lstrip("%")
    name = gostr.lower(unprefixed).split(" ", 1)[0]
    if name in _APP:
        parts = unprefixed.split(" ", 2)
        if len(parts) < 2:
            raise RecipeError(Diagnostic(
                path, number, 1, f"app section %{parts[0]} has no app name",
                hint=f"write %{name} NAME",
            ))
        return Section(f"{parts[0]} {parts[1]}", name, None, parts[1], token, body, number, end)
    parts = unprefixed.split(" ", 1)
    args = parts[1] if len(parts) == 2 else None
    return Section(name, name, args, None, token, body, number, end)


def add_script(scripts: dict[str, Script], section: Section) -> None:
    script = scripts.setdefault(section.key, Script())
    if section.args is not None:
        script.args = section.args
    script.script += section.body


def files_lines(body: str) -> list[tuple[int, str]]:
    """The entry lines of a ``%files`` body: (index in the body, trimmed text)."""
    out = []
    lines = gostr.trim_space(body).split("\n")
    skipped = _leading_blank_lines(body)
    for i, raw in enumerate(lines):
        line = gostr.trim_space(raw)
        if line and not line.startswith("#"):
            out.append((i + skipped, line))
    return out


def _leading_blank_lines(body: str) -> int:
    count = 0
    for raw in body.split("\n"):
        if gostr.trim_space(raw):
            break
        count += 1
    return count


def parse_files(section: Section, path: str, warnings: list[Diagnostic]) -> FilesBlock:
    """One ``%files`` section's entries (Apptainer's fileSplitter on each line)."""
    files: list[FileTransfer] = []
    body_first = section.line + 1
    for index, line in files_lines(section.body):
        number = body_first + index
        matched = [m.group(0) for m in _FILE_WORD.finditer(line)]
        if not matched:
            raise RecipeError(Diagnostic(
                path, number, 1, f"%files line {line!r} names no file",
                hint='quote names with spaces in double quotes: "my file" /dest',
            ))
        src = gostr.trim_space(matched[0]).strip('"')
        dst = gostr.trim_space(matched[1]).strip('"') if len(matched) > 1 else ""
        _warn_file_traps(line, matched, path, number, warnings)
        files.append(FileTransfer(src, dst, number))
    args = section.args if section.args is not None else ""
    return FilesBlock(args, files, section.line)


def _warn_file_traps(line: str, matched: list[str], path: str, number: int, warnings: list[Diagnostic]) -> None:
    if "'" in line:
        warnings.append(Diagnostic(
            path, number, line.index("'") + 1,
            "single quotes do not group words in %files: the quote characters stay in the names",
            hint='use double quotes: "my file" /dest',
        ))
    elif len(matched) > 1 and matched[1].startswith("#"):
        warnings.append(Diagnostic(
            path, number, line.index("#") + 1,
            f"'#' does not start a comment inside a %files line: {matched[1]!r} is taken as the destination",
            hint="put comments on lines of their own",
        ))
    elif len(matched) > 2:
        warnings.append(Diagnostic(
            path, number, 1,
            f"%files line has {len(matched)} words; only the first two (source, destination) are used",
            hint='quote names with spaces in double quotes',
        ))


def merge_files(blocks: list[FilesBlock], block: FilesBlock) -> None:
    """Append to the block with the same argument string, or add a new one."""
    for existing in blocks:
        if existing.args == block.args:
            existing.files.extend(block.files)
            return
    blocks.append(block)


def parse_labels(text: str) -> dict[str, str]:
    """Apptainer's GetLabels: ``key value`` per line, split on the first ASCII space."""
    labels: dict[str, str] = {}
    for raw in gostr.trim_space(text).split("\n"):
        line = gostr.trim_space(raw)
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        labels[gostr.trim_space(key)] = gostr.trim_space(value)
    return labels


def files_args_warning(section: Section, path: str) -> Diagnostic | None:
    """Apptainer silently ignores a %files section whose arguments are not '' or 'from STAGE'."""
    args = (section.args or "").split("#", 1)[0]
    words = gostr.fields(args)
    if len(words) in (0, 2):
        if len(words) == 2 and words[0] != "from":
            return Diagnostic(
                path, section.line, 1,
                f"%files {words[0]} {words[1]} copies from stage {words[1]!r}: "
                f"Apptainer ignores the word {words[0]!r}",
                hint=f"write %files from {words[1]}",
            )
        return None
    return Diagnostic(
        path, section.line, 1,
        f"this %files section is ignored by Apptainer: its arguments {args.strip()!r} are "
        "neither empty nor 'from STAGE'",
        hint="use '%files' to copy from the host, or '%files from STAGE'",
    )
