"""``Bootstrap: library`` and ``library://`` references: SIF images from a Sylabs-style library.

Reference grammar (Apptainer's, protocols §3.1): ``library://[host/]entity/collection/
container[:tag]``; after the scheme, up to two ``/`` mean no host (``container``,
``collection/container``, ``entity/collection/container``; the library maps short names
to its defaults), three or more mean the first component is the host. ``library:path``
and ``library:///path`` are hostless. The tag defaults to ``latest``; ``:sha256.<hex>``
names an image by hash. Names follow the library's pull rules (lower-case words joined
by ``.``, ``_`` or ``-``).

Which library: a host in the reference (``https://host``, ``http://`` with ``--nohttps``),
else the recipe's ``Library:`` header, else ``--library``, else ``$APPTAINER_LIBRARY`` /
``$SINGULARITY_LIBRARY``, else the library announced by the remote
``$SBUILD_LIBRARY_REMOTE`` (service discovery), else ``https://library.sylabs.io``
(SingularityCE's default; Apptainer has none).

Token (``Authorization: Bearer``, sent to the library's own origin only):
``$SYLABS_AUTH_TOKEN``, ``$SYLABS_TOKEN``, ``$APPTAINER_LIBRARY_TOKEN``,
``$SINGULARITY_LIBRARY_TOKEN``, else the file ``$SBUILD_LIBRARY_TOKENFILE`` or
``~/.singularity/sylabs-token``.

Pull (protocols §3.4): look the image up (``/v1/images``: its sha256 hash is the cache
key; a miss says which tags and architectures exist); on a cache miss try the library's
OCI registry (``/v1/oci-redirect``), else the legacy ``/v1/imagefile`` (a 303 to object
storage is downloaded in parallel Range parts). The sha256 is checked while the bytes
arrive; only a verified image enters the cache. A build checks the SIF's signatures and
``Fingerprints:`` (``builder.signing.fingerprints``). Limits: a ``sif.<uuid>`` hash cannot be
checked, so such images are downloaded but not cached.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from base.env import apptainer_env
from base.errors import ImageError
from builder.bundle import Bundle
from builder.options import FetchOptions
from builder.recipe import Stage
from builder.rootfs import write_base_env
from builder.sources.contract import Source, header_error
from builder.sources.download import DownloadOptions, Expect, Http, cache_for, env_nohttps, store
from builder.sources.libraryapi import ARCH_TAGS_API, LibraryClient, discover, newer_or_equal, oci_pull
from builder.sources.oci.errors import AuthError, DigestError, ReferenceError_, RegistryError, redact

__all__ = ["LibraryRef", "LibraryOptions", "parse_library_ref", "library_url", "library_token",
           "fetch_library", "options_for", "LibrarySource", "DEFAULT_LIBRARY", "LibraryNotFound"]

log = logging.getLogger("sbuild.sources.library")

DEFAULT_LIBRARY = "https://library.sylabs.io"
_WORD = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
_PART = re.compile(rf"^{_WORD}$")
_TAG = re.compile(rf"^(?:{_WORD}|sha256\.[a-f0-9]{{64}}|sif\.[0-9a-f-]{{36}})$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?$")
_TOKEN_VARS = ("SYLABS_AUTH_TOKEN", "SYLABS_TOKEN", "APPTAINER_LIBRARY_TOKEN", "SINGULARITY_LIBRARY_TOKEN")


class LibraryNotFound(ImageError):
    """The library has no such container, tag or architecture."""


@dataclass(frozen=True)
class LibraryRef:
    host: str | None      # None: use the configured library
    path: str             # entity/collection/container, or a shorter form the library maps
    tag: str = "latest"

    def __str__(self) -> str:
        return f"library://{self.host + '/' if self.host else ''}{self.path}:{self.tag}"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def parse_library_ref(text: str) -> LibraryRef:
    """Parse ``library://…``, ``library:…`` or a bare ``From:`` value (see the module docstring)."""
    rest = text.strip()
    raw = redact(rest)  # for messages: never echo user info
    if rest.startswith("library://"):
        rest = rest[len("library://"):]
    elif rest.startswith("library:"):
        rest = rest[len("library:"):].lstrip("/")
    if "@" in rest.split("/", 1)[0]:
        raise ReferenceError_(f"{raw}: a library reference has no user info", hint="use a token, not user:password@")
    host = None
    if rest.startswith("/"):  # library:///path: an empty host
        rest = rest.lstrip("/")
    elif rest.count("/") >= 3:
        host, rest = rest.split("/", 1)
        if not _HOST.match(host):
            raise ReferenceError_(f"{raw}: {host!r} is not a host name", hint="library://[host/]entity/collection/container[:tag]")
    if "?" in rest or "#" in rest or "@" in rest:
        raise ReferenceError_(f"{raw}: a library reference has no query, fragment or user info")
    path, sep, tags = rest.partition(":")
    if ":" in tags:
        raise ReferenceError_(f"{raw}: more than one ':' in the path", hint="library://entity/collection/container:tag")
    parts = path.split("/")
    bad = [p for p in parts if not _PART.match(p)]
    if not path or len(parts) > 3 or bad:
        what = f"invalid name {bad[0]!r}" if bad and bad[0] else "expected [entity/[collection/]]container"
        raise ReferenceError_(f"{raw}: {what}", hint="names are lower-case letters and digits joined by . _ or -; "
                                                     "library://[host/]entity/collection/container[:tag]")
    tag_list = [t for t in tags.split(",") if t] if sep else []
    if len(tag_list) > 1:
        raise ReferenceError_(f"{raw}: a pull takes one tag, not {len(tag_list)}")
    tag = tag_list[0] if tag_list else "latest"
    if not _TAG.match(tag):
        raise ReferenceError_(f"{raw}: invalid tag {tag!r}", hint="tags are lower-case letters and digits joined by "
                                                                  ". _ or -, or sha256.<hash>")
    return LibraryRef(host, path, tag)


@dataclass(frozen=True)
class LibraryOptions:
    """Where and how to pull: ``library`` is the ``Library:``/``--library`` URL (None: default)."""

    library: str | None = None
    arch: str | None = None          # Go arch name; None: the host's
    nohttps: bool = False
    download: DownloadOptions = field(default_factory=DownloadOptions)

    def env(self) -> Mapping[str, str]:
        return self.download.env()


def _normal_url(value: str, nohttps: bool) -> str:
    value = value.strip().rstrip("/")
    if "://" not in value:
        value = ("http://" if nohttps else "https://") + value
    if not value.startswith(("http://", "https://")):
        raise ReferenceError_(f"library URL {value!r}: only http and https are supported")
    return value


def library_url(ref: LibraryRef, options: LibraryOptions) -> str:
    """The library base URL for ``ref`` (see the module docstring for the order)."""
    if ref.host:
        return ("http://" if options.nohttps else "https://") + ref.host
    env = options.env()
    for value in (options.library, apptainer_env("LIBRARY", env)):
        if value and value.strip():
            return _normal_url(value, options.nohttps)
    remote = env.get("SBUILD_LIBRARY_REMOTE")
    if remote:
        remote = _normal_url(remote, options.nohttps)
        return discover(Http("remote " + remote, options.download), remote)
    return DEFAULT_LIBRARY


def library_token(environ: Mapping[str, str]) -> str | None:
    """The library token from the environment or the token file, or None."""
    for var in _TOKEN_VARS:
        if environ.get(var, "").strip():
            return environ[var].strip()
    home = environ.get("HOME") or os.path.expanduser("~")
    path = environ.get("SBUILD_LIBRARY_TOKENFILE") or os.path.join(home, ".singularity", "sylabs-token")
    try:
        return Path(path).read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _arch(options: LibraryOptions) -> str:
    from builder.sources.oci.platform import host_platform, parse_platform

    return parse_platform(options.arch).architecture if options.arch else host_platform().architecture


def _missing(client: LibraryClient, ref: LibraryRef, arch: str) -> LibraryNotFound:
    """Say what the library has when ``ref`` for ``arch`` is not there."""
    where = f"library {client.base}"
    record = client.container(ref.path)
    if record is None:
        return LibraryNotFound(f"{ref}: not found in {where}",
                               hint="check the entity/collection/container name (and the token for a private one)")
    arch_tags = record.get("archTags") if isinstance(record.get("archTags"), dict) else {}
    if not arch_tags and isinstance(record.get("imageTags"), dict):
        arch_tags = {"any": record["imageTags"]}
    has_tag = sorted(a for a, tags in arch_tags.items() if isinstance(tags, dict) and ref.tag in tags)
    if has_tag:
        return LibraryNotFound(f"{ref}: no {arch} image in {where}",
                               hint=f"tag {ref.tag!r} exists for: {', '.join(has_tag)} (use --arch)")
    listing = "; ".join(f"{a}: {', '.join(sorted(t))}" for a, t in sorted(arch_tags.items())
                        if isinstance(t, dict) and t) or "none"
    return LibraryNotFound(f"{ref}: no tag {ref.tag!r} in {where}", hint=f"tags by architecture: {listing}")


def fetch_library(ref: LibraryRef, options: LibraryOptions, cache, progress=None) -> Path:
    """Download ``ref`` into ``cache`` (verified) and return the cached SIF's path."""
    base = library_url(ref, options)
    token = library_token(options.env())
    http = Http("library " + base, options.download, token=token, token_origin=base)
    client = LibraryClient(base, http)
    arch = _arch(options)
    what = f"pulling {ref}"
    try:
        image = client.image(ref.path, ref.tag, arch, what)
    except AuthError as e:
        e.hint = ("a token is set but was refused" if token else
                  "set SYLABS_AUTH_TOKEN (or write the token to ~/.singularity/sylabs-token)")
        raise
    if image is None:
        raise _missing(client, ref, arch)
    if image.arch and image.arch != arch:
        log.warning("%s: the library says the image is for %s, not %s", ref, image.arch, arch)
    if image.signed is False:
        log.debug("%s: the image is not signed", ref)
    digest = image.digest
    if digest is None:
        log.warning("%s: image hash %s is not a sha256: the download cannot be verified", ref, image.hash)
        return _download(client, ref, arch, image, cache, what, progress, http)[0]
    with cache.lock(digest):
        hit = cache.get(digest)
        if hit is not None:
            log.info("%s: using the cached image %s", ref, image.hash)
            return hit
        try:
            return _download(client, ref, arch, image, cache, what, progress, http)[0]
        except DigestError as e:
            e.hint = e.hint or "the download does not match the library's record of it; nothing was kept"
            raise


def _download(client: LibraryClient, ref: LibraryRef, arch: str, image, cache, what: str, progress, http: Http):
    expect = Expect(sha256=image.digest)
    if not ref.tag.startswith(("sha256.", "sif.")):
        info = client.oci_redirect(ref.path)
        if info is not None:
            reg = Http("registry " + str(info["url"]), client.http.options, token=info.get("token") or None,
                       token_origin=str(info["url"]))
            log.debug("%s: pulling through the library's OCI registry", ref)
            return oci_pull(reg, info, ref.tag, arch, cache, expect, what=what, progress=progress)
    version = client.api_version()
    if version is not None and not newer_or_equal(version, ARCH_TAGS_API):
        log.warning("library %s (API %s) does not select images by architecture: the image may not be %s",
                    client.base, version, arch)
    resp = client.imagefile(ref.path, ref.tag, arch, what)
    if resp.status_code == 200:
        return store(http, resp.url, cache, expect, what=what, response=resp, progress=progress)
    location = resp.headers.get("Location")
    resp.close()
    if not location:
        raise RegistryError(f"{what}: {client.base}: a redirect without Location", registry=client.base)
    from urllib.parse import urljoin

    return store(http, urljoin(resp.url, location), cache, expect, what=what, ranged_size=image.size,
                 progress=progress)


def options_for(options: FetchOptions, header: Mapping[str, str] | None = None) -> LibraryOptions:
    """LibraryOptions from the build's or the pull command's ``FetchOptions`` and a header."""
    library = ((header or {}).get("library") or "").strip() or options.library
    dl = DownloadOptions(disable_cache=options.disable_cache, ca_bundle=options.ca_bundle,
                         tmpdir=Path(options.tmpdir) if options.tmpdir else None)
    return LibraryOptions(library=library, arch=options.arch,
                          nohttps=options.nohttps or env_nohttps(dl.env()), download=dl)


class LibrarySource(Source):
    """The pipeline's agent: download the SIF, unpack it, keep its base environment."""

    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        from builder.images import extract_image

        from builder.signing.fingerprints import check_base

        header = stage.header or {}
        try:
            ref = parse_library_ref(header["from"])
        except ReferenceError_ as e:
            raise header_error(stage, "from", e) from e
        library = options_for(options, header)
        with cache_for(library.download) as cache:
            image = fetch_library(ref, library, cache, options.transfer)
            check_base(str(image), header.get("fingerprints"), what="library")  # Fingerprints: (builder.signing)
            extract_image(image, bundle.rootfs, force=True, fix_perms=options.fix_perms)
        write_base_env(bundle.rootfs, overwrite=False)
        bundle.bootstrapped = True
