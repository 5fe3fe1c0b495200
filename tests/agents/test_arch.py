"""``Bootstrap: arch`` against the session's pacman repositories on 127.0.0.1 (real pacstrap,
arch-chroot and pacman), as root and as the unprivileged test user: recipes/arch.def builds
with a two-package Include, %post and %test run inside, ``pacman -Q`` on the image lists what
was installed, the pacman.conf stays out of the image; a bad or tampered signature fails the
build by name; a ConfURL that answers 404 fails naming the URL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from agentfixtures import RECIPES

pytestmark = [pytest.mark.skipif(not shutil.which("pacstrap"), reason="pacstrap missing: ./setup.sh installs it"),
              pytest.mark.skipif(os.uname().machine != "x86_64", reason="Bootstrap: arch builds on x86_64 only")]
RECIPE = str(RECIPES / "arch.def")


def pacman_conf(where: Path, repos: Path, server, repo: str, owner=None) -> str:  # noqa: ANN001
    """A pacman.conf for ``repo`` (signed repos checked with a copy of the trusting keyring),
    written under ``repos/confs`` and returned as its URL."""
    where.mkdir(parents=True, exist_ok=True)
    sig = "Never" if repo == "plain" else "Required DatabaseOptional"
    keyring = where / "gnupg"
    if not keyring.exists():
        shutil.copytree(repos / "pacman-gnupg", keyring, symlinks=True, ignore=shutil.ignore_patterns("S.*"))
    (where / "cache").mkdir(exist_ok=True)
    if owner is not None:
        owner.chown(where)
    conf = (f"[options]\nArchitecture = auto\nSigLevel = {sig}\nLocalFileSigLevel = Optional\n"
            f"GPGDir = {keyring}\nCacheDir = {where / 'cache'}\n[sbt]\nServer = {server.url}/arch-{repo}\n")
    name = f"pacman-{repo}-{where.name}.conf"
    (repos / name).write_text(conf)
    os.chmod(repos / name, 0o644)
    return f"{server.url}/{name}"


def pacman_q(rootfs: Path) -> list[str]:
    out = subprocess.run(["pacman", "-r", str(rootfs), "-Q"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split()[0] for line in out.splitlines())


@pytest.mark.slow
def test_arch_recipe_builds_signed(builder, pacman_repos, server):
    conf = pacman_conf(builder.work / "pac", pacman_repos, server, "signed", builder.user)
    r = builder.build(RECIPE, CONF=conf, INCLUDE="base sbt-hello")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Include names 2 packages: each is installed" in r.stderr
    out = builder.work / "out"
    assert {"sbt-base", "sbt-hello", "base"} <= set(pacman_q(out))
    assert (out / "etc" / "sbt-hello.post").read_text() == "post ran\n"  # install scriptlet ran in the root
    assert (out / "etc" / "sbuild-post").exists()  # %post; %test checked it too
    assert not list(out.glob("pac-conf-*"))  # Apptainer's leftover config is not shipped
    assert not (out / "usr" / "bin" / "haveged").exists()  # removed after the signing setup
    assert "pacstrap: setting up package signing" in r.stderr
    r = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True)
    assert str(builder.work) not in r.stdout  # nothing left mounted


@pytest.mark.parametrize("repo, named", [("badsig", 'key "'), ("corrupt", "for sbt-hello")])
def test_bad_signature_fails_naming_it(repo, named, pacman_repos, server, tmp_path, sbuild):
    conf = pacman_conf(tmp_path / "pac", pacman_repos, server, repo)
    target = tmp_path / "out.sif"
    r = sbuild("build", "--build-arg", f"CONF={conf}", "--build-arg", "INCLUDE=base sbt-hello", target, RECIPE)
    assert r.status == 1
    assert "arch: signature check failed" in r.err and named in r.err
    assert "installing packages (pacstrap)" in r.err
    assert not target.exists()


def test_confurl_404_fails_naming_the_url(pacman_repos, server, tmp_path, sbuild):
    url = f"{server.url}/fail404/pacman.conf"
    r = sbuild("build", "--build-arg", f"CONF={url}", tmp_path / "out.sif", RECIPE)
    assert r.status == 1 and f"ConfURL: fetching {url} failed: HTTP 404" in r.err
    assert not (tmp_path / "out.sif").exists()


@pytest.mark.parametrize("fault", ["fail500", "cut"])
def test_failing_mirror_in_the_conf_is_named(fault, pacman_repos, server, tmp_path, sbuild):
    conf = pacman_conf(tmp_path / "pac", pacman_repos, server, "plain")
    path = pacman_repos / conf.rsplit("/", 1)[1]
    path.write_text(path.read_text().replace("/arch-plain", f"/{fault}/arch-plain"))
    r = sbuild("build", "--build-arg", f"CONF={conf}", tmp_path / "out.sif", RECIPE)
    assert r.status == 1
    assert f"repository [sbt]: fetching {server.url}/{fault}/arch-plain/sbt.db failed" in r.err
    assert not (tmp_path / "out.sif").exists()


def test_conf_servers_reads_each_repository():
    from builder.sources.arch import conf_servers

    text = ("[options]\nArchitecture = auto\n[core]\nInclude = /etc/pacman.d/mirrorlist\n"
            "Server = http://a/$repo/os/$arch # first\nServer=file:///b\n[extra]\n")
    assert conf_servers(text) == {"core": ["http://a/core/os/x86_64", "file:///b"], "extra": []}


def test_recipe_relying_on_the_leftover_conf_is_warned(pacman_repos, server, tmp_path, sbuild):
    conf = pacman_conf(tmp_path / "pac", pacman_repos, server, "plain")
    recipe = tmp_path / "r.def"
    recipe.write_text(f"Bootstrap: arch\nConfURL: {conf}\nInclude: sbt-hello sbt-archstub\n"
                      "%post\n    ls /pac-conf-* || true\n")
    r = sbuild("build", "--sandbox", tmp_path / "out", recipe)
    assert r.status == 0, r.err
    assert "%post names pac-conf: sbuild keeps the downloaded pacman.conf out of the image" in r.err
    assert pacman_q(tmp_path / "out") == ["haveged", "sbt-archstub", "sbt-base", "sbt-hello"]  # (a stub pacman -Rs)
