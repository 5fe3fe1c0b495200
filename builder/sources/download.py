"""HTTP plumbing shared by the ``library://`` and ``shub://`` sources: one session, verified
downloads into the blob cache.

``Http`` sends through an ``oci.http.Transport`` (the registry client's session settings:
``trust_env`` off, so ``~/.netrc`` never adds credentials; proxies still come from the
environment). ``Http.get`` retries connection errors and 5xx answers a few times with
backoff (``base.retry``; ``Retry-After`` is not read) and sends ``token`` as a Bearer
header only to ``token_origin`` (scheme+host:port): redirects are followed by hand, so
object storage never sees the library's token.

``store(...)`` downloads an image into the content-addressed ``BlobCache`` (protocols §3.4,
§4.2): one stream, or parallel ``Range`` parts written in place. The bytes are hashed as they
arrive (parts are hashed in order as far as they are contiguous) with sha256 and,
when asked, md5; the temporary file is renamed to ``blobs/sha256/<hex>`` only when the
size and every expected hash match, and it is removed on any failure. Nothing partial
is ever left in the cache or at a target.

Limits: no resume of a dropped single stream (the whole download is retried once by the
caller's ``attempts``); the part size is fixed by ``DownloadOptions``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from base.env import apptainer_flag
from base.retry import Backoff
from base.owner import held_file
from builder.sources.oci.cache import BlobCache, cache_for
from builder.sources.oci.errors import AuthError, DigestError, RegistryError, redact
from builder.sources.oci.http import Transport, same_origin, short_error

__all__ = ["Http", "DownloadOptions", "Expect", "store", "cache_for", "env_nohttps", "USER_AGENT"]

log = logging.getLogger("sbuild.sources.download")
USER_AGENT = "sbuild/0.1 (library-client)"
_RETRY = {500, 502, 503, 504}
_CHUNK = 1 << 20
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DownloadOptions:
    """How images are downloaded: timeouts, retries, Range parts, cache."""

    timeout: float = 30.0          # per request (connect and each read)
    retries: int = 3               # attempts for connection errors and 5xx
    backoff: float = 0.5           # seconds, doubled per attempt
    part_size: int = 64 << 20      # Range part size for multi-part downloads
    parallel: int = 4              # parts at once
    ca_bundle: str | None = None
    cache_dir: Path | None = None  # None: the default cache root
    disable_cache: bool = False
    tmpdir: Path | None = None
    environ: Mapping[str, str] | None = None

    def env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ


@dataclass(frozen=True)
class Expect:
    """What a download must be: its sha256 (``None``: unknown), md5, size in bytes."""

    sha256: str | None = None
    md5: str | None = None
    size: int | None = None


def env_nohttps(environ: Mapping[str, str]) -> bool:
    """``$APPTAINER_NOHTTPS`` (else ``$SINGULARITY_NOHTTPS``) set to a true value."""
    return apptainer_flag("NOHTTPS", environ)


def _server_message(resp: requests.Response) -> str:
    """``": <message>"`` from a JSON error body (jsonresp ``error.message``, OCI ``errors``, DRF ``detail``)."""
    if "json" not in (resp.headers.get("Content-Type") or ""):
        return ""
    try:
        doc = resp.json()
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    err = doc.get("error")
    message = err.get("message") if isinstance(err, dict) else None
    if not message and isinstance(doc.get("errors"), list) and doc["errors"]:
        first = doc["errors"][0]
        message = first.get("message") if isinstance(first, dict) else None
    message = message or doc.get("detail")
    return f": {redact(str(message))[:200]}" if message else ""


def _tls_error(e: Exception, what: str, service: str) -> RegistryError:
    if "certificate" in str(e).lower():
        return RegistryError(f"{what}: {service}: TLS certificate not trusted", registry=service,
                             hint="pass the CA bundle (--ca-bundle)")
    return RegistryError(f"{what}: {service}: TLS handshake failed", registry=service,
                         hint="if the server speaks plain HTTP, use --nohttps (or an http:// library URL)")


class Http:
    """One session for one service; see the module docstring."""

    def __init__(self, service: str, options: DownloadOptions, *, token: str | None = None,
                 token_origin: str | None = None, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.service = service  # "library https://host" etc., for messages
        self.options = options
        self._token, self._origin = token, token_origin
        backoff = Backoff(options.retries, options.backoff, statuses=_RETRY, retry_after=False, sleep=sleep)
        self.transport = Transport(USER_AGENT, options.timeout, options.ca_bundle or True, backoff,
                                   session=session)

    def _send(self, url: str, headers: Mapping[str, str] | None, stream: bool) -> requests.Response:
        headers = dict(headers or {})
        if self._token and self._origin and same_origin(url, self._origin):
            headers["Authorization"] = "Bearer " + self._token
        return self.transport.send("GET", url, headers=headers, stream=stream)

    def get(self, url: str, *, what: str, headers: Mapping[str, str] | None = None, stream: bool = False,
            stop_at: tuple[int, ...] = (), ok: tuple[int, ...] = (200,)) -> requests.Response:
        """GET ``url``, following redirects (up to 10) except to a status in ``stop_at``;
        raise ``RegistryError`` (``AuthError`` for 401/403) unless the status is in ``ok``."""
        tries, hops = self.transport.backoff.start(), 0
        while True:
            try:
                resp = self._send(url, headers, stream)
            except requests.exceptions.SSLError as e:
                raise _tls_error(e, what, self.service) from e
            except requests.exceptions.RequestException as e:
                delay = tries.next_delay()
                if delay is None:
                    raise RegistryError(f"{what}: {self.service}: {short_error(e)}", registry=self.service) from e
                self.transport.backoff.sleep(delay)
                continue
            if resp.is_redirect and resp.status_code not in stop_at:
                hops += 1
                if hops > 10:
                    raise RegistryError(f"{what}: {self.service}: too many redirects", registry=self.service)
                url = urljoin(resp.url, resp.headers.get("Location", ""))
                resp.close()
                continue
            delay = tries.next_delay() if resp.status_code in self.transport.backoff.statuses else None
            if delay is not None:
                log.debug("%s: HTTP %s, retrying", what, resp.status_code)
                resp.close()
                self.transport.backoff.sleep(delay)
                continue
            if resp.status_code not in ok and resp.status_code not in stop_at:
                raise self.error(resp, what)
            return resp

    def error(self, resp: requests.Response, what: str, detail: str = "") -> RegistryError:
        host = urlsplit(resp.url).netloc or self.service
        text = detail or f"HTTP {resp.status_code}" + _server_message(resp)
        resp.close()
        if resp.status_code in (401, 403):
            return AuthError(f"{what}: {host} refused access ({text})", registry=host, status=resp.status_code)
        return RegistryError(f"{what}: {host}: {text}", registry=host, status=resp.status_code)


class _Sink:
    """A temporary file in the cache's tmp dir, hashed in order while it is written."""

    def __init__(self, cache: BlobCache, expect: Expect) -> None:
        self.fd, self.path = held_file(cache.tmp, "image-")  # held until closed: clean leaves it
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False) if expect.md5 else None
        self.hashed = 0

    def hash_bytes(self, data: bytes) -> None:
        self.sha256.update(data)
        if self.md5 is not None:
            self.md5.update(data)
        self.hashed += len(data)

    def hash_file_until(self, end: int) -> None:
        while self.hashed < end:
            data = os.pread(self.fd, min(_CHUNK, end - self.hashed), self.hashed)
            if not data:
                raise OSError(f"short read from {self.path}")
            self.hash_bytes(data)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _check(sink: _Sink, expect: Expect, what: str, host: str) -> str:
    digest = "sha256:" + sink.sha256.hexdigest()
    if expect.size is not None and sink.hashed != expect.size:
        raise DigestError(f"{what}: got {sink.hashed} bytes from {host}, expected {expect.size} (truncated)",
                          registry=host)
    if expect.sha256 and digest != expect.sha256:
        raise DigestError(f"{what}: the download from {host} has hash {digest.replace(':', '.')}, "
                          f"the library says {expect.sha256.replace(':', '.')}", registry=host,
                          digest=expect.sha256)
    if expect.md5 and sink.md5 is not None and sink.md5.hexdigest() != expect.md5:
        raise DigestError(f"{what}: the download from {host} has md5 {sink.md5.hexdigest()}, "
                          f"the server says {expect.md5}", registry=host)
    return digest


def _single(resp: requests.Response, sink: _Sink, what: str, progress: Progress | None, total: int) -> None:
    length = resp.headers.get("Content-Length")
    try:
        for chunk in resp.iter_content(_CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(sink.fd, view):]
            sink.hash_bytes(chunk)
            if progress:
                progress(what, sink.hashed, total)
    except requests.exceptions.RequestException as e:
        host = urlsplit(resp.url).netloc
        of = f" of {length}" if length else ""
        raise DigestError(f"{what}: the download from {host} stopped after {sink.hashed}{of} bytes (truncated)",
                          registry=host) from e
    finally:
        resp.close()
    if length and length.isdigit() and int(length) != sink.hashed:
        raise DigestError(f"{what}: got {sink.hashed} of {length} bytes from {urlsplit(resp.url).netloc} "
                          "(truncated)", registry=urlsplit(resp.url).netloc)


class _RangeUnusable(Exception):
    """The server ignored Range, or the object is not the size we were told: stream it whole."""


class _Part:
    def __init__(self, start: int, end: int) -> None:
        self.start, self.end, self.written, self.done = start, end, 0, False


class _Parts:
    """Range parts of one object, downloaded by worker threads into ``sink`` at their offsets."""

    def __init__(self, http: Http, url: str, size: int, sink: _Sink, what: str) -> None:
        step = max(1, http.options.part_size)
        self.parts = [_Part(a, min(a + step, size) - 1) for a in range(0, size, step)]
        self.http, self.url, self.size, self.sink, self.what = http, url, size, sink, what
        self.host = urlsplit(url).netloc
        self.cond, self.cancel, self.errors = threading.Condition(), threading.Event(), []

    def fetch(self, part: _Part) -> None:
        try:
            self._fetch(part)
        except BaseException as e:  # noqa: BLE001 - handed to the hashing thread
            self.errors.append(e)
            self.cancel.set()
        finally:
            with self.cond:
                part.done = True
                self.cond.notify_all()

    def _fetch(self, part: _Part) -> None:
        want = part.end - part.start + 1
        resp = self.http.get(self.url, what=self.what, headers={"Range": f"bytes={part.start}-{part.end}"},
                             stream=True, ok=(200, 206))
        total = (resp.headers.get("Content-Range") or "").rpartition("/")[2]
        if resp.status_code != 206 or (total.isdigit() and int(total) != self.size):
            resp.close()
            raise _RangeUnusable(f"HTTP {resp.status_code}, Content-Range total {total or '?'}")
        try:
            for chunk in resp.iter_content(_CHUNK):
                if self.cancel.is_set():
                    return
                if part.written + len(chunk) > want:
                    raise DigestError(f"{self.what}: part {part.start}-{part.end}: more data than asked for",
                                      registry=self.host)
                os.pwrite(self.sink.fd, chunk, part.start + part.written)
                with self.cond:
                    part.written += len(chunk)
                    self.cond.notify_all()
        except requests.exceptions.RequestException as e:
            raise DigestError(f"{self.what}: part {part.start}-{part.end} from {self.host} stopped after "
                              f"{part.written} of {want} bytes (truncated)", registry=self.host) from e
        finally:
            resp.close()
        if part.written != want:
            raise DigestError(f"{self.what}: part {part.start}-{part.end}: got {part.written} of {want} bytes "
                              f"from {self.host} (truncated)", registry=self.host)

    def hash_in_order(self, progress: Progress | None) -> None:
        """Hash each part as far as its bytes are written, in order (the verify-while-streaming half)."""
        for part in self.parts:
            while True:
                with self.cond:
                    while not self.errors and part.start + part.written <= self.sink.hashed and not part.done:
                        self.cond.wait(1.0)
                    if self.errors:
                        raise self.errors[0]
                    end, finished = part.start + part.written, part.done
                self.sink.hash_file_until(end)
                if progress:
                    progress(self.what, self.sink.hashed, self.size)
                if finished:
                    break


def _ranged(http: Http, url: str, size: int, sink: _Sink, what: str, progress: Progress | None) -> None:
    """Download ``url`` in parallel Range parts; hash the contiguous prefix as it grows."""
    parts = _Parts(http, url, size, sink, what)
    with ThreadPoolExecutor(max_workers=max(1, http.options.parallel), thread_name_prefix="sbuild-part") as pool:
        for part in parts.parts:
            pool.submit(parts.fetch, part)
        try:
            parts.hash_in_order(progress)
        finally:
            parts.cancel.set()  # the pool's exit waits for the workers: the file is not closed under them
    if parts.errors:
        raise parts.errors[0]


def store(http: Http, url: str, cache: BlobCache, expect: Expect, *, what: str, ranged_size: int | None = None,
          response: requests.Response | None = None, progress: Progress | None = None) -> tuple[Path, str]:
    """Download ``url`` (or read the open ``response``) into ``cache``; returns (path, sha256 digest).

    ``ranged_size``: download in Range parts of that total size. The entry appears only when
    ``expect`` holds; on any failure nothing is left behind."""
    sink = _Sink(cache, expect)
    try:
        ranged = response is None and bool(ranged_size) and ranged_size > http.options.part_size
        if ranged:
            try:
                _ranged(http, url, ranged_size, sink, what, progress)
            except _RangeUnusable as e:
                log.debug("%s: Range parts unusable (%s): one stream instead", what, e)
                sink.path.unlink(missing_ok=True)
                sink.close()
                sink = _Sink(cache, expect)
                ranged = False
        if not ranged:
            resp = response or http.get(url, what=what, stream=True)
            _single(resp, sink, what, progress, expect.size or 0)
        digest = _check(sink, expect, what, urlsplit(url).netloc)
        dest = cache.path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(sink.path, 0o644)
        os.replace(sink.path, dest)  # still held (``held_file``) until it has its final name
        return dest, digest
    finally:
        sink.path.unlink(missing_ok=True)
        sink.close()
