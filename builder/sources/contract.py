"""The contract every bootstrap agent implements: ``Source.fetch(bundle, stage, options)``.

A source fills ``bundle.rootfs`` for one stage (spec §B.1 step 2): it reads the stage's
header, never a later step's files, and receives its options typed (``FetchOptions``).
What later steps need from it goes on the Bundle: ``bootstrapped`` (header labels are
recorded), ``image_config`` (the SIF ``oci-config.json`` object) and ``base_labels``
(``org.opencontainers.image.base.*``). Errors are ``base.errors`` subclasses; one about a
header value is located at its recipe line (``header_error``).

Required header keys and agent support are not checked here: ``builder.sources.checks``
rejects such a recipe before anything is fetched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from base.errors import RecipeError, SbuildError

if TYPE_CHECKING:  # the table imports this module: keep it cheap
    from builder.bundle import Bundle
    from builder.options import FetchOptions
    from builder.recipe import Stage

__all__ = ["Source", "header_error", "finish_fresh_rootfs"]


class Source(ABC):
    """Fills a bundle's rootfs for one ``Bootstrap:`` agent; one subclass per agent file."""

    @abstractmethod
    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        """Fill ``bundle.rootfs`` as ``stage``'s header says; set ``bundle.bootstrapped``."""


def finish_fresh_rootfs(bundle: Bundle) -> None:
    """The last step of an agent that made the rootfs from nothing (busybox, debootstrap,
    scratch, the package agents): the base environment, the default runscript, and
    ``bundle.bootstrapped``."""
    from builder.rootfs import write_base_env, write_file

    write_base_env(bundle.rootfs, overwrite=True)
    write_file(bundle.rootfs / ".singularity.d" / "runscript", "#!/bin/sh\n", 0o755)
    bundle.bootstrapped = True


def header_error(stage: Stage, key: str, error: SbuildError) -> RecipeError:
    """``error`` (about the value of header ``key``) as a recipe error at that header's line."""
    return RecipeError(stage.locate(error.message, key=key, hint=error.hint))
