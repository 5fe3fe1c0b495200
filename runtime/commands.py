"""The ``exec``, ``run``, ``shell``, ``test``, ``instance`` and ``doctor`` commands.

Flags follow Apptainer's names. This module imports nothing heavy at load time: the
handlers import the runtime when they run, so that ``sbuild exec`` starts fast.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _common(p: argparse.ArgumentParser) -> None:
    from builder.commands import add_output_flags

    add_output_flags(p)
    p.add_argument("-B", "--bind", action="append", default=[], metavar="SRC[:DST[:ro|rw]]",
                   help="bind a host path into the container (repeatable, comma-separated)")
    p.add_argument("-o", "--overlay", action="append", default=[], metavar="DIR|IMG[:ro]",
                   help="persistent overlay: a directory or an ext3 image (repeatable)")
    p.add_argument("-w", "--writable", action="store_true", help="write into a sandbox or ext3 image")
    p.add_argument("--writable-tmpfs", action="store_true", help="writable, with changes kept in memory only")
    p.add_argument("-c", "--contain", action="store_true", help="empty /tmp, /var/tmp and home; a private /dev/pts")
    p.add_argument("-C", "--containall", action="store_true", help="--contain and --cleanenv")
    p.add_argument("-e", "--cleanenv", action="store_true", help="do not pass the host environment")
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="set a variable (repeatable)")
    p.add_argument("--pwd", help="working directory in the container")
    p.add_argument("-H", "--home", metavar="SRC[:DST]", help="home directory to bind")
    p.add_argument("--no-home", action="store_true", help="do not mount the home directory")
    p.add_argument("--app", help="run a SCIF app")
    p.add_argument("-f", "--fakeroot", action="store_true", help="appear as root (user namespace)")
    p.add_argument("-p", "--pid", action="store_true", help="own PID namespace (always on)")
    p.add_argument("-u", "--userns", action="store_true", help="user namespace (always on when unprivileged)")


def register(subparsers) -> None:
    for name, what in (("exec", "run a command in an image"), ("run", "run the image's runscript"),
                       ("shell", "start a shell in an image"), ("test", "run the image's %test script")):
        p = subparsers.add_parser(name, help=what, description=what)
        _common(p)
        if name == "shell":
            p.add_argument("-s", "--shell", help="shell to run (default /bin/sh)")
        p.add_argument("image", help="image file, sandbox directory or instance://NAME")
        if name == "exec":
            p.add_argument("command", help="command to run")
        p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
        p.set_defaults(handler=_action, action=name)
    _register_instance(subparsers)
    p = subparsers.add_parser("doctor", help="report what this host can do",
                              description="report which runtime capabilities this host has")
    from builder.commands import add_output_flags

    add_output_flags(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_doctor)


def _register_instance(subparsers) -> None:
    from builder.commands import add_output_flags

    p = subparsers.add_parser("instance", help="manage background instances",
                              description="start, list and stop named background instances")
    sub = p.add_subparsers(dest="instance_command", metavar="SUBCOMMAND")
    s = sub.add_parser("start", help="start an instance")
    _common(s)
    s.add_argument("image")
    s.add_argument("name")
    s.add_argument("args", nargs=argparse.REMAINDER)
    s.set_defaults(handler=_instance_start)
    s = sub.add_parser("list", help="list running instances")
    add_output_flags(s)
    s.add_argument("--json", action="store_true")
    s.add_argument("name", nargs="?", help="only instances matching this name (glob)")
    s.set_defaults(handler=_instance_list)
    s = sub.add_parser("stop", help="stop instances")
    add_output_flags(s)
    s.add_argument("name", nargs="?")
    s.add_argument("-a", "--all", action="store_true", help="stop every instance")
    s.add_argument("-s", "--signal", default="TERM", help="signal to send (default TERM)")
    s.add_argument("-t", "--timeout", type=float, default=10.0, help="seconds before SIGKILL (default 10)")
    s.add_argument("-F", "--force", action="store_true", help="send SIGKILL at once")
    s.set_defaults(handler=_instance_stop)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _options(args: argparse.Namespace):
    from builder.errors import UsageError
    from runtime.session import RunOptions, parse_bind

    binds = tuple(b for spec in args.bind for b in parse_bind(spec))
    env = []
    for item in args.env:
        parts = item.split(",") if all("=" in x for x in item.split(",")) else [item]
        for part in parts:
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise UsageError(f"bad --env {item!r}: expected K=V")
            env.append((key, value))
    if args.writable and args.writable_tmpfs:
        raise UsageError("--writable and --writable-tmpfs cannot be combined")
    return RunOptions(
        binds=binds, overlays=tuple(args.overlay), writable=args.writable, writable_tmpfs=args.writable_tmpfs,
        contain=args.contain or args.containall, cleanenv=args.cleanenv or args.containall, env=tuple(env),
        pwd=args.pwd, home=args.home, no_home=args.no_home, app=args.app, shell=getattr(args, "shell", None),
        userns="auto" if args.fakeroot else "self",
    )


def _action(args: argparse.Namespace) -> int:
    from runtime.session import run_action

    argv = list(args.args)
    if args.action == "exec":
        argv.insert(0, args.command)
    opts = _options(args)
    image, join = args.image, None
    if image.startswith("instance://"):
        from runtime import instances

        entry = instances.find(image[len("instance://"):])
        image, join = entry.image, entry.pid
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    return run_action(image, args.action, argv, opts, forward=True, join=join)


def _instance_start(args: argparse.Namespace) -> int:
    from runtime import instances

    entry = instances.start(args.image, args.name, list(args.args), _options(args))
    print(f"instance started successfully: {entry.name} (pid {entry.pid})")
    return 0


def _instance_list(args: argparse.Namespace) -> int:
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


def _instance_stop(args: argparse.Namespace) -> int:
    from builder.errors import UsageError
    from runtime import instances

    if not args.all and not args.name:
        raise UsageError("instance stop: give an instance NAME or --all")
    stopped = instances.stop(None if args.all else args.name, signal_name="KILL" if args.force else args.signal,
                             timeout=args.timeout)
    for name in stopped:
        print(f"stopping {name} instance")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from runtime import doctor

    report = doctor.check()
    if args.json:
        import json

        print(json.dumps([c.as_json() for c in report], indent=2))
    else:
        print(doctor.render(report))
    return 0
