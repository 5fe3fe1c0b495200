"""The ``exec``, ``run``, ``shell`` and ``test`` commands: the CLI step of a launch.

They turn the command line into ``runtime.description.RunOptions`` (``launch_options``)
and call ``runtime.run_action`` (the launch order is in ``runtime/__init__.py``). Flags,
their kinds and environment twins are Apptainer's, in one table
(``builder.commands.action_flags.OPTIONS``); ``builder.commands.instance`` shares them.
This module imports only the standard library at load time (it is loaded before
site-packages are on sys.path) and the handler imports the runtime when it runs, so that
``sbuild exec`` starts fast.

Parsing is pflag's non-interspersed mode, as Apptainer's: options up to the image (``--f=v``,
``--f v``, clustered shorts ``-cB /x``, ``--flag=true|false``), and everything after the
image, ``--`` included, goes to the container. ``parse_quick(argv)`` does this without
argparse (which with ``re`` costs ~10 ms to import) and returns None for what it leaves to
argparse (help, errors, a value starting with ``-``); the argparse parser, for those,
splits the command line at the image the same way (``_split``); both read option words with
``leading.option_words``, the one scanner. ``tests/runtime/test_cli_parse.py`` checks that
both agree.
"""

from __future__ import annotations

from base import lean_os as os
from builder.commands.action_flags import FLAG_VALUES, dest, options_for
from builder.commands.launch_options import prepare, run_options
from builder.commands.leading import option_words

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

__all__ = ["register", "parse_quick", "ACTIONS", "add_run_flags", "run_options"]

ACTIONS = {"exec": "run a command in an image", "run": "run the image's runscript",
           "shell": "start a shell in an image", "test": "run the image's %test script"}
USAGE = {"exec": "IMAGE COMMAND [ARGS...]", "run": "IMAGE [ARGS...]", "shell": "IMAGE", "test": "IMAGE [ARGS...]"}

# builder.commands.add_output_flags: -q and -v exclude each other (sbuild's own, before the image)
_OUTPUT = ((("-q", "--quiet"), "flag", None, (), "", ""), (("-v", "--verbose"), "flag", None, (), "", ""))


_TABLES: dict[str, tuple[dict, dict]] = {}


def _table(command: str, defaults: bool = False) -> dict:
    """Option string -> (dest, kind) for ``command``; with ``defaults``, dest -> its default."""
    if command not in _TABLES:
        table, values = {}, {}
        for strings, kind, *_rest in (*_OUTPUT, *options_for(command)):
            table.update(dict.fromkeys(strings, (dest(strings), kind)))
            values[dest(strings)] = False if kind == "flag" else None if kind == "value" else []
        _TABLES[command] = table, values
    return _TABLES[command][1 if defaults else 0]


def add_run_flags(p: argparse.ArgumentParser, command: str = "exec") -> None:
    """The output flags and ``command``'s launch flags (``action_flags.OPTIONS``) on ``p``."""
    import argparse

    from builder.commands import add_output_flags

    class Extend(argparse.Action):  # pflag's stringSlice: repeatable, comma-separated
        def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
            text = ",".join(values) if isinstance(values, list) else values  # (argparse: "--f --" gives [])
            items = [v.strip() for v in text.split(",") if v.strip()]
            setattr(namespace, self.dest, [*getattr(namespace, self.dest), *items])

    add_output_flags(p)
    for strings, kind, metavar, _keys, _scope, text in options_for(command):
        name = dest(strings)
        if kind == "flag":
            p.add_argument(*strings, dest=name, action="store_true", help=text)
        else:
            action = {"append": "append", "list": Extend}.get(kind, "store")
            p.add_argument(*strings, dest=name, action=action, default=None if kind == "value" else [],
                           metavar=metavar, help=text)


def _kind(table: dict[str, tuple[str, str]]):  # noqa: ANN202
    """``leading.option_words``'s ``kind`` for a table of option string -> (dest, kind)."""
    def kind(name: str) -> bool | None:
        entry = table.get(name)
        return None if entry is None else entry[1] != "flag"
    return kind


def _split(args: list[str], table: dict[str, tuple[str, str]]) -> int:
    """Where pflag's non-interspersed scan stops: the index of the first positional (after
    ``--`` if that came first), or ``len(args)``. Unknown options count as switches."""
    i, n, kind = 0, len(args), _kind(table)
    while i < n:
        token = args[i]
        if token == "--":
            return i + 1
        if not token.startswith("-") or token == "-":
            return i
        read = option_words(args, i, kind, unknown_switch=True)
        if read is None:  # (a value missing at the end)
            return n
        i = read[1]
    return n


def _canonical(head: list[str], table: dict[str, tuple[str, str]]) -> list[str]:
    """``head`` with pflag's forms argparse lacks rewritten: ``--flag=true|false`` and a
    value that starts with ``-`` (``--bind -x``: ``--bind=-x``)."""
    out, i = [], 0
    while i < len(head):
        token = head[i]
        name, eq, value = token.partition("=")
        entry = table.get(name) if token.startswith("--") else None
        if entry and entry[1] == "flag" and eq and value in FLAG_VALUES:
            out += [name] if FLAG_VALUES[value] else []
        elif entry and entry[1] != "flag" and not eq and i + 1 < len(head) and head[i + 1].startswith("-"):
            out.append(f"{token}={head[i + 1]}")
            i += 1
        else:
            out.append(token)
        i += 1
    return out


def _parser_class(base):
    """An argparse parser class that parses like pflag's non-interspersed mode: options up
    to the image, everything after it (``--`` included) for the container."""

    class ActionParser(base):
        def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001
            args = list(args or [])
            table = _table(self.sbuild_command)
            at = _split(args, table)
            head, tail = args[:at + 1], args[at + 1:]
            ns, extra = super().parse_known_args(_canonical(head, table), namespace)
            ns.args = tail
            if self.sbuild_command in ("exec", "instance"):  # (the second positional: COMMAND, NAME)
                if not tail:
                    self.error("requires at least 2 arg(s), only received 1")
                setattr(ns, "command" if self.sbuild_command == "exec" else "name", tail[0])
                ns.args = tail[1:]
            return ns, extra

    return ActionParser


def register(subparsers, only: str | None = None) -> None:
    """Add the action commands; with ``only`` (a command word), just that one."""
    for name, what in ACTIONS.items():
        if only not in (None, name):
            continue
        p = subparsers.add_parser(name, help=what.replace("%", "%%"), description=what,  # help is %-formatted
                                  allow_abbrev=False, usage=f"%(prog)s [options] {USAGE[name]}")
        p.__class__ = _parser_class(type(p))  # (the subparsers action makes the parser)
        p.sbuild_command = name
        add_run_flags(p, name)
        p.add_argument("image", help="image file, sandbox directory or instance://NAME")
        p.add_argument("args", nargs="*", help="the command and its arguments" if name == "exec" else "arguments")
        p.set_defaults(handler=_action, action=name)


def _scan(argv: list[str], table: dict, values: dict) -> int | None:
    """pflag's scan of ``argv`` (after the command word) into ``values``: the index of the
    image, or None for what argparse should handle (help, errors, rare forms: a value that
    starts with ``-``, ``-x=v``, ``--flag=maybe``)."""
    i, n, kind = 1, len(argv), _kind(table)
    while i < n:
        token = argv[i]
        if token in ("", "-", "--"):
            return None  # (an empty image name, "-", "--": argparse)
        if not token.startswith("-"):
            return i
        if not token.startswith("--") and "=" in token:
            return None
        read = option_words(argv, i, kind)
        if read is None:
            return None  # -h, unknown options, a missing value
        for name, value, inline in read[0]:
            entry = table[name]
            if entry[1] == "flag":
                if inline and value not in FLAG_VALUES:
                    return None
                values[entry[0]] = FLAG_VALUES[value] if inline else True
            elif not inline and value.startswith("-"):
                return None
            else:
                _store(values, entry, value)
        i = read[1]
    return None


def _store(values: dict, entry: tuple[str, str], value: str) -> None:
    name, kind = entry
    if kind == "append":
        values[name] = [*values[name], value]
    elif kind == "list":
        values[name] = [*values[name], *(v.strip() for v in value.split(",") if v.strip())]
    else:
        values[name] = value


def parse_quick(argv: list[str]):
    """``argv`` (starting with the action word) as a namespace, or None to let argparse decide."""
    if not argv or argv[0] not in ACTIONS:
        return None
    word = argv[0]
    values: dict[str, object] = {"command": word}
    values.update((k, [] if v == [] else v) for k, v in _table(word, defaults=True).items())
    at = _scan(argv, _table(word), values)
    if at is None or (values["quiet"] and values["verbose"]):
        return None
    rest = argv[at + 1:]
    if word == "exec":
        if not rest:
            return None
        values["command"], rest = rest[0], rest[1:]
    values.update(image=argv[at], args=rest, handler=_action, action=word)
    return _Namespace(**values)


class _Namespace:
    """What ``parse_quick`` returns: attributes like argparse's Namespace (``types`` costs an
    import for SimpleNamespace)."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


def _action(args: argparse.Namespace) -> int:
    # the CLI process only waits for the container: let it hold the namespaces itself, and
    # give a squashfs image a head start before the rest of the runtime is imported
    prepare(args, args.action)
    if args.action == "shell" and args.args:
        from builder.commands.launch_options import _log

        _log("warning", "Parameters to shell command are ignored")
        args.args = []
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
