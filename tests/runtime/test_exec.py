"""exec/run/test/shell over every image kind, as root and as an unprivileged user."""

from __future__ import annotations

import pytest

KINDS = ["sandbox", "simg", "squashfs", "sif"]


@pytest.mark.parametrize("kind", KINDS)
def test_exec_prints_and_passes_exit_code(profile, images, kind):
    r = profile.sbuild("exec", images[kind], "sh", "-c", 'echo "hello $1"; exit 7', "sh", "a b")
    assert r.out == "hello a b\n", r.err
    assert r.status == 7


def test_exec_runs_as_the_calling_user_with_a_passwd_entry(profile, images):
    r = profile.sbuild("exec", images["sandbox"], "sh", "-c", "id -u; id -g; whoami; echo $HOME; test -d $HOME")
    name = "root" if profile.name == "root" else profile.user.name
    assert r.out.split() == [str(profile.uid), str(profile.gid), name, str(profile.home)], r.err
    assert r.status == 0


def test_signal_death_becomes_128_plus_signal(profile, images):
    r = profile.sbuild("exec", images["simg"], "sh", "-c", "kill -TERM $$")
    assert r.status == 143


def test_missing_command_is_255_with_apptainers_message(profile, images):
    r = profile.sbuild("exec", images["sandbox"], "/no/such/program")
    assert r.status == 255  # Apptainer's, not the shell's 127 (cwltool matches the message)
    assert '"/no/such/program": executable file not found in $PATH' in r.err


def test_environment_follows_apptainer(profile, images):
    script = ('echo "$SINGULARITY_CONTAINER|$APPTAINER_CONTAINER|$SINGULARITY_NAME|$APPTAINER_NAME|'
              '$FROM_IMAGE|$ORDER|$MYVAR|$HOSTVAR|$INJECTED|$PS1|$PATH"')
    r = profile.sbuild("exec", "--env", "MYVAR=user", images["simg"], "sh", "-c", script,
                       env={"HOSTVAR": "host", "SINGULARITYENV_INJECTED": "inj"})
    fields = r.out.rstrip("\n").split("|")
    image = str(images["simg"])
    assert fields[:4] == [image, image, "img.simg", "img.simg"], r.err
    assert fields[4:10] == ["yes", "01 99", "user", "host", "inj", "Apptainer> "]
    assert fields[10] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_cleanenv_drops_host_variables(profile, images):
    r = profile.sbuild("exec", "--cleanenv", images["sandbox"], "sh", "-c", 'echo "[$HOSTVAR][$LANG][$FROM_IMAGE]"',
                       env={"HOSTVAR": "host"})
    assert r.out == "[][C][yes]\n", r.err


def test_run_uses_the_runscript_with_arguments(profile, images):
    r = profile.sbuild("run", images["sif" if "sif" in images else "simg"], "x", "y z")
    assert r.out == "runscript args: x y z\n", r.err
    assert r.status == 0


def test_run_app_and_test_script(profile, images):
    r = profile.sbuild("run", "--app", "hello", images["sandbox"])
    assert r.out == "hello app hello\n", r.err
    r = profile.sbuild("test", images["squashfs"])
    assert r.out == "testing in img.sqfs\n" and r.status == 5, r.err
    r = profile.sbuild("test", "--app", "hello", images["squashfs"])
    assert r.status == 0


def test_shell_reads_stdin_and_exports_its_path(profile, images):
    r = profile.sbuild("shell", images["simg"], input="echo shell=$SINGULARITY_SHELL,$SHELL; exit 4\n")
    assert r.out == "shell=,/bin/sh\n", r.err  # Apptainer's: no --shell, no bash: /bin/sh
    assert r.status == 4
    r = profile.sbuild("shell", "--shell", "/bin/busybox", images["simg"], input="")
    # the shell is busybox itself, run with no applet name: it prints its help and succeeds
    assert r.status == 0 and r.out.startswith("BusyBox v") and "Usage: busybox" in r.out, r.err


def test_cwd_is_kept_and_pwd_overrides(profile, images, workdir):
    r = profile.sbuild("exec", images["sandbox"], "pwd", cwd=workdir)
    assert r.out == f"{workdir}\n", r.err
    r = profile.sbuild("exec", "--pwd", "/opt", images["sandbox"], "pwd", cwd=workdir)
    assert r.out == "/opt\n"


def test_ext3_image_runs_as_root_only(profile, images):
    r = profile.sbuild("exec", images["ext3"], "echo", "ext3")
    if profile.name == "root":
        assert (r.status, r.out) == (0, "ext3\n"), r.err
    else:
        assert r.status == 3
        assert "needs root" in r.err and len(r.err.strip().splitlines()) <= 2


def test_unprivileged_squashfs_is_extracted_once(profile, images, workdir):
    if profile.name == "root":
        pytest.skip("root mounts squashfs in place; extraction is the unprivileged path")
    env = {"SBUILD_CACHEDIR": str(workdir / "cache")}
    r1 = profile.sbuild("exec", images["squashfs"], "true", env=env)
    r2 = profile.sbuild("exec", images["squashfs"], "true", env=env)
    assert r1.status == r2.status == 0
    assert "into the cache (once)" in r1.err  # logged, although the quick path defers logging
    assert "extracting" not in r2.err
    cache = workdir / "cache" / "rootfs"
    assert len([p for p in cache.iterdir() if p.is_dir() and p.name != "index"]) >= 1


@pytest.mark.parametrize("case", ["nonexistent home", "read-only cache"])
def test_unprivileged_without_a_writable_cache_extracts_for_the_run_only(profile, images, workdir, case):
    """Regression: HOME=/nonexistent (or a read-only cache) failed in the extraction cache;
    Apptainer disables its cache with a WARNING and runs."""
    if profile.name == "root":
        pytest.skip("root mounts squashfs in place; extraction is the unprivileged path")
    tmp = workdir / "tmp"
    tmp.mkdir()
    profile.own(tmp)
    env = {"TMPDIR": str(tmp), "XDG_CACHE_HOME": "", "APPTAINER_CACHEDIR": "", "SINGULARITY_CACHEDIR": ""}
    if case == "nonexistent home":
        env.update(SBUILD_CACHEDIR="", HOME="/nonexistent")
        expected = "/nonexistent/.cache/sbuild/rootfs"
    else:
        ro = workdir / "ro"
        (ro / "rootfs").mkdir(parents=True)
        profile.own(ro / "rootfs")
        (ro / "rootfs").chmod(0o555)
        env["SBUILD_CACHEDIR"] = str(ro)
        expected = f"{ro}/rootfs"
    r = profile.sbuild("exec", images["squashfs"], "sh", "-c", 'echo "$FROM_IMAGE"', env=env)
    assert (r.status, r.out) == (0, "yes\n"), r.err
    assert f"Cache disabled: cache directory {expected} is not writable" in r.err  # (a WARNING)
    assert "APPTAINER_CACHEDIR" in r.err
    assert list(tmp.iterdir()) == []  # the run's extraction is gone with the run


def test_unprivileged_squashfs_uses_squashfuse_when_dev_fuse_is_usable(profile, images, rt):
    import os
    import shutil

    if profile.name == "root":
        pytest.skip("root mounts squashfs in place; squashfuse is the unprivileged path")
    if not shutil.which("squashfuse") or not os.path.exists("/dev/fuse"):
        pytest.skip("squashfuse or /dev/fuse is missing")
    mode = os.stat("/dev/fuse").st_mode & 0o777
    os.chmod("/dev/fuse", 0o666)  # it is 0600 on these machines (local-test-infra §6)
    try:
        r = profile.sbuild("exec", images["sif"], "sh", "-c", "ps -o args | grep -c '^squashfuse'; cat /singularity")
    finally:
        os.chmod("/dev/fuse", mode)
    assert r.status == 0, r.err
    assert r.out.splitlines()[0] == "1"
    assert "runscript args" in r.out
    assert rt.wait_until(lambda: not rt.marked(str(images["sif"]), commands_only=True), 5)


def test_unprivileged_extraction_falls_back_to_pysquashfsimage(profile, images, workdir):
    pytest.importorskip("PySquashfsImage", reason="PySquashfsImage is the fallback under test")
    if profile.name == "root":
        pytest.skip("root mounts squashfs in place; extraction is the unprivileged path")
    r = profile.sbuild("exec", images["simg"], "sh", "-c", "cat /singularity; ls /bin | wc -l",
                       env={"PATH": "/nonexistent", "SBUILD_CACHEDIR": str(workdir / "cache")})
    assert r.status == 0, r.err
    assert r.out.startswith("#!/bin/sh")
    assert int(r.out.split()[-1]) > 20  # busybox and its applet links


def test_image_from_sbuilds_packer_runs_like_mksquashfs_one(profile, images, workdir):
    """The packer that writes every image sbuild builds: the runtime mounts (root), extracts
    or squashfuse-mounts (unprivileged) its images, and they behave as mksquashfs's do."""
    import os
    import shutil

    from builder.images import write_image

    ours = workdir / "ours.simg"
    write_image(images["sandbox"], ours, "simg", force=True)
    profile.own(ours)
    script = "cat /singularity; ls -l /bin/sh; ls /bin | wc -l; echo $ORDER"
    want = profile.sbuild("exec", images["simg"], "sh", "-c", script)
    env = {"SBUILD_CACHEDIR": str(workdir / "cache")}
    got = profile.sbuild("exec", ours, "sh", "-c", script, env=env)
    assert got.status == want.status == 0, got.err
    assert got.out == want.out and "runscript args" in got.out
    r = profile.sbuild("test", ours, env=env)
    assert (r.status, r.out) == (5, "testing in ours.simg\n"), r.err
    if profile.name == "user" and shutil.which("squashfuse") and os.path.exists("/dev/fuse"):
        mode = os.stat("/dev/fuse").st_mode & 0o777
        os.chmod("/dev/fuse", 0o666)
        try:
            r = profile.sbuild("exec", ours, "sh", "-c", "ps -o args | grep -c '^squashfuse'; " + script)
        finally:
            os.chmod("/dev/fuse", mode)
        assert r.status == 0, r.err
        assert r.out == "1\n" + want.out


def _dash_sandbox(root):
    """A sandbox whose /bin/sh is dash (with its libraries), which has no ``source``."""
    import os
    import re
    import shutil
    import subprocess

    dash = shutil.which("dash")
    if dash is None:
        return None
    (root / "bin").mkdir(parents=True)
    shutil.copy2(dash, root / "bin" / "dash")
    (root / "bin" / "sh").symlink_to("dash")
    libs = re.findall(r"(/\S+) \(0x", subprocess.run(["ldd", dash], capture_output=True, text=True).stdout)
    for lib in libs:
        dest = root / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), dest)
    env = root / ".singularity.d" / "env"
    env.mkdir(parents=True)
    (env / "90-environment.sh").write_text("#!/bin/sh\nsource /etc/extra.sh\nexport MAIN=main\n")
    (root / "etc").mkdir()
    (root / "etc" / "extra.sh").write_text("export FROM_EXTRA=sourced\n")
    return root


def test_source_in_env_scripts_works_under_dash_as_under_apptainer(profile, workdir):
    """Apptainer sources %environment with its own interpreter, which has `source`; dash
    does not: while the env scripts are sourced, sbuild gives it one (and only then)."""
    box = _dash_sandbox(workdir / "dash-box")
    if box is None:
        pytest.skip("dash is not installed on this host (it provides the test image's /bin/sh)")
    profile.own(box)
    r = profile.sbuild("exec", box, "/bin/sh", "-c", 'echo "$FROM_EXTRA $MAIN"; command -v source || echo none')
    assert r.status == 0, r.err
    assert r.out == "sourced main\nnone\n", r.err
    assert "not found" not in r.err
