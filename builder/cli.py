"""The ``sbuild`` command line: argument parsing, dispatch, and the mapping of errors.

This is the one module that prints to the user and decides exit statuses. Every
command lives in a module of its own that exposes ``register(subparsers, only=None)``
(``only``: the invoked command word, so a module may add just that one); the parser it adds
sets ``handler`` to a function ``(args) -> int``. Library code below raises
``SbuildError`` subclasses; they are rendered here.

``sbuild SOURCE TARGET`` (no command word) means ``sbuild build SOURCE TARGET``.

Start-up cost is part of ``sbuild exec``'s latency, so this module imports neither
argparse nor logging at load time. The runtime's actions take a fast path: their module's
``parse_quick(argv)`` parses the common command lines exactly as argparse would, and
logging is configured only if something imports it. The launcher that ``write_launcher``
installs starts Python without ``site`` (``-S``); every other path loads it first.
"""

from __future__ import annotations

import os
import sys

from base.errors import SbuildError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["main", "entry", "COMMANDS", "build_parser", "write_launcher"]

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
    "exec": "builder.commands.run",
    "run": "builder.commands.run",
    "shell": "builder.commands.run",
    "test": "builder.commands.run",
    "instance": "builder.commands.instance",
    "doctor": "builder.commands.doctor",
}
# commands whose module has ``parse_quick(argv) -> namespace | None`` and imports only the
# standard library (it runs before site-packages are on sys.path)
_QUICK = ("exec", "run", "shell", "test")


def _configure_logging(verbosity: int, module=None) -> None:  # noqa: ANN001
    """Send sbuild's log records to stderr (``module``: the logging module, when it is being
    imported by ``_LoggingOnImport``)."""
    logging = module
    if logging is None:
        import logging

    class Formatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                return f"sbuild: {record.levelname.lower()}: {message}"
            return message

    level = {-1: logging.ERROR, 0: logging.INFO, 1: logging.DEBUG}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Formatter())
    root = logging.getLogger("sbuild")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class _LoggingOnImport:
    """A ``sys.meta_path`` finder that configures sbuild's logger right after the first
    ``import logging`` (which costs ~14 ms: the fast path does not pay it unless it logs)."""

    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity

    def find_spec(self, name: str, path=None, target=None):  # noqa: ANN001
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module) -> None:  # noqa: ANN001
            load(module)
            _configure_logging(self.verbosity, module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _defer_logging(verbosity: int) -> None:
    if "logging" in sys.modules:
        _configure_logging(verbosity)
    else:
        sys.meta_path.insert(0, _LoggingOnImport(verbosity))


def _load_site() -> None:
    """Put site-packages on sys.path when the launcher started Python with ``-S``."""
    if sys.flags.no_site:
        import site

        if site.ENABLE_USER_SITE is None:  # site.main() has not run yet
            site.main()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that command's module is imported and registered."""
    import argparse
    import importlib

    class VersionAction(argparse.Action):
        """``--version``: looks the version up only when asked (importlib.metadata is slow)."""

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

    parser = argparse.ArgumentParser(
        prog="sbuild",
        description="Build, convert and run Singularity/Apptainer images.",
        epilog="`sbuild SOURCE TARGET` is short for `sbuild build SOURCE TARGET`.",
    )
    parser.add_argument("--version", action=VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for module_name in wanted:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue  # a command whose issue has not landed yet
        module.register(sub, only=command if command in COMMANDS else None)
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


def _quick(argv: list[str]):
    if not argv or argv[0] not in _QUICK:
        return None
    return __import__(COMMANDS[argv[0]], fromlist=["parse_quick"]).parse_quick(argv)


def main(argv: Sequence[str] | None = None, *, owns_process: bool = False) -> int:
    """Run one sbuild command and return its exit status.

    ``owns_process``: the process ends when this returns (the console script), so a handler
    may use the process itself (``args.owns_process``; the runtime creates its namespaces in
    it), and after a quick-path command ``main`` ends the process itself (``_exit_now``).
    Never set it when calling ``main`` from a process that goes on.
    """
    argv = _with_implicit_build(list(sys.argv[1:] if argv is None else argv))
    args = _quick(argv)
    quick = args is not None
    if quick:
        _defer_logging(_verbosity(args))
    else:
        _load_site()
        parser = build_parser(argv[0] if argv else None)
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # argparse reports usage errors by exiting 2
            return int(e.code or 0)
        if not getattr(args, "handler", None):
            parser.print_help(sys.stderr)
            return 2
        _configure_logging(_verbosity(args))
    args.owns_process = owns_process
    code = _run(args)
    if quick and owns_process:
        _exit_now(code)
    return code


def _run(args: argparse.Namespace) -> int:
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


def _exit_now(code: int) -> None:
    """End the process without the interpreter's teardown, which frees every module (~5 ms
    of ``sbuild exec``): exit handlers run and output is flushed, nothing else is needed."""
    import atexit

    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - e.g. a closed pipe: let the normal exit deal with it
        return
    os._exit(code)


def _render_error(error: SbuildError) -> str:
    from base.errors import RecipeError

    if isinstance(error, RecipeError):
        return error.render()  # already "path:line:col: message"
    return f"sbuild: error: {error.render()}"


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main(owns_process=True))


_LAUNCHER = '''#!{python} -S
# sbuild's launcher, written by builder.cli.write_launcher (setup.sh) in place of pip's
# console script: Python starts without site (-S) and without pip's `import re`, ~10 ms
# less per command; builder.cli loads site-packages for every command that needs them.
import sys
sys.path.append({root!r})
from builder.cli import entry
entry()
'''


def write_launcher(path: str) -> None:
    """Write the ``sbuild`` launcher script at ``path`` (atomically, mode 0755) for the
    running interpreter and this checkout or install."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = _LAUNCHER.format(python=sys.executable, root=root)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


if __name__ == "__main__":
    entry()
