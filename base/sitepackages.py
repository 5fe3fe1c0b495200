"""Third-party packages when Python was started without ``site``.

sbuild's launcher starts Python with ``-S`` (``builder.commands.launcher``: ~10 ms less per
command), so site-packages are not on ``sys.path`` until something needs them: the argparse
commands, PySquashfsImage, a URI image's pull. ``load()`` puts them there, once; it does
nothing when ``site`` already ran. Standard library only (``sys``; ``site`` when needed).
"""

from __future__ import annotations

import sys

__all__ = ["load"]


def load() -> None:
    """Put site-packages on ``sys.path`` if Python was started with ``-S``."""
    if sys.flags.no_site:
        import site

        if site.ENABLE_USER_SITE is None:  # site.main() has not run yet
            site.main()
