"""Rootless builds: which identity a build has, and running build work in a subuid namespace.

``build_identity(fakeroot)`` decides once per build, as Apptainer's ``--fakeroot`` does
(spec §B.8; implied for an unprivileged build from a recipe):

- ``host``: running as root; no namespace (``--fakeroot`` changes nothing).
- ``subuid``: unprivileged with /etc/subuid and /etc/subgid ranges and newuidmap: the
  user is root and ids 1..N are the subordinate range (Apptainer's fakeroot engine).
- ``root``: unprivileged without ranges: a single-id, root-mapped namespace (Apptainer's
  ``_APPTAINER_FAKEFAKEROOT``); files can be written, not chowned to other ids.

The identity is also the ``userns`` choice passed to ``runtime.run_in_sandbox`` for %post
and %test (``identity_userns``).

``call_in_userns(fn, *args)`` runs ``fn`` in a forked child that has entered a new user
namespace mapped like the runtime's ``subuid`` identity (the runtime's own code path:
``runtime.identity.choose_identity`` and the launcher's newuidmap/newgidmap step) plus a new
mount namespace, then returns ``fn``'s result (pickled back) or re-raises its SbuildError.
The build uses it where files owned by subordinate ids must be read, written or removed
from the host: debootstrap, copying between stages, packing the image, removing bundles.
Limit: ``fn``'s log messages stay in the child when the parent's logging is not a file.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
from collections.abc import Callable
from typing import Any, TypeVar

from base import errors
from base.errors import CapabilityError, SbuildError

__all__ = ["build_identity", "identity_userns", "call_in_userns", "IDENTITIES"]

log = logging.getLogger("sbuild.build")
IDENTITIES = ("host", "subuid", "root")
T = TypeVar("T")


def build_identity(fakeroot: bool = False, *, euid: int | None = None) -> str:
    """``host``, ``subuid`` or ``root`` (see the module docstring)."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        if fakeroot:
            log.info("--fakeroot: already root, building as root")
        return "host"
    from runtime.identity import choose_identity

    mode = choose_identity("auto").mode
    if mode == "root":
        log.info("no subordinate id range in /etc/subuid for this user: using a root-mapped namespace "
                 "(packages that chown to other users will fail)")
    return mode


def identity_userns(identity: str) -> str:
    """The ``userns`` argument of ``runtime.run_in_sandbox`` for a build identity."""
    return {"subuid": "subuid", "root": "root"}.get(identity, "auto")


def _ident():  # noqa: ANN202
    from runtime.identity import choose_identity

    return choose_identity("subuid")


def _child(fn: Callable[..., Any], args: tuple, kwargs: dict, status_w: int, sync_r: int, parent: int) -> None:
    from runtime import _sys

    result: tuple
    try:
        _sys.set_pdeathsig(signal.SIGKILL, parent)
        _sys.unshare(_sys.CLONE_NEWUSER)
        os.write(status_w, b"U")
        if os.read(sync_r, 1) != b"G":
            os._exit(255)
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        _sys.unshare(_sys.CLONE_NEWNS)
        _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)
        result = ("ok", fn(*args, **kwargs))
    except SbuildError as e:
        result = ("error", type(e).__name__, str(e), dict(vars(e)))
    except BaseException as e:  # noqa: BLE001 - carried to the parent and raised there
        result = ("bug", f"{type(e).__name__}: {e}")
    try:
        data = pickle.dumps(result)
    except Exception as e:  # noqa: BLE001
        data = pickle.dumps(("bug", f"result of {getattr(fn, '__name__', fn)} cannot be passed back: {e}"))
    view = memoryview(data)
    while view:
        view = view[os.write(status_w, view):]
    os._exit(0)


def _rebuild(name: str, message: str, state: dict) -> SbuildError:
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SbuildError)):
        cls = SbuildError
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


def call_in_userns(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a new subuid-mapped user namespace and mount namespace."""
    from runtime.process import kill_and_reap, set_subuid_maps

    ident = _ident()  # CapabilityError (what to install or add) when there is no range
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(status_r)
        os.close(sync_w)
        _child(fn, args, kwargs, status_w, sync_r, parent)
    os.close(status_w)
    os.close(sync_r)
    try:
        with os.fdopen(status_r, "rb") as fh:
            first = fh.read(1)
            if first == b"U":
                set_subuid_maps(pid, ident)
                os.write(sync_w, b"G")
                first = b""
            data = first + fh.read()
    except BaseException:
        kill_and_reap(pid)
        raise
    finally:
        os.close(sync_w)
    _, status = os.waitpid(pid, 0)
    if not data:
        raise CapabilityError(f"entering a user namespace for {getattr(fn, '__name__', 'a build step')} failed "
                              f"(exit status {os.waitstatus_to_exitcode(status)})",
                              hint="check that unprivileged user namespaces are enabled (sbuild doctor)")
    result = pickle.loads(data)  # noqa: S301 - our own child wrote it
    if result[0] == "ok":
        return result[1]
    if result[0] == "error":
        raise _rebuild(*result[1:])
    raise SbuildError(f"in the build's user namespace: {result[1]}")

