"""``Bootstrap: zypper`` against the session's rpm-md repositories on 127.0.0.1 (real zypper
and rpm), as root and as the unprivileged test user: recipes/opensuse.def builds, %post and
%test run inside, the image's rpm database lists what was installed; a tampered package and
an unsigned repository fail the build by name; a failing mirror names the URL."""

from __future__ import annotations

import shutil

import pytest
from agentfixtures import RECIPES, rpm_qa

pytestmark = [pytest.mark.skipif(not shutil.which("zypper"), reason="zypper missing: ./setup.sh installs it")]
RECIPE = str(RECIPES / "opensuse.def")


@pytest.mark.slow
def test_opensuse_recipe_builds(builder, rpm_repos, server):
    r = builder.build(RECIPE, MIRROR=f"{server.url}/rpm-signed", INCLUDE="sbt-hello")
    assert r.returncode == 0, r.stderr[-3000:]
    out = builder.work / "out"
    names = rpm_qa(out)
    assert {"sbt-base", "sbt-hello", "gpg-pubkey"} <= set(names)  # the repository key was imported
    assert (out / "etc" / "sbt-hello.post").read_text() == "post ran\n"
    assert (out / "etc" / "sbuild-post").exists()
    assert (out / "etc" / "zypp" / "repos.d" / "repo.repo").exists()
    assert "zypper: refreshing repository MirrorURL" in r.stderr


@pytest.mark.slow
def test_tampered_package_fails_naming_it(rpm_repos, server, tmp_path, sbuild):
    r = sbuild("build", "--build-arg", f"MIRROR={server.url}/rpm-corrupt", "--build-arg", "INCLUDE=sbt-hello",
               tmp_path / "out.sif", RECIPE)
    assert r.status == 1
    assert "signature or digest check failed for sbt-base-1.0-1.x86_64" in r.err
    assert not (tmp_path / "out.sif").exists()


def test_unsigned_repository_is_refused(rpm_repos, server, tmp_path, sbuild):
    r = sbuild("build", "--build-arg", f"MIRROR={server.url}/rpm-plain", tmp_path / "out.sif", RECIPE)
    assert r.status == 1 and "refreshing repository MirrorURL failed: the repository metadata is not signed" in r.err
    assert not (tmp_path / "out.sif").exists()


@pytest.mark.parametrize("fault", ["fail404", "cut"])
def test_failing_mirror_names_the_url(fault, rpm_repos, server, tmp_path, sbuild):
    url = f"{server.url}/{fault}/rpm-signed"
    r = sbuild("build", "--build-arg", f"MIRROR={url}", tmp_path / "out.sif", RECIPE)
    assert r.status == 1 and f"{url}/repodata/repomd.xml failed" in r.err
    assert not (tmp_path / "out.sif").exists()


def test_check_sle_keys_need_each_other(sbuild, tmp_path):
    recipe = tmp_path / "r.def"
    recipe.write_text("Bootstrap: zypper\nOSVersion: 15.5\nProduct: SLES\n")
    r = sbuild("check", recipe)
    assert r.status == 2 and "needs all of 'Product', 'User' and 'Regcode'" in r.err


@pytest.mark.slow
def test_other_urls_are_added(rpm_repos, server, tmp_path, sbuild):
    recipe = tmp_path / "r.def"
    recipe.write_text(f"Bootstrap: zypper\nMirrorURL: {server.url}/rpm-signed\nOtherURL1: {server.url}/rpm-othersig\n"
                      "Include: sbt-hello\n")
    r = sbuild("build", "--sandbox", tmp_path / "out", recipe)
    assert r.status == 0, r.err
    assert (tmp_path / "out" / "etc" / "zypp" / "repos.d" / "repo-1.repo").exists()


@pytest.mark.slow
def test_product_pgp_key_is_imported(rpm_repos, server, tmp_path, sbuild):
    key = (rpm_repos / "KEY-other.asc").read_text().strip().splitlines()
    pgp = "\\n\\\n".join(key)  # Apptainer's multi-line header value: a trailing \n\ per line
    recipe = tmp_path / "r.def"
    recipe.write_text(f"Bootstrap: zypper\nMirrorURL: {server.url}/rpm-signed\nProductPGP: {pgp}\n")
    r = sbuild("build", "--sandbox", tmp_path / "out", recipe)
    assert r.status == 0, r.err
    assert "zypper: importing ProductPGP" in r.err
    assert rpm_qa(tmp_path / "out").count("gpg-pubkey") == 2  # the repository's key and ProductPGP's


def test_sle_product_is_completed_as_suseconnect_wants_it():
    from builder.sources.zypper import sle_product

    assert sle_product("SLES", "15.5", "x86_64") == "SLES/15.5/x86_64"
    assert sle_product("SLE-HPC/%{OSVERSION}/aarch64", "12.4", "x86_64") == "SLE-HPC/12.4/aarch64"
    assert sle_product("SLES/15.4", "15.5", "x86_64") == "SLES/15.4/x86_64"
    with pytest.raises(Exception, match="malformed Product setting"):
        sle_product("a/b/c/d", "15", "x86_64")


def test_sle_build_without_suseconnect_is_refused_up_front(rpm_repos, server, tmp_path, sbuild):
    recipe = tmp_path / "r.def"
    recipe.write_text(f"Bootstrap: zypper\nOSVersion: 15.5\nProduct: SLES\nUser: a@b\nRegcode: x\n"
                      f"MirrorURL: {server.url}/refused-sle/\n")
    before = len(server.httpd.requests)
    r = sbuild("build", tmp_path / "o.sif", recipe)
    assert r.status == 3 and "needs SUSEConnect on this host, which Debian does not package" in r.err
    assert len(server.httpd.requests) == before
