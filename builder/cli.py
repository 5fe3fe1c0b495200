"""The ``sbuild`` command line: argument parsing, dispatch, and the mapping of errors.

This is the one module that prints to the user and decides exit statuses. Every
command lives in a module of its own that exposes ``register(subparsers)``; the
parser it adds sets ``handler`` to a function ``(args) -> int``. Library code below
raises ``SbuildError`` subclasses; they are rendered here.

``sbuild SOURCE TARGET`` (no command word) means ``sbuild build SOURCE TARGET``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from builder.errors import SbuildError

__all__ = ["main", "entry", "COMMANDS"]

log = logging.getLogger("sbuild")

# command word -> module that registers it. Modules are imported when the parser is
# built; they keep heavy imports inside their handlers so that start-up stays fast.
COMMANDS: dict[str, str] = {
    "build": "builder.commands.build",
    "check": "builder.commands.check",
    "inspect": "builder.commands.inspect",
    "image.create": "builder.commands.overlay",
    "overlay": "builder.commands.overlay",
    "pull": "builder.commands.pull",
    "push": "builder.commands.pull",
    "cache": "builder.commands.cache",
    "exec": "runtime.commands",
    "run": "runtime.commands",
    "shell": "runtime.commands",
    "test": "runtime.commands",
    "instance": "runtime.commands",
    "doctor": "runtime.commands",
}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"sbuild: {record.levelname.lower()}: {message}"
        return message


def _configure_logging(verbosity: int) -> None:
    level = {-1: logging.ERROR, 0: logging.INFO, 1: logging.DEBUG}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("sbuild")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class _VersionAction(argparse.Action):
    """``--version``: looks the version up only when asked (importlib.metadata is slow to import)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):  # noqa: A002
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        try:
            from importlib.metadata import version

            text = version("sbuild")
        except Exception:  # not installed (running from a checkout)
            text = "0+unknown"
        print(f"sbuild {text}")
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that command's module is imported and registered."""
    parser = argparse.ArgumentParser(
        prog="sbuild",
        description="Build, convert and run Singularity/Apptainer images.",
        epilog="`sbuild SOURCE TARGET` is short for `sbuild build SOURCE TARGET`.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for module_name in wanted:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue  # a command whose issue has not landed yet
        module.register(sub)
    return parser


def _with_implicit_build(argv: list[str]) -> list[str]:
    """Insert ``build`` when the first word is not a command (``sbuild a.def a.simg``)."""
    if not argv or argv[0] in COMMANDS or argv[0] in ("-h", "--help", "--version"):
        return argv
    return ["build", *argv]


def _verbosity(args: argparse.Namespace) -> int:
    if getattr(args, "quiet", False):
        return -1
    if getattr(args, "verbose", False) or os.environ.get("SBUILD_DEBUG"):
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sbuild command and return its exit status."""
    argv = _with_implicit_build(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(argv[0] if argv else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse reports usage errors by exiting 2
        return int(e.code or 0)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(_verbosity(args))
    try:
        return int(args.handler(args) or 0)
    except SbuildError as e:
        print(_render_error(e), file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("sbuild: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # a bug: say so plainly, show the traceback when asked
        if os.environ.get("SBUILD_DEBUG"):
            raise
        print(f"sbuild: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("  this is a bug in sbuild; rerun with SBUILD_DEBUG=1 for the traceback", file=sys.stderr)
        return 1


def _render_error(error: SbuildError) -> str:
    from builder.errors import RecipeError

    if isinstance(error, RecipeError):
        return error.render()  # already "path:line:col: message"
    return f"sbuild: error: {error.render()}"


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
