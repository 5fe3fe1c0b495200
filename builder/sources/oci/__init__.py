"""OCI/Docker image sources: registry client, blob cache, layer applier, config mapping.

Public API (stable; the build pipeline calls these):

``fetch_to_rootfs(ref: str, rootfs: Path, options: PullOptions, progress=None, *, sleep=time.sleep) -> ImageConfig``
    Fill the directory ``rootfs`` with the image ``ref``:
    ``docker://[registry/]name[:tag|@digest]``, ``oci:DIR[:tag|@digest]``,
    ``oci-archive:FILE[:tag]``, ``docker-archive:FILE[:name:tag]``, ``docker-daemon:IMAGE``.
    Layers download in parallel into the blob cache and are applied while they stream
    (umoci-equivalent: whiteouts, hardlinks, devices, xattrs, rootless rules; nothing is
    written outside ``rootfs``). ``progress(digest, done, total)`` is called as bytes
    arrive; ``sleep`` waits out the retry back-off (tests pass their own). On error the
    rootfs is partly written and the caller removes it. Raises
    ``RegistryError``/``AuthError``/``DigestError`` (exit 1), ``ReferenceError_``
    (usage, 2), ``PlatformError``/``LayerError`` (image, 2), ``CapabilityError`` (3).

``PullOptions``: frozen; ``platform`` (``parse_platform("arm64")``; None = host),
    ``nohttps``, ``tls_verify``, ``ca_bundle``, ``authfile``, ``login``
    (``Credentials(user, password)``), ``cache_dir``, ``disable_cache``, ``parallel``,
    ``rootless`` (None = euid != 0), ``docker_host``, ``tmpdir``, ``environ``.

``ImageConfig``: ``raw`` (config blob bytes), ``parsed``, ``config`` (the ``config``
    object), ``env``, ``entrypoint``, ``cmd``, ``labels``, ``created``, ``platform``,
    ``digest`` (manifest digest the ref resolved to), ``tag``, ``name``.

``write_docker_metadata(rootfs, image_config)``
    Writes ``/.singularity.d/env/10-docker2singularity.sh``, ``/.singularity.d/runscript``
    and ``/.singularity.d/labels.json`` (image labels) and empties ``/etc/hosts`` and
    ``/etc/resolv.conf``, as Apptainer does for docker bases (spec §C). The pipeline adds
    ``base_labels(image_config)`` to the automatic labels and stores
    ``oci_config_json(image_config)`` as the SIF ``oci-config.json`` object (both put on
    the Bundle by the pipeline's agent, ``agent.OCISource``).

Lower-level pieces: ``LayerApplier`` (apply layer tars), ``BlobCache``,
``RegistryClient``, ``parse_reference``, ``pull_oras``/``push_oras`` (``oras.py``).
"""

from builder.sources.oci.auth import Credentials
from builder.sources.oci.cache import BlobCache, default_cache_dir
from builder.sources.oci.client import RegistryClient
from builder.sources.oci.config import (ImageConfig, base_labels, env_script, labels_json,
                                        oci_config_json, runscript, write_docker_metadata)
from builder.sources.oci.errors import (AuthError, DigestError, LayerError, PlatformError,
                                        ReferenceError_, RegistryError)
from builder.sources.oci.puller import PullOptions, fetch_to_rootfs
from builder.sources.oci.layer import LayerApplier
from builder.sources.oci.platform import Platform, host_platform, parse_platform
from builder.sources.oci.reference import Reference, from_header, parse_reference

__all__ = [
    "fetch_to_rootfs", "PullOptions", "ImageConfig", "write_docker_metadata",
    "base_labels", "oci_config_json", "env_script", "runscript", "labels_json",
    "Credentials", "BlobCache", "default_cache_dir", "RegistryClient", "LayerApplier",
    "Platform", "parse_platform", "host_platform", "Reference", "parse_reference", "from_header",
    "RegistryError", "AuthError", "DigestError", "LayerError", "PlatformError", "ReferenceError_",
]

