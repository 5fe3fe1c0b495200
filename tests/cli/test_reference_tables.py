"""Every command and flag of the reference's tables is accepted under both Apptainer names.

``../shared/reference/apptainer-cli.md`` is read here: §1 (global flags), §4.3 build, §4.4
push, §4.5 inspect and run-help, §4.6 cache and overlay, §6 pull. Each table row gives flags
(``-s, --sandbox``, groups split by `` / ``, ``--ignore-{a,b}`` expanded) and, in its env
column, their ``APPTAINER_*`` keys: a flag is accepted when the command's parser (as
``builder.cli`` builds it under that name) knows the option string, and its env twin is
declared when ``builder.commands.flags.add_flag`` recorded the key for it.

To extend it to another command (exec/run/shell/test, instance), add its section to
``SECTIONS`` (title prefix -> command words; ``None`` for a table whose first column names the
command). What is not implemented yet goes in ``PENDING`` / ``PENDING_ENV`` with a reason;
both may only shrink: an entry that now works fails the test until it is removed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from builder.cli import build_parser
from tests.cli.conftest import COMPAT

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "apptainer-cli.md"

# section title (start) -> the command words its tables are for (None: the first column says)
SECTIONS = {
    "### 4.3 `build": ("build",),
    "### 4.4 `push": ("push",),
    "### 4.5 `inspect": ("inspect",),
    "### 4.6 `cache`, `overlay`": None,
    "## 6. `pull`": ("pull",),
}

_LATER = "flag of the signing/encryption issue"
PENDING = {
    **dict.fromkeys([("build", f) for f in ("-e", "--encrypt", "--passphrase", "--pem-path")], _LATER),
    ("build", "--data"): "a data-container SIF: not built by sbuild yet",
    ("build", "--buildkit-host"): "Dockerfile builds (buildkit): not in sbuild",
    **dict.fromkeys([("push", f) for f in ("--library", "-U", "--allow-unsigned", "-D", "--description",
                                            "--annotation")], "push is oras:// only so far"),
}
PENDING_ENV = {
    ("build", "--data"): "not a build flag yet",
    ("push", "--library"): "push is oras:// only so far",
    ("push", "-U"): "push is oras:// only so far", ("push", "--allow-unsigned"): "push is oras:// only so far",
    ("build", "--json"): "sbuild's build --json prints the result, not Apptainer's JSON recipe: no twin",
}


def _expand(text: str) -> list[str]:
    """``--ignore-{a,b}`` -> ``--ignore-a``, ``--ignore-b``."""
    m = re.search(r"\{([^}]*)\}", text)
    if not m:
        return [text]
    return [t for part in m.group(1).split(",") for t in _expand(text[:m.start()] + part + text[m.end():])]


def _flags(cell: str) -> list[list[str]]:
    """The flag groups of a table cell (split by `` / ``), each a list of option strings."""
    groups = []
    for group in re.split(r"\s/\s", cell):
        names = []
        for span in re.findall(r"`([^`]*)`", group):
            for piece in _expand(span):
                names += [w for w in re.split(r"[,\s]+", piece) if w.startswith("-") and len(w) > 1]
        if names:
            groups.append(names)
    return groups


def _env_keys(cell: str) -> list[list[str]]:
    """The env keys of an env cell, grouped as the flags (`` / ``): ``–``/``none``/``as`` give []."""
    out = []
    for group in re.split(r"\s/\s", cell):
        keys = re.findall(r"\b[A-Z][A-Z0-9_]+\b(?!\*)", group.split("(")[0])  # not IGNORE_*
        out.append([] if "none" in group or group.strip().startswith(("as", "–", "-")) else keys)
    return out


def _rows(section: str):
    """``(command words, flags groups, env groups or None)`` for each table row."""
    header: list[str] = []
    for line in section.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
            continue
        if cells == header:
            continue
        yield header, cells


def _table_entries(text: str):
    """``(command, [flag group], [env group] | None)`` for every row of ``SECTIONS``."""
    for title, words in SECTIONS.items():
        start = text.index(title)
        end = min(i for i in (text.find("\n## ", start + 1), text.find("\n### ", start + 1), len(text)) if i > 0)
        current = None
        for header, cells in _rows(text[start:end]):
            if words is None:  # | Command | Flag | Arg | Meaning |
                if cells[0]:
                    current = " ".join(w for w in re.findall(r"`([^`]*)`", cells[0])[0].split() if not w.startswith("<"))
                yield current, _flags(cells[1]), None
            elif header[:2] == ["Flag", "Meaning"]:  # inspect: two flags per row
                yield words[0], _flags(cells[0]) + _flags(cells[2]), None
            else:
                env = _env_keys(cells[2]) if len(header) > 2 and header[2] == "env" else None
                yield words[0], _flags(cells[0]), env


def _leaf(name: str, command: str):
    words = command.split()
    parser = build_parser(words[0], name)
    for word in words:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[word]
    return parser


def _keys_for(groups: list[list[str]], envs: list[list[str]] | None, i: int, flag: str) -> list[str]:
    """The env keys of ``flag`` (in ``groups[i]``): one env group per flag group, one for
    all, or one key per long flag of a group (``--reproducible``, ``--no-cleanup``)."""
    if not envs:
        return []
    keys = envs[i] if len(envs) == len(groups) else envs[0] if len(envs) == 1 else []
    longs = [f for f in groups[i] if f.startswith("--")]
    if len(keys) > 1 and len(longs) == len(keys):
        short_of = {groups[i][j]: groups[i][j + 1] for j in range(len(groups[i]) - 1) if
                    not groups[i][j].startswith("--")}
        return [keys[longs.index(short_of.get(flag, flag))]]
    return keys


@pytest.fixture(scope="module")
def reference() -> str:
    if not REFERENCE.exists():
        pytest.skip(f"reference not found at {REFERENCE}")
    return REFERENCE.read_text()


def test_the_reference_tables_are_read(reference):
    entries = list(_table_entries(reference))
    commands = {c for c, _, _ in entries}
    assert {"build", "push", "inspect", "pull", "cache list", "cache clean", "overlay create"} <= commands
    flags = {f for _, groups, _ in entries for g in groups for f in g}
    assert {"--sandbox", "--fix-perms", "--ignore-proot", "--list-apps", "--dry-run", "--sparse", "--name"} <= flags


@pytest.mark.parametrize("name", COMPAT)
def test_global_flags_are_accepted(reference, name):
    from builder.commands.compat import GLOBAL_FLAGS

    section = reference[reference.index("## 1. Root command"):reference.index("## 2. Parsing")]
    known = {n for flag in GLOBAL_FLAGS for n in flag.names} | {"-h", "--help"}
    wanted = {f for _, cells in _rows(section) for g in _flags(cells[0]) for f in g}
    assert wanted and wanted <= known, wanted - known
    envs = {k for _, cells in _rows(section) for g in _env_keys(cells[2]) for k in g}
    assert envs <= {k for flag in GLOBAL_FLAGS for k in flag.env}


@pytest.mark.parametrize("name", COMPAT)
def test_every_command_flag_and_env_twin_is_accepted(reference, name):
    missing, no_twin = set(), set()
    for command, groups, envs in _table_entries(reference):
        leaf = _leaf(name, command)
        table = {}
        for spec in leaf.get_default("_env_flags") or ():
            table[spec.dest] = set(spec.keys)
        for i, group in enumerate(groups):
            for flag in group:
                action = leaf._option_string_actions.get(flag)
                if action is None:
                    missing.add((command, flag))
                    continue
                keys = _keys_for(groups, envs, i, flag)
                if keys and not set(keys) <= table.get(action.dest, set()):
                    no_twin.add((command, flag))
    assert missing <= set(PENDING), sorted(missing - set(PENDING))
    assert no_twin <= set(PENDING_ENV) | set(PENDING), sorted(no_twin - set(PENDING_ENV) - set(PENDING))
    done = set(PENDING) - missing
    assert not done, f"implemented now, remove from PENDING: {sorted(done)}"
    done_env = {k for k in PENDING_ENV if k not in missing and k not in no_twin}
    assert not done_env, f"twins declared now, remove from PENDING_ENV: {sorted(done_env)}"
