"""sbuild's bundled overlay runtime (user, mount and PID namespaces, overlayfs, actions).

The launch order, one module per step (``sbuild exec IMG CMD``, or the build's ``%post``
through ``run_in_sandbox``):

1. CLI      ``builder.commands.run``: the command line (``parse_quick``, without argparse,
            or argparse) becomes ``RunOptions``; as root, ``runtime.prefetch`` mounts a
            squashfs image early and reads its /bin/sh ahead on a thread.
2. plan     ``runtime.plan``: ``RunOptions`` resolved against the host and the image into
            the launch description (``runtime.description``: ``RootPlan``, ``ProcessSpec``,
            ``IdentitySpec``), with ``runtime.identity`` (which user namespace) and
            ``runtime.lower`` (the image as the lower layer: loop, squashfuse, or extracted).
3. mounts   in the container's init, inside its new mount namespace: ``runtime.layers``
            (session tmpfs, image, overlays, upper, the merged root), then
            ``runtime.mounts`` (/dev, /proc, /sys, /tmp, home, cwd, /etc files, binds,
            read-only remount, ``pivot_root``).
4. process  ``runtime.process``: the process tree (fork, namespaces from
            ``runtime.namespaces``, the status pipe of ``runtime.child``), the command
            spawned, signals forwarded, the exit status returned.
5. actions  ``runtime.actions``: the environment and the action script the command runs
            in (env scripts sourced, ``--env`` applied, exec/run/shell/test/start).

``runtime.api`` walks these steps (``run_action``). Beside them: ``runtime.instances``
(named background containers), ``runtime.capabilities`` (the probes behind ``sbuild
doctor``), ``runtime.paths`` (where things are), ``runtime._sys`` (the system calls).

Public API:
    run_action(image, action, args, opts) -> int                 (runtime.api)
    run_in_sandbox(rootfs, argv, *, writable, binds, env, cleanenv, cwd, build_config,
                   stdin, stdout, stderr, userns, action) -> int   (runtime.api)
    call_in_userns(fn, *args, **kwargs) -> fn's result          (runtime.namespaces)
    RunOptions, Bind                                             (runtime.description)
    parse_bind(spec) -> [Bind]                                   (runtime.plan)
    choose_identity(mode, user=None), host_user()                (runtime.identity)

Imports: the base package, this package and ``builder.images.probe`` (the image reader),
nothing else of sbuild's. Attributes are imported on first use so that ``import runtime``
stays cheap.
"""

from __future__ import annotations

__all__ = ["run_action", "run_in_sandbox", "call_in_userns", "RunOptions", "Bind", "parse_bind", "choose_identity",
           "host_user"]

_WHERE = {"run_action": "runtime.api", "run_in_sandbox": "runtime.api", "call_in_userns": "runtime.namespaces",
          "RunOptions": "runtime.description", "Bind": "runtime.description", "parse_bind": "runtime.plan",
          "choose_identity": "runtime.identity", "host_user": "runtime.identity"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
