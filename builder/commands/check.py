"""``sbuild check``: parse and validate recipes without building, for editors and CI.

For each file: the parse (Apptainer's rules), then what a build would reject (a stage
without a header, an unknown or unsupported agent, a missing required header key,
``%files from`` an unknown stage). Problems and warnings go to stderr as
``path:line:col: severity: message``; the status is 0 when every file is valid, 2 otherwise (3 when the recipes are valid
but an agent's host program is missing: the Debian package to install is named).
With ``--json``, stdout gets one line per file: a JSON array with one object per stage in the
schema of Apptainer's parsed definition, printed even when the recipe could not be built
(``null`` when it could not be parsed at all).
"""

from __future__ import annotations

import argparse
import logging
import sys

from builder.commands import add_output_flags

__all__ = ["register", "add_build_arg_flags", "build_args_from"]

log = logging.getLogger("sbuild.check")


def add_build_arg_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="value for a {{ KEY }} build argument (repeatable)")
    parser.add_argument("--build-arg-file", metavar="FILE", help="file of KEY=VALUE lines")
    parser.add_argument("--warn-unused-build-args", action="store_true",
                        help="warn about unused build arguments instead of failing")


def build_args_from(args: argparse.Namespace):  # noqa: ANN201 - BuildArgs, imported lazily
    from builder.recipe import BuildArgs, read_build_args

    notes: list[str] = []
    values = read_build_args(args.build_arg, args.build_arg_file, notes)
    for note in notes:
        log.warning(note)
    return BuildArgs(values, warn_unused=args.warn_unused_build_args)


def register(subparsers: argparse._SubParsersAction, only: str | None = None) -> None:
    parser = subparsers.add_parser(
        "check", help="parse and validate recipes without building",
        description="Parse and validate definition files as a build would, without building.",
    )
    parser.add_argument("recipes", nargs="+", metavar="RECIPE")
    parser.add_argument("--json", action="store_true",
                        help="print each file's parse as Apptainer's parsed-definition JSON")
    add_build_arg_flags(parser)
    add_output_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    build_args = build_args_from(args)
    status = 0
    for path in args.recipes:
        status = max(status, _check_one(path, build_args, args))
    return status


def _check_one(path: str, build_args, args: argparse.Namespace) -> int:  # noqa: ANN001
    from base.errors import RecipeError
    from base.gojson import marshal
    from builder.recipe import load_recipe, to_apptainer_json
    from builder.sources.checks import host_tool_problems, recipe_problems

    try:
        recipe = load_recipe(path, build_args)
    except RecipeError as e:
        print(e.render(), file=sys.stderr)
        if args.json:
            print("null")
        return 2
    if not args.quiet:
        for warning in recipe.warnings:
            print(warning.render("warning"), file=sys.stderr)
    problems = recipe_problems(recipe)
    for problem in problems:
        print(problem.render(), file=sys.stderr)
    missing = [] if problems else host_tool_problems(recipe)  # what the build would refuse with exit 3
    for line in missing:
        print(f"{line.split(': ', 1)[0]}: error: {line.split(': ', 1)[1]}", file=sys.stderr)
    if args.json:
        print(marshal([to_apptainer_json(stage, recipe.full_raw) for stage in recipe.stages]))
    elif not problems and not missing and not args.quiet:
        agents = " -> ".join(stage.bootstrap for stage in recipe.stages)
        print(f"{path}: ok ({len(recipe.stages)} stage{'s' * (len(recipe.stages) > 1)}: {agents})")
    return 2 if problems else 3 if missing else 0
