"""Registry credentials and token handling.

- ``parse_challenges(header)``: quote-aware ``WWW-Authenticate`` parsing.
- ``Credentials``: user/password or identity token; ``repr`` never shows the secret.
- ``find_credentials(registry, ...)``: explicit login (``--docker-login``), then
  ``SINGULARITY_/APPTAINER_DOCKER_USERNAME/PASSWORD``, then the auth file (``--authfile``,
  ``~/.apptainer/docker-config.json``, ``$DOCKER_CONFIG/config.json``,
  ``~/.docker/config.json``): ``auths`` entries, ``credHelpers`` and ``credsStore``
  (``docker-credential-NAME get`` with the server on stdin). Docker Hub's key is
  ``https://index.docker.io/v1/``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from base.env import apptainer_env
from builder.sources.oci.errors import AuthError

__all__ = ["Credentials", "parse_challenges", "find_credentials", "HUB_KEY"]

log = logging.getLogger("sbuild.sources.oci")
HUB_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def __bool__(self) -> bool:
        return bool(self.username or self.password or self.identity_token)

    def basic(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """``[(scheme-lowercase, {key: value})]`` from a ``WWW-Authenticate`` value."""
    out: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(header)
    while i < n:
        while i < n and header[i] in " ,":
            i += 1
        start = i
        while i < n and header[i] not in " ,":
            i += 1
        scheme = header[start:i].lower()
        if not scheme:
            break
        params: dict[str, str] = {}
        while True:
            while i < n and header[i] == " ":
                i += 1
            j = i
            while j < n and header[j] not in "=, ":
                j += 1
            if j >= n or header[j] != "=":
                break  # next token is a new scheme
            key = header[i:j].lower()
            i = j + 1
            if i < n and header[i] == '"':
                i += 1
                value = []
                while i < n and header[i] != '"':
                    if header[i] == "\\" and i + 1 < n:
                        i += 1
                    value.append(header[i])
                    i += 1
                i += 1
                params[key] = "".join(value)
            else:
                j = i
                while j < n and header[j] != ",":
                    j += 1
                params[key] = header[i:j].strip()
                i = j
            while i < n and header[i] == " ":
                i += 1
            if i < n and header[i] == ",":
                i += 1
        out.append((scheme, params))
    return out


def _config_key(registry: str) -> list[str]:
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return [HUB_KEY, "docker.io", "index.docker.io", "registry-1.docker.io"]
    return [registry]


def _normalize(key: str) -> str:
    if key == HUB_KEY:
        return key
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.split("/", 1)[0]


def default_auth_files(environ: Mapping[str, str]) -> list[Path]:
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    files = [home / ".apptainer" / "docker-config.json", home / ".singularity" / "docker-config.json"]
    if environ.get("DOCKER_CONFIG"):
        files.append(Path(environ["DOCKER_CONFIG"]) / "config.json")
    files.append(home / ".docker" / "config.json")
    return files


def find_credentials(registry: str, *, login: Credentials | None = None,
                     authfile: Path | None = None, environ: Mapping[str, str] | None = None,
                     runner: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> Credentials:
    """The credentials to use for ``registry`` (empty ``Credentials`` for anonymous)."""
    environ = os.environ if environ is None else environ
    if login:
        return login
    user = apptainer_env("DOCKER_USERNAME", environ)
    password = apptainer_env("DOCKER_PASSWORD", environ)
    if user or password:
        return Credentials(user or "", password or "")
    files = [authfile] if authfile else default_auth_files(environ)
    for path in files:
        try:
            config = json.loads(Path(path).read_text())
        except FileNotFoundError:
            if authfile:
                raise AuthError(f"reading auth file {path}: no such file") from None
            continue
        except (OSError, ValueError) as e:
            raise AuthError(f"reading auth file {path}: {e}") from e
        found = _from_config(config, registry, runner)
        if found:
            log.debug("using credentials for %s from %s", registry, path)
            return found
    return Credentials()


def _from_config(config: dict, registry: str, runner) -> Credentials:
    keys = _config_key(registry)
    helpers = config.get("credHelpers") or {}
    for key in keys:
        if key in helpers:
            return _helper(helpers[key], keys[0], runner)
    auths = {_normalize(k): v for k, v in (config.get("auths") or {}).items()}
    for key in keys:
        entry = auths.get(_normalize(key))
        if entry is None:
            continue
        if entry.get("identitytoken"):
            return Credentials(identity_token=entry["identitytoken"])
        if entry.get("auth"):
            decoded = base64.b64decode(entry["auth"]).decode("utf-8", "replace")
            user, _, password = decoded.partition(":")
            return Credentials(user, password)
        if entry.get("username"):
            return Credentials(entry["username"], entry.get("password", ""))
    if config.get("credsStore"):
        return _helper(config["credsStore"], keys[0], runner)
    return Credentials()


def _helper(name: str, server: str, runner) -> Credentials:
    program = f"docker-credential-{name}"
    try:
        proc = runner([program, "get"], input=server.encode(), capture_output=True, timeout=60)
    except FileNotFoundError:
        log.warning("credential helper %s not found; continuing without credentials", program)
        return Credentials()
    if proc.returncode != 0:
        log.debug("credential helper %s has no credentials for %s", program, server)
        return Credentials()
    try:
        data = json.loads(proc.stdout)
    except ValueError as e:
        raise AuthError(f"reading credential helper {program}: output is not JSON") from e
    user, secret = data.get("Username", ""), data.get("Secret", "")
    if user == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(user, secret)
