"""Frozen build options, one object per concern (DESIGN.md: never one god object).

- ``FetchOptions``: how an agent fills the rootfs (``builder.sources``), and how this
  build writes files: ``identity``, ``tmpdir``, ``arch`` and ``fix_perms`` live here, and
  the pipeline reads them here too (bundles, the user namespace, the SIF architecture).
- ``StepOptions``: how the recipe's sections run (``builder.steps``).
- ``builder.images.PackOptions``: how TARGET is packed; it holds ``SOURCE_DATE_EPOCH``,
  which the metadata step reads there too.
- ``CacheOptions``: the build cache (checkpoints, ``--no-cache``, ``--cache-from``…).
- ``BuildPlan``: the target, its format, ``--force`` (TARGET and %labels), ``--update``,
  ``--no-cleanup``, and the groups above.

Each value has exactly one home and is built once per command (``builder.commands.build``).
``identity`` is the runtime's ``Identity`` record (``host``/``subuid``/``root``, see
``builder.steps.userns``), decided once per build: the sources write files as it, the
pipeline enters its user namespace, and %post/%test run in the runtime with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from builder.images import PackOptions
from runtime.description import Identity

__all__ = ["FetchOptions", "StepOptions", "CacheOptions", "BuildPlan", "SECTION_NAMES"]

# the sections --section can name (spec §B.8)
SECTION_NAMES = ("pre", "setup", "files", "environment", "runscript", "startscript", "test", "help", "labels")


@dataclass(frozen=True)
class FetchOptions:
    arch: str | None = None  # --arch: the platform to pull, and the architecture labels name
    nohttps: bool = False
    authfile: str | None = None
    disable_cache: bool = False
    fix_perms: bool = False  # owner rwx on dirs, rw on files: for unpacked images and TARGET
    tmpdir: str | None = None  # where bundles and downloads go (None: the system default)
    identity: Identity = Identity()  # host (root) | subuid | root: how the build writes files
    login: object | None = None  # --docker-login credentials, asked for before the build starts
    library: str | None = None  # --library: the library for library:// refs without a host
    ca_bundle: str | None = None  # CA certificates for registries and libraries (pull --ca-bundle)
    transfer: Callable[[str, int, int], None] | None = field(default=None, compare=False)  # download progress


@dataclass(frozen=True)
class StepOptions:
    sections: frozenset[str] | None = None  # None: all
    notest: bool = False
    binds: tuple[str, ...] = ()
    cwd: str = field(default_factory=os.getcwd)
    host_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), compare=False)

    def allows(self, section: str) -> bool:
        return self.sections is None or section in self.sections


@dataclass(frozen=True)
class CacheOptions:
    """The build cache (``builder.cache``): ``enabled`` False is ``--disable-cache`` (none at
    all); ``reuse`` False is ``--no-cache`` (run every step, still record); ``rebuild``: stage
    names or numbers to rerun (``--rebuild``); ``explain``: log hit/miss and why per stage;
    ``max_size``: the store's cap in bytes (None: the default); ``cache_from``/``cache_to``:
    registry repositories (``docker://``/``oras://``); ``root``: the store (None: default)."""

    enabled: bool = True
    reuse: bool = True
    rebuild: frozenset[str] = frozenset()
    explain: bool = False
    max_size: int | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: str | None = None
    root: str | None = None


@dataclass(frozen=True)
class BuildPlan:
    target: Path
    format: str
    fetch: FetchOptions = FetchOptions()
    steps: StepOptions = StepOptions()
    pack: PackOptions = PackOptions()
    force: bool = False  # --force: overwrite TARGET; %labels override the base image's
    keep_bundle: bool = False
    update: bool = False  # --update: the last stage starts from the existing sandbox TARGET
    cache: CacheOptions = CacheOptions(enabled=False)  # the build cache (off unless the command says)

    @property
    def identity(self) -> Identity:
        return self.fetch.identity
