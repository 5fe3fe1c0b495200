"""``Bootstrap: arch``: an Arch Linux rootfs installed with pacstrap(8) from a pacman.conf.

As Apptainer (reference/package-agents.md §1.3): ``ConfURL`` names the pacman.conf (default:
Arch's own from gitlab.archlinux.org), whose repositories, ``SigLevel`` and ``GPGDir``
decide where packages come from and how their signatures are checked; ``Include`` replaces
the default package ``base``. Runs ``pacstrap -C CONF -c -G -M ROOT haveged <packages>``,
then in the new root ``haveged -w 1024; pacman-key --init; pacman-key --populate archlinux``
and ``pacman -Rs --noconfirm haveged``. x86_64 hosts only, as in Apptainer.

Apptainer bugs not kept (reference §1.3):
- ``Include`` is split on whitespace, one package each (Apptainer passes the whole value as
  one name, so two packages fail with "target not found"): a warning says so.
- The ConfURL's HTTP status is checked (Apptainer saves a 404 page as the config).
- The downloaded pacman.conf is kept outside the image (Apptainer leaves ``/pac-conf-*``).
Each repository's ``Server`` lines are tried for its database first, so that a failing
mirror is named before pacstrap starts (mirror lists the conf ``Include``s are not read).
As root, pacstrap and arch-chroot run in a private mount namespace (no mount can leak).
Rootless, they run in the build's subuid-mapped user namespace with Apptainer's fakeroot
preparation: /proc and the /dev nodes bound into the root first, then ``true`` bound over
the host's ``mount`` and ``umount`` so that pacstrap's own mounts become no-ops.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from base.errors import BuildError, CapabilityError
from builder.bundle import Bundle
from builder.options import FetchOptions
from builder.recipe import Stage
from builder.sources.contract import Source, finish_fresh_rootfs
from builder.sources.pkgtools import check_privilege, fetch_url, need_tool, probe_url, run_steps, tool_env

__all__ = ["ArchSource", "arch_packages", "conf_servers", "DEFAULT_CONF_URL"]

log = logging.getLogger("sbuild.sources")
DEFAULT_CONF_URL = "https://gitlab.archlinux.org/archlinux/packaging/packages/pacman/-/raw/main/pacman.conf"
_KEYS = "haveged -w 1024; pacman-key --init; pacman-key --populate archlinux"
_BAD_SIG = re.compile(r"error: ([^\s:]+): (?:signature from .*|key .* is unknown|.*(?:invalid|corrupted).*)"
                      r"|error: (key \"\w+\") could not be looked up"
                      r"|error: failed to commit transaction \(invalid or corrupted package"
                      r"|([^\s:]+) is (?:an )?invalid or corrupted", re.IGNORECASE)
_SIG_WORDS = ("signature", "corrupted", "keyring", "PGP")


def arch_packages(header: dict[str, str]) -> list[str]:
    """The packages pacstrap installs besides haveged: ``Include``'s words, else ``base``."""
    return header.get("include", "").split() or ["base"]


def _fakeroot_prepare(root: str) -> None:
    """In the user namespace (root in it, own mount namespace): what Apptainer's
    prepareFakerootEnv does, so that pacstrap needs no mount of its own."""
    true, mount, umount = shutil.which("true"), shutil.which("mount"), shutil.which("umount")
    if not (true and mount and umount):
        raise CapabilityError("a rootless arch build needs true, mount and umount on this host",
                              hint="apt-get install coreutils mount")

    def bind(src: str, dst: str) -> None:
        r = subprocess.run([mount, "--bind", src, dst], capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"arch: binding {src} on {dst} in the user namespace failed: {r.stderr.strip()}")

    os.makedirs(os.path.join(root, "dev"), mode=0o755, exist_ok=True)
    os.makedirs(os.path.join(root, "proc"), mode=0o755, exist_ok=True)
    bind(true, umount)
    bind("/proc", os.path.join(root, "proc"))
    for node in ("null", "random", "urandom", "zero"):
        path = os.path.join(root, "dev", node)
        open(path, "a").close()
        bind(f"/dev/{node}", path)
    bind(true, mount)  # last: from here on nothing can mount


def conf_servers(text: str, arch: str = "x86_64") -> dict[str, list[str]]:
    """The ``Server =`` URLs of each repository section of a pacman.conf (``$repo`` and ``$arch``
    replaced; ``Include``d mirror lists are the host's and not read)."""
    repos: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            if section != "options":
                repos.setdefault(section, [])
        elif section and section != "options" and "=" in line:
            key, _, value = line.partition("=")
            if key.strip() == "Server":
                repos[section].append(value.strip().replace("$repo", section).replace("$arch", arch))
    return repos


def _probe_servers(conf: Path) -> None:
    """Each repository's database from at least one of its servers, else an error naming them."""
    for repo, servers in conf_servers(conf.read_text(errors="replace")).items():
        errors = []
        for server in servers:
            try:
                probe_url(f"{server.rstrip('/')}/{repo}.db", f"repository [{repo}]: fetching")
                break
            except BuildError as e:
                errors.append(e)
        else:
            if errors:
                raise BuildError("; ".join(e.message for e in errors),
                                 hint="check the Server lines of the pacman.conf ConfURL names")


def _failure(what: str, status: int, tail: list[str]) -> BuildError:
    names = sorted({n for line in tail for m in _BAD_SIG.finditer(line) for n in m.groups() if n})
    if any(w.lower() in line.lower() for line in tail for w in _SIG_WORDS if "error" in line.lower()):
        which = f" for {', '.join(names)}" if names else ""
        return BuildError(f"arch: signature check failed{which} while {what} (exit code {status})",
                          exit_code=status, output_tail=tail,
                          hint="the package's signature is not from a key in the pacman.conf's GPGDir, "
                               "or the package was altered")
    return BuildError(f"arch: {what} failed with exit code {status}", exit_code=status, output_tail=tail,
                      hint="check ConfURL and Include, and that the mirrors in the pacman.conf are reachable")


def _steps(pacstrap: str, chroot: str, conf: Path, root: str, packages: list[str]) -> list:
    wrap = ["unshare", "--mount", "--propagation", "private"] if os.geteuid() == 0 else []
    return [("installing packages (pacstrap)", [*wrap, pacstrap, "-C", str(conf), "-c", "-G", "-M", root,
                                                 "haveged", *packages]),
            ("setting up package signing", [*wrap, chroot, root, "/bin/sh", "-c", _KEYS]),
            ("removing haveged", [*wrap, chroot, root, "pacman", "-Rs", "--noconfirm", "haveged"])]


class ArchSource(Source):
    """``Bootstrap: arch``: every header key is optional."""

    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        header = stage.header or {}
        machine = os.uname().machine
        if machine != "x86_64":
            raise CapabilityError(f"'Bootstrap: arch' builds x86_64 images on x86_64 hosts only (this is {machine})",
                                  hint="build on an x86_64 host, or start from docker://archlinux")
        check_privilege("arch", options, "pacman installs files owned by other users and groups")
        pacstrap, chroot = need_tool("arch", "pacstrap"), need_tool("arch", "arch-chroot")
        need_tool("arch", "pacman")
        packages = arch_packages(header)
        if len(packages) > 1:
            log.warning("Include names %d packages: each is installed (Apptainer passes them to pacstrap as "
                        "one name, which fails with 'target not found')", len(packages))
        post = stage.scripts.get("post")
        if post is not None and "pac-conf" in post.script:
            log.warning("%%post names pac-conf: sbuild keeps the downloaded pacman.conf out of the image "
                        "(Apptainer leaves it as /pac-conf-XXXX); copy it in with %%files if it is needed")
        root = str(bundle.rootfs)
        with tempfile.TemporaryDirectory(prefix="sbuild-arch-", dir=options.tmpdir) as tmp:
            os.chmod(tmp, 0o755)
            conf = Path(tmp) / "pacman.conf"
            fetch_url(header.get("confurl") or DEFAULT_CONF_URL, conf, "ConfURL: fetching")
            _probe_servers(conf)
            home = Path(tmp) / "home"
            home.mkdir()
            prepare = None if os.geteuid() == 0 else (lambda: _fakeroot_prepare(root))
            what, status, tail = run_steps(_steps(pacstrap, chroot, conf, root, packages), tool_env(home),
                                           "pacstrap", prepare)
        if status != 0:
            raise _failure(what, status, tail)
        finish_fresh_rootfs(bundle)
