"""runtime.run_in_sandbox, the build pipeline's entry (%post / %test), and sbuild doctor."""

from __future__ import annotations

import json
import shutil

import pytest

_CALL = """
import os, sys, runtime
out = os.open({log!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
code = runtime.run_in_sandbox({root!r}, {argv!r}, env={env!r}, userns={userns!r}, stdout=out, stderr=out{extra})
print("status", code)
"""


def _call(profile, root, argv, *, env=None, userns="auto", extra="", log):
    r = profile.python(_CALL.format(root=str(root), argv=argv, env=env or {}, userns=userns, extra=extra,
                                    log=str(log)))
    assert r.out.startswith("status "), r.err
    return int(r.out.split()[1]), log.read_text()


@pytest.fixture
def sandbox(profile, images, workdir):
    sb = workdir / "rootfs"
    shutil.copytree(images["sandbox"], sb, symlinks=True)
    profile.own(workdir)
    return sb


def test_post_writes_into_the_sandbox_as_root_with_build_config(profile, sandbox, workdir):
    script = ("id -u; echo $LANG; echo $BUILDVAR; pwd; echo $HOME; ls /dev | grep -c pts;"
              " mkdir -p /opt/app && echo made > /opt/app/f; exit 4")
    code, out = _call(profile, sandbox, ["/bin/sh", "-c", script], env={"BUILDVAR": "b"}, log=workdir / "log")
    assert code == 4
    assert out.split() == ["0", "C", "b", "/", "/root", "0"]
    assert (sandbox / "opt" / "app" / "f").read_text() == "made\n"


def test_chown_in_post_needs_and_gets_subordinate_ids(profile, sandbox, workdir):
    code, out = _call(profile, sandbox, ["/bin/sh", "-c", "touch /owned && chown 33:44 /owned && stat -c '%u %g' /owned"],
                      log=workdir / "log")
    assert (code, out) == (0, "33 44\n")
    st = (sandbox / "owned").stat()
    if profile.name == "root":
        assert (st.st_uid, st.st_gid) == (33, 44)
    else:
        start = profile.user.subuid[0]
        assert (st.st_uid, st.st_gid) == (start + 32, start + 43)


def test_single_id_map_refuses_chown_but_writes(profile, sandbox, workdir):
    if profile.name == "root":
        pytest.skip("root needs no map; the single-id map is the unprivileged fallback")
    code, out = _call(profile, sandbox, ["/bin/sh", "-c", "id -u; touch /x; chown 33 /x"], userns="root",
                      log=workdir / "log")
    assert code == 1 and out.startswith("0\n") and "Invalid argument" in out
    assert (sandbox / "x").stat().st_uid == profile.uid


def test_the_build_identity_is_used_as_given_not_chosen_again(profile, sandbox, workdir):
    """The build decides its identity once (builder.steps.userns.build_identity) and hands
    the runtime that Identity record: as the unprivileged user with subordinate ids, "auto"
    would map them, but a single-id Identity passed in is what the command runs with."""
    if profile.name == "root":
        pytest.skip("root runs in no user namespace whatever it is given")
    chosen = profile.python("import runtime; print(runtime.choose_identity('auto').mode)")
    assert chosen.out.split() == ["subuid"], chosen.err
    given = f"__import__('runtime').Identity('root', {profile.uid}, {profile.gid})"
    r = profile.python(_CALL.replace("userns={userns!r}", "userns=" + given).format(
        root=str(sandbox), argv=["/bin/sh", "-c", "cat /proc/self/uid_map"], env={}, extra="",
        log=str(workdir / "log")))
    assert r.out.startswith("status 0"), r.err
    assert (workdir / "log").read_text().split() == ["0", str(profile.uid), "1"]


def test_test_action_runs_the_test_script(profile, sandbox, workdir):
    code, out = _call(profile, sandbox, [], extra=", action='test'", log=workdir / "log")
    assert (code, out) == (5, "testing in rootfs\n")


def test_setup_failure_raises_a_run_error(profile, sandbox, workdir):
    r = profile.python(f"import runtime; runtime.run_in_sandbox({str(sandbox)!r}, ['true'], binds=['/no/such:/x'])")
    assert r.status == 1 and "UsageError" in r.err and "/no/such" in r.err


def test_doctor_reports_capabilities(profile):
    r = profile.sbuild("doctor", "--json")
    assert r.status == 0, r.err
    checks = {c["check"]: c for c in json.loads(r.out)}
    assert checks["user namespaces"]["ok"] is True
    assert checks["loop devices"]["ok"] is (profile.name == "root")
    assert "mksquashfs" in checks
