"""Bootstrap agents: the one table from a ``Bootstrap:`` value to the source that fills a rootfs.

Each supported agent is a ``Source`` subclass (``builder.sources.contract``) in
``builder/sources/<agent>.py`` (the OCI transports in ``builder/sources/oci/agent.py``),
named here as ``module:Class`` and imported only when a build needs it (``Agent.load``),
so that loading the table stays cheap. ``AGENTS`` also records the header keys an agent
requires; ``builder.sources.checks`` is the one place that checks them (and support, and
unknown names, with the closest valid one), so that ``sbuild check`` rejects a recipe a
build would reject, before anything is fetched. Agents Apptainer knows but sbuild does
not build yet are listed with ``supported=False``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from builder.sources.contract import Source, header_error

__all__ = ["Agent", "AGENTS", "Source", "header_error", "lookup_agent"]


@dataclass(frozen=True)
class Agent:
    name: str
    source: str  # "module:Class" of its Source, imported when a build needs it ("" when unsupported)
    required: tuple[str, ...] = ()  # header keys (lower-case) a build cannot do without
    supported: bool = True

    def load(self) -> type[Source]:
        """The agent's ``Source`` class (imports its module)."""
        module, _, name = self.source.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, Source)):
            raise TypeError(f"{self.source} is not a Source")
        return cls


_OCI = "builder.sources.oci.agent:OCISource"

AGENTS: dict[str, Agent] = {
    a.name: a
    for a in (
        Agent("docker", _OCI, ("from",)),
        Agent("docker-archive", _OCI, ("from",)),
        Agent("docker-daemon", _OCI, ("from",)),
        Agent("oci", _OCI, ("from",)),
        Agent("oci-archive", _OCI, ("from",)),
        Agent("oras", "builder.sources.oci.agent:OrasSource", ("from",)),
        Agent("library", "builder.sources.library:LibrarySource", ("from",)),
        Agent("shub", "builder.sources.shub:ShubSource", ("from",)),
        Agent("localimage", "builder.sources.localimage:LocalImageSource", ("from",)),
        Agent("scratch", "builder.sources.scratch:ScratchSource"),
        Agent("busybox", "builder.sources.busybox:BusyboxSource", ("mirrorurl",)),
        Agent("debootstrap", "builder.sources.debootstrap:DebootstrapSource", ("mirrorurl", "osversion")),
        Agent("yum", "builder.sources.yum:YumSource", ("mirrorurl",)),
        Agent("dnf", "builder.sources.yum:YumSource", ("mirrorurl",)),
        Agent("zypper", "builder.sources.zypper:ZypperSource"),
        Agent("arch", "builder.sources.arch:ArchSource"),
        Agent("buildkit", "", ("from",), supported=False),
        Agent("dockerfile", "", ("from",), supported=False),
    )
}


def lookup_agent(name: str) -> Agent | None:
    """The agent for a ``Bootstrap:`` value (case-sensitive, as in Apptainer)."""
    return AGENTS.get(name)
