"""``sbuild image.create`` and ``sbuild overlay create``: make an ext3 overlay image.

Both take ``[--size MiB] [--sparse] [--create-dir DIR]… [--force] IMG`` and make an ext3
image with a journal holding ``upper/`` and ``work/`` owned by the caller, usable at once
with ``--overlay`` here and in Apptainer. Default and minimum size: 64 MiB.
"""

from __future__ import annotations

import argparse
import logging

from builder.commands import add_output_flags
from builder.commands.flags import add_flag

__all__ = ["register"]

log = logging.getLogger("sbuild.images")


def _add_create_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMG", help="the overlay image to create")
    parser.add_argument("-s", "--size", type=int, default=64, metavar="MiB",
                        help="size in MiB (default and minimum 64)")
    add_flag(parser, "-S", "--sparse", env="SPARSE", action="store_true", help="create a sparse file")
    parser.add_argument("--create-dir", action="append", default=[], metavar="DIR",
                        help="also create upper/DIR (repeatable)")
    parser.add_argument("-F", "--force", action="store_true", help="overwrite an existing IMG")
    # the caller owns upper/ and work/, which is root under --fakeroot: nothing more to do
    add_flag(parser, "-f", "--fakeroot", env="FAKEROOT", action="store_true", help="for use with --fakeroot")
    parser.add_argument("--tmpdir", help=argparse.SUPPRESS)  # Apptainer's; sbuild needs no temp dir here
    add_output_flags(parser)
    parser.set_defaults(handler=_create)


def register(subparsers, only: str | None = None) -> None:
    create = subparsers.add_parser(
        "image.create", help="create an ext3 overlay image",
        description="Create an ext3 overlay image (with upper/ and work/) for --overlay.")
    _add_create_args(create)
    overlay = subparsers.add_parser("overlay", help="manage overlay images",
                                    description="Manage persistent overlay images.")
    add_output_flags(overlay)
    overlay.set_defaults(handler=lambda args: _usage(overlay, getattr(args, "program", "sbuild")))
    sub = overlay.add_subparsers(dest="overlay_command", metavar="SUBCOMMAND")
    _add_create_args(sub.add_parser(
        "create", help="create an ext3 overlay image",
        description="Create an ext3 overlay image (with upper/ and work/) for --overlay."))


def _usage(parser: argparse.ArgumentParser, program: str) -> int:
    """A group without its subcommand: sbuild's usage error (2), or Apptainer's usage on
    stdout and exit 1."""
    import sys

    if program != "sbuild":
        parser.print_usage(sys.stdout)
        print(f"\nRun '{parser.prog} --help' for more detailed usage information.")
        return 1
    parser.print_usage(sys.stderr)
    print("sbuild overlay: a subcommand is required (create)", file=sys.stderr)
    return 2


def _create(args: argparse.Namespace) -> int:
    from pathlib import Path

    from builder.images import OverlayOptions, create_overlay

    opts = OverlayOptions(size_mib=args.size, sparse=args.sparse, create_dirs=tuple(args.create_dir))
    result = create_overlay(Path(args.image), opts, force=args.force)
    log.info("created overlay image %s (%d MiB%s)", result.path, args.size,
             ", sparse" if args.sparse else "")
    return 0
