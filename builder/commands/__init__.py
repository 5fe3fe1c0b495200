"""One module per sbuild command; each exposes ``register(subparsers, only=None)``.

``only`` is the command word being run; a module that registers several commands may
register just that one (start-up cost), or ignore it.

``add_output_flags`` gives a command the ``--quiet``/``--verbose`` pair every command takes.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # not imported: ``sbuild exec`` loads this package and must not pay for argparse
    import argparse

__all__ = ["add_output_flags"]


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    group.add_argument("-v", "--verbose", action="store_true", help="print debug messages")
