"""``Bootstrap: scratch``: an empty rootfs with only the base environment (spec §B.6).

Everything else comes from ``%setup`` and ``%files``.
"""

from __future__ import annotations

from builder.bundle import Bundle
from builder.options import FetchOptions
from builder.recipe import Stage
from builder.rootfs import write_base_env, write_file
from builder.sources.contract import Source

__all__ = ["ScratchSource"]


class ScratchSource(Source):
    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        write_base_env(bundle.rootfs, overwrite=True)
        write_file(bundle.rootfs / ".singularity.d" / "runscript", "#!/bin/sh\n", 0o755)
        bundle.bootstrapped = True
