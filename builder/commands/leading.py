"""Apptainer's global flags, read before the command word without argparse, and its messages.

``option_words(argv, i, kind)`` is pflag's reading of one option word (``--f``, ``--f=v``,
``--f v``, clustered shorts ``-ab``, ``-cVALUE``, ``-c VALUE``): the one scanner of the command
line, used here, by the actions' parsers (``builder.commands.run``) and by the argparse
commands' non-interspersed split (``builder.commands.flags``), each with its own table.

``parse_globals(argv)`` takes ``GLOBAL_FLAGS`` (reference apptainer-cli.md §1: ``-d -v -q -s
--nocolor -c --build-config --version``) off the front of ``argv`` with ``parse_leading``,
which reads any table of ``Flag`` the same way (``--f=v``, ``--f v``, clustered shorts, env
twins with ``base.env.twin``, strict booleans); ``level`` maps them to a ``logging`` level
(debug > verbose > quiet > silent, then ``APPTAINER_MESSAGELEVEL``); ``prefix`` and ``Style``
write Apptainer's message prefixes (``INFO:    ``, ``WARNING: ``, ``ERROR:   ``, ``FATAL:   ``,
its debug form, colour on a terminal). This module is on the launch path of ``apptainer
exec``: it imports ``os`` only (``base.env`` when a twin's variable is set).
"""

from __future__ import annotations

from base import lean_os as os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["option_words", "Flag", "parse_leading", "GLOBAL_FLAGS", "parse_globals", "level", "prefix", "Style"]


class Flag:
    """A flag read without argparse (``parse_leading``): its spellings, its attribute name,
    whether it takes a value, and its env keys."""

    __slots__ = ("names", "dest", "takes_value", "env")

    def __init__(self, names: tuple[str, ...], dest: str, takes_value: bool = False,
                 env: tuple[str, ...] = ()) -> None:
        self.names, self.dest, self.takes_value, self.env = names, dest, takes_value, env

    def __repr__(self) -> str:
        return f"Flag({self.names!r}, {self.dest!r})"


def option_words(argv: Sequence[str], i: int, kind, unknown_switch: bool = False):  # noqa: ANN001, ANN201
    """pflag's reading of the option word ``argv[i]``: ``(pairs, next index)``, ``pairs`` a list
    of ``(name, value, inline)`` (value None for a switch not written ``--f=v``; ``inline``:
    the value was in the word itself); None when an option is unknown or its value missing.
    ``kind(name)``: True (takes a value), False (a switch), None (unknown; with
    ``unknown_switch`` read as a switch). ``argv[i]`` starts with ``-`` and is not ``-``/``--``."""
    token = argv[i]
    if token.startswith("--"):
        name, eq, value = token.partition("=")
        takes = kind(name)
        if takes is None and not unknown_switch:
            return None
        if eq:
            return [(name, value, True)], i + 1
        if not takes:
            return [(name, None, False)], i + 1
        return ([(name, argv[i + 1], False)], i + 2) if i + 1 < len(argv) else None
    pairs = []
    for j in range(1, len(token)):
        name = "-" + token[j]
        takes = kind(name)
        if takes is None and not unknown_switch:
            return None
        if not takes:
            pairs.append((name, None, False))
            continue
        if j + 1 < len(token):
            return [*pairs, (name, token[j + 1:], True)], i + 1
        return ([*pairs, (name, argv[i + 1], False)], i + 2) if i + 1 < len(argv) else None
    return pairs, i + 1


def parse_leading(argv: Sequence[str], table: Sequence[Flag], environ: Mapping[str, str] | None = None,
                  ) -> tuple[dict[str, object], list[str], list[tuple[str, str]]]:
    """Parse the flags of ``table`` at the start of ``argv`` (``--f=v``, ``--f v``, clustered
    shorts), up to the first word that is not one: ``(values, rest, notes)``. ``values``
    holds each flag given on the command line, else its env twin (``True``/``False`` for a
    switch, read strictly). ``rest[0]`` is the first other word (the command, or an unknown
    flag: the caller reports it). ``notes``: (level, text) for the twins' notes."""
    by_name = {name: flag for flag in table for name in flag.names}

    def kind(name: str) -> bool | None:
        flag = by_name.get(name)
        return None if flag is None else flag.takes_value

    values: dict[str, object] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-", "--"):
        read = option_words(argv, i, kind)
        if read is None or any(inline and not kind(name) for name, _v, inline in read[0]):
            break  # (``--debug=x``: a switch takes no value here)
        for name, value, _inline in read[0]:
            values[by_name[name].dest] = value if by_name[name].takes_value else True
        i = read[1]
    notes = _leading_env(table, values, os.environ if environ is None else environ)
    return values, list(argv[i:]), notes


def _leading_env(table: Sequence[Flag], values: dict[str, object], environ: Mapping[str, str]):
    """The env twins of the flags not given; ``base.env`` (and ``typing`` with it, ~7 ms) is
    imported only when one of their variables is set."""
    notes: list[tuple[str, str]] = []
    wanted = [f for f in table if f.dest not in values and f.env]
    if not any(p + k in environ for f in wanted for k in f.env for p in ("APPTAINER_", "SINGULARITY_")):
        return notes
    from base.env import twin_value

    for flag in wanted:
        found = twin_value(flag.env, "value" if flag.takes_value else "bool", environ)
        if found is None:
            continue
        values[flag.dest], note = found
        if note:
            notes.append(note)
    return notes


GLOBAL_FLAGS = (
    Flag(("-d", "--debug"), "debug", env=("DEBUG",)),
    Flag(("-v", "--verbose"), "verbose", env=("VERBOSE",)),
    Flag(("-q", "--quiet"), "quiet", env=("QUIET",)),
    Flag(("-s", "--silent"), "silent", env=("SILENT",)),
    Flag(("--nocolor",), "nocolor", env=("NOCOLOR",)),
    Flag(("-c", "--config"), "config", takes_value=True, env=("CONFIG_FILE",)),
    Flag(("--build-config",), "build_config"),
    Flag(("--version",), "version"),
)

def parse_globals(argv, environ=None):  # noqa: ANN001, ANN201
    """``flags.parse_leading`` with ``GLOBAL_FLAGS``: (the rest of argv, the logging level,
    the flags' values, the env twins' notes as (logging level, text))."""
    values, rest, notes = parse_leading(argv, GLOBAL_FLAGS, environ)
    return rest, level(values, environ), values, [(20 if k == "info" else 30, t) for k, t in notes]


def sbuild_globals(argv: list[str], commands, base: int):  # noqa: ANN001, ANN201
    """Under the name ``sbuild``: Apptainer's global flags when a command word follows them
    (``sbuild -d exec IMG``) -> (the rest, the logging level); otherwise ``argv`` and ``base``
    unchanged (``sbuild -s a.def dir`` is the implicit build's ``--sandbox``)."""
    try:
        rest, lvl, values, _ = parse_globals(argv, environ={})
    except Exception:  # noqa: BLE001 - not global flags: the implicit build reports them
        return argv, base
    if rest and rest[0] in commands and not values.get("version"):
        return rest, lvl
    return argv, base


def level(values: dict[str, object], environ=None) -> int:  # noqa: ANN001
    """The ``logging`` level the global flags ask for: debug > verbose > quiet > silent, then
    ``APPTAINER_MESSAGELEVEL`` (Apptainer's numbers: 5 debug … 1 info, -1 quiet, -3 silent)."""
    if values.get("debug") or values.get("verbose"):
        return 10
    if values.get("quiet"):
        return 30
    if values.get("silent"):
        return 40
    env = os.environ if environ is None else environ
    text = (env.get("APPTAINER_MESSAGELEVEL") or env.get("SINGULARITY_MESSAGELEVEL") or "").strip()
    try:
        number = int(text) if text else 1
    except ValueError:
        number = 1
    return 10 if number >= 2 else 20 if number >= 0 else 30 if number >= -2 else 40


_LABELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "FATAL"}
_COLOURS = {20: "\x1b[34m", 30: "\x1b[33m", 40: "\x1b[31m", 50: "\x1b[31m"}


def prefix(levelno: int, *, debug: bool = False, colour: bool = False, where: str = "") -> str:
    """Apptainer's message prefix (``pkg/sylog``): ``INFO:    ``, ``WARNING: ``, ``ERROR:   ``,
    ``FATAL:   ``; with ``debug``, ``DEBUG   [U=0,P=1]      function()   ``; ``colour`` as on a
    terminal."""
    label = _LABELS.get(levelno, "VERBOSE" if levelno < 20 else "ERROR")
    if levelno == 10 and not debug:
        label = "VERBOSE"
    start, end = (_COLOURS.get(levelno, ""), "\x1b[0m") if colour and levelno in _COLOURS else ("", "")
    if debug:
        who = f"[U={os.geteuid()},P={os.getpid()}]"
        return f"{start}{label:<8}{end}{who:<19}{where + '()':<30}"
    return f"{start}{label + ':':<8}{end} "


class Style:
    """How messages look under Apptainer's names: ``debug`` (its debug prefix), ``colour``
    (stderr is a terminal and --nocolor was not given)."""

    def __init__(self, debug: bool = False, nocolor: bool = False) -> None:
        import sys

        self.debug = debug
        self.colour = not nocolor and sys.stderr.isatty()

    def line(self, levelno: int, text: str, where: str = "") -> str:
        return prefix(levelno, debug=self.debug, colour=self.colour, where=where) + text
