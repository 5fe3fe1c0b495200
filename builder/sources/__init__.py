"""Bootstrap agents: the one table from a ``Bootstrap:`` value to the source that fills a rootfs.

Each supported agent has a module ``builder/sources/<agent>.py`` (OCI transports share
``builder/sources/oci/``). ``AGENTS`` also records the header keys an agent requires, so
that ``sbuild check`` rejects a recipe a build would reject, before anything is fetched.
Agents Apptainer knows but sbuild does not build yet are listed with ``supported=False``
and a clear message; an unknown value suggests the closest valid name.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Agent", "AGENTS", "lookup_agent"]


@dataclass(frozen=True)
class Agent:
    name: str
    module: str  # where the source lives, imported when a build needs it
    required: tuple[str, ...] = ()  # header keys (lower-case) a build cannot do without
    supported: bool = True


_OCI = "builder.sources.oci"

AGENTS: dict[str, Agent] = {
    a.name: a
    for a in (
        Agent("docker", _OCI, ("from",)),
        Agent("docker-archive", _OCI, ("from",)),
        Agent("docker-daemon", _OCI, ("from",)),
        Agent("oci", _OCI, ("from",)),
        Agent("oci-archive", _OCI, ("from",)),
        Agent("oras", _OCI, ("from",)),
        Agent("library", "builder.sources.library", ("from",)),
        Agent("shub", "builder.sources.shub", ("from",)),
        Agent("localimage", "builder.sources.localimage", ("from",)),
        Agent("scratch", "builder.sources.scratch"),
        Agent("busybox", "builder.sources.busybox", ("mirrorurl",)),
        Agent("debootstrap", "builder.sources.debootstrap", ("mirrorurl", "osversion")),
        Agent("yum", "", ("mirrorurl",), supported=False),
        Agent("dnf", "", ("mirrorurl",), supported=False),
        Agent("zypper", "", (), supported=False),
        Agent("arch", "", (), supported=False),
        Agent("buildkit", "", ("from",), supported=False),
        Agent("dockerfile", "", ("from",), supported=False),
    )
}


def lookup_agent(name: str) -> Agent | None:
    """The agent for a ``Bootstrap:`` value (case-sensitive, as in Apptainer)."""
    return AGENTS.get(name)
