"""``oras://`` SIF artifacts, as Apptainer stores them in OCI registries (protocols §5).

``pull_oras(ref, dest, options)``: resolve the manifest (an index is resolved by
platform), require exactly one layer of media type ``application/vnd.sylabs.sif.layer.v1.sif``
or the legacy misspelled ``appliciation/vnd.sylabs.sif.layer.tar`` (the config media
type is not checked), download it through the blob cache (size and sha256 verified),
check the SIF magic and place it at ``dest`` atomically.

``push_oras(image, ref, options, chunk=None)``: upload the 2-byte ``{}`` config and the
SIF blob (skipped when the registry has them; monolithic POST+PUT, or PATCH chunks of
``chunk`` bytes), then the manifest with Apptainer's media types and annotations
(``org.opencontainers.image.title`` = file name, ``created``), tagged directly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from base.errors import ImageError
from builder.images import file_digest
from builder.sources.oci.cache import cache_for
from builder.sources.oci.errors import RegistryError
from builder.sources.oci.puller import (PullOptions, Progress, _Downloader, _Spool,
                                        registry_client)
from builder.sources.oci.client import INDEX_TYPES
from builder.sources.oci.platform import select_manifest
from builder.sources.oci.reference import parse_reference
from builder.sources.oci.stream import CHUNK

__all__ = ["pull_oras", "push_oras", "SIF_LAYER", "SIF_LAYER_LEGACY", "SIF_CONFIG"]

SIF_LAYER = "application/vnd.sylabs.sif.layer.v1.sif"
SIF_LAYER_LEGACY = "appliciation/vnd.sylabs.sif.layer.tar"
SIF_CONFIG = "application/vnd.sylabs.sif.config.v1+json"
_EMPTY = b"{}"
_SIF_MAGIC = b"SIF_MAGIC"
_ARCH = {"01": "386", "02": "amd64", "03": "arm", "04": "arm64", "05": "ppc64", "06": "ppc64le",
         "07": "mips", "08": "mipsle", "09": "mips64", "10": "mips64le", "11": "s390x", "12": "riscv64"}


def _is_sif(path: Path) -> tuple[bool, str]:
    with open(path, "rb") as fh:
        head = fh.read(48)
    ok = head[32:41] == _SIF_MAGIC
    return ok, _ARCH.get(head[45:47].decode("ascii", "replace"), "unknown") if ok else "unknown"


def pull_oras(ref: str, dest: Path, options: PullOptions, progress: Progress | None = None) -> str:
    """Download the SIF at ``oras://ref`` to ``dest``; returns the layer digest."""
    reference = parse_reference(ref)
    client = registry_client(reference, options)
    body, media, _ = client.get_manifest(reference.repository, reference.version)
    doc = json.loads(body)
    if media in INDEX_TYPES or "manifests" in doc:
        desc = select_manifest(doc.get("manifests") or [], options.want())
        doc = json.loads(client.get_manifest(reference.repository, desc["digest"])[0])
    layers = doc.get("layers") or []
    if len(layers) != 1 or layers[0].get("mediaType") not in (SIF_LAYER, SIF_LAYER_LEGACY):
        found = ", ".join(str(l.get("mediaType")) for l in layers) or "none"
        raise ImageError(f"oras://{reference}: not a SIF artifact (layers: {found})",
                         hint="oras:// needs exactly one layer of type " + SIF_LAYER)
    layer = layers[0]
    dest = Path(dest)
    with cache_for(options) as cache:
        spool = _Spool(layer["digest"])
        _Downloader(client, reference.repository, cache, progress, threading.Event()).run(
            layer["digest"], layer.get("size"), spool)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        try:
            with spool.reader() as blob, os.fdopen(fd, "wb") as out:  # the blob's fd: a clean cannot take it
                shutil.copyfileobj(blob, out, CHUNK)
            if not _is_sif(Path(tmp))[0]:
                raise ImageError(f"oras://{reference}: the artifact is not a SIF image")
            os.chmod(tmp, 0o755)
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return layer["digest"]


def push_oras(image: Path, ref: str, options: PullOptions, *, chunk: int | None = None,
              annotations: dict[str, str] | None = None, created: str | None = None) -> str:
    """Push the SIF ``image`` to ``oras://ref``; returns the manifest digest."""
    image = Path(image)
    ok, arch = _is_sif(image)
    if not ok:
        raise ImageError(f"pushing {image}: not a SIF image", path=str(image))
    if arch == "unknown":
        raise ImageError(f"pushing {image}: the SIF architecture is unknown", path=str(image))
    reference = parse_reference(ref)
    client = registry_client(reference, options)
    repo = reference.repository
    scope = f"repository:{repo}:pull,push"
    sif_digest = file_digest(image)
    cfg_digest = "sha256:" + hashlib.sha256(_EMPTY).hexdigest()
    with tempfile.TemporaryDirectory(dir=options.tmpdir) as tmp:
        cfg_path = Path(tmp) / "config"
        cfg_path.write_bytes(_EMPTY)
        for digest, path in ((cfg_digest, cfg_path), (sif_digest, image)):
            if client.blob_exists(repo, digest, scope=scope):
                continue
            client.upload_blob(repo, digest, path, chunk=chunk)
    created = created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": SIF_CONFIG, "digest": cfg_digest, "size": len(_EMPTY),
                           "data": base64.b64encode(_EMPTY).decode()},
                "layers": [{"mediaType": SIF_LAYER, "digest": sif_digest, "size": image.stat().st_size,
                            "annotations": {"org.opencontainers.image.title": image.name}}],
                "annotations": {"org.opencontainers.image.created": created, **(annotations or {})}}
    body = json.dumps(manifest, separators=(",", ":")).encode()
    if not reference.tag and not reference.digest:
        raise RegistryError(f"pushing to {reference}: a tag is needed")
    client.put_manifest(repo, reference.tag or reference.version, body,
                        "application/vnd.oci.image.manifest.v1+json")
    return "sha256:" + hashlib.sha256(body).hexdigest()
