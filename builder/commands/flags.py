"""Apptainer's flag rules for the argparse commands: env twins, non-interspersed parsing, errors.

A command declares each flag once, with the environment keys Apptainer binds to it::

    add_flag(p, "-F", "--force", env="FORCE", action="store_true", help="overwrite")
    add_flag(p, "-B", "--bind", env=("BIND", "BINDPATH"), env_append=True, action="append")

``add_flag`` passes everything but ``env``/``env_append``/``default`` to ``add_argument`` and
records the flag on the parser; the parsed value is None when the flag is not on the command
line. After parsing, ``apply_env(args)`` gives each such flag, in declaration order,
Apptainer's value (reference apptainer-cli.md §2-3, ``base.env.twin``): the command line's if
given, else the first set key's ``APPTAINER_<KEY>``/``SINGULARITY_<KEY>`` (a ``store_true``
flag reads it with the strict ``base.env.parse_bool``, a typed flag through its ``type``, an
``append`` flag as one element), else the declared ``default``. With ``env_append`` (``--bind``,
``--mount``) the values of every key are added after the command line's. The notes Apptainer
prints (legacy name used, both names differ) are logged on ``sbuild.flags``.

``Flag`` and ``parse_leading`` (``builder.commands.leading``, re-exported) do the same without
argparse for a table of flags read before a command word (the global flags, on the launch path).

``non_interspersed(parser, argv)`` makes argparse stop at the first positional, as Apptainer's
parser does: it inserts ``--`` before the first positional of the leaf command, so that later
words starting with ``-`` are arguments. ``parser_class(name)`` is an ``ArgumentParser`` whose
usage errors raise ``CommandLineError`` (command, message, usage) instead of exiting, so that
``builder.cli`` reports them per program name.
"""

from __future__ import annotations

import os

from builder.commands.leading import Flag, parse_leading  # re-exported: the same rules without argparse

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["add_flag", "apply_env", "Flag", "parse_leading", "non_interspersed", "leaf_parser", "parser_class",
           "CommandLineError"]


class _EnvFlag:
    """A flag ``add_flag`` declared: ``append``: env values are added after the command
    line's (--bind, --mount); ``kind``: "bool", "append" or "value"."""

    __slots__ = ("dest", "keys", "append", "kind", "convert", "default")

    def __init__(self, dest: str, keys: tuple[str, ...], append: bool, kind: str,
                 convert: Callable[[str], object] | None, default: object) -> None:
        self.dest, self.keys, self.append, self.kind, self.convert, self.default = (
            dest, keys, append, kind, convert, default)


def add_flag(parser: argparse.ArgumentParser, *names: str, env: str | Sequence[str] = (),
             env_append: bool = False, default: object = None, deprecated: Mapping[str, str] | None = None,
             **kwargs: object) -> argparse.Action:
    """``parser.add_argument(*names, **kwargs)``, with the flag's env keys and default recorded
    for ``apply_env`` (see the module docstring). ``deprecated``: spelling -> advice, e.g.
    ``{"--nohttps": "use --no-https"}``; under Apptainer's names ``apply_env`` then warns as
    it does (``Flag --nohttps has been deprecated, use --no-https``)."""
    import argparse

    keys = (env,) if isinstance(env, str) else tuple(env)
    base = parser._registry_get("action", kwargs.get("action"), kwargs.get("action"))
    if deprecated:
        kwargs["action"] = _deprecating(base, dict(deprecated))
    action = parser.add_argument(*names, default=None, **kwargs)
    kind = "bool" if action.nargs == 0 else "append" if issubclass(base, argparse._AppendAction) else "value"
    if default is None and kind != "value":
        default = False if kind == "bool" else []
    table = parser.get_default("_env_flags")
    if table is None:
        table = []
        parser.set_defaults(_env_flags=table)
    table.append(_EnvFlag(action.dest, keys, env_append, kind, kwargs.get("type"), default))
    return action


def _deprecating(base: type, deprecated: dict[str, str]) -> type:
    """``base`` (an argparse action class) that also notes a deprecated spelling's use."""

    class Deprecated(base):
        def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
            if option_string in deprecated:
                used = getattr(namespace, "_deprecated", None) or []
                namespace._deprecated = [*used, f"Flag {option_string} has been deprecated, "
                                                f"{deprecated[option_string]}"]
            super().__call__(parser, namespace, values, option_string)

    return Deprecated


def _log_note(note: tuple[str, str], log) -> None:  # noqa: ANN001
    level, text = note
    (log.warning if level == "warning" else log.info)("%s", text)


def apply_env(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Fill in the flags ``add_flag`` declared on the parsed command (see the module docstring)."""
    import logging

    from base.env import appended, twin_value

    log = logging.getLogger("sbuild.flags")
    compat = getattr(args, "program", "sbuild") != "sbuild"
    for text in getattr(args, "_deprecated", None) or () if compat else ():
        log.warning("%s", text)
    if not compat:  # under sbuild the legacy names are as good as the new ones: no INFO about them
        log = _Quieter(log)
    env = os.environ if environ is None else environ
    for flag in getattr(args, "_env_flags", None) or ():
        value = getattr(args, flag.dest, None)
        if flag.append:
            extra, notes = appended(flag.keys, env)
            for note in notes:
                _log_note(note, log)
            setattr(args, flag.dest, [*(value or ()), *extra])
            continue
        if value is not None:
            continue
        found = twin_value(flag.keys, flag.kind, env, flag.convert) if flag.keys else None
        if found is None:
            setattr(args, flag.dest, list(flag.default) if isinstance(flag.default, list) else flag.default)
            continue
        value, note = found
        if note is not None:
            _log_note(note, log)
        setattr(args, flag.dest, value)
    return args


class _Quieter:
    """A logger whose INFO notes go to DEBUG (sbuild's name: ``SINGULARITY_X`` is not
    second-best there); warnings stay warnings."""

    def __init__(self, log) -> None:  # noqa: ANN001
        self.log = log
        self.warning = log.warning

    def info(self, *args: object) -> None:
        self.log.debug(*args)


def _value_follows(parser: argparse.ArgumentParser, token: str) -> int:
    """1 when the option word ``token`` leaves its value to the next word, else 0
    (``leading.option_words`` with the parser's options)."""
    from builder.commands.leading import option_words

    options = parser._option_string_actions

    def kind(name: str) -> bool | None:
        action = options.get(name)
        return None if action is None else action.nargs != 0

    read = option_words([token, ""], 0, kind)
    return int(read is not None and read[1] == 2)


def _subparsers(parser: argparse.ArgumentParser):  # noqa: ANN202
    import argparse

    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def leaf_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of the (sub)command that ``argv`` names."""
    i = 0
    while i < len(argv) and argv[i] != "--":
        token = argv[i]
        if token.startswith("-") and len(token) > 1:
            i += 1 + _value_follows(parser, token)
            continue
        sub = _subparsers(parser)
        if sub is None or token not in sub.choices:
            break
        parser, i = sub.choices[token], i + 1
    return parser


def non_interspersed(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--`` inserted before the leaf command's first positional (see the
    module docstring); subcommand words are followed into their parsers."""
    argv = list(argv)
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return argv
        if token.startswith("-") and len(token) > 1:
            i += 1 + _value_follows(parser, token)
            continue
        sub = _subparsers(parser)
        if sub is not None and token in sub.choices:
            parser = sub.choices[token]
            i += 1
            continue
        if any(t.startswith("-") and len(t) > 1 for t in argv[i + 1:]):
            argv.insert(i, "--")
        return argv
    return argv


class CommandLineError(Exception):
    """A usage error found by argparse: which command, the message, and the command's usage."""

    def __init__(self, command: str, message: str, usage: str, prog: str) -> None:
        super().__init__(message)
        self.command, self.message, self.usage, self.prog = command, message, usage, prog


def parser_class(name: str, raising: bool = True) -> type[argparse.ArgumentParser]:
    """An ``ArgumentParser`` class for the program ``name`` whose errors raise
    ``CommandLineError`` (its subparsers are of the same class); argparse's own, which
    prints and exits 2, when not ``raising``."""
    import argparse

    if not raising:
        return argparse.ArgumentParser

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # noqa: ANN201 - never returns
            command = self.prog.split()[-1] if " " in self.prog else name
            raise CommandLineError(command, message, self.format_usage(), self.prog)

    return Parser
