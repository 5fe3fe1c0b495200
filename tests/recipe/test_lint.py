"""Bash-only syntax in sections that /bin/sh runs: warned at its line, never where it is data."""

from __future__ import annotations

import re

import pytest

from base.errors import RecipeError
from builder.recipe import parse_recipe

HEAD = "Bootstrap: docker\nFrom: debian:12\n\n"


def bashisms(text: str) -> list[tuple[int, str]]:
    stage = parse_recipe((HEAD + text).encode(), path="r.def").final
    return [(w.line, w.message.split(" is bash syntax")[0]) for w in stage.warnings
            if "is bash syntax" in w.message]


@pytest.mark.parametrize("line,what", [
    ("source /etc/profile", "`source FILE`"),
    ("cd /x && source ./env.sh", "`source FILE`"),
    ("if [[ -n $X ]]; then true; fi", "`[[ … ]]`"),
    ("function setup { true; }", "`function NAME`"),
    ("make &> log", "`&>`"),
    ("read a <<< \"$x\"", "a here-string `<<<`"),
    ("pkgs=(gcc make)", "an array"),
    ("pushd /tmp", "`pushd`/`popd`"),
    ("echo -e 'a\\tb'", "`echo -e`"),
])
def test_each_kind_is_named_at_its_line(line, what):
    assert bashisms(f"%post\n    apt-get update\n    {line}\n") == [(6, what)]


def test_comments_strings_and_here_documents_are_not_code():
    text = """%post
    # source this, [[ that ]]
    echo "source x; [[ y ]] &> z"   # pushd in a comment
    echo 'arr=(1 2)'
    sh -c "if true; then
        [[ -n x ]] && source y
    fi"
    cat > /usr/local/bin/tool << 'EOF'
#!/bin/bash
source /opt/env; [[ -n $1 ]]
EOF
    cat <<-END >> /etc/profile.d/x.sh
	function f { :; }
	END
    grep -q x /etc/passwd >&2 2>&1
    echo done
"""
    assert bashisms(text) == []


def test_sections_run_by_bash_are_not_checked():
    assert bashisms("%post -c /bin/bash -e\n    source /x\n") == []
    assert bashisms("%runscript\n#!/bin/bash\nsource /x\n") == []
    assert bashisms("%test\n    #!/usr/bin/env bash\n    [[ -n x ]]\n") == []
    assert bashisms("%environment\n    source /opt/env.sh\n") == []  # Apptainer's own interpreter sources it
    assert bashisms("%post -c /bin/sh\n    source /x\n") == [(5, "`source FILE`")]
    assert bashisms("%runscript\n#!/bin/sh\nsource /x\n") == [(6, "`source FILE`")]


def test_where_it_runs_and_how_to_fix_it():
    stage = parse_recipe((HEAD + "%setup\n    source ~/.bashrc\n%apprun tool\n    pushd /x\n").encode(),
                         path="r.def").final
    setup, app = [w for w in stage.warnings if "bash syntax" in w.message]
    assert "%setup runs under the host's /bin/sh" in setup.message and "%setup -c /bin/bash -e" in setup.hint
    assert "%apprun tool runs under the image's /bin/sh" in app.message and "#!/bin/bash" in app.hint


def test_one_warning_per_kind_and_the_build_is_not_refused():
    found = bashisms("%post\n    source /a\n    source /b\n    [[ x ]]\n    source /c\n")
    assert found == [(5, "`source FILE`"), (7, "`[[ … ]]`")]
    parse_recipe((HEAD + "%post\n    source /a\n").encode(), path="r.def")  # a warning, not an error


_KEYWORD = {"`source FILE`": "source", "`[[ … ]]`": "[[", "`function NAME`": "function", "`&>`": "&>",
            "a here-string `<<<`": "<<<", "an array": "=(", "`pushd`/`popd`": "pushd|popd", "`echo -e`": "echo -e"}


def test_every_corpus_warning_points_at_its_construct(conformance):
    """Over the 331-recipe corpus: every flagged line holds what the warning names."""
    files = sorted((conformance / "corpus" / "files").iterdir())
    flagged = 0
    for path in files:
        try:
            recipe = parse_recipe(path.read_bytes(), path=str(path))
        except RecipeError:
            continue
        lines = path.read_text(errors="replace").splitlines()
        for stage in recipe.stages:
            for w in stage.warnings:
                if "is bash syntax" not in w.message:
                    continue
                what = w.message.split(" is bash syntax")[0]
                assert re.search(_KEYWORD[what], lines[w.line - 1]), (path.name, w.line, what)
                flagged += 1
    assert 5 <= flagged <= 40, flagged  # real recipes do this, but rarely
