"""sbuild's bundled overlay runtime (user, mount and PID namespaces, overlayfs, actions).

The launch order, one module per step (``sbuild exec IMG CMD``, or the build's ``%post``
through ``run_in_sandbox``):

1. CLI      ``builder.commands.run``: the command line (``parse_quick``, without argparse,
            or argparse) becomes ``RunOptions``; as root, ``runtime.prefetch`` mounts a
            squashfs image early and reads its /bin/sh ahead on a thread.
2. plan     ``runtime.plan``: ``RunOptions`` resolved against the host and the image into
            the launch description (``runtime.description``: ``RootPlan``, ``ProcessSpec``,
            ``Identity``; ``choose_identity``: which user namespace), with
            ``runtime.lower`` (the image as the lower layer: loop, squashfuse, or extracted).
3. mounts   in the container's init, inside its new mount namespace: ``runtime.layers``
            (session tmpfs, image, overlays, upper, the merged root), then
            ``runtime.mounts`` (/dev, /proc, /sys, /tmp, home, cwd, /etc files, binds,
            read-only remount, ``pivot_root``).
4. process  ``runtime.process``: the process tree (forked by ``runtime.child``, which
            carries the children's reports; ``runtime.namespaces`` for subuid maps and
            instances), the command spawned, signals forwarded, the exit status returned.
5. actions  ``runtime.actions``: the environment and the action script the command runs
            in (env scripts sourced, ``--env`` applied, exec/run/shell/test/start).

``run_action``, below, walks these steps; a setup failure the container reported is raised
as the sbuild error it names. Flags off the common path are resolved in the plan step by
``runtime.features`` (``--no-mount``, namespaces, capabilities, ``--security``), with
``runtime.gpu`` (``--nv``/``--rocm``) and ``runtime.cgroups`` (``--cpus``/``--memory``),
imported only when used; ``runtime.envfile`` reads ``--env-file``. Beside them: ``runtime.instances``
(named background containers), ``runtime.capabilities`` (the probes behind ``sbuild
doctor``), ``runtime.paths`` (where things are), ``runtime._sys`` (the system calls).

Public API:
    run_action(image, action, args, opts) -> int                 (here)
    run_in_sandbox(rootfs, argv, *, writable, binds, env, cleanenv, cwd, build_config,
                   stdin, stdout, stderr, userns, action) -> int   (here)
    call_in_userns(fn, *args, **kwargs) -> fn's result          (runtime.namespaces)
    RunOptions, Bind, Identity                                   (runtime.description)
    parse_bind(spec) -> [Bind], parse_mount(spec) -> [Bind]      (runtime.plan)
    read_env_file(path, environ) -> {name: value}               (runtime.envfile)
    choose_identity(mode, user=None), host_user()                (runtime.plan)

Imports: the base package, this package and ``builder.images.probe`` (the image reader),
nothing else of sbuild's. Attributes, and the steps ``run_action`` calls, are imported on
first use so that ``import runtime`` stays cheap.

``run_in_sandbox`` is ``apptainer --build-config exec`` (spec §B.4) as a function call:
no home, no default binds, no /dev/pts, ``--cleanenv`` semantics by default, the sandbox
writable, cwd ``/``. The process tree it starts is always torn down before it returns (or
when the caller is killed). Identity, by caller:

- root: no user namespace; the command runs as real root in new mount and PID namespaces.
- unprivileged, ``userns="subuid"`` (or ``"auto"`` when the user has /etc/subuid and
  /etc/subgid ranges and newuidmap/newgidmap exist): a user namespace mapping the user to
  root and ids 1..N to the subordinate range, set by newuidmap/newgidmap; chown to any id
  in that range works, as apt/dpkg need. Files owned by root in the sandbox are owned by the
  user on the host; other ids land in the subordinate range.
- unprivileged, ``userns="root"`` (or ``"auto"`` without ranges): a single-id map, the user
  appears as root; files can be created, but chown to other ids fails (EINVAL).
- ``userns=Identity(...)``: the identity the caller chose already (the build's, decided once
  by ``builder.steps.userns.build_identity`` and used for every ``%post`` and ``%test``).
"""

from __future__ import annotations

from base import lean_os as os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from runtime.description import Bind, Identity, RunOptions
    from runtime.prefetch import Prefetched
    from runtime.process import Launched

__all__ = ["run_action", "run_in_sandbox", "call_in_userns", "RunOptions", "Bind", "Identity", "parse_bind",
           "parse_mount", "read_env_file", "choose_identity", "host_user"]

_WHERE = {"call_in_userns": "runtime.namespaces", "RunOptions": "runtime.description", "Bind": "runtime.description",
          "Identity": "runtime.description", "parse_bind": "runtime.plan", "choose_identity": "runtime.plan", "host_user": "runtime.plan",
          "parse_mount": "runtime.plan", "read_env_file": "runtime.envfile"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")


def run_action(image: str, action: str, args: list[str], opts: RunOptions, *,
               forward: bool = False, detach: bool = False, join: int | None = None,
               here: bool = False, prefetched: Prefetched | None = None) -> int | Launched:
    """Run ``action`` in ``image``; return its exit status (``detach``: the Launched).

    ``forward``: pass the signals the caller gets on to the container. ``here``: the caller
    exists only to run this (the CLI): it creates the namespaces itself and stays in them
    (``runtime.process``), one process less. ``prefetched``: the image's squashfs as
    ``runtime.prefetch`` mounted it (``here`` only, root), to use as the lower; closed here."""
    from runtime import process
    from runtime.plan import plan

    root = None
    try:
        root, proc, ident = plan(image, action, args, opts, join=join is not None,
                                 prefetched=prefetched if here else None)
        launched = process.start(root, proc, ident, detach=detach, join=join, block_signals=forward,
                                 here=here and join is None)
        code = process.wait(launched, forward=forward and not detach)  # (detach: L exits once init is forked)
        if launched.error:
            raise launched.error
        note = None if detach else process.death_note(code, root)
        if note:
            import logging

            logging.getLogger("sbuild.runtime").error("%s", note)
        return launched if detach else code
    finally:
        if prefetched is not None:
            os.close(prefetched.fd)  # the container attached its own copy (or failed)
        if root is not None and root.cgroup and not detach:
            from runtime.cgroups import remove

            remove(root.cgroup)


def run_in_sandbox(
    rootfs: str | os.PathLike,
    argv: list[str],
    *,
    writable: bool = True,
    binds: Iterable[Bind | str] = (),
    env: Mapping[str, str] | None = None,
    cleanenv: bool = True,
    cwd: str = "/",
    build_config: bool = True,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    userns: str | Identity = "auto",
    action: str = "exec",
    host_env: Mapping[str, str] | None = None,
) -> int:
    """Run ``argv`` in the sandbox directory ``rootfs``; return its exit status.

    ``env`` is applied like ``--env`` (after the image's env scripts); ``binds`` take
    ``Bind`` objects or ``"SRC[:DST[:ro|rw]]"`` strings; ``action`` is ``exec`` (run
    ``argv``), or ``test``/``run`` (``argv`` are then the script's arguments). A command
    killed by signal N returns 128+N. Raises ``RunError`` / ``CapabilityError`` /
    ``UsageError`` / ``ImageError`` when the container cannot be set up.
    """
    from base.errors import ImageError
    from runtime.description import Bind, RunOptions
    from runtime.plan import parse_bind

    if not os.path.isdir(rootfs):
        raise ImageError(f"running in {rootfs}: not a sandbox directory", path=str(rootfs))
    parsed: list[Bind] = []
    for b in binds:
        parsed.extend([b] if isinstance(b, Bind) else parse_bind(b))
    opts = RunOptions(
        binds=tuple(parsed), writable=writable, cleanenv=cleanenv, env=tuple((env or {}).items()),
        pwd=cwd, build_config=build_config, no_home=build_config, contain=False, userns=userns,
        stdio=(stdin, stdout, stderr), host_env=host_env, no_eval=True,
    )
    result = run_action(os.fspath(rootfs), action, list(argv), opts)
    assert isinstance(result, int)
    return result
