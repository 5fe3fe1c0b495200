"""Rootless builds: which identity a build has, decided once, and the user namespace it runs in.

``build_identity(fakeroot)`` returns the runtime's ``Identity`` record (the same one the
runtime launches with), as Apptainer's ``--fakeroot`` decides (spec §B.8; implied for an
unprivileged build from a recipe):

- ``host``: running as root; no namespace (``--fakeroot`` changes nothing).
- ``subuid``: unprivileged with /etc/subuid and /etc/subgid ranges and newuidmap: the
  user is root and ids 1..N are the subordinate range (Apptainer's fakeroot engine).
- ``root``: unprivileged without ranges: a single-id, root-mapped namespace (Apptainer's
  ``_APPTAINER_FAKEFAKEROOT``); files can be written, not chowned to other ids.

``caller_identity()`` is the identity of a conversion without ``--fakeroot``: the caller as
itself, no namespace. The build passes its identity to ``runtime.run_in_sandbox`` for every
``%post`` and ``%test``, so the runtime never decides it again. Work on files owned by
subordinate ids (debootstrap, copying between stages, packing, removing bundles) runs in the
build's user namespace through ``runtime.call_in_userns``. Only the runtime's public API is used.
"""

from __future__ import annotations

import logging
import os

import runtime
from runtime.description import Identity

__all__ = ["build_identity", "caller_identity", "Identity"]

log = logging.getLogger("sbuild.build")


def build_identity(fakeroot: bool = False, *, euid: int | None = None) -> Identity:
    """The build's identity (see the module docstring)."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        if fakeroot:
            log.info("--fakeroot: already root, building as root")
        return Identity("host", 0, os.getegid())
    identity = runtime.choose_identity("auto")
    if identity.mode == "root":
        log.info("no subordinate id range in /etc/subuid for this user: using a root-mapped namespace "
                 "(packages that chown to other users will fail)")
    return identity


def caller_identity() -> Identity:
    """The caller as itself, in no user namespace (a conversion without --fakeroot)."""
    return Identity("host", os.geteuid(), os.getegid())
