"""``Bootstrap: docker | docker-archive | docker-daemon | oci | oci-archive | oras`` for the pipeline.

``OCISource`` builds the ref as Apptainer does (``[Registry/][Namespace/]From``;
``docker`` gets ``docker://``) and fills the bundle with ``fill_from_image``: the rootfs
from ``fetch_to_rootfs``, the base environment, the docker metadata (§C), and on the
Bundle the image config (``bundle.image_config``, the SIF ``oci-config.json`` object) and
the ``org.opencontainers.image.base.*`` labels (``bundle.base_labels``). ``sbuild pull``
fills its bundle with the same function. ``OrasSource`` downloads the SIF and unpacks it
like a local image (base environment kept, as Apptainer's localimage does).
``pull_options`` maps the build's ``FetchOptions`` to the puller's; credentials asked by
``--docker-login`` (``builder.commands.pull.prompt_login``) arrive as ``options.login``.
A ``From:`` that is not a valid reference is an error at its recipe line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from builder.bundle import Bundle
from builder.options import FetchOptions
from builder.recipe import Stage
from builder.rootfs import write_base_env
from builder.sources.contract import Source, header_error
from builder.sources.oci.config import base_labels, oci_config_json, write_docker_metadata
from builder.sources.oci.errors import ReferenceError_
from builder.sources.oci.platform import parse_platform
from builder.sources.oci.puller import PullOptions
from builder.sources.oci.puller import fetch_to_rootfs
from builder.sources.oci.reference import from_header

__all__ = ["OCISource", "OrasSource", "fill_from_image", "pull_options", "ref_for_stage"]


def ref_for_stage(header: dict) -> str:
    agent = (header.get("bootstrap") or "").strip().lower()
    ref = from_header(header.get("from", ""), header.get("registry"), header.get("namespace"))
    if agent in ("docker", "oras"):
        return f"{agent}://{ref.removeprefix('//')}"
    return f"{agent}:{ref}"


def pull_options(options: FetchOptions) -> PullOptions:
    """The puller's options for a build's (or ``sbuild pull``'s) ``FetchOptions``."""
    return PullOptions(platform=parse_platform(options.arch) if options.arch else None, nohttps=options.nohttps,
                       authfile=Path(options.authfile) if options.authfile else None, login=options.login,
                       disable_cache=options.disable_cache, tmpdir=Path(options.tmpdir) if options.tmpdir else None,
                       ca_bundle=options.ca_bundle)


def fill_from_image(bundle: Bundle, ref: str, options: PullOptions,
                    progress: Callable[[str, int, int], None] | None = None) -> None:
    """Fill ``bundle`` with the image ``ref``: rootfs, base environment, docker metadata,
    and the config and base labels on the Bundle."""
    image = fetch_to_rootfs(ref, bundle.rootfs, options, progress)
    write_base_env(bundle.rootfs, overwrite=True)
    write_docker_metadata(bundle.rootfs, image)
    bundle.image_config = oci_config_json(image)
    bundle.base_labels = base_labels(image)
    bundle.bootstrapped = True


class OCISource(Source):
    """docker, docker-archive, docker-daemon, oci, oci-archive: layers applied to the rootfs."""

    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        try:
            ref = ref_for_stage(stage.header or {})
            fill_from_image(bundle, ref, pull_options(options), options.transfer)
        except ReferenceError_ as e:
            raise header_error(stage, "from", e) from e


class OrasSource(Source):
    """``Bootstrap: oras``: download the SIF, then unpack it as a local image would be."""

    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        from builder.images import extract_image
        from builder.sources.oci.oras import pull_oras

        sif = Path(bundle.scratch("oras.sif"))
        try:
            pull_oras(ref_for_stage(stage.header or {}), sif, pull_options(options), options.transfer)
        except ReferenceError_ as e:
            raise header_error(stage, "from", e) from e
        from builder.signing.fingerprints import check_base

        check_base(str(sif), (stage.header or {}).get("fingerprints"), what="oras")  # signatures, Fingerprints:
        extract_image(sif, bundle.rootfs, force=True)
        sif.unlink()
        write_base_env(bundle.rootfs, overwrite=False)
        bundle.bootstrapped = True
