"""The program's names, Apptainer's global flags, messages and version, and the small commands.

One program answers to ``sbuild``, ``apptainer``, ``singularity`` and ``run-singularity`` (the
interpreter a ``.simg``'s first line names): ``program(argv0)`` says which. Under
``apptainer``/``singularity`` (``COMPAT``) it is Apptainer 1.5's command line
(reference apptainer-cli.md §1-2): the global flags of ``GLOBAL_FLAGS`` before the command,
``level(values)`` their message level, messages as ``prefix`` writes them, ``version_line``
what the version parsers of Snakemake, cwltool, spython and Nextflow read as Apptainer
``APPTAINER_VERSION`` (its local part says sbuild: ``apptainer version 1.5.0+sbuild.0.1.0``).

``register`` adds ``version``, ``help`` (``builder.cli`` rewrites ``help CMD`` to
``CMD --help``), ``run-help IMAGE`` and the commands this sbuild does not have yet
(``UNAVAILABLE``: signing, keys, remotes, plugins …), which fail with a clear error and
write nothing. ``suggest`` is the "did you mean" of an unknown command. Import-cheap: the
launch path of ``apptainer exec`` reads the global flags through this module.
"""

from __future__ import annotations

import os

from base.errors import UsageError
from builder.commands.flags import Flag

__all__ = ["COMPAT", "program", "parse_globals", "add_global_flags", "GLOBAL_FLAGS", "level", "prefix", "version_line", "APPTAINER_VERSION",
           "UNAVAILABLE", "SBUILD_ONLY", "Style", "version_action", "register", "suggest", "Unavailable", "usage_error", "unknown_command", "unavailable",
           "commandlike"]

COMPAT = ("apptainer", "singularity")
APPTAINER_VERSION = "1.5.0"
SBUILD_ONLY = ("check", "doctor")  # sbuild's own commands: not under the Apptainer names

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

_SIGNING = "SIF signing and verification come with the signing issue"
UNAVAILABLE = {
    "sign": _SIGNING, "verify": _SIGNING, "key": _SIGNING, "keys": _SIGNING,
    "remote": "remote endpoints are not configurable in this sbuild (library:// takes --library)",
    "plugin": "sbuild has no plugins", "capability": "sbuild has no capability file (no setuid install)",
    "config": "sbuild reads no apptainer.conf", "oci": "sbuild has no OCI runtime commands",
    "checkpoint": "sbuild has no checkpointing", "delete": "library management is not in this sbuild",
    "search": "library search is not in this sbuild", "keyserver": _SIGNING,
    "registry": "registry login is not in this sbuild (use --authfile or --docker-login)",
    "sif": "use siftool for SIF manipulation",
}


class Unavailable(UsageError):
    """A command of Apptainer's that this sbuild does not have (yet)."""


def program(argv0: str) -> str:
    """The name the program answers to: ``apptainer``, ``singularity``, ``run-singularity``,
    else ``sbuild``."""
    name = os.path.basename(argv0)
    return name if name in (*COMPAT, "run-singularity") else "sbuild"


def parse_globals(argv, environ=None):  # noqa: ANN001, ANN201
    """``flags.parse_leading`` with ``GLOBAL_FLAGS``: (the rest of argv, the logging level,
    the flags' values, the env twins' notes as (logging level, text))."""
    from builder.commands.flags import parse_leading

    values, rest, notes = parse_leading(argv, GLOBAL_FLAGS, environ)
    return rest, level(values, environ), values, [(20 if k == "info" else 30, t) for k, t in notes]


def add_global_flags(parser) -> None:  # noqa: ANN001
    """The global flags on the root parser, for ``--help`` only (``parse_globals`` has taken
    them off argv before argparse runs)."""
    for flag in GLOBAL_FLAGS:
        if flag.dest != "version":
            parser.add_argument(*flag.names, action="store" if flag.takes_value else "store_true",
                                help=f"global flag (env {flag.env[0]})" if flag.env else "global flag")


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


def version_line(name: str, *, long: bool) -> str:
    """``--version`` (``long``) and ``version``: Apptainer's text under its names, sbuild's own
    under ``sbuild``."""
    ours = _sbuild_version()
    if name == "sbuild":
        return f"sbuild {ours}"
    local = "".join(c if c.isalnum() else "." for c in ours).strip(".")
    text = f"{APPTAINER_VERSION}+sbuild.{local}"
    return f"apptainer version {text}" if long else text


def version_action(name: str):  # noqa: ANN201
    """The argparse action of ``--version`` for the program ``name``: looks the version up
    only when asked (importlib.metadata is slow)."""
    import argparse

    class VersionAction(argparse.Action):
        def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):  # noqa: A002
            super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

        def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
            print(version_line(name, long=True))
            parser.exit()

    return VersionAction


def _sbuild_version() -> str:
    try:
        from importlib.metadata import version

        return version("sbuild")
    except Exception:  # noqa: BLE001 - running from a checkout
        return "0+unknown"


def commandlike(word: str, commands) -> bool:  # noqa: ANN001
    """A word that must not become an implicit build's SOURCE or TARGET: not a path (it does
    not exist and has no ``/``, ``.`` or ``:``) and one of ``commands``, close to one
    (``verfy``), or ``apps`` (spython's command that Apptainer lacks)."""
    if os.path.exists(word) or any(c in word for c in "/.:"):
        return False
    return word in commands or word == "apps" or suggest(word, commands, cutoff=0.8) is not None


def suggest(word: str, commands, cutoff: float = 0.6) -> str | None:  # noqa: ANN001
    """The command closest to ``word``, if one is close (``difflib``'s ratio >= ``cutoff``:
    0.8 takes ``verfy`` for ``verify`` but not ``plain`` for ``plugin``)."""
    import difflib

    close = difflib.get_close_matches(word, sorted(commands), n=1, cutoff=cutoff)
    return close[0] if close else None


def usage_error(error, name: str) -> tuple[str, str, int]:  # noqa: ANN001
    """(stderr, stdout, exit status) for a ``flags.CommandLineError``: argparse's form and 2
    under sbuild; Apptainer's (``Error for command "x": …`` on stderr, the usage on stdout)
    and 1 under its names."""
    if name not in COMPAT:
        return f"{error.usage}{error.prog}: error: {error.message}\n", "", 2
    return (f'Error for command "{error.command}": {error.message}\n',
            f"\n{error.usage}\nRun '{error.prog} --help' for more detailed usage information.\n", 1)


def unknown_command(name: str, word: str, known) -> tuple[str, str, int]:  # noqa: ANN001
    """(stderr, stdout, exit status) for an unknown command: an error with a "did you mean",
    never a build."""
    close = suggest(word, [w for w in known if w != "help"])
    if name in COMPAT:
        text = f'Error for command "{name}": unknown command "{word}" for "{name}"\n'
        if close:
            text += f"\nDid you mean this?\n\t{close}\n\n"
        return text, f"Run '{name} --help' for usage.\n", 1
    hint = f"did you mean {close!r}?" if close else "see sbuild --help"
    return (f"sbuild: error: unknown command {word!r}\n  hint: {hint} (`sbuild SOURCE TARGET` never takes "
            "a command's name as SOURCE or TARGET)\n", "", 2)


def register(subparsers, only: str | None = None) -> None:  # noqa: ANN001
    import argparse

    p = subparsers.add_parser("version", help="show the version")
    p.set_defaults(handler=_version)
    subparsers.add_parser("help", help="help about any command (help COMMAND)").add_argument(
        "topic", nargs="*", help=argparse.SUPPRESS)
    p = subparsers.add_parser("run-help", help="show the help of an image's runscript",
                              description="Print the image's %%help text.")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--app", default="", metavar="NAME", help="show the help of the SCIF app NAME")
    p.set_defaults(handler=_run_help)
    for word, why in UNAVAILABLE.items():
        if only in (None, word):
            p = subparsers.add_parser(word, help="(not available in this sbuild yet)",
                                      description=f"not available in this sbuild: {why}")
            p.add_argument("words", nargs=argparse.REMAINDER)
            p.set_defaults(handler=_unavailable, word=word)


def _version(args) -> int:  # noqa: ANN001
    print(version_line(getattr(args, "program", "sbuild"), long=False))
    return 0


def _run_help(args) -> int:  # noqa: ANN001
    from builder.images.metadata import read_metadata

    attrs = read_metadata(args.image)["data"]["attributes"]
    if args.app:
        attrs = attrs.get("apps", {}).get(args.app, {})
    text = attrs.get("helpfile") or ""
    print(text if text.endswith("\n") else text + "\n", end="") if text.strip() else print(
        "No help sections were defined for this image")
    return 0


def unavailable(word: str) -> Unavailable:
    """The error for an Apptainer command this sbuild does not have."""
    return Unavailable(f"{word} is not available in this sbuild yet: {UNAVAILABLE[word]}", hint="nothing was done")


def _unavailable(args) -> int:  # noqa: ANN001
    raise unavailable(args.word)
