"""Apptainer's environment settings: ``APPTAINER_<NAME>``, else the legacy ``SINGULARITY_<NAME>``.

``apptainer_env("CACHEDIR", environ)`` is the value of ``$APPTAINER_CACHEDIR`` when it is set
and not empty, else that of ``$SINGULARITY_CACHEDIR`` (likewise), else ``None``: the
``APPTAINER_`` name wins, as in Apptainer, which still reads the ``SINGULARITY_`` one.
``apptainer_flag("NOHTTPS", environ)`` reads such a value as a switch: on for ``1``,
``true`` or ``yes`` (any case), off otherwise or when unset.

Each name is looked up on its own: ``DOCKER_USERNAME`` may come from one prefix and
``DOCKER_PASSWORD`` from the other, as Apptainer binds each to its flag separately.
``environ`` defaults to ``os.environ``. Cheap to import (``os`` only): ``base.cachedir``
uses it on the runtime's launch path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["apptainer_env", "apptainer_flag", "PREFIXES"]

PREFIXES = ("APPTAINER_", "SINGULARITY_")
_TRUE = ("1", "true", "yes")


def apptainer_env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``$APPTAINER_<name>``, else ``$SINGULARITY_<name>``; empty counts as unset."""
    env = os.environ if environ is None else environ
    for prefix in PREFIXES:
        value = env.get(prefix + name)
        if value:
            return value
    return None


def apptainer_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``apptainer_env(name)`` is ``1``, ``true`` or ``yes`` (in any case)."""
    return (apptainer_env(name, environ) or "").lower() in _TRUE
