"""Rootless builds: which identity a build has, and running build work in a subuid namespace.

``build_identity(fakeroot)`` decides once per build, as Apptainer's ``--fakeroot`` does
(spec §B.8; implied for an unprivileged build from a recipe):

- ``host``: running as root; no namespace (``--fakeroot`` changes nothing).
- ``subuid``: unprivileged with /etc/subuid and /etc/subgid ranges and newuidmap: the
  user is root and ids 1..N are the subordinate range (Apptainer's fakeroot engine).
- ``root``: unprivileged without ranges: a single-id, root-mapped namespace (Apptainer's
  ``_APPTAINER_FAKEFAKEROOT``); files can be written, not chowned to other ids.

The identity is also the ``userns`` choice passed to ``runtime.run_in_sandbox`` for %post
and %test (``identity_userns``). ``call_in_userns(fn, *args)`` is the runtime's
(``runtime.call_in_userns``): ``fn`` runs in a subuid-mapped user namespace, where files
owned by subordinate ids can be read, written or removed (debootstrap, copying between
stages, packing the image, removing bundles). Only the runtime's public API is used here.
"""

from __future__ import annotations

import logging
import os

import runtime

__all__ = ["build_identity", "identity_userns", "call_in_userns", "IDENTITIES"]

log = logging.getLogger("sbuild.build")
IDENTITIES = ("host", "subuid", "root")


def build_identity(fakeroot: bool = False, *, euid: int | None = None) -> str:
    """``host``, ``subuid`` or ``root`` (see the module docstring)."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        if fakeroot:
            log.info("--fakeroot: already root, building as root")
        return "host"
    mode = runtime.choose_identity("auto").mode
    if mode == "root":
        log.info("no subordinate id range in /etc/subuid for this user: using a root-mapped namespace "
                 "(packages that chown to other users will fail)")
    return mode


def identity_userns(identity: str) -> str:
    """The ``userns`` argument of ``runtime.run_in_sandbox`` for a build identity."""
    return {"subuid": "subuid", "root": "root"}.get(identity, "auto")


def call_in_userns(fn, /, *args, **kwargs):  # noqa: ANN001, ANN201 - fn's own types
    """``fn(*args, **kwargs)`` in a new subuid-mapped user namespace and mount namespace
    (``runtime.call_in_userns``)."""
    return runtime.call_in_userns(fn, *args, **kwargs)
