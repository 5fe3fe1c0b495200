"""``Bootstrap: shub`` and ``shub://`` references: images from Singularity Hub or an sregistry.

Grammar (Apptainer's, protocols §4.1): ``shub://[registry/]user/container[:tag][@digest]``;
``digest`` is the 32-hex md5 ``version`` or a 40-hex commit; without tag and digest the tag
is ``latest``; the registry defaults to ``singularity-hub.org``. sbuild also accepts a
``:port`` on the registry (Apptainer's pattern has no ``:``), for sregistry servers.

API (§4.2): ``GET https://<registry>/api/container/<user>/<container>:<tag>[@digest]``
(``http://`` with ``--nohttps``) answers JSON whose ``image`` is the download URL (``null``
while a build is not ready), ``version`` the image's md5 (sha256 on sregistry) and
``commit`` the recipe's commit. The image is downloaded without credentials, its size
checked against ``Content-Length`` and its bytes against ``version`` while they stream. A
verified image enters the blob cache under its sha256, with ``shub/<version>`` beside
``blobs/`` naming it for the next pull. Images are Singularity 2.x squashfs ``.simg``,
SIF, or gzip-compressed ext3 (decompressed before use).

Archive status (§4.3): Singularity Hub has been a read-only archive since 2021-04-26;
containers built before 2021-04-19 can still be pulled, nothing new is built. Errors
from the default registry say so.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from base.owner import owned_temp_dir
from builder.bundle import Bundle
from builder.options import FetchOptions
from builder.recipe import Stage
from builder.rootfs import write_base_env
from builder.sources.contract import Source, header_error
from builder.sources.download import DownloadOptions, Expect, Http, cache_for, env_nohttps, store
from builder.sources.oci.cache import REFS_DIR
from builder.sources.oci.errors import AuthError, ReferenceError_, RegistryError

__all__ = ["ShubRef", "ShubOptions", "parse_shub_ref", "shub_api_url", "fetch_shub", "open_image", "options_for",
           "ShubSource",
           "DEFAULT_REGISTRY"]

log = logging.getLogger("sbuild.sources.shub")

DEFAULT_REGISTRY = "singularity-hub.org"
_REF = re.compile(r"^(?:(?P<registry>[-.a-zA-Z0-9/]{1,64}?(?::[0-9]{1,5})?)/)?(?P<user>[-a-zA-Z0-9]{1,39})/"
                  r"(?P<name>[-_.a-zA-Z0-9]{1,64})(?::(?P<tag>[-_.a-zA-Z0-9]{1,64}))?"
                  r"(?:@(?P<digest>[a-f0-9]{32}|[a-f0-9]{40}))?$")
_ARCHIVE = ("Singularity Hub is a read-only archive since 2021-04-26: only containers built before "
            "2021-04-19 can be pulled")


@dataclass(frozen=True)
class ShubRef:
    registry: str | None  # None: singularity-hub.org
    user: str
    name: str
    tag: str | None
    digest: str | None

    @property
    def path(self) -> str:
        return f"{self.user}/{self.name}" + (f":{self.tag}" if self.tag else "") + \
            (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return "shub://" + (f"{self.registry}/" if self.registry else "") + self.path


def parse_shub_ref(text: str) -> ShubRef:
    """Parse ``shub://…`` or a bare ``From:`` value."""
    raw = text.strip()
    rest = raw
    if rest.startswith("shub://"):
        rest = rest[len("shub://"):]
    elif rest.startswith("shub:"):
        rest = rest[len("shub:"):].lstrip("/")
    m = _REF.match(rest)
    if not m:
        raise ReferenceError_(f"{raw}: not a valid shub reference",
                              hint="shub://[registry/]user/container[:tag][@md5-version or commit]")
    tag, digest = m["tag"], m["digest"]
    return ShubRef(m["registry"] or None, m["user"], m["name"], tag or (None if digest else "latest"), digest)


@dataclass(frozen=True)
class ShubOptions:
    nohttps: bool = False
    download: DownloadOptions = DownloadOptions()


def shub_api_url(ref: ShubRef, nohttps: bool = False) -> str:
    scheme = "http" if nohttps else "https"
    return f"{scheme}://{ref.registry or DEFAULT_REGISTRY}/api/container/{quote(ref.path, safe='/:@')}"


def _manifest(ref: ShubRef, options: ShubOptions) -> dict:
    url = shub_api_url(ref, options.nohttps)
    host = ref.registry or DEFAULT_REGISTRY
    what = f"looking up {ref}"
    http = Http("shub " + host, options.download)
    hint = _ARCHIVE if ref.registry is None else None
    try:
        resp = http.get(url, what=what, ok=(200, 404))
    except AuthError as e:
        e.hint = "sregistry's private collections need its own token flow, which sbuild does not implement"
        raise
    except RegistryError as e:
        e.hint = e.hint or hint
        raise
    if resp.status_code == 404:
        resp.close()
        raise RegistryError(f"{what}: {host}: manifest was not found (HTTP 404)", registry=host, status=404,
                            hint=hint or "check the user/container name and the tag")
    try:
        doc = resp.json()
    except ValueError as e:
        raise RegistryError(f"{what}: {host}: the answer is not JSON", registry=host) from e
    if not isinstance(doc, dict):
        raise RegistryError(f"{what}: {host}: the answer is not a JSON object", registry=host)
    if not doc.get("image"):
        raise RegistryError(f"{what}: {host}: the image is not ready for download (no image URL)", registry=host,
                            hint=hint)
    if not str(doc["image"]).startswith(("http://", "https://")):
        raise RegistryError(f"{what}: {host}: the image URL is not http(s)", registry=host)
    return doc


def _expect(version: str) -> tuple[Expect, str | None]:
    """What the download must match, and the key naming it in the cache (None: cannot verify)."""
    if re.fullmatch(r"[0-9a-f]{32}", version):
        return Expect(md5=version), version
    if re.fullmatch(r"[0-9a-f]{64}", version):
        return Expect(sha256="sha256:" + version), version
    return Expect(), None


def fetch_shub(ref: ShubRef, options: ShubOptions, cache, progress=None) -> Path:
    """Download ``ref`` into ``cache`` (verified when the server gives a hash); the cached file."""
    doc = _manifest(ref, options)
    version = str(doc.get("version") or "")
    expect, key = _expect(version)
    index = cache.root / REFS_DIR / key if key else None
    if index is not None:
        with contextlib.suppress(OSError, ValueError):
            hit = cache.get(index.read_text().strip())
            if hit is not None:
                log.info("%s: using the cached image (version %s)", ref, version)
                return hit
    else:
        log.warning("%s: the server gives no md5/sha256 version: only the size can be checked", ref)
    http = Http("shub " + (ref.registry or DEFAULT_REGISTRY), options.download)  # no credentials, any host
    path, digest = store(http, str(doc["image"]), cache, expect, what=f"pulling {ref}", progress=progress)
    if index is not None:
        index.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ref-", dir=index.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(digest + "\n")
        os.replace(tmp, index)
    log.debug("%s: version %s, commit %s -> %s", ref, version, doc.get("commit"), digest)
    return path


@contextlib.contextmanager
def open_image(path: Path, tmpdir: Path | None = None) -> Iterator[Path]:
    """``path`` itself, or its gunzipped copy (old ``.img.gz`` builds), removed afterwards."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    if not gz:
        yield path
        return
    with owned_temp_dir(tmpdir, "sbuild-shub-") as work:  # (reclaimed if we are killed)
        out = work / "image.img"
        try:
            with gzip.open(path, "rb") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError) as e:
            from base.errors import ImageError

            raise ImageError(f"decompressing the shub image {path}: {e}", path=str(path)) from e
        yield out


def options_for(options: FetchOptions) -> ShubOptions:
    """ShubOptions from the build's or the pull command's ``FetchOptions``."""
    dl = DownloadOptions(disable_cache=options.disable_cache, ca_bundle=options.ca_bundle,
                         tmpdir=Path(options.tmpdir) if options.tmpdir else None)
    return ShubOptions(nohttps=options.nohttps or env_nohttps(dl.env()), download=dl)


class ShubSource(Source):
    """The pipeline's agent: download the image, unpack it as a local image (base env kept)."""

    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        from builder.images import extract_image

        try:
            ref = parse_shub_ref((stage.header or {})["from"])
        except ReferenceError_ as e:
            raise header_error(stage, "from", e) from e
        shub = options_for(options)
        with cache_for(shub.download) as cache:
            cached = fetch_shub(ref, shub, cache, options.transfer)
            with open_image(cached, shub.download.tmpdir) as image:
                from builder.signing.fingerprints import check_base, is_sif

                if is_sif(str(image)):  # a SIF base: its signatures and Fingerprints: (builder.signing)
                    check_base(str(image), (stage.header or {}).get("fingerprints"), what="shub")
                extract_image(image, bundle.rootfs, force=True, fix_perms=options.fix_perms)
        write_base_env(bundle.rootfs, overwrite=False)
        bundle.bootstrapped = True
