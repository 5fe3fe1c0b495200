"""The command line: argument parsing, dispatch, and the mapping of errors.

The one module that prints to the user and decides exit statuses. Each command's module
exposes ``register(subparsers, only=None)`` (``only``: the invoked word, so it may add just
that one), whose parser sets ``handler`` to ``(args) -> int``. Library code raises
``SbuildError`` subclasses; they are rendered here.

The program answers to the name it was called by. Under ``apptainer``/``singularity`` it is
Apptainer 1.5's command line (``builder.commands.compat``, ``builder.commands.flags``):
global flags before the command, env twins, parsing that stops at the first positional,
``Error for command "x": …`` and exit 1 for usage errors, ``INFO:    ``/``FATAL:   ``
messages and 255 for failures. ``run-singularity IMAGE ARGS`` (a ``.simg``'s interpreter) is
``singularity run IMAGE ARGS``. Under ``sbuild``: argparse's messages and exit 2 for usage
errors, ``sbuild: error: …`` and ``base.errors``' statuses, ``check``/``doctor``, and
``sbuild SOURCE TARGET`` for ``sbuild build SOURCE TARGET`` unless a word looks like a command
(Apptainer's global flags are read when a command word follows them).
An unknown command is an error with a "did you mean" under every name, never a build.

Start-up cost is part of ``exec``'s latency: no argparse, logging, base.errors or ``os`` at load
time (``base.lean_os``); ``parse_quick`` reads the actions' usual command lines as argparse would.
"""

from __future__ import annotations

import sys

from base import lean_os as os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from base.errors import SbuildError
    from collections.abc import Sequence

__all__ = ["main", "entry", "COMMANDS", "build_parser"]

# command word -> the module that registers it (imported when the parser is built: heavy imports in handlers)
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
    "sign": "builder.commands.sign",
    "verify": "builder.commands.verify",
    "key": "builder.commands.key",
    "keys": "builder.commands.key",  # (Apptainer's alias)
    "version": "builder.commands.compat",
    "help": "builder.commands.compat",
    "run-help": "builder.commands.compat",
    # Apptainer's commands that this sbuild lacks: a clear error (builder.commands.compat.UNAVAILABLE)
    **dict.fromkeys(("remote", "plugin", "capability", "config", "oci",
                     "checkpoint", "delete", "search", "keyserver", "registry", "sif"), "builder.commands.compat"),
}
_COMPAT, _SBUILD_ONLY = ("apptainer", "singularity"), ("check", "doctor")
_OWN_PARSING = ("exec", "run", "shell", "test", "instance")  # stop argparse at their first positional themselves
# commands whose module has ``parse_quick(argv) -> namespace | None`` and imports only the
# standard library (it runs before site-packages are on sys.path)
_QUICK = ("exec", "run", "shell", "test")


def _configure_logging(level: int, module=None, style=None) -> None:  # noqa: ANN001
    """Send sbuild's log records at ``level`` and above to stderr (``module``: the logging
    module, when it is being imported by ``_LoggingOnImport``; ``style``: ``leading.Style``)."""
    logging = module or __import__("logging")

    class Formatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            message = record.getMessage()
            if style is not None:
                return style.line(record.levelno, message, where=record.funcName)
            return f"sbuild: {record.levelname.lower()}: {message}" if record.levelno >= logging.WARNING else message

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Formatter())
    root = logging.getLogger("sbuild")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class _LoggingOnImport:
    """A ``sys.meta_path`` finder that configures sbuild's logger right after the first
    ``import logging`` (which costs ~14 ms: the fast path does not pay it unless it logs)."""

    def __init__(self, level: int, style) -> None:  # noqa: ANN001
        self.level, self.style = level, style

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
            _configure_logging(self.level, module, self.style)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _defer_logging(level: int, style) -> None:  # noqa: ANN001
    if "logging" in sys.modules:
        _configure_logging(level, style=style)
    else:
        sys.meta_path.insert(0, _LoggingOnImport(level, style))


def build_parser(command: str | None = None, name: str = "sbuild") -> argparse.ArgumentParser:
    """The parser for the program ``name``; with ``command``, only that command's module is
    imported and registered."""
    import importlib

    from builder.commands.compat import add_global_flags, version_action
    from builder.commands.flags import parser_class

    compat = name in _COMPAT
    parser = parser_class(name, raising=compat)(
        prog=name,
        description="Build, convert and run Singularity/Apptainer images"
                    + (" (sbuild, as Apptainer's command line)." if compat else "."),
        epilog=None if compat else "`sbuild SOURCE TARGET` is short for `sbuild build SOURCE TARGET`.",
    )
    parser.add_argument("--version", action=version_action(name), help="print the version and exit")
    if compat:
        add_global_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    hidden = _SBUILD_ONLY if compat else ()
    wanted = [COMMANDS[command]] if command in COMMANDS else list(
        dict.fromkeys(m for word, m in COMMANDS.items() if word not in hidden))
    for module_name in wanted:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue  # a command whose issue has not landed yet
        module.register(sub, only=command if command in COMMANDS else None)
    return parser


def _program(argv0: str) -> str:
    name = os.path.basename(argv0)
    return name if name in (*_COMPAT, "run-singularity") else "sbuild"


def _with_implicit_build(argv: list[str], base: int) -> tuple[list[str], bool, int]:
    """Global flags before a command (``sbuild -d exec``), else ``sbuild a.def a.simg``: ``build``
    when the first word is not a command nor looks like one (``main`` checks both arguments)."""
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        from builder.commands.leading import sbuild_globals

        argv, base = sbuild_globals(argv, COMMANDS, base)
    if not argv or argv[0] in COMMANDS or argv[0] in ("-h", "--help", "--version"):
        return argv, False, base
    from builder.commands.compat import commandlike

    if not argv[0].startswith("-") and commandlike(argv[0], COMMANDS):
        return argv, False, base  # an unknown command, never a build
    return ["build", *argv], True, base


def _level(args: argparse.Namespace, base: int) -> int:
    """The logging level: the command's -v/-q (or SBUILD_DEBUG) over the global one."""
    if getattr(args, "verbose", False) or os.environ.get("SBUILD_DEBUG"):
        return 10
    return max(base, 40) if getattr(args, "quiet", False) else base


def _quick(argv: list[str]):
    if not argv or argv[0] not in _QUICK:
        return None
    return __import__(COMMANDS[argv[0]], fromlist=["parse_quick"]).parse_quick(argv)


def _globals(argv: list[str]):  # noqa: ANN202
    """Apptainer's global flags off the front of ``argv``: (the rest, the logging level, the
    message style, whether --version was asked); the env twins' notes are printed."""
    from builder.commands.leading import Style, parse_globals

    rest, level, values, notes = parse_globals(argv)
    style = Style(debug=bool(values.get("debug")), nocolor=bool(values.get("nocolor")))
    for levelno, text in notes:
        if levelno >= level:
            print(style.line(levelno, text), file=sys.stderr)
    return rest, level, style, bool(values.get("version"))


def main(argv: Sequence[str] | None = None, *, owns_process: bool = False, prog: str | None = None) -> int:
    """Run one command and return its exit status.

    ``prog``: the name the program was called by (default: ``sys.argv[0]`` when ``argv`` is
    None, else ``sbuild``). ``owns_process``: the process ends when this returns (the console
    script), so a handler may use the process itself (``args.owns_process``; the runtime
    creates its namespaces in it), and after a quick-path command ``main`` ends the process
    itself (``_exit_now``). Never set it when calling ``main`` from a process that goes on.
    """
    name = _program(prog if prog is not None else sys.argv[0] if argv is None else "sbuild")
    argv = list(sys.argv[1:] if argv is None else argv)
    if name == "run-singularity":  # `./image.simg ARGS`: the kernel runs `run-singularity ./image.simg ARGS`
        name, argv = "singularity", ["run", *argv]
    prepared = _prepare(argv, name)
    if isinstance(prepared, int):
        return prepared
    argv, base, style, implicit = prepared
    args = _quick(argv)
    quick = args is not None
    if quick:
        _defer_logging(_level(args, base), style)
    else:
        args = _parse(argv, name, implicit)
        if isinstance(args, int):
            return args
        _configure_logging(_level(args, base), style=style)
    args.owns_process, args.program = owns_process, name
    code = _run(args, style)
    if quick and owns_process:
        _exit_now(code)
    return code


def _prepare(argv: list[str], name: str):  # noqa: ANN202
    """Before dispatch: the global flags, ``help CMD``, the implicit build, unknown and
    unavailable commands. ``(argv, level, style, implicit)``, or the exit status."""
    base, style, implicit = 20, None, False
    if name in _COMPAT:
        from builder.commands.leading import Style

        try:
            argv, base, style, version = _globals(argv)
        except Exception as e:  # (base.errors is imported only when one is raised: start-up cost)
            if not _is_sbuild_error(e):
                raise
            return _fail(e, Style())
        if version:
            from builder.commands.compat import version_line

            print(version_line(name, long=True))
            return 0
    asks_help = argv[1:] in (["-h"], ["--help"])
    if argv[:1] == ["help"] and not asks_help:
        argv = [*argv[1:], "--help"]
    if name == "sbuild":
        argv, implicit, base = _with_implicit_build(argv, base)
    known = [w for w in COMMANDS if name == "sbuild" or w not in _SBUILD_ONLY]
    if argv and not argv[0].startswith("-") and argv[0] not in known:
        return _unknown(name, argv[0], known)
    word = argv[0] if argv else ""
    if COMMANDS.get(word) == "builder.commands.compat" and not asks_help and word not in ("version", "run-help"):
        from builder.commands.compat import unavailable

        return _fail(unavailable(word), style)
    return argv, base, style, implicit


def _parse(argv: list[str], name: str, implicit: bool):  # noqa: ANN202
    """argparse's namespace for ``argv``, or the exit status of a usage error or --help."""
    from builder.commands.flags import CommandLineError, leaf_parser, non_interspersed

    from base import sitepackages

    sitepackages.load()
    parser = build_parser(argv[0] if argv else None, name)
    try:
        if name in _COMPAT and argv and argv[0] not in _OWN_PARSING:
            argv = non_interspersed(parser, argv)
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the command they were given to, as Apptainer does
            unknown = "unknown flag: " if name in _COMPAT and extra[0].startswith("-") else "unrecognized arguments: "
            leaf_parser(parser, argv).error(unknown + " ".join(extra))
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except CommandLineError as e:
        from builder.commands.compat import usage_error

        return _emit(*usage_error(e, name))
    if not getattr(args, "handler", None):
        if name in _COMPAT:
            parser.print_help(sys.stdout)
            return 0
        parser.print_help(sys.stderr)
        return 2
    if implicit:
        from builder.commands.compat import commandlike

        odd = [w for w in (args.source, args.target) if commandlike(w, COMMANDS)]
        if odd:
            return _unknown(name, odd[0], list(COMMANDS))
    return args


def _unknown(name: str, word: str, known: list[str]) -> int:
    from builder.commands.compat import unknown_command

    return _emit(*unknown_command(name, word, known))


def _emit(stderr: str, stdout: str, code: int) -> int:
    sys.stderr.write(stderr)
    sys.stdout.write(stdout)
    return code


def _run(args: argparse.Namespace, style) -> int:  # noqa: ANN001
    try:
        if getattr(args, "_env_flags", None):
            from builder.commands.flags import apply_env

            apply_env(args)
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("sbuild: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if _is_sbuild_error(e):
            return _fail(e, style)
        if isinstance(e, BrokenPipeError):
            return 1
        # a bug: say so plainly, show the traceback when asked
        if os.environ.get("SBUILD_DEBUG"):
            raise
        print(f"sbuild: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("  this is a bug in sbuild; rerun with SBUILD_DEBUG=1 for the traceback", file=sys.stderr)
        return 1


def _is_sbuild_error(error: BaseException) -> bool:
    from base.errors import SbuildError

    return isinstance(error, SbuildError)


def _fail(error: SbuildError, style) -> int:  # noqa: ANN001
    """An error's message and exit status: ``FATAL:   …`` and 255 under Apptainer's names
    (``style``: their ``compat.Style``)."""
    if style is not None:
        print(style.line(50, error.render()), file=sys.stderr)
        return 255
    print(_render_error(error), file=sys.stderr)
    return error.exit_status


def _exit_now(code: int) -> None:
    """End the process without the interpreter's teardown, which frees every module (~5 ms
    of ``sbuild exec``): exit handlers run and output is flushed, nothing else is needed."""
    atexit = sys.modules.get("atexit")  # (a handler needs it imported: none without it, ~0.1 ms saved)
    try:
        if atexit is not None:
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
    """Console-script entry point; as root, an action's image is read ahead first (``runtime.prefetch``)."""
    if os.geteuid() == 0 and len(sys.argv) > 1:
        from runtime.prefetch import start

        start(sys.argv[1:], _program(sys.argv[0]))
    try:
        sys.exit(main(owns_process=True))
    except BaseException as e:  # Ctrl-C while the command's modules load (a class body wraps it in RuntimeError)
        cause = e
        while cause is not None and not isinstance(cause, KeyboardInterrupt):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise  # SystemExit, or a real error
        print("sbuild: interrupted", file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__":
    entry()
