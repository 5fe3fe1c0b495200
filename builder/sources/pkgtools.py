"""What the ``yum``/``dnf``, ``zypper`` and ``arch`` agents share: host tools, URLs, privilege.

- ``HOST_TOOLS``: the host programs each agent runs, with the Debian package that has them;
  ``missing_tools(agent)`` lists the absent ones (``sbuild check``, ``sbuild doctor``) and
  ``need_tool`` raises ``CapabilityError`` (exit 3) naming the package to install.
- ``header_problems(agent, header)``: the header values Apptainer rejects at build time
  (a ``%{OSVERSION}`` with no ``OSVersion``, an incomplete SLE registration), so that
  ``sbuild check`` reports them before anything is fetched.
- ``with_osversion``: Apptainer's case-insensitive ``%{OSVERSION}`` substitution.
- ``fetch_url``/``probe_url``: a file, http(s) or ftp URL read with its status checked, so
  that a 404 page is never used as data and a failing mirror is named in the error.
- ``rpm_home``: a ``HOME`` whose ``.rpmmacros`` puts the rpm database at ``/var/lib/rpm``
  (Debian's rpm defaults to ``~/.rpmdb``, where the image's own rpm never looks).
- ``check_privilege``/``run_steps``: as root the package manager runs directly; rootless it
  runs inside the build's subuid-mapped user namespace (``runtime.call_in_userns``); any
  other case is refused up front, with the reason.

Limits: no proxy or CA settings of our own (urllib's defaults, i.e. the host's).
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from base.errors import BuildError, CapabilityError

__all__ = ["HOST_TOOLS", "missing_tools", "need_tool", "header_problems", "with_osversion", "fetch_url",
           "probe_url", "rpm_home", "make_dev_nodes", "check_privilege", "run_steps", "tool_env", "Step"]

log = logging.getLogger("sbuild.sources")

# agent -> ((program, Debian package), ...); the first of "dnf"/"yum" found is used
HOST_TOOLS: dict[str, tuple[tuple[str, str], ...]] = {
    "yum": (("dnf", "dnf"), ("rpm", "rpm")),
    "dnf": (("dnf", "dnf"), ("rpm", "rpm")),
    "zypper": (("zypper", "zypper"), ("rpm", "rpm")),
    "arch": (("pacstrap", "arch-install-scripts"), ("arch-chroot", "arch-install-scripts"),
             ("pacman", "pacman-package-manager")),
}
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PASS = ("http_proxy", "https_proxy", "no_proxy", "ftp_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
         "TMPDIR", "SSL_CERT_FILE", "CURL_CA_BUNDLE")
_OSV = re.compile(r"%\{OSVERSION\}", re.IGNORECASE)
_DEV_NODES = (("null", 3), ("random", 8), ("urandom", 9), ("zero", 5))

Step = tuple[str, Sequence[str]]  # (what it is, for the error; argv)


def _which(name: str) -> str | None:
    """``name`` on PATH or in the sbin directories a user's PATH may lack (``dnf``: or yum)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    if name == "dnf":
        return shutil.which("dnf", path=path) or shutil.which("yum", path=path)
    return shutil.which(name, path=path)


def missing_tools(agent: str) -> list[tuple[str, str]]:
    """``(program, Debian package)`` for each host program ``agent`` needs that is absent."""
    return [(tool, pkg) for tool, pkg in HOST_TOOLS.get(agent, ()) if not _which(tool)]


def need_tool(agent: str, tool: str) -> str:
    """The path of ``tool``, or ``CapabilityError`` naming the package that has it."""
    path = _which(tool)
    if path:
        return path
    pkg = dict(HOST_TOOLS.get(agent, ())).get(tool, tool)
    what = "dnf or yum" if tool == "dnf" else tool
    raise CapabilityError(f"'Bootstrap: {agent}' needs {what} on this host, which is not installed",
                          hint=f"apt-get install {pkg}")


def header_problems(agent: str, header: dict[str, str]) -> list[tuple[str, str]]:
    """``(key, message)`` for each header value a build of ``agent`` would reject."""
    out = []
    if agent in ("yum", "dnf", "zypper"):
        for key in ("mirrorurl", "updateurl"):
            if _OSV.search(header.get(key, "")) and not header.get("osversion"):
                out.append((key, f"{key} references %{{OSVERSION}} but there is no 'OSVersion:' header line"))
    if agent == "zypper":
        sle = [k for k in ("product", "user", "regcode") if header.get(k)]
        if sle and len(sle) < 3:
            out.append((sle[0], "a SLE build needs all of 'Product', 'User' and 'Regcode'"))
        if sle and not header.get("osversion"):
            out.append((sle[0], "a SLE build needs an 'OSVersion:' header line"))
    return out


def with_osversion(url: str, osversion: str) -> str:
    """``url`` with every ``%{OSVERSION}`` (any case) replaced."""
    return _OSV.sub(lambda _m: osversion, url)


def _open(url: str, what: str, timeout: float):  # noqa: ANN202 - a urllib response
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https", "ftp", "file"):
        raise BuildError(f"{what} {url!r}: unsupported URL scheme {parsed.scheme!r}",
                         hint="use an http(s)://, ftp:// or file:/// URL")
    try:
        return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - schemes checked above
    except urllib.error.HTTPError as e:
        e.close()  # (its body's socket)
        raise BuildError(f"{what} {url} failed: HTTP {e.code} {e.reason}",
                         hint="check the URL and that the server is up") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise BuildError(f"{what} {url} failed: {reason}", hint="check the URL and that the server is up") from e


def fetch_url(url: str, dest: Path, what: str, timeout: float = 60) -> None:
    """Save ``url`` at ``dest``; ``BuildError`` naming the URL on any HTTP or transfer error."""
    with _open(url, what, timeout) as resp:
        try:
            with open(dest, "wb") as out:
                shutil.copyfileobj(resp, out)
        except (OSError, http.client.HTTPException) as e:  # a cut connection while reading
            raise BuildError(f"{what} {url} failed while reading: {e}",
                             hint="check that the server is up") from e


def probe_url(url: str, what: str, timeout: float = 30, limit: int = 16 << 20) -> None:
    """Read ``url`` (up to ``limit`` bytes): ``BuildError`` naming it when it cannot be fetched."""
    with _open(url, what, timeout) as resp:
        try:
            got = 0
            while got < limit and (chunk := resp.read(65536)):
                got += len(chunk)
            if got < limit and getattr(resp, "length", None):  # an http server closed before the Content-Length it sent
                raise http.client.IncompleteRead(b"", resp.length)
        except (OSError, http.client.HTTPException) as e:
            raise BuildError(f"{what} {url} failed while reading: {e}", hint="check that the server is up") from e


def rpm_home(directory: Path, dbpath: str = "%{_var}/lib/rpm") -> Path:
    """``directory`` with a ``.rpmmacros`` that puts rpm's database at ``dbpath`` (a HOME)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / ".rpmmacros").write_text(f"%_var /var\n%_dbpath {dbpath}\n")
    return directory


def make_dev_nodes(root: Path) -> None:
    """``ROOT/dev`` with null, random, urandom, zero (Apptainer's yum and zypper agents).

    In a user namespace mknod fails: Apptainer's fakeroot filter makes it a silent no-op,
    so here too the node is left out (the runtime binds the host's /dev for %post)."""
    dev = root / "dev"
    dev.mkdir(mode=0o775, exist_ok=True)
    for name, minor in _DEV_NODES:
        path = dev / name
        if os.path.lexists(path):
            continue
        try:
            os.mknod(path, 0o666 | 0o020000, os.makedev(1, minor))
        except PermissionError:
            log.debug("mknod %s: not permitted here (left out, as Apptainer's fakeroot does)", path)


def tool_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment the package managers run with: the proxies, ``HOME``, ``LANG=C``."""
    env = {k: v for k, v in os.environ.items() if k in _PASS}
    env.update(PATH=_PATH, LANG="C", LC_ALL="C", HOME=str(home))
    env.update(extra)
    return env


def check_privilege(agent: str, options, why: str) -> None:  # noqa: ANN001 - FetchOptions
    """Refuse, before anything is fetched, a build that cannot run the package manager here."""
    if os.geteuid() == 0 or options.identity.mode == "subuid":
        return
    raise CapabilityError(f"a rootless '{agent}' build needs subordinate ids: {why}",
                          hint="install uidmap and add a range, e.g. usermod --add-subuids 100000-165535 "
                               "--add-subgids 100000-165535 $USER")


def _run_all(steps: Sequence[Step], env: dict[str, str], prepare: Callable[[], None] | None,
             label: str) -> tuple[str, int, list[str]]:
    from builder.rootfs import run_captured

    if prepare is not None:
        prepare()
    for what, argv in steps:
        log.info("%s: %s", label, what)
        log.debug("%s: running %s", label, " ".join(argv))
        status, tail = run_captured(list(argv), env=env, cwd="/",
                                    output=lambda line: log.debug("%s: %s", label, line))
        if status != 0:
            return what, status, tail
    return "", 0, []


def run_steps(steps: Sequence[Step], env: dict[str, str], label: str,
              prepare: Callable[[], None] | None = None) -> tuple[str, int, list[str]]:
    """Run ``steps`` in order until one fails: ``(failed step, exit status, output tail)``
    (``("", 0, [])`` when all succeed). As root directly; otherwise in the build's user
    namespace, where ``prepare`` (mounts for the namespace) runs first."""
    if os.geteuid() == 0:
        return _run_all(steps, env, None, label)
    from runtime import call_in_userns

    return call_in_userns(_run_all, steps, env, prepare, label)
