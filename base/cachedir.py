"""Where sbuild keeps its caches: one root, one sub-directory per kind of entry.

The root is ``$SBUILD_CACHEDIR`` as given; else ``sbuild/`` under ``$APPTAINER_CACHEDIR`` or
``$SINGULARITY_CACHEDIR`` (so Apptainer's own cache layout beside it is left alone); else
``$XDG_CACHE_HOME/sbuild``; else ``~/.cache/sbuild``. Below it: ``blobs/``, ``tmp/`` and
``locks/`` (the OCI blob cache), ``rootfs/`` (images the runtime extracted for unprivileged
runs), ``grammar/`` (the compiled recipe grammar), ``squashfs-blocks/`` (compressed blocks of
sbuild's squashfs packer, ``builder.images.blockcache``).

Cheap to import: the runtime calls it on its launch path.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # (collections.abc costs ~2.5 ms: this module is on the runtime's launch path)
    from collections.abc import Mapping

from base import lean_os as os
from base.env import apptainer_env

__all__ = ["cache_root"]


def cache_root(environ: Mapping[str, str] | None = None) -> str:
    """The cache root for this environment (not created here)."""
    env = os.environ if environ is None else environ
    if env.get("SBUILD_CACHEDIR"):
        return env["SBUILD_CACHEDIR"]
    legacy = apptainer_env("CACHEDIR", env)
    if legacy:
        return os.path.join(legacy, "sbuild")
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "sbuild")
