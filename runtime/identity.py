"""Which user namespace a container (or a build step) gets, and who the host user is.

``choose_identity(mode, user)`` turns the ``userns`` choice (``self``, ``root``,
``subuid``, ``auto``) into an ``IdentitySpec`` for this host: as root, no namespace;
unprivileged, a one-id map or, with ``subuid``, the user's /etc/subuid and /etc/subgid
ranges mapped by newuidmap/newgidmap. Reads /etc/passwd, /etc/group and the subordinate
id files; changes nothing.
"""

from __future__ import annotations

import os

from base.errors import CapabilityError, UsageError
from runtime.description import HostUser, IdentitySpec

__all__ = ["host_user", "subid_range", "choose_identity"]


def host_user() -> HostUser:
    """The calling user as /etc/passwd (or the environment) describes them."""
    import pwd

    uid, gid = os.getuid(), os.getgid()
    try:
        entry = pwd.getpwuid(uid)
        name, home, shell, gecos = entry.pw_name, entry.pw_dir, entry.pw_shell, entry.pw_gecos
    except KeyError:
        name, home, shell, gecos = os.environ.get("USER", f"u{uid}"), os.environ.get("HOME", "/"), "/bin/sh", ""
    groups = []
    try:
        import grp

        for g in dict.fromkeys([gid, *os.getgroups()]):
            try:
                groups.append((g, grp.getgrgid(g).gr_name))
            except KeyError:
                pass
    except ImportError:  # pragma: no cover
        pass
    return HostUser(uid, gid, name, home, shell or "/bin/sh", gecos, tuple(groups))


def subid_range(file: str, user: HostUser) -> tuple[int, int] | None:
    """``(start, count)`` of ``user``'s range in /etc/subuid or /etc/subgid, or None."""
    try:
        with open(file) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (user.name, str(user.uid)):
                    return int(parts[1]), int(parts[2])
    except (OSError, ValueError):
        pass
    return None


def choose_identity(mode: str, user: HostUser | None = None) -> IdentitySpec:
    """Which user namespace to use (``user``: the host user, looked up when None).

    As root: none, whatever ``mode`` says (root needs no mapping). Unprivileged:
    ``self`` maps the user to itself (one id; what ``exec``/``run``/``shell`` use);
    ``root`` maps the user to root (one id: files can be created but not chowned);
    ``subuid`` maps the user to root and 1..N to its /etc/subuid and /etc/subgid ranges via
    newuidmap/newgidmap (what package managers need); ``auto`` is ``subuid`` when the user has
    both ranges and newuidmap/newgidmap exist, else ``root``.
    """
    user = host_user() if user is None else user
    if user.uid == 0:
        return IdentitySpec("host", 0, user.gid)
    if mode in ("subuid", "auto"):
        su, sg = subid_range("/etc/subuid", user), subid_range("/etc/subgid", user)
        from shutil import which

        tools = which("newuidmap") and which("newgidmap")
        if su and sg and tools:
            return IdentitySpec("subuid", user.uid, user.gid, su, sg)
        if mode == "subuid":
            raise CapabilityError(f"mapping subordinate ids for {user.name}: "
                                  + ("newuidmap/newgidmap not found" if not tools else "no range in /etc/subuid or /etc/subgid"),
                                  hint="install uidmap and add a range, e.g. usermod --add-subuids 100000-165535 "
                                       f"--add-subgids 100000-165535 {user.name}")
        mode = "root"
    if mode not in ("self", "root"):
        raise UsageError(f"unknown user namespace mode {mode!r}")
    return IdentitySpec(mode, user.uid, user.gid)
