"""The runtime's Python API for the build pipeline: run ``%post`` and ``%test`` in a sandbox.

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
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from runtime.spec import Bind

__all__ = ["run_in_sandbox"]


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
    userns: str = "auto",
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
    from runtime.session import RunOptions, parse_bind, run_action

    if not Path(rootfs).is_dir():
        raise ImageError(f"running in {rootfs}: not a sandbox directory", path=str(rootfs))
    parsed: list[Bind] = []
    for b in binds:
        parsed.extend([b] if isinstance(b, Bind) else parse_bind(b))
    opts = RunOptions(
        binds=tuple(parsed), writable=writable, cleanenv=cleanenv, env=tuple((env or {}).items()),
        pwd=cwd, build_config=build_config, no_home=build_config, contain=False, userns=userns,
        stdio=(stdin, stdout, stderr), host_env=host_env,
    )
    result = run_action(os.fspath(rootfs), action, list(argv), opts)
    assert isinstance(result, int)
    return result
