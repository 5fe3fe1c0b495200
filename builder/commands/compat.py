"""The program's names, Apptainer's global flags, messages and version, and the small commands.

One program answers to ``sbuild``, ``apptainer``, ``singularity`` and ``run-singularity`` (the
interpreter a ``.simg``'s first line names; ``builder.cli`` says which). Under
``apptainer``/``singularity`` (``COMPAT``) it is Apptainer 1.5's command line
(reference apptainer-cli.md §1-2): the global flags of ``GLOBAL_FLAGS`` before the command,
``level(values)`` their message level, messages as ``prefix`` writes them (these three live in
``builder.commands.leading``, the part on the launch path, and are re-exported), ``version_line``
what the version parsers of Snakemake, cwltool, spython and Nextflow read as Apptainer
``APPTAINER_VERSION`` (its local part says sbuild: ``apptainer version 1.5.0+sbuild.0.1.0``).

``register`` adds ``version``, ``help`` (``builder.cli`` rewrites ``help CMD`` to
``CMD --help``), ``run-help IMAGE`` and the commands this sbuild does not have yet
(``UNAVAILABLE``: signing, keys, remotes, plugins …), which fail with a clear error and
write nothing. ``suggest`` is the "did you mean" of an unknown command. Not on the launch
path: ``builder.cli`` imports it for the argparse commands and for errors.
"""

from __future__ import annotations

import os

from base.errors import UsageError
from builder.commands.leading import GLOBAL_FLAGS, Style, level, parse_globals, prefix

__all__ = ["COMPAT", "sbuild_version", "parse_globals", "add_global_flags", "GLOBAL_FLAGS", "level", "prefix", "version_line", "APPTAINER_VERSION",
           "UNAVAILABLE", "SBUILD_ONLY", "Style", "version_action", "register", "suggest", "Unavailable", "usage_error", "unknown_command", "unavailable",
           "commandlike"]

COMPAT = ("apptainer", "singularity")
APPTAINER_VERSION = "1.5.0"
SBUILD_ONLY = ("check", "doctor")  # sbuild's own commands: not under the Apptainer names

_SIGNING = "no key server is configured in sbuild (keys are local: sbuild key)"
UNAVAILABLE = {
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


def add_global_flags(parser) -> None:  # noqa: ANN001
    """The global flags on the root parser, for ``--help`` only (``parse_globals`` has taken
    them off argv before argparse runs)."""
    for flag in GLOBAL_FLAGS:
        if flag.dest != "version":
            parser.add_argument(*flag.names, action="store" if flag.takes_value else "store_true",
                                help=f"global flag (env {flag.env[0]})" if flag.env else "global flag")


def version_line(name: str, *, long: bool) -> str:
    """``--version`` (``long``) and ``version``: Apptainer's text under its names, sbuild's own
    under ``sbuild``."""
    ours = sbuild_version()
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


def sbuild_version() -> str:
    """This sbuild's version (``0+unknown`` when run from a checkout without metadata)."""
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
    never a build. ``apps`` (spython's call; Apptainer 1.5 has no such command, reference
    §4.5) is pointed at ``inspect --list-apps``."""
    close = "inspect --list-apps" if word == "apps" else suggest(word, [w for w in known if w != "help"])
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
