"""Frozen build options, split by concern (DESIGN.md: never one god object).

- ``FetchOptions``: how an agent fills the rootfs.
- ``StepOptions``: how the recipe's sections run and what the metadata step writes.
- packing options are ``builder.images.PackOptions``.
``BuildPlan`` groups them with the target for ``builder.steps.build_recipe``.

``identity`` (``host``/``subuid``/``root``, see ``builder.steps.userns``) is decided once
per build and copied into the groups that need it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from builder.images import PackOptions

__all__ = ["FetchOptions", "StepOptions", "BuildPlan", "SECTION_NAMES"]

# the sections --section can name (spec §B.8)
SECTION_NAMES = ("pre", "setup", "files", "environment", "runscript", "startscript", "test", "help", "labels")


@dataclass(frozen=True)
class FetchOptions:
    arch: str | None = None
    nohttps: bool = False
    authfile: str | None = None
    disable_cache: bool = False
    fix_perms: bool = False
    tmpdir: str | None = None
    identity: str = "host"  # host | subuid | root: how the agent must write the rootfs
    login: object | None = None  # --docker-login credentials, asked for before the build starts
    library: str | None = None  # --library: the library for library:// refs without a host
    transfer: Callable[[str, int, int], None] | None = field(default=None, compare=False)  # download progress


@dataclass(frozen=True)
class StepOptions:
    sections: frozenset[str] | None = None  # None: all
    notest: bool = False
    force: bool = False
    binds: tuple[str, ...] = ()
    userns: str = "auto"  # runtime.run_in_sandbox's userns for %post/%test (--fakeroot)
    source_date_epoch: int | None = None
    arch: str | None = None
    cwd: str = field(default_factory=os.getcwd)
    host_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), compare=False)

    def allows(self, section: str) -> bool:
        return self.sections is None or section in self.sections


@dataclass(frozen=True)
class BuildPlan:
    target: Path
    format: str
    fetch: FetchOptions = FetchOptions()
    steps: StepOptions = StepOptions()
    pack: PackOptions = PackOptions()
    force: bool = False
    tmpdir: str | None = None
    keep_bundle: bool = False
    update: bool = False  # --update: the last stage starts from the existing sandbox TARGET
    identity: str = "host"  # host | subuid | root (builder.steps.userns.build_identity)
