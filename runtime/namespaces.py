"""Entering namespaces: a user namespace and its maps, the PID and mount namespaces, an instance's.

The container's launcher (``runtime.process``) and ``call_in_userns`` enter a ``subuid``
user namespace the same way: the user mapped to root and ids 1..N to its subordinate
ranges by newuidmap/newgidmap, run by the parent (``runtime.child``'s ``U``/``G``
hand-shake: a process cannot map ranges into its own namespace). The common launch's
one-id map (``runtime.process._unshare``) and an instance's namespaces (``join``) need no
parent's help. Not on ``sbuild exec``'s common path: imported for subuid maps and joins.

``call_in_userns(fn, *args)`` runs ``fn`` in a forked child that has entered a new user
namespace mapped like the ``subuid`` identity, as root in it, and a new mount namespace,
then returns ``fn``'s result or raises its ``SbuildError`` in the caller. The build uses it
where files owned by subordinate ids must be read, written or removed from the host.
Limit: ``fn``'s log messages stay in the child when the parent's logging is not a file.
"""

from __future__ import annotations

import os

from runtime import _sys
from runtime.child import call_in_child

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from runtime.child import End
    from runtime.description import Identity

__all__ = ["enter_subuid_userns", "set_subuid_maps", "join", "call_in_userns"]


def enter_subuid_userns(end: End) -> None:
    """In a child: a new user namespace whose maps the parent writes (``set_subuid_maps``)."""
    _sys.unshare(_sys.CLONE_NEWUSER)
    end.await_maps()
    os.setgroups([])


def set_subuid_maps(pid: int, ident: Identity) -> None:
    """Map root to the user and 1..N to the subordinate ranges in ``pid``'s user namespace."""
    import subprocess

    from base.errors import CapabilityError

    for prog, own, rng in (("newuidmap", ident.uid, ident.subuid), ("newgidmap", ident.gid, ident.subgid)):
        args = [prog, str(pid), "0", str(own), "1", "1", str(rng[0]), str(rng[1])]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            raise CapabilityError(f"mapping subordinate ids with {prog}: {r.stderr.strip() or r.returncode}",
                                  hint="check /etc/subuid and /etc/subgid, and that the uidmap package is installed")


def join(pid: int) -> None:
    """Enter the namespaces of instance init ``pid`` (user, UTS, IPC and network namespaces
    only when it has its own)."""
    from runtime.layers import SetupFailure

    fds = {}
    try:
        own = {}
        for ns in ("user", "mnt", "pid", "uts", "ipc", "net"):
            fds[ns] = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            own[ns] = os.stat(f"/proc/self/ns/{ns}").st_ino  # (before entering its mounts and its /proc)
        if os.fstat(fds["user"]).st_ino != own["user"]:
            _sys.setns(fds["user"], _sys.CLONE_NEWUSER)
        _sys.setns(fds["mnt"], _sys.CLONE_NEWNS)
        _sys.setns(fds["pid"], _sys.CLONE_NEWPID)
        for ns, flag in (("uts", _sys.CLONE_NEWUTS), ("ipc", _sys.CLONE_NEWIPC), ("net", _sys.CLONE_NEWNET)):
            if os.fstat(fds[ns]).st_ino != own[ns]:  # (--hostname, --ipc, --net)
                _sys.setns(fds[ns], flag)
    except OSError as e:
        raise SetupFailure("RunError", f"joining the instance (pid {pid}): {(e.strerror or str(e)).lower()}") from e
    finally:
        for fd in fds.values():
            os.close(fd)


def _enter_as_root(end: End) -> None:
    enter_subuid_userns(end)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    _sys.unshare(_sys.CLONE_NEWNS)
    _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)


def _describe(e: BaseException) -> tuple[str, str, dict | None]:
    from base.errors import SbuildError
    from runtime.child import describe

    if isinstance(e, SbuildError):
        return describe(e)
    return "SbuildError", f"in the build's user namespace: {type(e).__name__}: {e}", None


def call_in_userns(fn: Callable, /, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a new subuid-mapped user namespace and mount namespace."""
    from base.errors import CapabilityError
    from runtime.plan import choose_identity

    ident = choose_identity("subuid")  # CapabilityError (what to install or add) when there is no range
    reported, value, status = call_in_child(fn, args, kwargs, enter=_enter_as_root, describe=_describe,
                                            on_userns=lambda pid: set_subuid_maps(pid, ident))
    if not reported:
        raise CapabilityError(f"entering a user namespace for {getattr(fn, '__name__', 'a build step')} failed "
                              f"(exit status {status})",
                              hint="check that unprivileged user namespaces are enabled (sbuild doctor)")
    return value
