"""``Bootstrap: zypper``: an openSUSE/SLE rootfs installed with zypper from a mirror.

As Apptainer (reference/package-agents.md §1.2): ``MirrorURL`` (the repository ``repo``),
``UpdateURL`` (``update``), ``OtherURL0``..``OtherURL20`` (``repo-N``, contiguous from 0 or
1), ``OSVersion`` (``--releasever`` and ``%{OSVERSION}`` in the URLs), ``Include`` and the
``INCLUDE`` environment variable (installed with ``aaa_base``), ``ProductPGP`` (a key imported
with rpmkeys), and the SLE registration keys ``Product``, ``User``, ``Regcode``,
``RegisterURL`` and ``Modules`` (through SUSEConnect, which Debian does not package). Writes
``ROOT/etc/zypp/zypp.conf`` and the /dev nodes, adds each repository with ``zypper --root
ROOT ar``, refreshes it with ``--gpg-auto-import-keys`` (the repository's ``repomd.xml.key``
is trusted: an unsigned repository is refused, as in Apptainer) and installs. Exit 107
(an rpm scriptlet failed) is a warning, as in Apptainer.

Differences, each deliberate: rpm runs with a ``HOME`` whose ``.rpmmacros`` puts the
database at ``/var/lib/rpm``; ``OSVersion`` is never taken from the host's os-release;
``ProductPGP`` does not wipe ``var/lib/rpm`` (and the repository key with it); a build with
neither ``MirrorURL`` nor SLE keys (Apptainer's "depend on the host's SCC registration")
is refused with the reason; the mirror's ``repodata/repomd.xml`` is fetched first so that a
failing mirror is named. Rootless, zypper runs in the build's subuid-mapped user namespace.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from base.errors import BuildError, CapabilityError
from builder.bundle import Bundle
from builder.options import FetchOptions
from builder.recipe import Stage
from builder.rootfs import write_file
from builder.sources.contract import Source, finish_fresh_rootfs
from builder.sources.pkgtools import (Step, check_privilege, make_dev_nodes, need_tool, probe_url, rpm_home,
                                      run_steps, tool_env, with_osversion)

__all__ = ["ZypperSource", "other_urls", "sle_product", "zypper_steps"]

log = logging.getLogger("sbuild.sources")
_SCRIPTLET_FAILED = 107
_BAD = re.compile(r"package (\S+) does not verify|Signature verification failed for file '([^']+)'"
                  r"|File '([^']+)' from repository '[^']+' is unsigned", re.IGNORECASE)


def other_urls(header: dict[str, str]) -> list[str]:
    """``OtherURL0``.. (or from 1 when there is no 0), contiguous, at most up to 20."""
    start = 0 if header.get("otherurl0") else 1
    out = []
    for i in range(start, 21):
        url = header.get(f"otherurl{i}")
        if not url:
            break
        out.append(url)
    return out


def sle_product(product: str, osversion: str, machine: str) -> str:
    """``Product`` as SUSEConnect wants it: ``name/version/arch``, ``%{OSVERSION}`` replaced,
    the version and architecture filled in from ``OSVersion`` and the host when left out."""
    parts = with_osversion(product, osversion).split("/")
    if len(parts) > 3:
        raise BuildError(f"malformed Product setting {product!r}", hint="write Product: NAME[/VERSION[/ARCH]]")
    version = parts[1] if len(parts) > 1 else osversion
    return f"{parts[0]}/{version}/{parts[2] if len(parts) > 2 else machine}"


def _sle_steps(zypper_root: list[str], header: dict[str, str], suseconnect: str, root: str) -> list[Step]:
    product = sle_product(header["product"], header.get("osversion", ""), os.uname().machine)
    argv = [suseconnect, "--root", root, "--product", product, "--email", header["user"],
            "--regcode", header["regcode"]]
    if header.get("registerurl"):
        argv += ["--url", header["registerurl"]]
    steps: list[Step] = [("registering the product (SUSEConnect)", argv)]
    version = header.get("osversion", "")
    for module in (m.strip() for m in header.get("modules", "").split(",") if m.strip()):
        product = module if "/" in module else f"{module}/{version}/{os.uname().machine}"
        steps.append((f"adding module {module}", [suseconnect, "--root", root, "--product", product]))
    return steps


def zypper_steps(zypper: str, root: str, header: dict[str, str], osversion: str,
                 extra: dict[str, str]) -> list[Step]:
    """The commands, in Apptainer's order; ``extra``: ``pgp`` key file, ``rpmkeys``, ``suseconnect``."""
    z = [zypper, "--non-interactive", "--root", root]
    steps: list[Step] = []
    mirror = with_osversion(header.get("mirrorurl", ""), osversion)
    if mirror:
        steps += [("adding repository MirrorURL", [*z, "ar", mirror, "repo"]),
                  ("refreshing repository MirrorURL", [*z, "--gpg-auto-import-keys", "refresh"])]
    update = with_osversion(header.get("updateurl", ""), osversion)
    if update:
        steps += [("adding repository UpdateURL", [*z, "ar", "-f", update, "update"]),
                  ("refreshing repository UpdateURL", [*z, "--gpg-auto-import-keys", "refresh", "-r", "update"])]
    if extra.get("pgp"):
        steps.append(("importing ProductPGP", [extra["rpmkeys"], "--root", root, "--import", extra["pgp"]]))
    if extra.get("suseconnect"):
        steps += _sle_steps(z, header, extra["suseconnect"], root)
    for i, url in enumerate(other_urls(header), start=0 if header.get("otherurl0") else 1):
        steps += [(f"adding repository OtherURL{i}", [*z, "ar", "-f", url, f"repo-{i}"]),
                  (f"refreshing repository OtherURL{i}", [*z, "--gpg-auto-import-keys", "refresh", "-r", f"repo-{i}"])]
    include = (header.get("include", "") + " " + os.environ.get("INCLUDE", "")).split()
    if header.get("product"):
        include.append("SUSEConnect")
    install = [zypper, "--non-interactive", "-c", f"{root}/etc/zypp/zypp.conf", "--root", root]
    if osversion:
        install.append(f"--releasever={osversion}")
    install += ["install", "--auto-agree-with-licenses", "--download-in-advance", "aaa_base", *include]
    return [*steps, ("installing packages", install)]


def _failure(what: str, status: int, tail: list[str]) -> BuildError:
    bad = sorted({n for line in tail for m in _BAD.finditer(line) for n in m.groups() if n})
    text = "\n".join(tail)
    if "is unsigned" in text:
        return BuildError(f"zypper: {what} failed: the repository metadata is not signed (exit code {status})",
                          exit_code=status, output_tail=tail,
                          hint="sign repodata/repomd.xml (repomd.xml.asc, with the key as repomd.xml.key); "
                               "zypper refuses unsigned repositories here, as in Apptainer")
    if bad:
        return BuildError(f"zypper: signature or digest check failed for {', '.join(bad)} (exit code {status})",
                          exit_code=status, output_tail=tail, hint="the package was altered or its key is unknown")
    return BuildError(f"zypper: {what} failed with exit code {status}", exit_code=status, output_tail=tail,
                      hint="check MirrorURL, OSVersion and Include, and that the mirror is reachable")


def _sle_tools(header: dict[str, str]) -> str | None:
    if not header.get("product"):
        if not header.get("mirrorurl"):
            raise CapabilityError("'Bootstrap: zypper' without MirrorURL depends on the host's SUSE registration "
                                  "(SCC credentials and container-suseconnect), which sbuild does not support",
                                  hint="add a MirrorURL, e.g. http://download.opensuse.org/distribution/leap/"
                                       "%{OSVERSION}/repo/oss/")
        return None
    from shutil import which

    tool = which("SUSEConnect")
    if not tool:
        raise CapabilityError("a SLE build (Product, User, Regcode) needs SUSEConnect on this host, which Debian "
                              "does not package", hint="build SLE images on a SUSE host, or use MirrorURL")
    return tool


class ZypperSource(Source):
    """``Bootstrap: zypper``; SLE key completeness is checked before (``builder.sources.checks``)."""

    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        header = stage.header or {}
        check_privilege("zypper", options, "rpm installs files owned by other users and groups")
        zypper = need_tool("zypper", "zypper")
        extra = {"rpmkeys": need_tool("zypper", "rpm").replace("/rpm", "/rpmkeys")}
        suseconnect = _sle_tools(header)
        if suseconnect:
            extra["suseconnect"] = suseconnect
        osversion = header.get("osversion", "")
        if header.get("mirrorurl"):
            probe_url(with_osversion(header["mirrorurl"], osversion).rstrip("/") + "/repodata/repomd.xml",
                      "MirrorURL: fetching")
        root = Path(bundle.rootfs)
        with tempfile.TemporaryDirectory(prefix="sbuild-zypper-", dir=options.tmpdir) as tmp:
            os.chmod(tmp, 0o755)
            if header.get("productpgp"):
                extra["pgp"] = str(Path(tmp) / "product.pgp")
                Path(extra["pgp"]).write_text(header["productpgp"] + "\n")
            (root / "etc" / "zypp").mkdir(mode=0o775, parents=True, exist_ok=True)
            write_file(root / "etc" / "zypp" / "zypp.conf", "[main]\ncachedir=/var/cache/zypp-bootstrap\n\n", 0o664)
            make_dev_nodes(root)
            steps = zypper_steps(zypper, str(root), header, osversion, extra)
            what, status, tail = run_steps(steps, tool_env(rpm_home(Path(tmp) / "home")), "zypper")
        if status == _SCRIPTLET_FAILED and what == "installing packages":
            log.warning("zypper: the bootstrap succeeded, but some rpm scripts failed (exit code 107)")
        elif status != 0:
            raise _failure(what, status, tail)
        finish_fresh_rootfs(bundle)
