"""``Bootstrap: docker | docker-archive | docker-daemon | oci | oci-archive | oras`` for the pipeline.

``fetch(bundle, stage, opts)`` builds the ref as Apptainer does
(``[Registry/][Namespace/]From``; ``docker`` gets ``docker://``), fills the bundle's
rootfs with ``fetch_to_rootfs``, writes the base environment and the docker metadata
(§C), and leaves two files beside the rootfs for the metadata/pack steps:
``oci-config.json`` (the SIF JSON object) and ``oci-labels.json`` (the
``org.opencontainers.image.base.*`` labels, JSON object). ``oras`` downloads the SIF and
unpacks it like a local image (base environment kept, as Apptainer's localimage does).
Credentials asked by ``--docker-login`` (``builder.commands.pull.prompt_login``) arrive
as ``opts.login``.
"""

from __future__ import annotations

import json
from pathlib import Path

from base.errors import RecipeError, Diagnostic
from builder.sources.oci.config import base_labels, oci_config_json, write_docker_metadata
from builder.sources.oci.puller import FetchOptions, fetch_to_rootfs
from builder.sources.oci.platform import parse_platform
from builder.sources.oci.reference import from_header

__all__ = ["fetch", "ref_for_stage"]


def ref_for_stage(header: dict) -> str:
    agent = (header.get("bootstrap") or "").strip().lower()
    ref = from_header(header.get("from", ""), header.get("registry"), header.get("namespace"))
    if agent in ("docker", "oras"):
        return f"{agent}://{ref.removeprefix('//')}"
    return f"{agent}:{ref}"


def _fetch_oras(bundle, header: dict, options: FetchOptions, transfer) -> None:  # noqa: ANN001
    """``Bootstrap: oras``: download the SIF, then unpack it as a local image would be."""
    from builder.images import extract_image
    from builder.sources.oci.oras import pull_oras
    from builder.steps.baseenv import write_base_env

    sif = Path(bundle.scratch("oras.sif"))
    pull_oras(ref_for_stage(header), sif, options, transfer)
    extract_image(sif, bundle.rootfs, force=True)
    sif.unlink()
    write_base_env(bundle.rootfs, overwrite=False)
    bundle.bootstrapped = True


def fetch(bundle, stage, opts) -> None:
    """The pipeline's agent entry point (``builder.steps.pipeline`` calls it)."""
    from builder.steps.baseenv import write_base_env

    header = stage.header or {}
    if not (header.get("from") or "").strip():
        raise RecipeError(Diagnostic(getattr(stage, "path", "recipe"), getattr(stage, "line", 1), 1,
                                     "this bootstrap agent needs a From: header"))
    options = FetchOptions(platform=parse_platform(opts.arch) if getattr(opts, "arch", None) else None,
                           nohttps=getattr(opts, "nohttps", False),
                           authfile=Path(opts.authfile) if getattr(opts, "authfile", None) else None,
                           login=getattr(opts, "login", None),  # --docker-login's answers, when given
                           disable_cache=getattr(opts, "disable_cache", False),
                           tmpdir=Path(opts.tmpdir) if getattr(opts, "tmpdir", None) else None)
    if (header.get("bootstrap") or "").strip().lower() == "oras":
        _fetch_oras(bundle, header, options, getattr(opts, "transfer", None))
        return
    image = fetch_to_rootfs(ref_for_stage(header), bundle.rootfs, options, getattr(opts, "transfer", None))
    write_base_env(bundle.rootfs, overwrite=True)
    write_docker_metadata(bundle.rootfs, image)
    Path(bundle.scratch("oci-config.json")).write_bytes(oci_config_json(image))
    Path(bundle.scratch("oci-labels.json")).write_text(json.dumps(base_labels(image)))
    bundle.bootstrapped = True
