"""Apptainer's global flags, read before the command word without argparse, and its messages.

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

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["Flag", "parse_leading", "GLOBAL_FLAGS", "parse_globals", "level", "prefix", "Style"]


class Flag:
    """A flag read without argparse (``parse_leading``): its spellings, its attribute name,
    whether it takes a value, and its env keys."""

    __slots__ = ("names", "dest", "takes_value", "env")

    def __init__(self, names: tuple[str, ...], dest: str, takes_value: bool = False,
                 env: tuple[str, ...] = ()) -> None:
        self.names, self.dest, self.takes_value, self.env = names, dest, takes_value, env

    def __repr__(self) -> str:
        return f"Flag({self.names!r}, {self.dest!r})"


def parse_leading(argv: Sequence[str], table: Sequence[Flag], environ: Mapping[str, str] | None = None,
                  ) -> tuple[dict[str, object], list[str], list[tuple[str, str]]]:
    """Parse the flags of ``table`` at the start of ``argv`` (``--f=v``, ``--f v``, clustered
    shorts), up to the first word that is not one: ``(values, rest, notes)``. ``values``
    holds each flag given on the command line, else its env twin (``True``/``False`` for a
    switch, read strictly). ``rest[0]`` is the first other word (the command, or an unknown
    flag: the caller reports it). ``notes``: (level, text) for the twins' notes."""
    by_name = {name: flag for flag in table for name in flag.names}
    values: dict[str, object] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--") and len(token) > 2:
            name, eq, value = token.partition("=")
            flag = by_name.get(name)
            if flag is None or (eq and not flag.takes_value):
                break
            if flag.takes_value and not eq:
                if i + 1 == len(argv):
                    break
                i, value = i + 1, argv[i + 1]
            values[flag.dest] = value if flag.takes_value else True
        elif token.startswith("-") and len(token) > 1 and token != "--":
            used = _cluster(token, argv[i + 1] if i + 1 < len(argv) else None, by_name, values)
            if used is None:
                break
            i += used
        else:
            break
        i += 1
    notes = _leading_env(table, values, os.environ if environ is None else environ)
    return values, list(argv[i:]), notes


def _cluster(token: str, following: str | None, by_name: dict, values: dict) -> int | None:
    """Clustered short flags (``-dq``, ``-cFILE``, ``-c FILE``): how many extra words they
    used (0 or 1), or None (nothing recorded) when one letter is not in the table."""
    found: dict[str, object] = {}
    for j, letter in enumerate(token[1:], 1):
        flag = by_name.get("-" + letter)
        if flag is None:
            return None
        if flag.takes_value:
            rest = token[j + 1:]
            if rest:
                found[flag.dest] = rest
                values.update(found)
                return 0
            if following is None:
                return None
            found[flag.dest] = following
            values.update(found)
            return 1
        found[flag.dest] = True
    values.update(found)
    return 0


def _leading_env(table: Sequence[Flag], values: dict[str, object], environ: Mapping[str, str]):
    """The env twins of the flags not given; ``base.env`` (and ``typing`` with it, ~7 ms) is
    imported only when one of their variables is set."""
    notes: list[tuple[str, str]] = []
    wanted = [f for f in table if f.dest not in values and f.env]
    if not any(p + k in environ for f in wanted for k in f.env for p in ("APPTAINER_", "SINGULARITY_")):
        return notes
    from base.env import parse_bool, twin

    for flag in wanted:
        found = twin(flag.env, environ)
        if found is None:
            continue
        if found.note:
            notes.append(found.note)
        values[flag.dest] = found.value if flag.takes_value else parse_bool(found.value, found.name)
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
