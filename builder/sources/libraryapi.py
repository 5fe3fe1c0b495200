"""The Sylabs Cloud Library API as a client sees it (protocols §3.2-§3.4).

``LibraryClient(base, http)`` speaks the JSON endpoints, each answer in the ``jsonresp``
envelope ``{"data": …, "error": {"code", "message"}}``: ``/version``, ``/v1/images/<ref>``,
``/v1/containers/<path>`` (to say which tags and architectures exist when a lookup
fails) and the legacy download ``/v1/imagefile/<ref>`` (a 303 is not followed: the
caller downloads its ``Location`` in Range parts). ``oci_pull`` is the direct OCI path:
``/v1/oci-redirect`` gives a registry, a token and a repository name; the image index is
resolved by architecture to a manifest whose single layer is the SIF
(``application/vnd.sylabs.sif.layer.v1.sif``), whose config says which architecture and
image hash it holds. ``discover`` reads a remote's ``/assets/config/config.prod.json``.

The library's token goes only to the library's own scheme+host, the registry token only
to the registry's (``download.Http``); neither ever appears in a message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from builder.sources.download import Expect, Http, store
from builder.sources.oci.errors import DigestError, PlatformError, RegistryError

__all__ = ["LibraryClient", "LibraryImage", "discover", "newer_or_equal", "OCI_INDEX", "OCI_MANIFEST", "SIF_LAYER",
           "SIF_CONFIG", "ARCH_TAGS_API"]

log = logging.getLogger("sbuild.sources.library")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIF_LAYER = "application/vnd.sylabs.sif.layer.v1.sif"
SIF_CONFIG = "application/vnd.sylabs.sif.config.v1+json"
ARCH_TAGS_API = "2.0.0-alpha.2"  # from this apiVersion on, tags are per architecture
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def newer_or_equal(version: str, than: str) -> bool:
    """Semantic-version ``version >= than`` (pre-releases sort before their release)."""
    def key(v: str) -> tuple:
        core, _, pre = v.strip().lstrip("v").partition("-")
        nums = tuple(int(x) if x.isdigit() else 0 for x in (core.split(".") + ["0", "0"])[:3])
        parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else ()
        return nums + ((0, parts) if pre else (1, ()))
    try:
        return key(version) >= key(than)
    except ValueError:
        return False


def _envelope(resp, what: str, http: Http):
    try:
        doc = resp.json()
    except ValueError as e:
        raise RegistryError(f"{what}: {http.service}: the answer is not JSON", registry=http.service) from e
    if not isinstance(doc, dict):
        raise RegistryError(f"{what}: {http.service}: the answer is not a JSON object", registry=http.service)
    err = doc.get("error")
    if err:
        message = err.get("message") if isinstance(err, dict) else str(err)
        raise RegistryError(f"{what}: {http.service}: {message}", registry=http.service)
    return doc.get("data")


def discover(http: Http, remote: str) -> str:
    """The library URL a remote endpoint announces (``libraryAPI.uri``)."""
    url = remote.rstrip("/") + "/assets/config/config.prod.json"
    resp = http.get(url, what="discovering the library of remote " + remote)
    try:
        uri = (resp.json().get("libraryAPI") or {}).get("uri")
    except (ValueError, AttributeError):
        uri = None
    if not uri:
        raise RegistryError(f"discovering the library of remote {remote}: no libraryAPI uri in its config",
                            registry=remote)
    return str(uri).rstrip("/")


@dataclass(frozen=True)
class LibraryImage:
    """The fields of a library ``Image`` sbuild uses."""

    hash: str           # sha256.<hex> or sif.<uuid>
    size: int | None    # bytes (sregistry says megabytes: not trusted for Range parts then)
    arch: str | None
    signed: bool | None

    @property
    def digest(self) -> str | None:
        """``sha256:<hex>`` when the hash is a sha256, else None (cannot be verified)."""
        algo, _, hexpart = self.hash.partition(".")
        d = f"sha256:{self.hash}" if not hexpart else f"{algo}:{hexpart}"  # sregistry: a bare sha256 version
        return d if _DIGEST.match(d) else None


class LibraryClient:
    """Talks to one library (``base`` is its URL, e.g. ``https://library.sylabs.io``)."""

    def __init__(self, base: str, http: Http) -> None:
        self.base = base.rstrip("/")
        self.http = http

    def _url(self, path: str, **query: str) -> str:
        q = {k: v for k, v in query.items() if v}
        return f"{self.base}/{path}" + (("?" + urlencode(q)) if q else "")

    def api_version(self) -> str | None:
        try:
            resp = self.http.get(self._url("version"), what="asking the library version")
            data = _envelope(resp, "asking the library version", self.http) or {}
        except RegistryError as e:
            log.debug("library %s has no usable /version: %s", self.base, e.message)
            return None
        return data.get("apiVersion") if isinstance(data, dict) else None

    def image(self, path: str, tag: str, arch: str | None, what: str) -> LibraryImage | None:
        """The image ``path:tag`` for ``arch``, or None when the library has none (404)."""
        resp = self.http.get(self._url(f"v1/images/{quote(path)}:{quote(tag)}", arch=arch or ""), what=what,
                             ok=(200, 404))
        if resp.status_code == 404:
            resp.close()
            return None
        data = _envelope(resp, what, self.http)
        if not isinstance(data, dict) or not data.get("hash"):
            raise RegistryError(f"{what}: {self.http.service}: the image has no hash", registry=self.http.service)
        size = data.get("size")
        return LibraryImage(str(data["hash"]), size if isinstance(size, int) and size > 0 else None,
                         data.get("arch"), data.get("signed"))

    def container(self, path: str) -> dict | None:
        """The container record (``archTags``, ``imageTags``), or None."""
        try:
            resp = self.http.get(self._url(f"v1/containers/{quote(path)}"), what="listing the container",
                                 ok=(200, 404))
        except RegistryError:
            return None
        if resp.status_code == 404:
            resp.close()
            return None
        try:
            data = _envelope(resp, "listing the container", self.http)
        except RegistryError:
            return None
        return data if isinstance(data, dict) else None

    def imagefile(self, path: str, tag: str, arch: str | None, what: str):
        """The legacy download: a 200 response to stream, or a 303 whose Location to fetch."""
        return self.http.get(self._url(f"v1/imagefile/{quote(path)}:{quote(tag)}", arch=arch or ""), what=what,
                             stream=True, stop_at=(303,), ok=(200,))

    def oci_redirect(self, path: str) -> dict | None:
        """``{"token", "url", "name"}`` for the direct OCI pull, or None (not offered)."""
        try:
            resp = self.http.get(self._url("v1/oci-redirect", namespace=path, mapped="1", accessTypes="pull"),
                                 what="asking for the library's OCI registry", ok=(200,))
            doc = resp.json()
        except (RegistryError, ValueError) as e:
            log.debug("library %s offers no OCI pull: %s", self.base, getattr(e, "message", e))
            return None
        if not isinstance(doc, dict) or not doc.get("url") or not doc.get("name"):
            return None
        return doc


def _manifest(http: Http, url: str, media: str, what: str) -> tuple[dict, str]:
    resp = http.get(url, what=what, headers={"Accept": media})
    body = resp.content
    got = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
    if got != media:
        raise RegistryError(f"{what}: {http.service}: got {got or 'no content type'}, asked for {media}",
                            registry=http.service)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    header = resp.headers.get("Docker-Content-Digest")
    if header and not _DIGEST.match(header):
        raise RegistryError(f"{what}: {http.service}: invalid Docker-Content-Digest", registry=http.service)
    try:
        return json.loads(body), digest
    except ValueError as e:
        raise RegistryError(f"{what}: {http.service}: the manifest is not JSON", registry=http.service) from e


def _pick(index: dict, arch: str | None, what: str) -> str:
    entries = [m for m in index.get("manifests") or [] if m.get("mediaType") == OCI_MANIFEST]
    if not arch:
        if len(entries) != 1:
            raise PlatformError(f"{what}: the index has {len(entries)} images and no architecture was asked for")
        return entries[0]["digest"]
    for m in entries:
        if (m.get("platform") or {}).get("architecture") == arch:
            return m["digest"]
    found = ", ".join(sorted({str((m.get("platform") or {}).get("architecture")) for m in entries})) or "none"
    raise PlatformError(f"{what}: no {arch} image", hint=f"the library has: {found} (use --arch)")


def oci_pull(http: Http, info: dict, tag: str, arch: str | None, cache, expect: Expect, *, what: str,
             progress=None):
    """Pull the SIF through the library's OCI registry into ``cache``; returns (path, digest)."""
    base = str(info["url"]).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise RegistryError(f"{what}: {http.service}: the OCI registry URL is not http(s)", registry=http.service)
    repo = f"{base}/v2/{info['name']}"
    try:
        index, _ = _manifest(http, f"{repo}/manifests/{quote(tag)}", OCI_INDEX, what)
        manifest, _ = _manifest(http, f"{repo}/manifests/{_pick(index, arch, what)}", OCI_MANIFEST, what)
    except PlatformError:
        raise
    except RegistryError:
        manifest, _ = _manifest(http, f"{repo}/manifests/{quote(tag)}", OCI_MANIFEST, what)
    layers = manifest.get("layers") or []
    config = manifest.get("config") or {}
    if config.get("mediaType") != SIF_CONFIG or len(layers) != 1 or layers[0].get("mediaType") != SIF_LAYER:
        raise RegistryError(f"{what}: {http.service}: not a SIF image (config {config.get('mediaType')}, "
                            f"{len(layers)} layers)", registry=http.service)
    cfg_body = http.get(f"{repo}/blobs/{config.get('digest')}", what=what).content
    if "sha256:" + hashlib.sha256(cfg_body).hexdigest() != config.get("digest"):
        raise DigestError(f"{what}: the image config from {http.service} does not match its digest",
                          registry=http.service)
    try:
        cfg = json.loads(cfg_body)
    except ValueError as e:
        raise RegistryError(f"{what}: the image config is not JSON", registry=http.service) from e
    if arch and cfg.get("architecture") and cfg["architecture"] != arch:
        raise PlatformError(f"{what}: the registry's image is for {cfg['architecture']}, not {arch}")
    layer = layers[0]
    digest, size = str(layer.get("digest")), layer.get("size")
    if not _DIGEST.match(digest) or (expect.sha256 and digest != expect.sha256):
        raise DigestError(f"{what}: the registry holds {digest}, the library says "
                          f"{(expect.sha256 or '?').replace(':', '.')}", registry=http.service)
    want = Expect(sha256=digest, size=size if isinstance(size, int) else None)
    return store(http, f"{repo}/blobs/{digest}", cache, want, what=what, ranged_size=want.size, progress=progress)
