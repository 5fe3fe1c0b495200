"""OCI distribution client on ``requests``: ping, auth, manifests, blobs, uploads.

One ``RegistryClient`` per registry host. It pings ``/v2/`` once to learn the scheme
(https first; http with ``nohttps``, or as a fallback for loopback/private hosts when the
TLS connection itself fails, never after a certificate error) and the auth challenge.
Bearer tokens are fetched per scope (anonymous or with credentials, identity tokens by
OAuth POST) and cached until they expire; Basic auth is sent as is. The Authorization
header goes only to the registry's own scheme+host: redirects (blob storage, CDNs) are
followed by hand without it. 429 and 5xx are retried with backoff honouring
``Retry-After`` (``base.retry``). Requests go through ``http.Transport``: ``trust_env`` off
(so neither ``~/.netrc`` nor ``REQUESTS_CA_BUNDLE`` interfere); proxies are still taken
from the environment per URL.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from base.retry import TRANSIENT_STATUSES, Backoff
from builder.sources.oci.auth import Credentials, parse_challenges
from builder.sources.oci.errors import AuthError, DigestError, RegistryError
from builder.sources.oci.http import Transport, same_origin, short_error

__all__ = ["RegistryClient", "ClientOptions", "MANIFEST_TYPES", "INDEX_TYPES"]

log = logging.getLogger("sbuild.sources.oci")

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
_ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES + (
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json"))
_USER_AGENT = "sbuild/0.1 (+oci-distribution)"


@dataclass(frozen=True)
class ClientOptions:
    nohttps: bool = False
    tls_verify: bool = True
    ca_bundle: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
    retries: int = 5
    backoff: float = 1.0
    timeout: float = 60.0


class RegistryClient:
    """Talks to one registry host; see the module docstring."""

    def __init__(self, host: str, options: ClientOptions | None = None, *,
                 session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.host = host
        self.options = options or ClientOptions()
        backoff = Backoff(self.options.retries, self.options.backoff, statuses=TRANSIENT_STATUSES, sleep=sleep)
        self.transport = Transport(_USER_AGENT, self.options.timeout, self._verify(), backoff, session=session)
        self._base: str | None = None
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._refresh: str | None = None  # the newest refresh token the token server gave us
        self._warned: set[str] = set()

    # ------------------------------------------------------------ plumbing
    @property
    def base(self) -> str:
        if self._base is None:
            self._ping()
        return self._base  # type: ignore[return-value]

    def _verify(self) -> bool | str:
        if not self.options.tls_verify:
            return False
        return self.options.ca_bundle or True

    def _send(self, method: str, url: str, **kw) -> requests.Response:
        return self.transport.send(method, url, **kw)

    def _ping(self) -> None:
        schemes = ["http"] if self.options.nohttps else ["https"]
        if not self.options.nohttps and _insecure_ok(self.host):
            schemes.append("http")
        last: Exception | None = None
        for scheme in schemes:
            url = f"{scheme}://{self.host}/v2/"
            try:
                resp = self._send("GET", url)
            except requests.exceptions.SSLError as e:
                if "CERTIFICATE_VERIFY_FAILED" in str(e) or "certificate" in str(e).lower():
                    raise RegistryError(f"connecting to {self.host}: TLS certificate not trusted",
                                        registry=self.host,
                                        hint="pass the CA bundle, or --nohttps for a plain-HTTP registry") from e
                last = e
                continue
            except requests.exceptions.RequestException as e:
                last = e
                continue
            if resp.status_code in (200, 401) or resp.status_code < 500:
                self._base = f"{scheme}://{self.host}"
                header = resp.headers.get("WWW-Authenticate")
                if resp.status_code == 401 and header:
                    self._challenge = parse_challenges(header)[0]
                return
            last = RegistryError(f"HTTP {resp.status_code}")
        raise RegistryError(f"connecting to registry {self.host}: {short_error(last)}", registry=self.host,
                            hint=None if self.options.nohttps else "a plain-HTTP registry needs --nohttps")

    def request(self, method: str, path_or_url: str, *, scope: str, ok: tuple[int, ...] = (200,),
                what: str = "", digest: str | None = None, **kw) -> requests.Response:
        """Send a request to the registry with auth and retries; raise unless status in ``ok``."""
        url = path_or_url if "://" in path_or_url else self.base + path_or_url
        what = what or f"{method} {urlsplit(url).path}"
        tries, reauth = self.transport.backoff.start(), True
        replayable = kw.get("data") is None  # a body (a file, chunks) is not sent twice
        while True:
            headers = dict(kw.pop("headers", {}) or {})
            kw["headers"] = headers
            if same_origin(url, self.base):
                headers.update(self._auth_header(scope))
            try:
                resp = self._send(method, url, **kw)
            except requests.exceptions.RequestException as e:
                delay = tries.next_delay() if replayable else None
                if delay is None:
                    raise RegistryError(f"{what} from {self.host}: {short_error(e)}", registry=self.host,
                                        digest=digest) from e
                self.transport.backoff.sleep(delay)
                continue
            self._show_warnings(resp)
            if resp.status_code == 401 and reauth and same_origin(url, self.base):
                reauth = False
                self._on_401(resp, scope)
                _discard(resp)
                continue
            retry = replayable and resp.status_code in self.transport.backoff.statuses
            delay = tries.next_delay(resp.headers.get("Retry-After")) if retry else None
            if delay is not None:
                log.debug("%s: HTTP %s, retrying in %.1fs", what, resp.status_code, delay)
                _discard(resp)
                self.transport.backoff.sleep(delay)
                continue
            if resp.status_code not in ok:
                raise self._error(resp, what, digest)
            return resp

    def _error(self, resp: requests.Response, what: str, digest: str | None) -> RegistryError:
        detail = f"HTTP {resp.status_code}"
        try:
            errors = resp.json().get("errors") or []
            if errors:
                detail += ": " + "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip()
                                           for e in errors[:3])
        except ValueError:
            pass
        cls = AuthError if resp.status_code in (401, 403) else RegistryError
        hint = "check the credentials (--docker-login, --authfile)" if cls is AuthError else None
        return cls(f"{what} from {self.host}: {detail}", registry=self.host, digest=digest,
                   status=resp.status_code, hint=hint)

    def _show_warnings(self, resp: requests.Response) -> None:
        for value in resp.headers.get("Warning", "").split(","):
            value = value.strip()
            if value.startswith("299") and value not in self._warned:
                self._warned.add(value)
                log.warning("registry %s: %s", self.host, value[3:].strip(" -\""))

    # ----------------------------------------------------------------- auth
    def _auth_header(self, scope: str) -> dict[str, str]:
        if self._challenge is None:
            return {}
        scheme, _ = self._challenge
        creds = self.options.credentials
        if scheme == "basic":
            return {"Authorization": "Basic " + creds.basic()} if creds else {}
        if scheme == "bearer":
            token = self._tokens.get(scope)
            if token is None or token[1] < time.monotonic():
                token = self._fetch_token(scope)
            return {"Authorization": "Bearer " + token[0]}
        return {}

    def _on_401(self, resp: requests.Response, scope: str) -> None:
        header = resp.headers.get("WWW-Authenticate")
        if header:
            self._challenge = parse_challenges(header)[0]
        self._tokens.pop(scope, None)

    def _fetch_token(self, scope: str) -> tuple[str, float]:
        _, params = self._challenge  # type: ignore[misc]
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"authenticating to {self.host}: bearer challenge without realm",
                            registry=self.host)
        creds = self.options.credentials
        query = {"service": params.get("service", "")} if params.get("service") else {}
        scopes = [s for s in {scope, params.get("scope", "")} if s]
        try:
            if creds.identity_token:  # OAuth2: the identity token is a refresh token (§1.3.8)
                form = {"grant_type": "refresh_token", "refresh_token": self._refresh or creds.identity_token,
                        "client_id": "sbuild", "scope": " ".join(scopes), **query}
                resp = self._send("POST", realm, data=form)
            else:
                url = realm + ("&" if "?" in realm else "?") + urlencode(
                    list(query.items()) + [("scope", s) for s in scopes]
                    + ([("account", creds.username)] if creds.username else []))
                auth = (creds.username, creds.password) if creds.username else None
                resp = self._send("GET", url, auth=auth)
        except requests.exceptions.RequestException as e:
            raise AuthError(f"getting a token for {self.host}: {short_error(e)}", registry=self.host) from e
        if resp.status_code != 200:
            raise AuthError(f"getting a token for {self.host} ({scope}): HTTP {resp.status_code}",
                            registry=self.host, status=resp.status_code,
                            hint="check the credentials (--docker-login, --authfile)")
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise AuthError(f"getting a token for {self.host}: no token in the answer", registry=self.host)
        if creds.identity_token and isinstance(body.get("refresh_token"), str):
            self._refresh = body["refresh_token"]
        lifetime = max(int(body.get("expires_in") or 60), 60)
        entry = (token, time.monotonic() + lifetime - 10)
        self._tokens[scope] = entry
        return entry

    # ---------------------------------------------------------- manifests
    def get_manifest(self, repo: str, version: str) -> tuple[bytes, str, str]:
        """``(body, media type, digest)``; the digest is checked when ``version`` is one."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{version}", scope=_scope(repo),
                            headers={"Accept": _ACCEPT}, what=f"getting manifest {repo}:{version}")
        body = resp.content
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if version.startswith("sha256:") and digest != version:
            raise DigestError(f"manifest {repo}@{version} from {self.host}: content has digest {digest}",
                              registry=self.host, digest=version)
        media = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        return body, media, digest

    # ---------------------------------------------------------------- blobs
    def blob_chunks(self, repo: str, digest: str, offset: int = 0) -> Iterator[bytes]:
        """The bytes of a blob from ``offset``, following redirects without our credentials."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        what = f"pulling blob {digest} of {repo}"
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=_scope(repo), stream=True,
                            ok=(200, 206, 301, 302, 303, 307, 308), headers=headers, what=what,
                            digest=digest)
        hops = 0
        while resp.is_redirect:
            hops += 1
            location = urljoin(resp.url, resp.headers["Location"])
            _discard(resp)
            if hops > 10:
                raise RegistryError(f"{what} from {self.host}: too many redirects", registry=self.host,
                                    digest=digest)
            if same_origin(location, self.base):
                resp = self.request("GET", location, scope=_scope(repo), stream=True, headers=headers,
                                    ok=(200, 206, 301, 302, 303, 307, 308), what=what, digest=digest)
            else:
                try:
                    resp = self._send("GET", location, headers=headers, stream=True)
                except requests.exceptions.RequestException as e:
                    raise RegistryError(f"{what} from {self.host} (redirected): {short_error(e)}",
                                        registry=self.host, digest=digest) from e
                if resp.status_code not in (200, 206) and not resp.is_redirect:
                    raise self._error(resp, what + " (redirected)", digest)
        skip = offset if resp.status_code == 200 else 0  # the server ignored our Range
        try:
            for chunk in resp.iter_content(1 << 20):
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk, skip = chunk[skip:], 0
                yield chunk
        except requests.exceptions.RequestException as e:
            raise RegistryError(f"{what} from {self.host}: connection lost: {short_error(e)}",
                                registry=self.host, digest=digest) from e
        finally:
            resp.close()

    def blob_exists(self, repo: str, digest: str, scope: str | None = None) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=scope or _scope(repo),
                            ok=(200, 404), what=f"checking blob {digest}", digest=digest)
        return resp.status_code == 200

    def upload_blob(self, repo: str, digest: str, path: Path, chunk: int | None = None) -> None:
        """Push a blob: POST then one PUT, or PATCH chunks of ``chunk`` bytes then PUT."""
        scope = _scope(repo, push=True)
        what = f"pushing blob {digest} to {repo}"
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, ok=(202,), what=what,
                            headers={"Content-Length": "0"}, digest=digest)
        location = urljoin(resp.url, resp.headers["Location"])
        size = path.stat().st_size
        with open(path, "rb") as fh:
            if chunk:
                start = 0
                while start < size:
                    data = fh.read(chunk)
                    end = start + len(data) - 1
                    resp = self.request("PATCH", location, scope=scope, ok=(202,), data=data, what=what,
                                        headers={"Content-Type": "application/octet-stream",
                                                 "Content-Range": f"{start}-{end}"}, digest=digest)
                    location = urljoin(resp.url, resp.headers["Location"])
                    start = end + 1
                body: object = b""
            else:
                body = fh
            sep = "&" if "?" in location else "?"
            self.request("PUT", f"{location}{sep}digest={digest}", scope=scope, ok=(201,), data=body,
                         what=what, digest=digest,
                         headers={"Content-Type": "application/octet-stream",
                                  "Content-Length": str(0 if chunk else size)})

    def put_manifest(self, repo: str, version: str, body: bytes, media_type: str) -> None:
        self.request("PUT", f"/v2/{repo}/manifests/{version}", scope=_scope(repo, push=True),
                     ok=(201,), data=body, headers={"Content-Type": media_type},
                     what=f"pushing manifest {repo}:{version}")


def _scope(repo: str, push: bool = False) -> str:
    return f"repository:{repo}:pull,push" if push else f"repository:{repo}:pull"


def _insecure_ok(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if not host.endswith("]") else host.strip("[]")
    if name == "localhost" or name.endswith(".localhost") or name.endswith(".local"):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


def _discard(resp: requests.Response) -> None:
    try:
        resp.close()
    except Exception:  # noqa: BLE001 - closing a dead connection
        pass
