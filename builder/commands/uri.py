"""Images named by URI (``docker://``, ``oras://``, ``library://``, ``shub://``) as local SIFs.

``exec/run/shell/test``, ``inspect`` and ``instance start`` accept a URI in the place of an
image file, as Apptainer does (its ``replaceURIWithImage``): the image is pulled once into
the cache as a SIF and the cached SIF is run. ``image_path(text, args)`` is the one call
those commands make; it returns ``text`` unchanged for anything that is not a URI
(``scheme_of``), and the actions import this module only when the argument holds a ``:``,
so a plain path costs nothing.

Which text is a URI (Apptainer's ``uri.go``): ``x://…`` always is; ``x:…`` only for the
transports of ``TRANSPORTS`` (``my:f.sif`` is a file). Of those, the pullable ones are
``docker``, ``oras``, ``library`` and ``shub``; any other transport is an error naming it.

The cache (``<cache root>/images/``, ``base.cachedir``): one SIF per image, named by its
digest, as Apptainer's ``cache/oci-tmp/<digest>``; ``pull`` goes through it too (a second
``pull`` of an unchanged image copies the entry out):

- ``oci-tmp/<hex>`` for ``docker://`` (the manifest digest for the host platform),
  ``oras/<hex>`` (the manifest digest), ``library/<hex>`` and ``shub/<hex>`` (the sha256 of
  the downloaded image). Because the key is the digest, a tag that moved is pulled again
  and an unchanged one is not.
- ``refs/<sha256 of the URI>``: the key the URI last resolved to. When the registry cannot
  be reached at all (no HTTP answer), the last key is used with a WARNING, so a second run
  needs no network; an HTTP error (a tag that is gone, a refused login) is not hidden.
- An entry is written under an exclusive ``flock`` of ``<kind>/.<hex>.lock`` to a temporary
  name in the same directory and renamed into place: concurrent first runs of one URI pull
  once, and a failed pull leaves nothing behind.

``--disable-cache`` pulls into a temporary directory that is removed when the process ends.
Messages: ``Converting OCI blobs to SIF format`` / ``Using cached SIF image`` (INFO), as
Apptainer prints them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from base.cachedir import cache_root
from base.errors import UsageError
from builder.options import FetchOptions

__all__ = ["TRANSPORTS", "PULLABLE", "scheme_of", "image_path", "cached_image",
           "fetch_options", "ImageStore", "image_store"]

log = logging.getLogger("sbuild.images")

# Apptainer's uri.validURIs: "x:" is a URI only for these (any "x://" is one)
TRANSPORTS = ("library", "shub", "docker", "docker-archive", "docker-daemon", "oci", "oci-archive", "http",
              "https", "oras", "buildkit", "dockerfile", "ipfs")
PULLABLE = {"docker": "oci-tmp", "oras": "oras", "library": "library", "shub": "shub"}


def scheme_of(text: str) -> str | None:
    """The transport of ``text`` when it is a URI (Apptainer's rule), else None."""
    scheme, sep, rest = text.partition(":")
    if not sep or not scheme:
        return None
    if rest.startswith("//") or scheme in TRANSPORTS:
        return scheme
    return None


def fetch_options(args) -> FetchOptions:  # noqa: ANN001 - argparse (or parse_quick) namespace
    """The fetch options an action's flags ask for (flags a parser does not define are off)."""
    def flag(name: str) -> bool:
        return bool(getattr(args, name, False))

    login = None
    user, password = getattr(args, "docker_username", None), getattr(args, "docker_password", None)
    if flag("docker_login"):
        from builder.commands.pull import prompt_login

        login = prompt_login()
    elif user or password:
        from builder.sources.oci import Credentials

        login = Credentials(user or "", password or "")
    return FetchOptions(nohttps=flag("nohttps") or flag("no_https"), authfile=getattr(args, "authfile", None),
                        disable_cache=flag("disable_cache"), tmpdir=getattr(args, "tmpdir", None), login=login,
                        library=getattr(args, "library", None), arch=getattr(args, "arch", None))


def image_path(text: str, args=None) -> str:  # noqa: ANN001
    """The local image for an IMAGE argument: ``text`` itself, or the cached SIF of a URI."""
    scheme = scheme_of(text)
    if scheme is None or scheme == "instance":
        return text
    from base import sitepackages

    sitepackages.load()  # the quick path of an action starts Python with -S (builder.cli)
    options = fetch_options(args)
    store = image_store(options)
    if store is None:
        return str(_uncached(text, options))
    return str(cached_image(text, options, store=store))


def image_store(options: FetchOptions) -> ImageStore | None:
    """The image cache under the cache root, or None: ``--disable-cache``, or a cache that
    cannot be written (then Apptainer's WARNING: the cache is disabled)."""
    if options.disable_cache:
        return None
    root = Path(cache_root()) / "images"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK | os.X_OK):
            return ImageStore(root)
    except OSError:
        pass
    log.warning("cache directory %s is not writable: the image cache is disabled", root)
    return None


def _uncached(uri: str, options: FetchOptions) -> Path:
    """``--disable-cache``: pull into a temporary directory removed at exit."""
    import atexit
    import shutil

    work = tempfile.mkdtemp(prefix="sbuild-tmp-cache-", dir=options.tmpdir)
    atexit.register(shutil.rmtree, work, True)
    return cached_image(uri, dataclasses.replace(options, disable_cache=True), store=ImageStore(Path(work)))


def cached_image(uri: str, options: FetchOptions, *, store: ImageStore, offline: bool = True) -> Path:
    """The cached SIF of ``uri``, pulled first when the cache does not hold its digest;
    ``offline``: an unreachable registry falls back to the last entry (not for ``pull``)."""
    from builder.sources.oci.errors import RegistryError

    scheme = scheme_of(uri)
    if scheme not in PULLABLE:
        runnable = ", ".join(f"{s}://" for s in PULLABLE)
        if scheme in TRANSPORTS:  # Apptainer's, not (yet) sbuild's for running
            raise UsageError(f"{scheme}: images cannot be run from this transport here",
                             hint=f"build or pull it to a file first; images by URI: {runnable}")
        raise UsageError(f"Unsupported transport type: {scheme}", hint=f"images by URI: {runnable}")
    kind = PULLABLE[scheme]
    try:
        if kind in ("oci-tmp", "oras"):
            return _registry_image(uri, kind, options, store)
        return _downloaded_image(uri, kind, options, store)
    except RegistryError as e:
        if e.status is not None or not offline:
            raise  # the registry answered: a tag that is gone or a refused login is not hidden
        hit = store.last(uri)
        if hit is None:
            raise
        log.warning("%s; using the cached image of %s (%s)", e, uri, hit.name)
        return hit


def _registry_image(uri: str, kind: str, options: FetchOptions, store: ImageStore) -> Path:
    from builder.sources.oci.agent import pull_options
    from builder.sources.oci.reference import parse_reference

    ref = parse_reference(uri.split("://", 1)[1])
    pulled = pull_options(options)
    if ref.digest and store.get(kind, ref.digest):
        top = digest = ref.digest  # pinned and cached: no need to ask the registry
    else:
        top, digest = _manifest_digest(ref, pulled)
    # pulled by the repository digest just resolved, so that a tag moving meanwhile cannot put
    # another image under this key
    pinned = f"{uri.split('://', 1)[0]}://{ref.with_digest(top)}"
    if kind == "oras":
        from builder.sources.oci.oras import pull_oras

        return store.ensure(kind, digest, uri, lambda tmp: pull_oras(pinned, tmp, pulled, options.transfer))

    def pull(tmp: Path) -> None:
        from builder.commands.pull import pull_image

        log.info("Converting OCI blobs to SIF format")
        pull_image(pinned, tmp, options, fmt="sif", force=True)
    return store.ensure(kind, digest, uri, pull)


def _manifest_digest(ref, options) -> tuple[str, str]:  # noqa: ANN001
    """The digests of ``ref``'s manifest (an index, maybe) and of the image in it for the
    wanted platform: (repository digest, image manifest digest)."""
    from builder.sources.oci.puller import manifest_digests, registry_client

    return manifest_digests(registry_client(ref, options), ref, options.want())


def _downloaded_image(uri: str, kind: str, options: FetchOptions, store: ImageStore) -> Path:
    """``library://``, ``shub://``: downloaded (verified) through the blob cache, then placed."""
    from builder.commands.pull import place_image
    from builder.sources import library, shub
    from builder.sources.download import cache_for

    if kind == "library":
        ref = library.parse_library_ref(uri)
        loptions = library.options_for(options)
        with cache_for(loptions.download) as cache:
            blob = library.fetch_library(ref, loptions, cache)
            return store.ensure(kind, "sha256:" + blob.name, uri,
                                lambda tmp: place_image(blob, tmp, "sif", force=True))
    sref = shub.parse_shub_ref(uri)
    soptions = shub.options_for(options)
    with cache_for(soptions.download) as cache:
        blob = shub.fetch_shub(sref, soptions, cache)

        def place(tmp: Path) -> None:
            with shub.open_image(blob, soptions.download.tmpdir) as image:
                place_image(image, tmp, "sif", force=True)
        return store.ensure(kind, "sha256:" + blob.name, uri, place)


class ImageStore:
    """The SIF cache below ``root``: ``<kind>/<hex>`` entries and the ``refs/`` index."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, kind: str, digest: str) -> Path:
        algorithm, _, hexpart = digest.partition(":")
        if algorithm != "sha256" or not hexpart.isalnum():
            raise UsageError(f"unexpected image digest {digest!r}")
        return self.root / kind / hexpart

    def get(self, kind: str, digest: str) -> Path | None:
        path = self._path(kind, digest)
        return path if path.is_file() else None

    def last(self, uri: str) -> Path | None:
        """The entry ``uri`` resolved to last time, if it is still there."""
        try:
            record = json.loads(self._ref(uri).read_text())
            return self.get(record["kind"], record["digest"])
        except (OSError, ValueError, KeyError, TypeError, UsageError):
            return None

    def _ref(self, uri: str) -> Path:
        return self.root / "refs" / hashlib.sha256(uri.encode()).hexdigest()

    def ensure(self, kind: str, digest: str, uri: str, pull: Callable[[Path], object]) -> Path:
        """The entry for ``digest``, made by ``pull(temp path)`` unless it exists."""
        path = self._path(kind, digest)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(path.parent / f".{path.name}.lock"):
                if not path.is_file():  # another process may have pulled it meanwhile
                    from builder.images.convert import atomic_target

                    with atomic_target(path, force=True) as tmp:
                        pull(tmp)
                        os.chmod(tmp, 0o755)
                else:
                    log.info("Using cached SIF image")
        else:
            log.info("Using cached SIF image")
        self._remember(uri, kind, digest)
        return path

    def _remember(self, uri: str, kind: str, digest: str) -> None:
        ref = self._ref(uri)
        ref.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"uri": uri, "kind": kind, "digest": digest})
        with contextlib.suppress(OSError):
            if ref.read_text() == text:
                return
        fd, tmp = tempfile.mkstemp(prefix=".ref-", dir=ref.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, ref)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

