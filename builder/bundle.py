"""The Bundle: the one mutable object passed between build steps.

A bundle is a work directory holding ``rootfs/`` (the stage's root filesystem) and
scratch files (host scripts, staged resolv.conf/hosts). Steps read the recipe stage and
options they are given, and change only the bundle. ``Bundle.create`` makes one in a
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
    stage_index: int = 0
    stage_name: str = ""
    bootstrapped: bool = False  # the agent filled the rootfs (header labels are recorded)
    done: list[str] = field(default_factory=list)  # steps run so far, for messages

    @property
    def rootfs(self) -> Path:
        return self.work / "rootfs"

    @classmethod
    def create(cls, tmpdir: str | os.PathLike | None, *, stage_index: int = 0, stage_name: str = "") -> Bundle:
        """A new bundle with an empty rootfs (0755) under ``tmpdir`` (None: the system default)."""
        try:
            work = Path(tempfile.mkdtemp(prefix="sbuild-bundle-", dir=tmpdir))
            (work / "rootfs").mkdir(mode=0o755)
            os.chmod(work / "rootfs", 0o755)
        except OSError as e:
            raise BuildError(f"creating the build bundle in {tmpdir or tempfile.gettempdir()}: {e.strerror}",
                             hint="set --tmpdir or TMPDIR to a writable directory") from e
        log.debug("bundle %s", work)
        return cls(work, stage_index=stage_index, stage_name=stage_name)

    def scratch(self, name: str) -> Path:
        """A path for a bundle-private file (outside the rootfs)."""
        return self.work / name

    def remove(self) -> None:
        """Delete the bundle, making read-only directories writable first."""
        remove_tree(self.work)
