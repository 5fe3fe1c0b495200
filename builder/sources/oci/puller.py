"""Fetch an image into a rootfs: resolve, download layers in parallel, apply as they stream.

``fetch_to_rootfs(ref, rootfs, options, progress)`` picks the transport from the ref's
prefix (``docker://`` here; the local ones in ``local.py``), resolves the manifest for the
platform, and applies the layers in order. For a registry, up to ``options.parallel``
blobs download at once into the blob cache (hashed while written); layer *i* is
decompressed (in ``stream.LayerPump``'s thread) and applied while its bytes arrive, as
soon as layer *i-1* is applied; no step waits for a whole download. A
layer reader reaches end-of-file only after the blob's size and digest are verified, and
the uncompressed stream is checked against the config's ``diff_ids``. A layer that fails
to decompress or parse before its blob is complete waits (bounded) for the download's
verdict (``spool.Spool.verdict``): wrong bytes from the registry are reported as the digest
mismatch they are, naming the blob and the registry. On any error the
rootfs is left partly written: the caller removes it (nothing outside it is touched, and
no unverified blob enters the cache).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from base.env import apptainer_flag
from base.errors import ImageError, UsageError
from base.gojson import unmarshal
from builder.sources.oci.auth import Credentials, find_credentials
from builder.sources.oci.cache import BlobCache, cache_for
from builder.sources.oci.client import INDEX_TYPES, ClientOptions, RegistryClient
from builder.sources.oci.config import ImageConfig
from builder.sources.oci.errors import DigestError, LayerError, RegistryError, ReferenceError_
from builder.sources.oci.layer import LayerApplier
from builder.sources.oci.platform import Platform, host_platform, select_manifest
from builder.sources.oci.reference import _DIGEST, Reference, parse_reference  # (one digest grammar)
from builder.sources.oci.spool import Beat as _Beat
from builder.sources.oci.spool import Spool as _Spool
from builder.sources.oci.stream import CHUNK, LayerPump

__all__ = ["PullOptions", "fetch_to_rootfs", "Progress", "Resolved", "apply_layers",
           "registry_client", "manifest_digests"]

log = logging.getLogger("sbuild.sources.oci")
Progress = Callable[[str, int, int], None]  # (digest, bytes done, bytes total)
_TAR_TYPES = ("tar", "tar+gzip", "tar+zstd", "tar.gzip")


@dataclass(frozen=True)
class PullOptions:
    """How to fetch: platform, transport security, credentials, cache, privilege."""

    platform: Platform | None = None          # None: the host's
    nohttps: bool = False
    tls_verify: bool = True
    ca_bundle: str | None = None
    authfile: Path | None = None
    login: Credentials | None = None          # --docker-login
    cache_dir: Path | None = None             # None: default_cache_dir(environ)
    disable_cache: bool = False
    parallel: int = 3
    rootless: bool | None = None              # None: euid != 0
    docker_host: str | None = None
    tmpdir: Path | None = None
    environ: Mapping[str, str] | None = field(default=None, compare=False)

    def env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ

    def want(self) -> Platform:
        return self.platform or host_platform()


@dataclass
class Resolved:
    manifest: dict
    config: bytes
    digest: str | None
    tag: str | None
    name: str | None
    platform: Platform


class LayerSource(Protocol):
    def open_layer(self, index: int) -> contextlib.AbstractContextManager[BinaryIO]: ...


def registry_client(ref: Reference, options: PullOptions, **kw) -> RegistryClient:
    env = options.env()
    nohttps = options.nohttps or apptainer_flag("NOHTTPS", env)
    creds = find_credentials(ref.registry, login=options.login, authfile=options.authfile, environ=env)
    return RegistryClient(ref.api_host, ClientOptions(nohttps=nohttps, tls_verify=options.tls_verify,
                                                      ca_bundle=options.ca_bundle, credentials=creds,
                                                      **_patience(env)), **kw)


def _patience(env) -> dict:
    """``SBUILD_REGISTRY_TIMEOUT`` (seconds a request may wait for its next byte, default 60)
    and ``SBUILD_REGISTRY_RETRIES`` (tries per request, default 5): a stalled registry fails
    after about tries x timeout + the back-off between them (1+2+4+8 s by default)."""
    out = {}
    for key, field_, kind in (("SBUILD_REGISTRY_TIMEOUT", "timeout", float),
                              ("SBUILD_REGISTRY_RETRIES", "retries", int)):
        if env.get(key):
            try:
                out[field_] = kind(env[key])
            except ValueError:
                raise UsageError(f"{key}={env[key]!r}: not a number") from None
            if out[field_] <= 0:
                raise UsageError(f"{key}={env[key]!r}: must be above 0")
    return out


def fetch_to_rootfs(ref: str, rootfs: Path, options: PullOptions, progress: Progress | None = None, *,
                    sleep: Callable[[float], None] = time.sleep) -> ImageConfig:
    """Fill ``rootfs`` with the image ``ref``; see the package docstring for the refs.
    ``sleep`` waits out the registry client's retry back-off."""
    from builder.sources.oci import local

    if ref.startswith("docker://"):
        with cache_for(options) as cache:
            return _fetch_registry(ref, Path(rootfs), options, cache, progress, sleep)
    for prefix in local.TRANSPORTS:
        if ref.startswith(prefix + ":"):
            return local.fetch_local(prefix, ref[len(prefix) + 1:], Path(rootfs), options, progress)
    raise ReferenceError_(f"unsupported image source {ref!r}",
                          hint="use docker://, oci:, oci-archive:, docker-archive: or docker-daemon:")


def resolve_registry(client: RegistryClient, ref: Reference, want: Platform,
                     cache: BlobCache) -> Resolved:
    body, media, digest = client.get_manifest(ref.repository, ref.version)
    top_digest = digest
    for _ in range(4):
        doc = _json(body, f"manifest {ref}")
        if _is_index(doc, media):
            desc = _descriptor(select_manifest(_descriptors(doc, "manifests", ref), want), ref)
            body, media, digest = client.get_manifest(ref.repository, desc["digest"])
            continue
        if doc.get("schemaVersion") == 1:
            raise RegistryError(f"manifest {ref}: schema 1 manifests are not supported",
                                registry=ref.registry)
        break
    else:
        raise RegistryError(f"manifest {ref}: indexes nested too deeply", registry=ref.registry)
    cfg_desc = _check_image_manifest(doc, ref)
    downloader = _Downloader(client, ref.repository, cache, None, threading.Event())
    spool = _Spool(cfg_desc["digest"])
    downloader.run(cfg_desc["digest"], cfg_desc.get("size"), spool)
    with spool.reader() as fh:
        config = b"".join(iter(lambda: fh.read(CHUNK), b""))
    tag = ref.tag if not ref.digest else None
    name = f"{ref.name}:{tag}" if tag else str(ref)
    return Resolved(doc, config, top_digest, tag, name, want)


def manifest_digests(client: RegistryClient, ref: Reference, want: Platform) -> tuple[str, str]:
    """(the digest of ``ref``'s manifest, that of the image manifest in it for ``want``), the
    documents checked as ``resolve_registry`` checks them (what the URI image cache is keyed by)."""
    body, media, top = client.get_manifest(ref.repository, ref.version)
    doc = _json(body, f"manifest {ref}")
    if _is_index(doc, media):
        return top, _descriptor(select_manifest(_descriptors(doc, "manifests", ref), want), ref)["digest"]
    _check_image_manifest(doc, ref)
    return top, top


def _is_index(doc: dict, media: str) -> bool:
    """Is this manifest document an index (by its served media type, else its own)?"""
    media = media if media not in ("", "application/json", "text/plain") else doc.get("mediaType", "")
    return media in INDEX_TYPES or ("manifests" in doc and "layers" not in doc)


def _check_image_manifest(doc: dict, ref: Reference) -> dict:
    """An image manifest's config and layer descriptors checked; the config's descriptor."""
    config = _descriptor(doc.get("config"), ref, "config")
    _descriptors(doc, "layers", ref)
    return config


def _descriptors(doc: dict, key: str, ref: Reference) -> list[dict]:
    """``doc[key]``: a list of descriptors (each checked by ``_descriptor``)."""
    items = doc.get(key) or []
    if not isinstance(items, list):
        raise RegistryError(f"manifest {ref}: {key!r} is not a list: not a valid image manifest",
                            registry=ref.registry)
    return [_descriptor(d, ref, key) for d in items]


def _descriptor(desc: object, ref: Reference, what: str = "manifests") -> dict:
    """A descriptor from the registry: a mapping with a well-formed digest and a size >= 0 (a
    digest names a cache path: nothing else may reach it)."""
    ok = isinstance(desc, dict) and isinstance(desc.get("digest"), str) and _DIGEST.match(desc["digest"])
    size = desc.get("size", 0) if isinstance(desc, dict) else None
    if not ok or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError(f"manifest {ref}: a {what} descriptor has no valid digest and size: "
                            f"not a valid image manifest ({str(desc)[:120]})", registry=ref.registry)
    return desc


def _fetch_registry(text: str, rootfs: Path, options: PullOptions, cache: BlobCache,
                    progress: Progress | None, sleep: Callable[[float], None]) -> ImageConfig:
    ref = parse_reference(text)
    client = registry_client(ref, options, sleep=sleep)
    resolved = resolve_registry(client, ref, options.want(), cache)
    layers = _tar_layers(resolved.manifest)
    cancel = threading.Event()
    downloader = _Downloader(client, ref.repository, cache, progress, cancel)
    beat = _Beat()
    spools = [_Spool(desc["digest"], beat) for _, desc in layers]
    try:
        with ThreadPoolExecutor(max_workers=max(1, options.parallel), thread_name_prefix="sbuild-pull") as pool:
            for (_, desc), spool in zip(layers, spools):
                pool.submit(downloader.run_safely, desc["digest"], desc.get("size"), spool)
            try:
                apply_layers(resolved, rootfs, options, lambda i: spools[i].reader(),
                             verdict=lambda i: spools[i].verdict(layers[i][1].get("size")))
            finally:
                cancel.set()
    finally:
        for spool in spools:  # blobs no reader reached are released too
            spool.close()
    return _image_config(resolved)


def _image_config(resolved: Resolved) -> ImageConfig:
    import hashlib

    cfg_digest = "sha256:" + hashlib.sha256(resolved.config).hexdigest()
    image = ImageConfig.from_blob(resolved.config, resolved.platform, digest=resolved.digest,
                                  tag=resolved.tag, name=resolved.name, config_digest=cfg_digest)
    got = Platform(image.parsed.get("os") or "linux", image.parsed.get("architecture") or "",
                   image.parsed.get("variant"))
    if got.architecture and got.architecture != resolved.platform.architecture:
        log.warning("image architecture %s does not match the requested %s", got, resolved.platform)
    return image


def _tar_layers(manifest: dict) -> list[tuple[int, dict]]:
    layers = [(i, d) for i, d in enumerate(manifest.get("layers") or [])
              if any(str(d.get("mediaType", "")).endswith(t) for t in _TAR_TYPES)]
    if not layers:
        raise ImageError("no extractable OCI/Docker tar layers found in this image")
    return layers


def apply_layers(resolved: Resolved, rootfs: Path, options: PullOptions,
                 open_layer: Callable[[int], contextlib.AbstractContextManager[BinaryIO]],
                 verdict: Callable[[int], BaseException | None] | None = None) -> None:
    """Apply the manifest's tar layers in order; ``open_layer(i)`` gives the compressed bytes.

    Decompression and the diff_id hash run in ``LayerPump``'s thread, beside the applier.
    A layer is applied while its blob streams in, before its digest is known: when it fails
    to decompress or parse, ``verdict(i)`` says what the blob's own check found once its
    download is over (None: it verified); a blob that is not what its digest names is
    reported as that (the registry sent the wrong bytes), the layer's error as its cause."""
    config = _json(resolved.config, "image config") if resolved.config else {}
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    rootfs.mkdir(parents=True, exist_ok=True)
    layers = _tar_layers(resolved.manifest)
    applier = LayerApplier(rootfs, rootless=options.rootless)
    algos = [_algorithm(diff_ids[i]) if i < len(diff_ids) else "sha256" for i, _ in layers]
    with LayerPump(open_layer, [d.get("mediaType") for _, d in layers], algos) as pump:
        for n, (index, desc) in enumerate(layers):
            tar = pump.reader(n)
            try:
                stats = applier.apply(tar, layer=desc["digest"])
                tar.drain()
            except LayerError as e:
                found = verdict(n) if verdict is not None else None
                if isinstance(found, DigestError):
                    raise found from e
                raise
            if index < len(diff_ids) and tar.digest() != diff_ids[index]:
                raise DigestError(f"layer {desc['digest']}: uncompressed content has digest {tar.digest()}, "
                                  f"the config says {diff_ids[index]}", digest=desc["digest"])
            log.debug("applied layer %s: %d entries, %d bytes", desc["digest"], stats.entries, stats.bytes)
    applier.finish()


def _algorithm(diff_id: object) -> str:
    algo = str(diff_id).partition(":")[0]
    return algo if algo in ("sha256", "sha512") else "sha256"


def _json(data: bytes, what: str) -> dict:
    try:
        doc = unmarshal(data)
    except ValueError as e:
        raise RegistryError(f"reading {what}: not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise RegistryError(f"reading {what}: not a JSON object")
    return doc


class _Downloader:
    """Downloads one blob into the cache, feeding a spool; resumes with Range on drops."""

    def __init__(self, client: RegistryClient, repo: str, cache: BlobCache,
                 progress: Progress | None, cancel: threading.Event, attempts: int = 3) -> None:
        self.client, self.repo, self.cache = client, repo, cache
        self.progress, self.cancel, self.attempts = progress, cancel, attempts

    def run_safely(self, digest: str, size: int | None, spool: _Spool) -> None:
        try:
            self.run(digest, size, spool)
        except BaseException as e:  # handed to the reader, which raises it in the main thread
            spool.fail(e)

    def run(self, digest: str, size: int | None, spool: _Spool) -> None:
        with self.cache.lock(digest, alive=lambda: self._alive(digest, spool)):
            hit = self.cache.open(digest, size)
            if hit is not None:
                got = os.fstat(hit.fileno()).st_size
                spool.complete(hit, got)
                if self.progress:
                    self.progress(digest, got, got)
                return
            with self.cache.writer(digest, size) as w:
                spool.start(w.reader())
                try:
                    self._download(digest, size, w, spool)
                    w.commit()
                except DigestError as e:
                    raise DigestError(f"pulling {self.repo} from {self.client.host}: {e.message}",
                                      registry=self.client.host, digest=digest) from e
            spool.complete(spool.fh, w.written)

    def _alive(self, digest: str, spool: _Spool) -> None:
        if self.cancel.is_set():
            raise RegistryError(f"pulling blob {digest}: cancelled", digest=digest)
        spool.alive()

    def _download(self, digest: str, size: int | None, w, spool: _Spool) -> None:
        for attempt in range(self.attempts):
            try:
                for chunk in self.client.blob_chunks(self.repo, digest, offset=w.written):
                    if self.cancel.is_set():
                        raise RegistryError(f"pulling blob {digest}: cancelled", digest=digest)
                    w.write(chunk)
                    spool.advance(w.written)
                    if self.progress:
                        self.progress(digest, w.written, size or 0)
                return
            except RegistryError as e:
                if "connection lost" not in e.message or attempt + 1 == self.attempts:
                    raise
                log.debug("blob %s: connection lost at %d bytes, resuming", digest, w.written)
