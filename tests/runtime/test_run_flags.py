"""The launch flags of issue 13 (reference apptainer-cli.md §4.1, §5): each one's effect as a
job would notice it, as root and as an unprivileged user (the ``profile`` fixture)."""

from __future__ import annotations

import os

import pytest


def _sh(profile, images, *flags, script: str, env: dict | None = None, cwd=None):
    return profile.sbuild("exec", *flags, images["sandbox"], "sh", "-c", script, env=env, cwd=cwd)


def test_containall_with_home_dir_binds_it_and_starts_there(profile, images, workdir):
    """Regression: ``--containall --home DIR`` (DIR under /tmp, as Snakemake's job dirs are)
    lost DIR under the contained /tmp, and the job started in /."""
    r = _sh(profile, images, "--containall", "--home", workdir, script="pwd; echo $HOME; echo out > result")
    assert (r.status, r.out) == (0, f"{workdir}\n{workdir}\n"), r.err
    assert (workdir / "result").read_text() == "out\n"


def test_contained_home_src_dst_and_binds_under_tmp(profile, images, workdir):
    (workdir / "data").mkdir()
    (workdir / "data" / "f").write_text("x")
    profile.own(workdir)
    r = _sh(profile, images, "-c", "-H", f"{workdir}:/home/job", "-B", f"{workdir}/data:/tmp/in",
            script="pwd; echo $HOME; cat /tmp/in/f; ls /tmp")
    assert (r.status, r.out) == (0, "/home/job\n/home/job\nxin\n"), r.err


def test_no_home_keeps_home_variable_but_mounts_nothing(profile, images):
    r = _sh(profile, images, "--no-home", script='echo $HOME; ls "$HOME" 2>/dev/null | wc -l')
    home = "/root" if profile.name == "root" else str(profile.home)
    assert r.status == 0 and r.out.split() == [home, "0"], r.err


def test_pwd_and_cwd_set_the_directory_and_a_missing_one_is_fatal(profile, images):
    for flag in ("--pwd", "--cwd"):
        r = _sh(profile, images, flag, "/etc", script="pwd")
        assert (r.status, r.out) == (0, "/etc\n"), r.err
    r = _sh(profile, images, "--pwd", "/no/such/dir", script="pwd")
    assert r.status != 0 and r.out == "" and "failed to set working directory" in r.err


def test_workdir_holds_contained_tmp_and_scratch(profile, images, workdir):
    r = _sh(profile, images, "-c", "-W", workdir, "-S", "/scratch,/data/s",
            script="echo a > /tmp/a; echo b > /var/tmp/b; echo c > /scratch/c; ls /data/s | wc -l")
    assert (r.status, r.out.strip()) == (0, "0"), r.err
    assert (workdir / "tmp" / "a").read_text() == "a\n"
    assert (workdir / "var_tmp" / "b").read_text() == "b\n"
    assert (workdir / "scratch" / "scratch" / "c").read_text() == "c\n"


def test_scratch_without_workdir_is_empty_and_discarded(profile, images):
    r = _sh(profile, images, "--scratch", "/scr", script="touch /scr/x && ls /scr")
    assert (r.status, r.out) == (0, "x\n"), r.err
    r = _sh(profile, images, "-S", "/scr", script="ls /scr | wc -l")
    assert r.out.strip() == "0"


def test_no_mount_names(profile, images, workdir):
    elsewhere = images["sandbox"].parent  # a host directory under /tmp, outside the cwd
    r = _sh(profile, images, "--no-mount", "tmp,proc", cwd=workdir,
            script=f"ls /proc | wc -l; test -e {elsewhere} && echo tmp-bound; pwd")
    lines = r.out.split()
    assert r.status == 0 and lines[0] == "0" and "tmp-bound" not in lines, (r.out, r.err)
    assert lines[-1] == str(workdir)  # the cwd, no longer under a mounted /tmp, is bound itself
    r = _sh(profile, images, "--no-mount", "cwd,tmp", cwd=workdir, script="pwd")
    assert r.status == 0 and r.out.strip() != str(workdir)
    r = _sh(profile, images, "--no-mount", "bind-paths,nonsense", script="test -s /etc/hosts || echo empty")
    assert r.out == "empty\n" and "Ignoring unknown mount type 'nonsense'" in r.err


def test_mount_docker_style_is_a_read_only_bind(profile, images, workdir):
    src = workdir / "a,b"
    src.mkdir()
    (src / "f").write_text("in")
    profile.own(workdir)
    spec = f'type=bind,"source={src}",destination=/m,readonly'
    r = _sh(profile, images, f"--mount={spec}", script="cat /m/f; touch /m/g 2>/dev/null || echo ro")
    assert (r.status, r.out) == (0, "inro\n"), r.err
    r = _sh(profile, images, "--mount", "type=volume,src=/a,dst=/b", script="true")
    assert r.status != 0 and "type=bind" in r.err


def test_bind_env_twins_are_added_after_the_command_line(profile, images, workdir):
    for d in ("one", "two", "three"):
        (workdir / d).mkdir()
        (workdir / d / "n").write_text(d)
    profile.own(workdir)
    env = {"APPTAINER_BIND": f"{workdir}/two:/mnt/two", "SINGULARITY_BINDPATH": f"{workdir}/three:/mnt/three"}
    r = _sh(profile, images, "-B", f"{workdir}/one:/mnt/one", env=env, script="cat /mnt/one/n /mnt/two/n /mnt/three/n")
    assert (r.status, r.out) == (0, "onetwothree"), r.err
    assert "SINGULARITY_BINDPATH is set, but APPTAINER_BINDPATH is preferred" in r.err


def test_env_precedence_env_over_env_file_over_apptainerenv_over_singularityenv(profile, images, workdir):
    envfile = workdir / "vars"
    envfile.write_text("# job vars\nexport A=file\nB='file b'\nC=\"${HOSTV}-x\"  # from the host\n")
    env = {"APPTAINERENV_A": "apt", "SINGULARITYENV_A": "sing", "APPTAINERENV_B": "apt", "SINGULARITYENV_D": "sing",
           "APPTAINERENV_D": "aptd", "HOSTV": "h"}
    r = _sh(profile, images, "--env-file", envfile, "--env", "A=cli", env=env, script='echo "$A|$B|$C|$D"')
    assert (r.status, r.out) == (0, "cli|file b|h-x|aptd\n"), r.err
    assert "Ignored environment file variable A: override from --env" in r.err
    envfile.write_text("X=$(id)\n")
    r = _sh(profile, images, "--env-file", envfile, script="true")
    assert r.status != 0 and "running commands is not allowed" in r.err


def test_injected_values_are_evaluated_unless_no_eval(profile, images):
    env = {"APPTAINERENV_V": "$HOME/x"}
    r = _sh(profile, images, "--home", "/srv", "--no-home", env=env, script='echo "$V"')
    assert r.out == "/srv/x\n", r.err
    r = _sh(profile, images, "--no-eval", env=env, script='echo "$V"')
    assert r.out == "$HOME/x\n", r.err


def test_cleanenv_and_no_env(profile, images):
    env = {"KEEP": "k", "DROP": "d"}
    r = _sh(profile, images, "--no-env", "DROP", env=env, script='echo "$KEEP|$DROP"')
    assert r.out == "k|\n", r.err
    r = _sh(profile, images, "-e", env=env, script='echo "$KEEP|$LANG"')
    assert r.out == "|C\n", r.err


def test_hostname_uts_and_ipc_namespaces(profile, images):
    r = _sh(profile, images, "--hostname", "jobhost", script="hostname; cat /etc/hostname")
    assert (r.status, r.out) == (0, "jobhost\njobhost\n"), r.err
    host_ipc = os.readlink("/proc/self/ns/ipc")
    r = _sh(profile, images, "--ipc", script="readlink /proc/self/ns/ipc")
    assert r.status == 0 and r.out.strip() != host_ipc, r.err
    r = _sh(profile, images, script="readlink /proc/self/ns/ipc")
    assert r.out.strip() == host_ipc


def test_dns_writes_resolv_conf_and_no_umask(profile, images, rt):
    r = _sh(profile, images, "--dns", "10.0.0.53,10.0.0.54", script="cat /etc/resolv.conf")
    assert (r.status, r.out) == (0, "nameserver 10.0.0.53\nnameserver 10.0.0.54\n"), r.err
    import subprocess

    def umask(*flags: str) -> str:  # the launch under a host umask of 077
        argv = profile._argv("sh", "-c", 'umask 077; exec "$0" "$@"', rt.sbuild, "exec", *flags,  # noqa: SLF001
                             str(images["sandbox"]), "sh", "-c", "umask")
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()

    assert (umask(), umask("--no-umask")) == ("0077", "0022")


def test_net_network_none_has_only_loopback_and_it_is_up(profile, images):
    r = _sh(profile, images, "--net", "--network", "none",
            script="tail -n +3 /proc/net/dev | cut -d: -f1; cat /sys/class/net/lo/flags")
    assert r.status == 0, r.err
    names = r.out.split()
    assert names[:-1] == ["lo"] and int(names[-1], 16) & 1, r.out  # only lo, and IFF_UP
    r = _sh(profile, images, script="tail -n +3 /proc/net/dev | wc -l")
    assert int(r.out) > 1  # (without --net: the host's interfaces)
    r = _sh(profile, images, "--net", script="true")
    assert r.status != 0 and "--network" in r.err


def test_nv_without_a_gpu_warns_and_runs(profile, images):
    r = _sh(profile, images, "--nv", script="echo ran")
    assert (r.status, r.out) == (0, "ran\n"), r.err
    assert "Could not find any nv files on this host!" in r.err


def test_rocm_binds_the_host_libraries_it_finds(profile, images):
    import subprocess

    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    libs = sorted({line.split()[0] for line in cache.splitlines() if "libdrm_amdgpu.so" in line})
    r = _sh(profile, images, "--rocm", script="ls /.singularity.d/libs 2>/dev/null; echo ran")
    assert r.status == 0 and r.out.split() == [*libs, "ran"], r.err
    if not libs:
        assert "Could not find any rocm files on this host!" in r.err


def _sbuild_cgroups() -> list[str]:
    return [f"{root}/{d}" for root, _dirs, _files in os.walk("/sys/fs/cgroup") if root.count("/") <= 5
            for d in _dirs if d.startswith("sbuild-")]


def test_cpus_and_memory_limits(profile, images):
    r = _sh(profile, images, "--cpus", "0.5", "--memory", "64m", script="grep -c /sbuild- /proc/self/cgroup")
    if profile.name == "root":
        assert r.status == 0 and int(r.out) >= 1, r.err
        assert _sbuild_cgroups() == []  # removed with the container
    else:  # no cgroup v2 delegated to the user on this host: Apptainer's error
        assert r.status != 0 and "cannot use cgroups" in r.err
    r = _sh(profile, images, "--cpus", "1000", script="true")
    assert r.status != 0 and "--cpus" in r.err


def test_privileges_for_root_and_for_a_user(profile, images):
    r = _sh(profile, images, "--keep-privs", script="true")
    if profile.name == "user":
        assert r.status != 0 and "--keep-privs requires root privileges" in r.err
        r = _sh(profile, images, "--no-privs", "--drop-caps", "CAP_NET_RAW", script="grep CapEff /proc/self/status")
        assert r.status == 0 and r.out.split()[1] == "0000000000000000", r.err
        return
    assert r.status == 0, r.err
    r = _sh(profile, images, "--drop-caps", "CAP_NET_RAW,sys_admin", script="grep CapBnd /proc/self/status")
    bnd = int(r.out.split()[1], 16)
    assert not bnd & (1 << 13) and not bnd & (1 << 21) and bnd & 1, r.out
    r = _sh(profile, images, "--no-privs", script="grep CapEff /proc/self/status")
    assert int(r.out.split()[1], 16) == 0, r.out
    r = _sh(profile, images, "--security", "uid:1234,gid:1234", script="id -u; id -g")
    assert r.out.split() == ["1234", "1234"], r.err


def test_exit_codes(profile, images):
    assert _sh(profile, images, script="exit 7").status == 7
    assert _sh(profile, images, script="kill -9 $$").status == 137
    r = profile.sbuild("exec", images["sandbox"], "-la")
    assert r.status == 255 and '"-la": executable file not found in $PATH' in r.err


def test_exec_image_double_dash_runs_double_dash(profile, images):
    r = profile.sbuild("exec", images["sandbox"], "--", "ls")
    assert r.status == 255 and '"--": executable file not found in $PATH' in r.err


@pytest.mark.parametrize("value,contained", [("1", True), ("true", True), ("False", False), ("0", False)])
def test_bool_twin_contain(profile, images, value, contained):
    r = _sh(profile, images, env={"APPTAINER_CONTAIN": value}, script="ls /tmp | wc -l")
    assert r.status == 0, r.err
    assert (r.out.strip() == "0") == contained  # the host's /tmp is never empty during the tests


def test_bool_twin_yes_is_fatal_and_legacy_names_are_noted(profile, images):
    r = _sh(profile, images, env={"APPTAINER_CLEANENV": "yes"}, script="true")
    assert r.status != 0 and "APPTAINER_CLEANENV" in r.err and "while parsing environment variables" in r.err
    r = _sh(profile, images, env={"SINGULARITY_CLEANENV": "1", "HOSTV": "h"}, script='echo "[$HOSTV]"')
    assert r.out == "[]\n" and "SINGULARITY_CLEANENV is set, but APPTAINER_CLEANENV is preferred" in r.err
    r = _sh(profile, images, env={"SINGULARITY_HOSTNAME": "s", "APPTAINER_HOSTNAME": "a"}, script="hostname")
    assert r.out == "a\n" and "SINGULARITY_HOSTNAME and APPTAINER_HOSTNAME have different values" in r.err
    r = _sh(profile, images, "--pwd", "/etc", env={"APPTAINER_PWD": "/tmp"}, script="pwd")
    assert r.out == "/etc\n"  # the command line wins over a default-handled twin


def test_writable_beats_writable_tmpfs_with_a_warning(profile, images):
    r = profile.sbuild("exec", "--writable", "--writable-tmpfs", images["sandbox"], "true")
    assert r.status == 0 and "mutually exclusive with --writable" in r.err


def test_fakeroot_is_root_with_root_home(profile, images):
    r = _sh(profile, images, "--fakeroot", script="id -u; echo $HOME")
    assert (r.status, r.out.split()) == (0, ["0", "/root"]), r.err
    r = _sh(profile, images, env={"APPTAINER_FAKEROOT": "1"}, script="id -u")
    assert r.out == "0\n", r.err
