"""The ``exec``, ``run``, ``shell`` and ``test`` commands: the CLI step of a launch.

They turn the command line into ``runtime.description.RunOptions`` and call
``runtime.run_action`` (the launch order is in ``runtime/__init__.py``). Flags follow
Apptainer's names; ``builder.commands.instance`` shares them. This module imports only the
standard library at load time (it is loaded before site-packages are on sys.path) and the
handler imports the runtime when it runs, so that ``sbuild exec`` starts fast.

``parse_quick(argv)`` parses an action's command line (``exec``/``run``/``shell``/``test``)
without argparse, which with ``re`` costs ~10 ms to import: it accepts only what it can
parse exactly as the argparse parser would (options spelled out in full before the image,
values not starting with ``-``) and returns None for anything else (help, abbreviations,
joined short flags, errors), which argparse then handles. ``tests/runtime/test_cli_parse.py``
checks that both agree. Both are built from one option table, ``_OPTIONS``.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

__all__ = ["register", "parse_quick", "ACTIONS", "add_run_flags", "run_options"]

ACTIONS = {"exec": "run a command in an image", "run": "run the image's runscript",
           "shell": "start a shell in an image", "test": "run the image's %test script"}

# (option strings, kind, metavar, help); kind: flag (store_true), append (repeatable value),
# value (one value, the last one wins). dest: the long name, as argparse derives it.
_OPTIONS = (
    (("-B", "--bind"), "append", "SRC[:DST[:ro|rw]]", "bind a host path into the container (repeatable, comma-separated)"),
    (("-o", "--overlay"), "append", "DIR|IMG[:ro]", "persistent overlay: a directory or an ext3 image (repeatable)"),
    (("-w", "--writable"), "flag", None, "write into a sandbox or ext3 image"),
    (("--writable-tmpfs",), "flag", None, "writable, with changes kept in memory only"),
    (("-c", "--contain"), "flag", None, "empty /tmp, /var/tmp and home; a private /dev/pts"),
    (("-C", "--containall"), "flag", None, "--contain and --cleanenv"),
    (("-e", "--cleanenv"), "flag", None, "do not pass the host environment"),
    (("--env",), "append", "K=V", "set a variable (repeatable)"),
    (("--pwd",), "value", None, "working directory in the container"),
    (("-H", "--home"), "value", "SRC[:DST]", "home directory to bind"),
    (("--no-home",), "flag", None, "do not mount the home directory"),
    (("--app",), "value", None, "run a SCIF app"),
    (("-f", "--fakeroot"), "flag", None, "appear as root (user namespace)"),
    (("-p", "--pid"), "flag", None, "own PID namespace (always on)"),
    (("-u", "--userns"), "flag", None, "user namespace (always on when unprivileged)"),
)
_SHELL = (("-s", "--shell"), "value", None, "shell to run (default /bin/sh)")
# builder.commands.add_output_flags: -q and -v exclude each other
_OUTPUT = ((("-q", "--quiet"), "flag", None, ""), (("-v", "--verbose"), "flag", None, ""))


def _dest(strings: tuple[str, ...]) -> str:
    return strings[-1][2:].replace("-", "_")


def add_run_flags(p: argparse.ArgumentParser, extra: tuple = ()) -> None:
    """The output flags and the launch flags of ``_OPTIONS`` (and ``extra``) on ``p``."""
    from builder.commands import add_output_flags

    add_output_flags(p)
    for strings, kind, metavar, text in (*_OPTIONS, *extra):
        if kind == "flag":
            p.add_argument(*strings, action="store_true", help=text)
        else:
            p.add_argument(*strings, action="append" if kind == "append" else "store",
                           default=[] if kind == "append" else None, metavar=metavar, help=text)


def register(subparsers, only: str | None = None) -> None:
    """Add the action commands; with ``only`` (a command word), just that one."""
    import argparse

    for name, what in ACTIONS.items():
        if only not in (None, name):
            continue
        p = subparsers.add_parser(name, help=what.replace("%", "%%"), description=what)  # help is %-formatted
        add_run_flags(p, (_SHELL,) if name == "shell" else ())
        p.add_argument("image", help="image file, sandbox directory or instance://NAME")
        if name == "exec":
            p.add_argument("command", help="command to run")
        p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
        p.set_defaults(handler=_action, action=name)


def _ambiguous(token: str, strings) -> bool:
    """argparse rejects an abbreviation matching several options anywhere before ``--``,
    even among a command's own arguments (``_get_option_tuples``)."""
    if token in strings or len(token) < 2 or token.split("=", 1)[0] in strings:
        return False
    if token.startswith("--"):
        prefix = token.split("=", 1)[0]
        return sum(s.startswith(prefix) for s in strings) > 1
    return sum(s == token[:2] or s.startswith(token) for s in strings) > 1


def parse_quick(argv: list[str]):
    """``argv`` (starting with the action word) as a namespace, or None to let argparse decide."""
    if not argv or argv[0] not in ACTIONS:
        return None
    word = argv[0]
    table = {}
    values: dict[str, object] = {"command": word}
    for strings, kind, _m, _h in (*_OUTPUT, *_OPTIONS, *((_SHELL,) if word == "shell" else ())):
        values[_dest(strings)] = False if kind == "flag" else [] if kind == "append" else None
        table.update(dict.fromkeys(strings, (_dest(strings), kind)))
    fixed = ["image", "command"] if word == "exec" else ["image"]
    i, n = 1, len(argv)
    while fixed:
        if i == n:
            return None  # a missing IMAGE or COMMAND: argparse says so
        token = argv[i]
        if not token or token == "--" or token.startswith("-") and len(token) == 1:
            return None
        if not token.startswith("-"):
            values[fixed.pop(0)] = token
            i += 1
            continue
        name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if name not in table:
            return None  # -h, abbreviations, joined short flags, unknown options
        dest, kind = table[name]
        if kind == "flag":
            if eq:
                return None
            values[dest] = True
            i += 1
            continue
        if not eq:
            if i + 1 == n or argv[i + 1].startswith("-"):
                return None
            value, i = argv[i + 1], i + 1
        i += 1
        values[dest] = [*values[dest], value] if kind == "append" else value
    if values["quiet"] and values["verbose"]:
        return None
    rest = argv[i:]
    if rest and rest[0] == "--":
        rest = rest[1:]  # argparse lets the last positional swallow one "--" after it
    else:
        strings = {*table, "-h", "--help"}
        for token in rest:
            if token == "--":
                break
            if token.startswith("-") and _ambiguous(token, strings):
                return None
    values.update(args=rest, handler=_action, action=word)
    return _Namespace(**values)


class _Namespace:
    """What ``parse_quick`` returns: attributes like argparse's Namespace (``types`` costs an
    import for SimpleNamespace)."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


def run_options(args: argparse.Namespace):
    """The ``RunOptions`` the parsed flags ask for."""
    from base.errors import UsageError
    from runtime.description import RunOptions
    from runtime.plan import parse_bind

    binds = tuple(b for spec in args.bind for b in parse_bind(spec))
    env = []
    for item in args.env:
        parts = item.split(",") if all("=" in x for x in item.split(",")) else [item]
        for part in parts:
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise UsageError(f"bad --env {item!r}: expected K=V")
            env.append((key, value))
    if args.writable and args.writable_tmpfs:
        raise UsageError("--writable and --writable-tmpfs cannot be combined")
    return RunOptions(
        binds=binds, overlays=tuple(args.overlay), writable=args.writable, writable_tmpfs=args.writable_tmpfs,
        contain=args.contain or args.containall, cleanenv=args.cleanenv or args.containall, env=tuple(env),
        pwd=args.pwd, home=args.home, no_home=args.no_home, app=args.app, shell=getattr(args, "shell", None),
        userns="auto" if args.fakeroot else "self",
    )


def _action(args: argparse.Namespace) -> int:
    # the CLI process only waits for the container: let it hold the namespaces itself, and
    # give a squashfs image a head start before the rest of the runtime is imported
    here = getattr(args, "owns_process", False)
    if ":" in args.image and not args.image.startswith("instance://"):  # a URI: its cached SIF
        from builder.commands.uri import image_path

        args.image = image_path(args.image, args)
    prefetched = None
    if here and not args.image.startswith("instance://") and os.getuid() == 0:  # (prefetch is root-only)
        from runtime.prefetch import prefetch

        prefetched = prefetch(args.image, writable=args.writable)
    from runtime import run_action

    argv = list(args.args)
    if args.action == "exec":
        argv.insert(0, args.command)
    opts = run_options(args)
    image, join = args.image, None
    if image.startswith("instance://"):
        from runtime import instances

        entry = instances.find(image[len("instance://"):])
        image, join = entry.image, entry.pid
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    return run_action(image, args.action, argv, opts, forward=True, join=join, here=here, prefetched=prefetched)
