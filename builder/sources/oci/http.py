"""HTTP plumbing shared by the registry client (``client.py``) and the library and shub
downloads (``builder/sources/download.py``): one way to make a session and send a request,
one retry policy, one wording of a failed connection.

``Transport(user_agent, timeout, verify, backoff, session=None)`` owns a ``requests``
session with ``trust_env`` off (``~/.netrc`` never adds credentials, ``REQUESTS_CA_BUNDLE``
never replaces ours) and sends each request with our User-Agent, the timeout, the TLS
verification (``True``, ``False`` or a CA bundle path), the proxies the environment names
for that URL, and no automatic redirects: callers follow them by hand, so credentials go
only to their own origin. ``backoff`` (``base.retry.Backoff``) is the policy the callers'
retry loops apply (the loops differ: re-authentication, redirects, bodies that cannot be
sent twice); its ``sleep`` is how a test skips the waiting.

``short_error(e)``: a ``requests`` exception as a short, redacted message ("connection
refused", "connection failed", else its text cut to 300 characters). ``same_origin(url,
base)``: the same scheme and host:port.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from requests.utils import get_environ_proxies

from base.retry import Backoff
from builder.sources.oci.errors import redact

__all__ = ["Transport", "short_error", "same_origin"]


class Transport:
    """One session with our settings; see the module docstring."""

    def __init__(self, user_agent: str, timeout: float, verify: bool | str, backoff: Backoff, *,
                 session: requests.Session | None = None) -> None:
        self.user_agent, self.timeout, self.verify, self.backoff = user_agent, timeout, verify, backoff
        self.session = session or requests.Session()
        self.session.trust_env = False

    def send(self, method: str, url: str, *, headers: dict[str, str] | None = None, **kw) -> requests.Response:
        """One request, no retry (``requests`` exceptions pass through)."""
        kw.setdefault("timeout", self.timeout)
        kw.setdefault("allow_redirects", False)
        return self.session.request(method, url, headers={"User-Agent": self.user_agent, **(headers or {})},
                                    verify=self.verify, proxies=get_environ_proxies(url), **kw)


def short_error(e: object) -> str:
    text = str(e) or type(e).__name__
    if "Connection refused" in text:
        return "connection refused"
    if "Max retries exceeded" in text or "NameResolution" in text:
        return "connection refused" if "refused" in text else "connection failed"
    return redact(text)[:300]


def same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)
