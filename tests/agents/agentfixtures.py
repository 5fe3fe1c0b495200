"""Offline package repositories for the agent tests: RPMs and rpm-md repos, pacman packages and
repos, a throwaway GPG key, and a static HTTP server on 127.0.0.1 that can fail on purpose.

The packages are tiny: ``sbt-base`` ships Debian's static busybox with a few applet links
(so %post has a shell), release files and ``Provides: coreutils aaa_base`` (so Apptainer's
fixed install lists resolve); ``sbt-hello`` depends on it and its install scriptlet writes
``/etc/sbt-hello.post`` (proof that scriptlets ran in the new root). RPMs come from rpmbuild;
pacman packages are written with bsdtar and zstd (makepkg refuses root and is slow).
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

APPLETS = "sh echo cat ls mkdir rm cp mv ln true false env id uname grep sed test head touch".split()
RECIPES = Path(__file__).resolve().parents[2] / "recipes"
KEY_UID = "sbuild test <sbt@example.invalid>"
OTHER_UID = "other key <other@example.invalid>"


def run(*argv: str | os.PathLike, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run([str(a) for a in argv], **kw)


def make_keys(gnupg: Path) -> dict[str, str]:
    """Two signing keys in ``gnupg``: {"sbt": fingerprint, "other": fingerprint}."""
    gnupg.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    fprs = {}
    for name, uid in (("sbt", KEY_UID), ("other", OTHER_UID)):
        run("gpg", "-q", "--batch", "--passphrase", "", "--quick-gen-key", uid, "rsa2048", "sign", "never", env=env)
        out = run("gpg", "--with-colons", "--fingerprint", uid, env=env).stdout
        fprs[name] = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr"))
        (gnupg.parent / f"KEY-{name}.asc").write_text(run("gpg", "--armor", "--export", uid, env=env).stdout)
    return fprs


_BASE_SPEC = """Name: sbt-base
Version: 1.0
Release: 1
Summary: sbuild test base
License: MIT
Provides: coreutils aaa_base
%global debug_package %{nil}
%global __os_install_post %{nil}
%description
busybox and release files
%install
mkdir -p %{buildroot}/bin %{buildroot}/etc %{buildroot}/tmp
install -m0755 /bin/busybox %{buildroot}/bin/busybox
for a in APPLETS; do ln -s busybox %{buildroot}/bin/$a; done
echo 'SBT Linux release 1.0 (Test)' > %{buildroot}/etc/redhat-release
printf 'NAME="SBT Linux"\\nID=sbt\\nVERSION_ID=1.0\\n' > %{buildroot}/etc/os-release
%files
/bin/*
/etc/redhat-release
/etc/os-release
"""
_HELLO_SPEC = """Name: sbt-hello
Version: 1.0
Release: 1
Summary: depends on sbt-base, has a post scriptlet
License: MIT
BuildArch: noarch
Requires: sbt-base >= 1.0
%description
x
%install
mkdir -p %{buildroot}/usr/bin
printf '#!/bin/sh\\necho hello from sbt-hello\\n' > %{buildroot}/usr/bin/sbt-hello
chmod 755 %{buildroot}/usr/bin/sbt-hello
%post
echo "post ran" > /etc/sbt-hello.post
%files
/usr/bin/sbt-hello
"""


_SYSIMAGE_SPEC = """Name: sbt-sysimage
Version: 1.0
Release: 1
Summary: an rpm whose macros put the database in /usr/lib/sysimage/rpm (as Fedora's)
License: MIT
BuildArch: noarch
%description
x
%install
mkdir -p %{buildroot}/usr/lib/rpm
echo '%%_dbpath %%{_usr}/lib/sysimage/rpm' > %{buildroot}/usr/lib/rpm/macros
%files
/usr/lib/rpm/macros
"""


def _sign_repomd(repo: Path, gnupg: Path) -> None:
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    run("gpg", "--batch", "--yes", "-u", "sbt@example.invalid", "--detach-sign", "--armor",
        repo / "repodata" / "repomd.xml", env=env)
    shutil.copy(gnupg.parent / "KEY-sbt.asc", repo / "repodata" / "repomd.xml.key")


def make_rpm_repos(work: Path, gnupg: Path) -> None:
    """``work/rpm-{plain,signed,othersig,corrupt}``: rpm-md repos of sbt-base, sbt-hello and
    sbt-sysimage (whose rpm macros say /usr/lib/sysimage/rpm, as Fedora's do)."""
    top = work / "rpmbuild"
    (top / "SPECS").mkdir(parents=True)
    env = {**os.environ, "GNUPGHOME": str(gnupg), "HOME": str(work)}
    for name, spec in (("sbt-base", _BASE_SPEC.replace("APPLETS", " ".join(APPLETS))), ("sbt-hello", _HELLO_SPEC),
                       ("sbt-sysimage", _SYSIMAGE_SPEC)):
        path = top / "SPECS" / f"{name}.spec"
        path.write_text(spec)
        run("rpmbuild", "--quiet", "--define", f"_topdir {top}", "-bb", path, env=env)
    rpms = sorted(top.glob("RPMS/*/*.rpm"))
    for repo, signer in (("rpm-plain", None), ("rpm-signed", "sbt"), ("rpm-othersig", "other"),
                         ("rpm-corrupt", "sbt")):
        (work / repo).mkdir()
        for rpm in rpms:
            shutil.copy(rpm, work / repo)
        if signer:
            uid = KEY_UID if signer == "sbt" else OTHER_UID
            run("rpmsign", "--define", "__gpg /usr/bin/gpg", "--define", f"_gpg_name {uid}", "--addsign",
                *sorted((work / repo).glob("*.rpm")), env=env)
    victim = work / "rpm-corrupt" / "sbt-base-1.0-1.x86_64.rpm"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # after signing, before createrepo: only the package's own digest is bad
    victim.write_bytes(bytes(data))
    for repo in ("rpm-plain", "rpm-signed", "rpm-othersig", "rpm-corrupt"):
        run("createrepo_c", "-q", work / repo)
        if repo != "rpm-plain":
            _sign_repomd(work / repo, gnupg)


def _pkginfo(name: str, arch: str, depends: list[str], size: int) -> str:
    lines = [f"pkgname = {name}", f"pkgbase = {name}", "pkgver = 1.0-1", f"pkgdesc = {name} (sbuild test)",
             "url = http://127.0.0.1/", "builddate = 1700000000", "packager = sbuild tests", f"size = {size}",
             f"arch = {arch}", "license = MIT", *[f"depend = {d}" for d in depends]]
    return "\n".join(lines) + "\n"


def make_pacman_package(out: Path, stage: Path, name: str, arch: str, depends: list[str],
                        install: str | None = None) -> Path:
    """``out/NAME-1.0-1-ARCH.pkg.tar.zst`` from the files in ``stage`` (written by hand)."""
    content = sorted(p.name for p in stage.iterdir())
    size = sum(f.stat().st_size for f in stage.rglob("*") if f.is_file() and not f.is_symlink())
    (stage / ".PKGINFO").write_text(_pkginfo(name, arch, depends, size))
    meta = [".PKGINFO"]
    if install:
        (stage / ".INSTALL").write_text(install)
        meta.append(".INSTALL")
    mtree = run("bsdtar", "-cf", "-", "--format=mtree",
                "--options=!all,use-set,type,uid,gid,mode,time,size,md5,sha256,link", *content, cwd=stage,
                env={**os.environ, "LANG": "C"}, text=False).stdout
    (stage / ".MTREE").write_bytes(subprocess.run(["gzip", "-c", "-n"], input=mtree, capture_output=True,
                                                  check=True).stdout)
    meta.append(".MTREE")
    pkg = out / f"{name}-1.0-1-{arch}.pkg.tar.zst"
    tar = run("bsdtar", "--uid", "0", "--gid", "0", "-cf", "-", *meta, *content, cwd=stage, text=False).stdout
    pkg.write_bytes(subprocess.run(["zstd", "-q", "-3", "-c"], input=tar, capture_output=True, check=True).stdout)
    return pkg


def _stub(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def make_pacman_packages(work: Path) -> list[Path]:
    """sbt-base, sbt-hello, and stubs for the packages Apptainer's arch flow runs: haveged,
    pacman/pacman-key (sbt-archstub) and ``base`` (which depends on them)."""
    out = work / "pkgs"
    out.mkdir()
    built = []
    base = work / "stage" / "sbt-base"
    (base / "usr" / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", base / "usr" / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", base / "usr" / "bin" / applet)
    os.symlink("usr/bin", base / "bin")
    (base / "etc").mkdir()
    (base / "etc" / "os-release").write_text("ID=sbtarch\n")
    built.append(make_pacman_package(out, base, "sbt-base", "x86_64", []))
    hello = work / "stage" / "sbt-hello"
    _stub(hello / "usr" / "bin" / "sbt-hello", "#!/bin/sh\necho hello from sbt-hello\n")
    built.append(make_pacman_package(out, hello, "sbt-hello", "any", ["sbt-base"],
                                     'post_install() {\n  echo "post ran" > /etc/sbt-hello.post\n}\n'))
    haveged = work / "stage" / "haveged"
    _stub(haveged / "usr" / "bin" / "haveged", "#!/bin/sh\necho stub-haveged \"$@\"\n")
    built.append(make_pacman_package(out, haveged, "haveged", "any", ["sbt-base"]))
    stub = work / "stage" / "sbt-archstub"
    _stub(stub / "usr" / "bin" / "pacman-key", '#!/bin/sh\necho "stub pacman-key $*"\n')
    _stub(stub / "usr" / "bin" / "pacman",
          '#!/bin/sh\necho "stub pacman $*"\n[ "$1" = -Rs ] && rm -f /usr/bin/haveged\nexit 0\n')
    built.append(make_pacman_package(out, stub, "sbt-archstub", "any", ["sbt-base"]))
    meta = work / "stage" / "base"
    (meta / "usr" / "share" / "sbt").mkdir(parents=True)
    (meta / "usr" / "share" / "sbt" / "base").write_text("meta\n")
    built.append(make_pacman_package(out, meta, "base", "any", ["sbt-base", "sbt-archstub"]))
    return built


def make_pacman_repos(work: Path, gnupg: Path, fprs: dict[str, str]) -> None:
    """``work/arch-{plain,signed,badsig,corrupt}`` repos (``sbt.db``) and ``work/pacman-gnupg``,
    a pacman keyring that trusts the sbt key."""
    pkgs = make_pacman_packages(work)
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    for repo, signer in (("arch-plain", None), ("arch-signed", "sbt"), ("arch-badsig", "other"),
                         ("arch-corrupt", "sbt")):
        (work / repo).mkdir()
        for pkg in pkgs:
            shutil.copy(pkg, work / repo)
            if signer:
                run("gpg", "--batch", "-u", fprs[signer], "--detach-sign", "--no-armor", work / repo / pkg.name,
                    env=env)
        run("repo-add", "-q", work / repo / "sbt.db.tar.gz", *sorted((work / repo).glob("*.pkg.tar.zst")))
    victim = work / "arch-corrupt" / "sbt-hello-1.0-1-any.pkg.tar.zst"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    keyring = work / "pacman-gnupg"
    run("pacman-key", "--gpgdir", keyring, "--init")
    run("pacman-key", "--gpgdir", keyring, "--add", work / "KEY-sbt.asc")
    run("pacman-key", "--gpgdir", keyring, "--lsign-key", fprs["sbt"])


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: ``(cert, key)``."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    return cert, key


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files; ``/fail404/…`` and ``/fail500/…`` answer that status, ``/cut/…`` sends
    half the file then drops the connection; each request path is recorded."""

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.requests.append(self.path)
        for code in (404, 500):
            if self.path.startswith(f"/fail{code}/"):
                self.send_error(code)
                return
        if self.path.startswith("/cut/"):
            path = Path(self.translate_path(self.path[4:]))
            data = path.read_bytes() if path.is_file() else b"x" * 4096
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        super().do_GET()


class Server:
    """``http://127.0.0.1:PORT/`` serving ``root`` until ``stop()``."""

    def __init__(self, root: Path, tls: tuple[Path, Path] | None = None) -> None:
        handler = lambda *a, **kw: _Handler(*a, directory=str(root), **kw)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = []
        scheme = "http"
        if tls is not None:  # (cert, key): https with that self-signed certificate
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def timed(fn, *args):  # noqa: ANN001, ANN201 - a small timing helper for the fixture log
    start = time.monotonic()
    fn(*args)
    return time.monotonic() - start


def rpm_qa(rootfs: Path) -> list[str]:
    """What the image's own rpm lists: the database at /var/lib/rpm (or /usr/lib/sysimage/rpm)."""
    out = subprocess.run(["rpm", "--root", str(rootfs), "--dbpath", "/var/lib/rpm", "-qa", "--qf", "%{NAME}\n"],
                         capture_output=True, text=True, check=True, env={"HOME": "/nonexistent", "PATH": "/usr/bin:/bin"})
    return sorted(out.stdout.split())
