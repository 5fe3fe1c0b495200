"""``Bootstrap: dnf``/``yum`` against the session's rpm-md repositories on 127.0.0.1 (real dnf
and rpm), as root and as the unprivileged test user: recipes/rocky.def builds, %post and
%test run inside, the image's rpm database lists what was installed; signatures are checked
when ``GPG`` is set and a tampered, unsigned or foreign-signed package fails the build by
name; a failing mirror leaves no TARGET and names the URL."""

from __future__ import annotations

import os
import shutil

import pytest
from agentfixtures import RECIPES, rpm_qa

RECIPE = str(RECIPES / "rocky.def")
pytestmark = [pytest.mark.skipif(not shutil.which("dnf"), reason="dnf missing: ./setup.sh installs it")]


@pytest.mark.slow
def test_rocky_recipe_builds_unsigned_with_a_warning(builder, rpm_repos, server):
    r = builder.build("rocky.def", MIRROR=f"{server.url}/rpm-plain", INCLUDE="sbt-hello")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "installed without checking their signatures" in r.stderr
    assert "+ cat /etc/redhat-release" in r.stderr + r.stdout  # %post ran inside
    out = builder.work / "out"
    assert rpm_qa(out) == ["sbt-base", "sbt-hello"]  # where the image's own rpm -qa looks
    assert (out / "etc" / "sbt-hello.post").read_text() == "post ran\n"  # the rpm scriptlet ran in the root
    assert (out / "etc" / "sbuild-post").exists()
    assert (out / "etc" / "bootstrap-yum.conf").exists()  # kept, as Apptainer does
    assert not (out / "var" / "cache" / "yum-bootstrap").exists()
    assert not (out / "root" / ".rpmdb").exists()
    assert (out / "etc" / "resolv.conf").read_text() == ""
    if builder.who == "root":
        assert (out / "dev" / "null").is_char_device()


@pytest.mark.slow
def test_gpg_key_is_imported_and_checked(builder, rpm_repos, server):
    key = f"file://{rpm_repos}/KEY-sbt.asc"
    r = builder.build("rocky.def", MIRROR=f"{server.url}/rpm-signed", INCLUDE="sbt-hello", env={"GPG": key})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "without checking" not in r.stderr
    names = rpm_qa(builder.work / "out")
    assert "sbt-hello" in names and any(n == "gpg-pubkey" for n in names)


@pytest.mark.parametrize("repo, why", [("rpm-corrupt", "Problem opening package"),
                                       ("rpm-othersig", "Public key for"),
                                       ("rpm-plain", "is not signed")])
def test_bad_signature_fails_naming_the_package(repo, why, rpm_repos, server, tmp_path, sbuild, monkeypatch):
    monkeypatch.setenv("GPG", f"file://{rpm_repos}/KEY-sbt.asc")
    target = tmp_path / "out"
    r = sbuild("build", "--sandbox", "--build-arg", f"MIRROR={server.url}/{repo}", "--build-arg",
               "INCLUDE=sbt-hello", target, RECIPE)
    assert r.status == 1
    assert "signature check failed for sbt-base-1.0-1.x86_64.rpm" in r.err
    assert why in r.err  # dnf's own words in the output tail
    assert not target.exists()


@pytest.mark.parametrize("fault", ["fail404", "fail500", "cut"])
def test_failing_mirror_leaves_no_target_and_names_the_url(fault, rpm_repos, server, tmp_path, sbuild):
    target = tmp_path / "out.sif"
    url = f"{server.url}/{fault}/rpm-plain"
    r = sbuild("build", "--build-arg", f"MIRROR={url}", target, RECIPE)
    assert r.status == 1, r.err
    assert f"{url}/repodata/repomd.xml failed" in r.err
    assert not target.exists()


@pytest.mark.slow
def test_file_mirror_setopt_split_and_no_osversion(rpm_repos, tmp_path, sbuild):
    recipe = tmp_path / "r.def"
    recipe.write_text(f"Bootstrap: yum\nMirrorURL: file://{rpm_repos}/rpm-plain\nInclude: sbt-hello\n"
                      "SetOpt: install_weak_deps=False keepcache=0\n%post\n    test -f /etc/sbt-hello.post\n")
    r = sbuild("build", "--sandbox", tmp_path / "out", recipe)
    assert r.status == 0, r.err
    assert "SetOpt holds 2 options: each is passed as its own --setopt" in r.err
    assert rpm_qa(tmp_path / "out") == ["sbt-base", "sbt-hello"]


def test_missing_package_names_the_step(rpm_repos, server, tmp_path, sbuild):
    r = sbuild("build", "--build-arg", f"MIRROR={server.url}/rpm-plain", "--build-arg", "INCLUDE=nosuch",
               tmp_path / "out.sif", RECIPE)
    assert r.status == 1
    assert "dnf: installing packages failed with exit code 1" in r.err and "nosuch" in r.err
    assert not (tmp_path / "out.sif").exists()


def test_plain_http_gpg_key_needs_nohttps(rpm_repos, server, tmp_path, sbuild, monkeypatch):
    monkeypatch.setenv("GPG", f"{server.url}/KEY-sbt.asc")
    r = sbuild("build", "--build-arg", f"MIRROR={server.url}/rpm-signed", tmp_path / "o.sif", RECIPE)
    assert r.status == 1 and "must be fetched with https" in r.err
    monkeypatch.setenv("GPG", f"{server.url}/fail404/KEY-sbt.asc")
    r = sbuild("build", "--nohttps", "--build-arg", f"MIRROR={server.url}/rpm-signed", tmp_path / "o.sif", RECIPE)
    assert r.status == 1 and f"GPG key: fetching {server.url}/fail404/KEY-sbt.asc failed: HTTP 404" in r.err


def test_check_osversion_reference_without_osversion(sbuild, tmp_path):
    recipe = tmp_path / "r.def"
    recipe.write_text("Bootstrap: dnf\nMirrorURL: http://x/%{osversion}/os\n")
    r = sbuild("check", recipe)
    assert r.status == 2 and "references %{OSVERSION} but there is no 'OSVersion:'" in r.err


@pytest.mark.slow
def test_rpmdb_follows_the_images_own_rpm_macros(rpm_repos, server, tmp_path, sbuild):
    """Fedora's rpm looks in /usr/lib/sysimage/rpm: the database moves there, /var/lib/rpm links to it."""
    r = sbuild("build", "--sandbox", "--build-arg", f"MIRROR={server.url}/rpm-plain", "--build-arg",
               "INCLUDE=sbt-sysimage", tmp_path / "out", RECIPE)
    assert r.status == 0, r.err
    out = tmp_path / "out"
    assert os.readlink(out / "var" / "lib" / "rpm") == "../../usr/lib/sysimage/rpm"
    assert (out / "usr" / "lib" / "sysimage" / "rpm" / "rpmdb.sqlite").is_file()
    assert "sbt-sysimage" in rpm_qa(out)


@pytest.mark.slow
def test_osversion_in_urls_any_case_and_releasever(rpm_repos, server, tmp_path, sbuild):
    recipe = tmp_path / "r.def"
    recipe.write_text(f"Bootstrap: dnf\nOSVersion: plain\nMirrorURL: {server.url}/rpm-%{{osversion}}\n"
                      f"UpdateURL: {server.url}/rpm-$releasever/\nInclude: sbt-hello\n")
    before = len(server.httpd.requests)
    r = sbuild("build", "--sandbox", tmp_path / "out", recipe)
    assert r.status == 0, r.err
    conf = (tmp_path / "out" / "etc" / "bootstrap-yum.conf").read_text()
    assert f"baseurl={server.url}/rpm-plain\n" in conf and "[updates]" in conf
    assert "/rpm-plain/repodata/repomd.xml" in server.httpd.requests[before:]  # probed, then used by dnf
    assert rpm_qa(tmp_path / "out") == ["sbt-base", "sbt-hello"]


@pytest.mark.slow
def test_https_gpg_key_is_verified_against_the_hosts_cas(rpm_repos, server, tmp_path, sbuild, monkeypatch):
    from agentfixtures import Server, make_cert

    cert, key = make_cert(tmp_path)
    tls = Server(rpm_repos, tls=(cert, key))
    try:
        monkeypatch.setenv("GPG", f"{tls.url}/KEY-sbt.asc")
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.crt"))  # a CA bundle without it
        r = sbuild("build", "--build-arg", f"MIRROR={server.url}/rpm-signed", tmp_path / "o.sif", RECIPE)
        assert r.status == 1 and f"GPG key: fetching {tls.url}/KEY-sbt.asc failed" in r.err
        assert "CERTIFICATE_VERIFY_FAILED" in r.err
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        r = sbuild("build", "--sandbox", "--build-arg", f"MIRROR={server.url}/rpm-signed", "--build-arg",
                   "INCLUDE=sbt-hello", tmp_path / "out", RECIPE)
        assert r.status == 0, r.err
        assert "gpg-pubkey" in rpm_qa(tmp_path / "out")
    finally:
        tls.stop()
