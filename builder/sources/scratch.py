"""``Bootstrap: scratch``: an empty rootfs with only the base environment (spec §B.6).

Everything else comes from ``%setup`` and ``%files``.
"""

from __future__ import annotations

from builder.bundle import Bundle
from builder.recipe import Stage
from builder.steps.baseenv import write_base_env
from builder.steps.paths import write_file
from builder.steps.options import FetchOptions

__all__ = ["fetch"]


def fetch(bundle: Bundle, stage: Stage, opts: FetchOptions) -> None:
    write_base_env(bundle.rootfs, overwrite=True)
    write_file(bundle.rootfs / ".singularity.d" / "runscript", "#!/bin/sh\n", 0o755)
    bundle.bootstrapped = True
