"""The Bundle: the one mutable object passed between build steps.

A bundle is a work directory holding ``rootfs/`` (the stage's root filesystem) and
scratch files (host scripts, staged resolv.conf/hosts), plus what the source tells the
later steps: ``bootstrapped`` (the agent filled the rootfs: header labels are recorded),
``image_config`` (an OCI base's config, stored as the SIF ``oci-config.json`` object) and
``base_labels`` (its ``org.opencontainers.image.base.*`` labels, for labels.json). Steps
read the recipe stage and options they are given, and change only the bundle. ``Bundle.create`` makes one in a
temporary directory; ``remove`` deletes it (also when files in it are read-only).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from base.errors import BuildError
from base.fsutil import remove_tree

__all__ = ["Bundle"]

log = logging.getLogger("sbuild.build")


@dataclass
class Bundle:
    work: Path  # the bundle directory; everything below it belongs to the build
    bootstrapped: bool = False  # the agent filled the rootfs (header labels are recorded)
    image_config: bytes | None = None  # the OCI base's config: the SIF oci-config.json object
    base_labels: dict[str, str] = field(default_factory=dict)  # org.opencontainers.image.base.*

    @property
    def rootfs(self) -> Path:
        return self.work / "rootfs"

    @classmethod
    def create(cls, tmpdir: str | os.PathLike | None) -> Bundle:
        """A new bundle with an empty rootfs (0755) under ``tmpdir`` (None: the system default)."""
        try:
            work = Path(tempfile.mkdtemp(prefix="sbuild-bundle-", dir=tmpdir))
            (work / "rootfs").mkdir(mode=0o755)
            os.chmod(work / "rootfs", 0o755)
        except OSError as e:
            raise BuildError(f"creating the build bundle in {tmpdir or tempfile.gettempdir()}: {e.strerror}",
                             hint="set --tmpdir or TMPDIR to a writable directory") from e
        log.debug("bundle %s", work)
        return cls(work)

    def scratch(self, name: str) -> Path:
        """A path for a bundle-private file (outside the rootfs)."""
        return self.work / name

    def remove(self) -> None:
        """Delete the bundle, making read-only directories writable first."""
        remove_tree(self.work)
