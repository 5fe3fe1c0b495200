"""Real servers for the registry tests, all on 127.0.0.1: Debian's docker-registry (plain,
htpasswd, TLS, token auth), a small token server, and a fault-injecting HTTP proxy.

The token server issues RS256 JWTs signed with ``openssl`` (no Python crypto package
needed); its ``kid`` is the libtrust key id docker-registry expects. The proxy forwards
to a registry and can, per request path, answer 429/500, truncate, reset or corrupt a blob,
stall before its headers or in its body, hold a blob's last byte until the test releases it,
or redirect blob GETs to a second host name (``localhost``) while recording the headers
each side saw.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

USER, PASSWORD = "testuser", "s3cret-pass"
REFRESH_TOKEN = "identity-token-0123456789"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Registry:
    proc: subprocess.Popen
    port: int
    scheme: str = "http"
    ca: Path | None = None
    token_server: "TokenServer | None" = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_registry(workdir: Path, auth: dict | None = None, tls: tuple[Path, Path] | None = None) -> Registry:
    workdir.mkdir(parents=True, exist_ok=True)
    http_cfg: dict = {"addr": "127.0.0.1:0", "secret": "testsecret"}
    if tls:
        http_cfg["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    cfg = {"version": 0.1, "log": {"level": "info", "accesslog": {"disabled": True}},
           "storage": {"filesystem": {"rootdirectory": str(workdir / "data")},
                       "delete": {"enabled": True}, "cache": {"blobdescriptor": "inmemory"}},
           "http": http_cfg}
    if auth:
        cfg["auth"] = auth
    (workdir / "config.yml").write_text(json.dumps(cfg))
    with open(workdir / "registry.log", "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(workdir / "config.yml")],
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", (workdir / "registry.log").read_bytes())
        if m:
            return Registry(proc, int(m.group(1)), "https" if tls else "http")
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise RuntimeError("docker-registry did not start:\n" + (workdir / "registry.log").read_text())


def make_cert(directory: Path, cn: str = "localhost") -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / f"{cn}.crt", directory / f"{cn}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "3650", "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


def htpasswd_file(path: Path) -> Path:
    out = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True)
    path.write_bytes(out.stdout)
    return path


def _access(scopes: list[str], authed: bool) -> list[dict]:
    access = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        allowed = [a for a in actions.split(",") if a == "pull" or authed]
        access.append({"type": kind, "name": name, "actions": allowed})
    return access


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A docker-registry token server on 127.0.0.1.

    ``GET /token?service=&scope=`` -> a JWT: Basic USER:PASSWORD gets pull+push, anyone pull.
    ``POST /token`` (OAuth2 form, ``grant_type=refresh_token``): the identity token
    ``REFRESH_TOKEN`` (or a refresh token it handed out) gets pull+push for the
    space-separated ``scope``; the answer carries a new ``refresh_token``; anything else
    is 401. Every request is recorded (method, query or form, Authorization).
    """

    def __init__(self, workdir: Path) -> None:
        self.crt, self.key = make_cert(workdir, "token-issuer")
        der = subprocess.run(["openssl", "pkey", "-in", self.key, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
        self.kid = ":".join(b32[i:i + 4] for i in range(0, 48, 4))
        self.requests: list[dict] = []
        self.refresh_tokens = {REFRESH_TOKEN}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _answer(self, status: int, doc: dict | None = None) -> None:
                body = json.dumps(doc).encode() if doc is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                auth = self.headers.get("Authorization", "")
                server.requests.append({"method": "GET", "query": q, "authorization": auth})
                authed = auth == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if auth and not authed:
                    self._answer(401, {"details": "bad credentials"})
                    return
                token = server.sign(q.get("service", [""])[0], _access(q.get("scope", []), authed))
                self._answer(200, {"token": token, "expires_in": 300})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                server.requests.append({"method": "POST", "form": form,
                                        "content_type": self.headers.get("Content-Type", ""),
                                        "authorization": self.headers.get("Authorization", "")})
                refresh = form.get("refresh_token", [""])[0]
                if form.get("grant_type") != ["refresh_token"] or refresh not in server.refresh_tokens:
                    self._answer(401, {"error": "invalid_grant"})
                    return
                scopes = " ".join(form.get("scope", [])).split()
                new_refresh = "refresh-" + os.urandom(6).hex()
                server.refresh_tokens.add(new_refresh)
                token = server.sign(form.get("service", [""])[0], _access(scopes, True))
                self._answer(200, {"access_token": token, "expires_in": 300, "refresh_token": new_refresh})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def sign(self, service: str, access: list[dict]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        claims = {"iss": "test-issuer", "sub": "", "aud": service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64(sig)}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Fault:
    """What the proxy does to requests whose path contains ``match``."""
    match: str
    status: int | None = None          # answer this status instead of forwarding
    times: int = 1                     # how many requests it applies to (-1: always)
    retry_after: str | None = None
    truncate: int | None = None        # send only this many body bytes, then close
    stall: float = 0.0                 # with truncate: hold the connection this long before closing
    body: bytes | None = None          # serve these bytes instead of the upstream's body
    pause: float = 0.0                 # wait this long after the body's first 64 KiB
    corrupt: bool = False              # flip a byte in the body
    redirect: bool = False             # 307 to the second host name (localhost)
    pause_at: int = 65536              # with pause: where in the body it waits
    stall_headers: float = 0.0         # wait this long before answering anything (then answer)
    reset: int | None = None           # send this many body bytes, then reset the connection (RST)
    hold: threading.Event | None = None  # send all but the body's last byte, set ``reached``, wait for it
    reached: threading.Event = field(default_factory=threading.Event)


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    seen: list[dict] = field(default_factory=list)
    presigned: dict = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _fault(self):
                for f in proxy.faults:
                    if f.match in self.path and f.times != 0:
                        if f.times > 0:
                            f.times -= 1
                        return f
                return None

            def _handle(self):
                host = self.headers.get("Host", "")
                proxy.seen.append({"method": self.command, "path": self.path, "host": host,
                                   "authorization": self.headers.get("Authorization"),
                                   "range": self.headers.get("Range")})
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                redirected = "sbuild_redirected=1" in self.path
                fault = None if redirected else self._fault()
                if fault and fault.stall_headers:
                    proxy.stopping.wait(fault.stall_headers)
                if fault and fault.redirect:
                    proxy.presigned[self.path] = self.headers.get("Authorization")
                    sep = "&" if "?" in self.path else "?"
                    self.send_response(307)
                    self.send_header("Location", f"http://localhost:{proxy.port}{self.path}{sep}sbuild_redirected=1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault and fault.status:
                    self.send_response(fault.status)
                    if fault.retry_after:
                        self.send_header("Retry-After", fault.retry_after)
                    payload = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                path = self.path.replace("?sbuild_redirected=1", "").replace("&sbuild_redirected=1", "")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                if redirected and proxy.presigned.get(path):  # "storage" holds its own access
                    headers["Authorization"] = proxy.presigned[path]
                req = urllib.request.Request(proxy.upstream + path, data=body, method=self.command, headers=headers)
                try:
                    resp = _OPENER.open(req)
                except urllib.error.HTTPError as e:
                    resp = e
                data = resp.read()
                if fault and fault.body is not None:
                    data = fault.body
                if fault and fault.corrupt and data:
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                self.send_response(resp.status if hasattr(resp, "status") else resp.code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if fault and (fault.reset is not None or fault.hold is not None):
                    self._cut(data, fault)
                    return
                if fault and fault.truncate is not None:
                    self.wfile.write(data[:fault.truncate])
                    self.wfile.flush()
                    proxy.stopping.wait(fault.stall)  # (cut short when the proxy stops)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault and fault.pause:
                    self.wfile.write(data[:fault.pause_at])
                    self.wfile.flush()
                    proxy.stopping.wait(fault.pause)
                    data = data[fault.pause_at:]
                self.wfile.write(data)

            def _cut(self, data: bytes, fault: Fault) -> None:
                """``reset``: N bytes then an RST; ``hold``: all but the last byte until released."""
                if fault.hold is not None and "/blobs/" in self.path and len(data) > 1 and self.command == "GET":
                    self.wfile.write(data[:-1])
                    self.wfile.flush()
                    fault.reached.set()
                    fault.hold.wait(60)
                    self.wfile.write(data[-1:])
                    return
                if fault.hold is not None:
                    self.wfile.write(data)
                    return
                self.wfile.write(data[:fault.reset])
                self.wfile.flush()
                self.close_connection = True
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()

            def handle(self):
                try:
                    super().handle()
                except OSError:  # the client gave up (a timeout it was meant to hit) or we reset it
                    pass

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _handle

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.stopping.set()
        for f in self.faults:
            if f.hold is not None:
                f.hold.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def skopeo_push(layout: Path, tag: str, dest: str, *, all_: bool = False, creds: str | None = None,
                cert_dir: Path | None = None, fmt: str | None = None) -> None:
    cmd = ["skopeo", "copy", "-q"]
    if all_:
        cmd.append("--all")
    if fmt:
        cmd += ["--format", fmt]
    if creds:
        cmd += ["--dest-creds", creds]
    cmd += ["--dest-cert-dir", str(cert_dir)] if cert_dir else ["--dest-tls-verify=false"]
    cmd += [f"oci:{layout}:{tag}", f"docker://{dest}"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


@contextlib.contextmanager
def serving(workdir: Path, layout: Path, tag: str, name: str):  # noqa: ANN201 - Iterator[Registry]
    """A plain registry started in ``workdir`` with ``layout``'s ``tag`` pushed as ``name``
    (``REPO:TAG``), stopped afterwards; the test is skipped without docker-registry or skopeo."""
    import pytest

    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    reg = start_registry(workdir)
    try:
        skopeo_push(layout, tag, f"{reg.host}/{name}")
        yield reg
    finally:
        reg.stop()


def cleanup_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
