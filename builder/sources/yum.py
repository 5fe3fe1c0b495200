"""``Bootstrap: yum`` and ``Bootstrap: dnf``: an RPM-based rootfs installed from a mirror.

As Apptainer (reference/package-agents.md §1.1): header keys ``MirrorURL`` (required),
``UpdateURL``, ``OSVersion`` (``--releasever``, and ``%{OSVERSION}`` in either URL, any case),
``Include`` and the ``INCLUDE`` environment variable (extra packages, whitespace separated),
``SetOpt`` (dnf ``--setopt`` options); the ``GPG`` environment variable names the key that
turns on ``gpgcheck``. Writes ``ROOT/etc/bootstrap-yum.conf`` (kept, as Apptainer does) and
the /dev nodes, imports the key into the image's rpm database, then runs ``dnf`` (or ``yum``)
``--installroot ROOT install /etc/redhat-release coreutils <Include...>``.

Differences, each deliberate:
- rpm runs with a ``HOME`` whose ``.rpmmacros`` puts the database at ``/var/lib/rpm``
  (Debian's rpm says ``~/.rpmdb``, which Apptainer refuses and the image's rpm never reads);
  when the installed rpm uses ``/usr/lib/sysimage/rpm`` (Fedora), the database moves there.
- ``SetOpt`` is split into one ``--setopt`` per option (Apptainer passes one argument,
  which dnf reads as a single option with a space in its value): a warning says so.
- ``OSVersion`` is passed as ``--releasever`` whenever it is set, not only when a URL names it.
- The mirror's ``repodata/repomd.xml`` is fetched first, so that a failing mirror is named.
- A GPG key may also be a ``file://`` URL; plain ``http://`` needs ``--nohttps``.
Without ``GPG`` packages are installed unverified (as Apptainer does): a warning says so.
Rootless, dnf and rpm run inside the build's subuid-mapped user namespace.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from base.errors import BuildError
from builder.bundle import Bundle
from builder.options import FetchOptions
from builder.recipe import Stage
from builder.rootfs import write_file
from builder.sources.contract import Source, finish_fresh_rootfs
from builder.sources.pkgtools import (check_privilege, fetch_url, make_dev_nodes, need_tool, probe_url, rpm_home,
                                      run_steps, tool_env, with_osversion)

__all__ = ["YumSource", "YumPlan", "yum_plan", "yum_conf"]

log = logging.getLogger("sbuild.sources")
_BASE_PACKAGES = ("/etc/redhat-release", "coreutils")
_RPM_NAME = re.compile(r"(\S+\.rpm)\b")
_SIGNATURE_LINES = ("Public key for", "is not signed", "Problem opening package", "does not verify", "BAD")
_FINISH = r"""set -e
r=$1
rm -rf "$r/var/cache/yum-bootstrap"
if grep -qs '^%_dbpath[[:space:]].*sysimage' "$r/usr/lib/rpm/macros" && [ -d "$r/var/lib/rpm" ] \
   && [ ! -L "$r/var/lib/rpm" ]; then
  mkdir -p "$r/usr/lib/sysimage/rpm"
  cp -a "$r/var/lib/rpm/." "$r/usr/lib/sysimage/rpm/"
  rm -rf "$r/var/lib/rpm"
  ln -s ../../usr/lib/sysimage/rpm "$r/var/lib/rpm"
fi
"""


@dataclass(frozen=True)
class YumPlan:
    """What a yum/dnf build installs, read from the header and environment."""

    mirror: str
    update: str
    osversion: str
    packages: tuple[str, ...]
    setopts: tuple[str, ...]
    gpg: str  # key URL, "" for none


def yum_plan(header: dict[str, str], environ: dict[str, str]) -> YumPlan:
    """The plan for ``header``; ``MirrorURL`` is required (``builder.sources.checks``)."""
    osv = header.get("osversion", "")
    include = (header.get("include", "") + " " + environ.get("INCLUDE", "")).split()
    return YumPlan(with_osversion(header["mirrorurl"], osv), with_osversion(header.get("updateurl", ""), osv),
                   osv, (*_BASE_PACKAGES, *include), tuple(shlex.split(header.get("setopt", ""))),
                   environ.get("GPG", ""))


def yum_conf(plan: YumPlan) -> str:
    """``bootstrap-yum.conf``, the keys Apptainer writes."""
    check = "1" if plan.gpg else "0"
    text = ("[main]\ncachedir=/var/cache/yum-bootstrap\nkeepcache=0\ndebuglevel=2\nlogfile=/var/log/yum.log\n"
            f"syslog_device=/dev/null\nexactarch=1\nobsoletes=1\ngpgcheck={check}\nplugins=1\nreposdir=0\n"
            f"deltarpm=0\n\n[base]\nname=Linux $releasever - $basearch\nbaseurl={plan.mirror}\nenabled=1\n"
            f"gpgcheck={check}\n")
    if plan.update:
        text += (f"\n[updates]\nname=Linux $releasever - $basearch updates\nbaseurl={plan.update}\nenabled=1\n"
                 f"gpgcheck={check}\n")
    return text


def _probe_mirrors(plan: YumPlan, arch: str) -> None:
    for what, url in (("MirrorURL", plan.mirror), ("UpdateURL", plan.update)):
        url = url.replace("$releasever", plan.osversion).replace("$basearch", arch)
        if url and "$" not in url:
            probe_url(url.rstrip("/") + "/repodata/repomd.xml", f"{what}: fetching")


def _key_file(plan: YumPlan, options: FetchOptions, work: Path) -> Path | None:
    if not plan.gpg:
        log.warning("no GPG key given (GPG environment variable): the packages are installed without "
                    "checking their signatures, as Apptainer does; set GPG=https://.../RPM-GPG-KEY to verify them")
        return None
    scheme = plan.gpg.partition(":")[0].lower()
    if scheme == "http" and not options.nohttps:
        raise BuildError(f"the GPG key must be fetched with https, not {plan.gpg}",
                         hint="use an https:// (or file://) URL, or --nohttps to allow plain http")
    if scheme not in ("https", "http", "file"):
        raise BuildError(f"the GPG key must be fetched with https: {plan.gpg}", hint="use an https:// URL")
    dest = work / "gpg-key.asc"
    fetch_url(plan.gpg, dest, "GPG key: fetching")
    return dest


def _install_argv(dnf: str, root: Path, plan: YumPlan) -> list[str]:
    argv = [dnf, "--noplugins", "-c", str(root / "etc" / "bootstrap-yum.conf"), "--installroot", str(root),
            f"--releasever={plan.osversion}", "-y"]
    for opt in plan.setopts:
        argv += ["--setopt", opt]
    return argv + ["install", *plan.packages]


def _failure(agent: str, what: str, status: int, tail: list[str]) -> BuildError:
    bad = sorted({m.group(1) for line in tail if any(w in line for w in _SIGNATURE_LINES)
                  for m in _RPM_NAME.finditer(line)})
    if bad and any("GPG check FAILED" in line or "does not verify" in line for line in tail):
        return BuildError(f"{agent}: signature check failed for {', '.join(bad)} (exit code {status})",
                          exit_code=status, output_tail=tail,
                          hint="the package is not signed by the key in GPG, or it was altered")
    return BuildError(f"{agent}: {what} failed with exit code {status}", exit_code=status, output_tail=tail,
                      hint="check MirrorURL, OSVersion and Include, and that the mirror is reachable")


class YumSource(Source):
    """``Bootstrap: yum`` and ``Bootstrap: dnf`` (the same agent, as in Apptainer)."""

    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        agent = stage.bootstrap or "yum"
        check_privilege(agent, options, "rpm installs files owned by other users and groups")
        dnf, rpm = need_tool(agent, "dnf"), need_tool(agent, "rpm")
        plan = yum_plan(stage.header or {}, dict(os.environ))
        if len(plan.setopts) > 1:
            log.warning("SetOpt holds %d options: each is passed as its own --setopt (Apptainer passes them as "
                        "one argument, which dnf reads as one option)", len(plan.setopts))
        root = Path(bundle.rootfs)
        _probe_mirrors(plan, os.uname().machine)
        with tempfile.TemporaryDirectory(prefix="sbuild-yum-", dir=options.tmpdir) as tmp:
            work = Path(tmp)
            os.chmod(work, 0o755)
            key = _key_file(plan, options, work)
            (root / "etc").mkdir(mode=0o775, exist_ok=True)
            write_file(root / "etc" / "bootstrap-yum.conf", yum_conf(plan), 0o664)
            make_dev_nodes(root)
            steps = []
            if key is not None:
                steps += [("initializing the rpm database", [rpm, "--root", str(root), "--initdb"]),
                          ("importing the GPG key", [rpm, "--root", str(root), "--import", str(key)])]
            steps += [("installing packages", _install_argv(dnf, root, plan)),
                      ("cleaning up", ["/bin/sh", "-c", _FINISH, "sh", str(root)])]
            what, status, tail = run_steps(steps, tool_env(rpm_home(work / "home")), os.path.basename(dnf))
        if status != 0:
            raise _failure(agent, what, status, tail)
        finish_fresh_rootfs(bundle)
