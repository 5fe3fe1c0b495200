"""``Bootstrap: busybox``: a rootfs made of one static busybox binary and its applets.

``MirrorURL`` names the binary: ``file:///bin/busybox`` (Debian's busybox-static, no
network) or an http(s) URL. It becomes ``/bin/busybox`` (0755) and every applet it lists
(``busybox --list``, run on the host) a symlink beside it in ``/bin``. A binary for another
architecture cannot list its applets here; then only ``/bin/sh`` is linked.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from base.errors import BuildError
from builder.bundle import Bundle
from builder.options import FetchOptions
from builder.recipe import Stage
from builder.sources.contract import Source, finish_fresh_rootfs

__all__ = ["BusyboxSource"]

log = logging.getLogger("sbuild.sources")


def _download(url: str, dest: Path, options: FetchOptions) -> None:
    parsed = urllib.parse.urlparse(url)
    try:
        if parsed.scheme == "file" or not parsed.scheme:
            shutil.copyfile(urllib.parse.unquote(parsed.path if parsed.scheme else url), dest)
        elif parsed.scheme in ("http", "https"):
            if parsed.scheme == "http" and not options.nohttps:
                log.warning("fetching busybox over plain http: %s", url)
            with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:  # noqa: S310
                shutil.copyfileobj(resp, out)
        else:
            raise BuildError(f"busybox: unsupported MirrorURL scheme {parsed.scheme!r}",
                             hint="use file:///path/to/busybox or an http(s) URL")
    except OSError as e:
        raise BuildError(f"busybox: fetching {url}: {getattr(e, 'strerror', None) or e}",
                         hint="install busybox-static for file:///bin/busybox") from e


def _applets(binary: Path) -> list[str]:
    try:
        proc = subprocess.run([str(binary), "--list"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        log.warning("busybox: cannot run %s on this host (%s): linking only /bin/sh", binary, e.strerror)
        return ["sh"]
    if proc.returncode != 0:
        return ["sh"]
    return [a for a in proc.stdout.split() if a and "/" not in a and a != "busybox"]


class BusyboxSource(Source):
    """``MirrorURL`` (required: ``builder.sources.checks``) names the binary."""

    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        url = (stage.header or {})["mirrorurl"]
        bindir = bundle.rootfs / "bin"
        bindir.mkdir(mode=0o755, exist_ok=True)
        binary = bindir / "busybox"
        _download(url, binary, options)
        os.chmod(binary, 0o755)
        for applet in _applets(binary):
            link = bindir / applet
            if not os.path.lexists(link):
                os.symlink("busybox", link)
        finish_fresh_rootfs(bundle)
