"""The launch flags' table walks the reference: every flag of apptainer-cli.md §4.1 is accepted
by exec/run/shell/test (and instance start, by scope) with a value when it takes one, and
every key of §3's exact env list for the actions is some flag's environment twin."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from builder.commands.action_flags import OPTIONS, apply_env, dest, options_for
from builder.commands.run import parse_quick
from builder.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference" / "apptainer-cli.md"


def _section(title: str, end: str) -> str:
    if not REFERENCE.exists():
        pytest.skip(f"the reference is not at {REFERENCE}")
    text = REFERENCE.read_text()
    start = text.index(title)
    return text[start:text.index(end, start)]


def _reference_flags() -> list[tuple[str, str]]:
    """``(flag, scope)`` for each row of §4.1's table (scope: "A", "I", "shell", "run" or "")."""
    rows = []
    for line in _section("### 4.1", "**4.1.1").splitlines():
        if not line.startswith("| `-"):
            continue
        cell = line.split("|")[1]
        scope = "I" if "[I]" in cell else "A" if "[A]" in cell else "shell" if "[shell]" in cell else \
            "run" if "[run" in cell else ""
        for group in re.findall(r"`([^`]+)`", cell):
            if group.startswith("--ignore-{"):
                rows += [(f"--ignore-{x}", scope) for x in group[10:-1].split(",")]
                continue
            rows += [(part.split()[0], scope) for part in re.split(r",\s*", group) if part.startswith("-")]
    return rows


def _kind(flag: str) -> str:
    for strings, kind, *_ in OPTIONS:
        if flag in strings:
            return kind
    raise AssertionError(f"{flag} is not in action_flags.OPTIONS")


def test_every_reference_flag_is_in_the_table():
    flags = _reference_flags()
    assert len(flags) > 90  # the walk finds the table
    for flag, _scope in flags:
        _kind(flag)


@pytest.mark.parametrize("word", ["exec", "run", "shell", "test", "instance"])
def test_every_flag_parses_in_its_scope(word):
    scopes = ("", "I") if word == "instance" else ("", "A", word)
    for flag, scope in _reference_flags():
        if scope not in scopes:
            continue
        argv = [flag] + ([] if _kind(flag) == "flag" else ["/x"])
        if word == "instance":
            ns = vars(build_parser("instance").parse_args(["instance", "start", *argv, "img", "name"]))
            assert ns["name"] == "name", flag
        else:
            ns = vars(parse_quick([word, *argv, "img", "cmd"]))
            assert ns["image"] == "img", flag
        name = next(dest(s) for s, *_ in OPTIONS if flag in s)
        assert ns[name] not in (None, False, []), flag


def test_every_key_of_the_exact_env_list_is_a_twin():
    text = _section("**Exact env list for exec/run/shell/test**", "`--env`,")
    listed = text.split("):", 1)[1].split("plus the global keys")[0]
    words = re.findall(r"\b([A-Z][A-Z0-9_]*[A-Z0-9])\b", re.sub(r"\([^)]*\)", "", listed))
    keys = {k.lstrip("+") for _s, _k, _m, ks, *_ in OPTIONS for k in ks}
    keys |= {"DOCKER_HOST", "DOCKER_LOGIN", "DOCKER_PASSWORD", "DOCKER_USERNAME"}
    missing = [w for w in words if w not in keys and w not in ("A", "I")]
    # --cpus reads CPU_SHARES in Apptainer (§9.1: a bug): here CPU_SHARES is --cpu-shares', CPUS --cpus'
    assert missing == [], missing


def _args(word: str) -> SimpleNamespace:
    values = {dest(s): False if k == "flag" else None if k == "value" else [] for s, k, *_ in options_for(word)}
    return SimpleNamespace(**values)


def test_env_twins_default_and_append_semantics():
    args = _args("exec")
    args.bind, args.pwd = ["/cli"], "/given"
    env = {"APPTAINER_BIND": "/a,/b", "SINGULARITY_BINDPATH": "/c", "APPTAINER_MOUNT": "type=bind,src=/m,dst=/m\n"
           "type=bind,src=/n,dst=/n", "APPTAINER_PWD": "/ignored", "SINGULARITY_CONTAIN": "true",
           "APPTAINER_NO_MOUNT": "tmp, cwd", "APPTAINER_APPNAME": "app2", "SINGULARITY_HOSTNAME": "s",
           "APPTAINER_HOSTNAME": "a", "APPTAINER_SHELL": "/bin/zsh"}
    notes = apply_env(args, "exec", env)
    assert args.bind == ["/cli", "/a,/b", "/c"]  # appended, one element per key
    assert args.mount == ["type=bind,src=/m,dst=/m", "type=bind,src=/n,dst=/n"]  # one per line
    assert args.pwd == "/given" and args.contain is True and args.no_mount == ["tmp", "cwd"]
    assert args.app == "app2" and args.hostname == "a"
    assert not hasattr(args, "shell")  # SHELL is shell's twin only
    assert ("info", "Environment variable SINGULARITY_CONTAIN is set, but APPTAINER_CONTAIN is preferred") in notes
    assert ("warning", "SINGULARITY_HOSTNAME and APPTAINER_HOSTNAME have different values, using the latter") in notes


def test_env_twin_bools_are_strict():
    from base.errors import UsageError

    args = _args("run")
    assert apply_env(args, "run", {"APPTAINER_WRITABLE": " "}) == [] and args.writable is False  # blank: unset
    apply_env(args, "run", {"APPTAINER_WRITABLE": "T"})
    assert args.writable is True
    with pytest.raises(UsageError, match="APPTAINER_NV"):
        apply_env(_args("run"), "run", {"APPTAINER_NV": "yes"})


def test_bind_and_mount_specs():
    from base.errors import UsageError
    from runtime import parse_bind, parse_mount

    binds = parse_bind(r"/a\,b:/x,/c\:d:/y:ro,rel")
    assert [(b.src, b.dst, b.readonly) for b in binds] == [
        ("/a,b", "/x", False), ("/c:d", "/y", True), (os_abspath("rel"), os_abspath("rel"), False)]
    assert [tuple(b) for b in parse_bind("/a:/b:ro,/c")] == [("/a", "/b", True), ("/c", "/c", False)]
    spec = 'type=bind,"source=/s,1",target=/t,readonly=false\ntype=bind,src=/u,dst=/v'
    assert [tuple(b) for b in parse_mount(spec)] == [("/s,1", "/t", True), ("/u", "/v", False)]
    for bad in ("type=bind,src=/a", "type=tmpfs,dst=/a", "type=bind,src=/a,dst=/b,bind-propagation=shared"):
        with pytest.raises(UsageError):
            parse_mount(bad)


def os_abspath(path: str) -> str:
    import os

    return os.path.abspath(path)
