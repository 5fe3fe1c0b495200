"""``sbuild instance start / list / stop``: named background instances.

``start`` takes the launch flags of ``exec`` (``builder.commands.run``) and starts the
image's startscript in the background through ``runtime.instances``; ``instance://NAME``
as an image joins it. Output: Apptainer's lines and ``list --json`` schema.
"""

from __future__ import annotations

from builder.commands import add_output_flags
from builder.commands.run import add_run_flags, run_options

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

__all__ = ["register"]


def register(subparsers, only: str | None = None) -> None:  # noqa: ARG001 - one command
    import argparse

    p = subparsers.add_parser("instance", help="manage background instances",
                              description="start, list and stop named background instances")
    sub = p.add_subparsers(dest="instance_command", metavar="SUBCOMMAND")
    s = sub.add_parser("start", help="start an instance")
    add_run_flags(s)
    s.add_argument("image")
    s.add_argument("name")
    s.add_argument("args", nargs=argparse.REMAINDER)
    s.set_defaults(handler=_start)
    s = sub.add_parser("list", help="list running instances")
    add_output_flags(s)
    s.add_argument("--json", action="store_true")
    s.add_argument("name", nargs="?", help="only instances matching this name (glob)")
    s.set_defaults(handler=_list)
    s = sub.add_parser("stop", help="stop instances")
    add_output_flags(s)
    s.add_argument("name", nargs="?")
    s.add_argument("-a", "--all", action="store_true", help="stop every instance")
    s.add_argument("-s", "--signal", default="TERM", help="signal to send (default TERM)")
    s.add_argument("-t", "--timeout", type=float, default=10.0, help="seconds before SIGKILL (default 10)")
    s.add_argument("-F", "--force", action="store_true", help="send SIGKILL at once")
    s.set_defaults(handler=_stop)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _start(args: argparse.Namespace) -> int:
    from builder.commands.uri import image_path
    from runtime import instances

    entry = instances.start(image_path(args.image, args), args.name, list(args.args), run_options(args))
    print(f"instance started successfully: {entry.name} (pid {entry.pid})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from runtime import instances

    rows = instances.listing(args.name)
    if args.json:
        import json

        print(json.dumps({"instances": [r.as_json() for r in rows]}, indent=2))
        return 0
    print(f"{'INSTANCE NAME':<20} {'PID':<8} IMAGE")
    for r in rows:
        print(f"{r.name:<20} {r.pid:<8} {r.image}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from base.errors import UsageError
    from runtime import instances

    if not args.all and not args.name:
        raise UsageError("instance stop: give an instance NAME or --all")
    stopped = instances.stop(None if args.all else args.name, signal_name="KILL" if args.force else args.signal,
                             timeout=args.timeout)
    for name in stopped:
        print(f"stopping {name} instance")
    return 0
