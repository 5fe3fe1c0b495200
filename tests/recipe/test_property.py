"""Random and mutated recipes: the only exception that ever leaves the parser is RecipeError."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from base.errors import RecipeError
from builder.recipe import BuildArgs, parse_recipe, to_apptainer_json

SEED = (
    b"Bootstrap: docker\nFrom: debian:12\nStage: one\n%arguments\nV=1\n%files\n\"a b\" /c\n"
    b"%labels\nK v\n%post -c /bin/bash\necho {{ V }}\n%apprun app\necho\n"
    b"Bootstrap: scratch\n%files from one\n/c /d\n%runscript\nexec x\n"
)
PIECES = [b"%", b"%post", b"\n", b"\r\n", b"Bootstrap:", b"{{", b"}}", b"{{ V }}", b"#", b"\\", b":",
          b'"', b"'", b" ", b"\t", b"%files from ", b"%apprun ", b"\xef\xbb\xbf", b"\xff", b"\x00"]


def _check(data: bytes, args: BuildArgs) -> None:
    try:
        recipe = parse_recipe(data, path="fuzz.def", build_args=args)
    except RecipeError as e:
        assert e.diagnostics and all(d.line >= 1 and d.column >= 1 for d in e.diagnostics)
        e.render()
        return
    assert recipe.to_bytes() == data
    json.dumps([to_apptainer_json(s, recipe.full_raw) for s in recipe.stages])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data):
    _check(data, BuildArgs())


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SEED)), st.sampled_from(PIECES), st.integers(0, 3)), max_size=8))
def test_mutated_recipes_never_crash(edits):
    data = bytearray(SEED)
    for position, piece, cut in edits:
        position = min(position, len(data))
        data[position: position + cut] = piece
    _check(bytes(data), BuildArgs({"V": "2"}, warn_unused=True))


def test_every_corpus_file_round_trips(conformance):
    for path in sorted((conformance / "corpus" / "files").iterdir()):
        data = path.read_bytes()
        try:
            recipe = parse_recipe(data, path=str(path))
        except RecipeError:
            continue
        assert recipe.to_bytes() == data, path.name
