"""Read a recipe file into a ``Recipe``: split stages, parse, template, parse again.

This is Apptainer's ``MakeAllDefs`` (apptainer-build-spec.md §A.0, §A.9, §A.10): the
file is cut before every line that starts with ``bootstrap:`` (any case); each piece is
parsed as it is (so the untemplated text must already parse), empty pieces are dropped;
then each stage is templated with the user's build arguments and its own ``%arguments``
defaults, and parsed again. The stored recipe (``full_raw``) is the templated stages
joined, without any text before the first ``Bootstrap:``.
"""

from __future__ import annotations

import os
import re

from base.errors import Diagnostic, RecipeError, UsageError
from builder.recipe import gostr
from builder.recipe.args import BuildArgs, read_defaults, template
from builder.recipe.hints import shell_var_hint
from builder.recipe.model import Chunk, Recipe, Stage
from builder.recipe.parser import EmptyStage, parse_definition

__all__ = ["load_recipe", "parse_recipe", "split_chunks", "MAX_RECIPE_BYTES"]

STAGE_START = re.compile(r"^bootstrap:", re.IGNORECASE | re.MULTILINE)
MAX_RECIPE_BYTES = 64 * 1024 * 1024


def load_recipe(path: str | os.PathLike, build_args: BuildArgs | None = None) -> Recipe:
    """Read and parse the recipe at ``path``."""
    name = os.fspath(path)
    try:
        size = os.stat(name).st_size
        if os.path.isdir(name):
            raise UsageError(f"{name} is a directory, not a recipe")
        if size > MAX_RECIPE_BYTES:
            raise RecipeError(Diagnostic(
                name, 1, 1, f"file is {size // (1024 * 1024)} MiB: too large to be a definition file",
            ))
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError(f"reading recipe {name}: {e.strerror or e}") from e
    return parse_recipe(data, path=name, build_args=build_args)


def split_chunks(text: str) -> list[tuple[str, int]]:
    """Apptainer's stage split: (chunk text, first line) for each piece, the first may be ""."""
    starts = [m.start() for m in STAGE_START.finditer(text)]
    bounds = [0, *starts, len(text)]
    chunks = []
    line = 1
    for begin, end in zip(bounds, bounds[1:]):
        piece = text[begin:end]
        chunks.append((piece, line))
        line += piece.count("\n")
    return chunks


def parse_recipe(data: bytes, *, path: str = "<recipe>", build_args: BuildArgs | None = None) -> Recipe:
    """Parse recipe bytes, template each stage, and return the lossless ``Recipe``."""
    build_args = build_args or BuildArgs()
    text = gostr.from_bytes(data)
    try:
        return _parse(text, data, path, build_args)
    except RecipeError as e:
        if _looks_binary(data):
            e.diagnostics[0] = e.diagnostics[0].replace(hint="this looks like a binary file, not a definition file")
            e.hint = e.diagnostics[0].hint
        raise


def _looks_binary(data: bytes) -> bool:
    head = data[:4096]
    return b"\x00" in head or head.decode("utf-8", "replace").count("\ufffd") > len(head) // 20


def _parse(text: str, data: bytes, path: str, build_args: BuildArgs) -> Recipe:
    chunks: list[Chunk] = []
    for piece, first_line in split_chunks(text):
        if not piece:
            continue
        try:
            stage = parse_definition(piece, path=path, first_line=first_line)
        except EmptyStage:
            stage = None
        chunks.append(Chunk(piece, first_line, stage))
    parsed = [c.stage for c in chunks if c.stage is not None]
    if not parsed:
        what = "is empty" if not text.strip() else "holds no header and no section"
        raise RecipeError(Diagnostic(
            path, 1, 1, f"definition file {what}",
            hint="a recipe starts with a header such as 'Bootstrap: docker' and 'From: debian:12'",
        ))
    stages, consumed, warnings = _templated(parsed, build_args, path)
    unused = sorted(set(build_args.values) - consumed)
    if unused:
        message = "build argument(s) not used by this recipe: " + ", ".join(unused)
        if not build_args.warn_unused:
            raise RecipeError(Diagnostic(
                path, 1, 1, message, hint="remove them, or pass --warn-unused-build-args",
            ))
        warnings.append(Diagnostic(path, 1, 1, message))
    full_raw = gostr.to_bytes("".join(s.raw for s in stages))
    for stage in parsed:
        warnings.extend(stage.warnings)
    return Recipe(path, data, chunks, stages, full_raw, dict(build_args.values), _unique(warnings))


def _templated(parsed: list[Stage], build_args: BuildArgs, path: str) -> tuple[list[Stage], set[str], list[Diagnostic]]:
    stages: list[Stage] = []
    consumed: set[str] = set()
    warnings: list[Diagnostic] = []
    for stage in parsed:
        arguments = stage.section("arguments")
        start = arguments.line + 1 if arguments else stage.first_line
        defaults = read_defaults(stage.scripts["arguments"].script, path, start, warnings)
        result = template(stage.raw, build_args.values, defaults, path=path, first_line=stage.first_line)
        consumed |= result.consumed
        if result.text == stage.raw:
            final = stage
        else:
            try:
                final = parse_definition(result.text, path=path, first_line=stage.first_line)
            except EmptyStage:
                raise RecipeError(Diagnostic(
                    path, stage.first_line, 1, "stage is empty once its build arguments are filled in",
                )) from None
        _warn_shell_vars(final, {*build_args.values, *defaults}, path, warnings)
        stages.append(final)
    return stages, consumed, warnings


def _warn_shell_vars(stage: Stage, names: set[str], path: str, warnings: list[Diagnostic]) -> None:
    for entry in stage.header_entries:
        hint = shell_var_hint(entry.value, names)
        if hint:
            warnings.append(Diagnostic(
                path, entry.line, entry.column,
                f"header value {entry.value!r} holds a shell variable, which is not expanded", hint=hint,
            ))


def _unique(warnings: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple] = set()
    out = []
    for w in warnings:
        key = (w.line, w.column, w.message)
        if key not in seen:
            seen.add(key)
            out.append(w)
    return out
