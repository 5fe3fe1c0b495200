"""``sbuild instance start / list / stop / stats``: named background instances.

``start`` takes the launch flags of ``exec`` (``builder.commands.action_flags``, the
instance scope) with the same non-interspersed parsing (``run._parser_class``), and starts
the image's startscript in the background through ``runtime.instances``;
``instance://NAME`` as an image joins it. Output as Apptainer's (reference §4.2, §7): INFO
lines on stderr, ``list`` in its columns (``INSTANCE NAME``, ``PID``, ``IP``, ``IMAGE``;
``--logs``) or its ``--json`` schema, ``stats`` from the instance's cgroup.
"""

from __future__ import annotations

from builder.commands import add_output_flags
from builder.commands.launch_options import prepare, run_options
from builder.commands.run import _parser_class, add_run_flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

__all__ = ["register", "table"]


def _info(message: str) -> None:
    import logging

    logging.getLogger("sbuild").info(message)


def register(subparsers, only: str | None = None) -> None:  # noqa: ARG001 - one command
    p = subparsers.add_parser("instance", help="manage background instances",
                              description="start, list, stop and measure named background instances")
    sub = p.add_subparsers(dest="instance_command", metavar="SUBCOMMAND")
    s = sub.add_parser("start", help="start an instance", allow_abbrev=False,
                       usage="%(prog)s [options] IMAGE NAME [ARGS...]")
    s.__class__ = _parser_class(type(s))
    s.sbuild_command = "instance"
    add_run_flags(s, "instance")
    s.add_argument("image")
    s.add_argument("args", nargs="*", help="the instance name, then the startscript's arguments")
    s.set_defaults(handler=_start)
    s = sub.add_parser("list", help="list running instances")
    add_output_flags(s)
    s.add_argument("-j", "--json", action="store_true", help="print as JSON")
    s.add_argument("-l", "--logs", action="store_true", help="print the log files' paths")
    s.add_argument("-a", "--all", action="store_true", help="all instances (--sharens ones too)")
    s.add_argument("-u", "--user", help="another user's instances (root only)")
    s.add_argument("name", nargs="?", help="only instances matching this name (glob)")
    s.set_defaults(handler=_list)
    s = sub.add_parser("stop", help="stop instances")
    add_output_flags(s)
    s.add_argument("name", nargs="?")
    s.add_argument("-a", "--all", action="store_true", help="stop every instance")
    s.add_argument("-s", "--signal", default="TERM", help="signal to send (default TERM)")
    s.add_argument("-t", "--timeout", type=float, default=10.0, help="seconds before SIGKILL (default 10)")
    s.add_argument("-F", "-f", "--force", action="store_true", help="send SIGKILL at once")
    s.add_argument("-u", "--user", help="another user's instances (root only)")
    s.set_defaults(handler=_stop)
    s = sub.add_parser("stats", help="resource usage of an instance")
    add_output_flags(s)
    s.add_argument("-j", "--json", action="store_true", help="print as JSON")
    s.add_argument("--no-stream", action="store_true", help="print once")
    s.add_argument("-u", "--user", help="another user's instances (root only)")
    s.add_argument("name")
    s.set_defaults(handler=_stats)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _start(args: argparse.Namespace) -> int:
    from builder.commands.uri import image_path
    from runtime import instances

    prepare(args, "instance")
    entry = instances.start(image_path(args.image, args), args.name, list(args.args), run_options(args))
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write(f"{entry.pid}\n")
    _info("instance started successfully")
    return 0


def table(rows: list[list[str]]) -> str:
    """Go's tabwriter as Apptainer sets it up (min width 0, padding 4, spaces)."""
    widths = [max(len(r[i]) for r in rows) + 4 for i in range(len(rows[0]) - 1)]
    return "".join("".join(c.ljust(w) for c, w in zip(r, widths)) + r[-1] + "\n" for r in rows)


def _check_user(args) -> None:
    import os

    from base.errors import UsageError

    if getattr(args, "user", None) and os.getuid() != 0:
        raise UsageError("only root can list or stop another user's instances (--user)")


def _list(args: argparse.Namespace) -> int:
    import sys

    from base.errors import UsageError
    from runtime import instances

    _check_user(args)
    if args.json and args.logs:
        raise UsageError("--json and --logs cannot be combined")
    rows = instances.listing(args.name)
    if args.json:
        import json

        print(json.dumps({"instances": [r.as_json() for r in rows]}, indent="\t"))
        return 0
    if args.logs:
        lines = [["INSTANCE NAME", "PID", "LOGS"]]
        for r in rows:
            logs = r.as_json()
            lines += [[r.name, str(r.pid), logs["logErrPath"]], ["", "", logs["logOutPath"]]]
    else:
        lines = [["INSTANCE NAME", "PID", "IP", "IMAGE"]] + [[r.name, str(r.pid), r.ip, r.image] for r in rows]
    sys.stdout.write(table(lines))
    return 0


def _stop(args: argparse.Namespace) -> int:
    from base.errors import UsageError
    from runtime import instances

    _check_user(args)
    if not args.all and not args.name:
        raise UsageError("instance stop: give an instance NAME or --all")
    targets = instances.listing() if args.all else instances.matching(args.name)
    for inst in targets:
        _info(f"Stopping {inst.name} instance of {inst.image} (PID={inst.pid})")
    instances.stop_these(targets, signal_name="KILL" if args.force else args.signal, timeout=args.timeout)
    return 0


def _stats(args: argparse.Namespace) -> int:
    from runtime import instances

    _check_user(args)
    inst = instances.find(args.name)
    if args.json and not args.no_stream:
        import logging

        logging.getLogger("sbuild").warning("--json forces --no-stream")
    stats = instances.stats(inst)
    _info(f"Stats for {inst.name} instance of {inst.image} (PID={inst.pid})")
    if args.json:
        import json

        print(json.dumps(stats["raw"], indent="\t"))
        return 0
    print(table([["INSTANCE NAME", "CPU USAGE", "MEM USAGE / LIMIT", "MEM %", "BLOCK I/O", "PIDS"],
                 [inst.name, stats["cpu"], stats["mem"], stats["mem_pct"], stats["io"], str(stats["pids"])]]), end="")
    return 0
