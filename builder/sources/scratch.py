"""``Bootstrap: scratch``: an empty rootfs with only the base environment (spec §B.6).

Everything else comes from ``%setup`` and ``%files``.
"""

from __future__ import annotations

from builder.bundle import Bundle
from builder.options import FetchOptions
from builder.recipe import Stage
from builder.sources.contract import Source, finish_fresh_rootfs

__all__ = ["ScratchSource"]


class ScratchSource(Source):
    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        finish_fresh_rootfs(bundle)
