"""base.gojson against what Go's encoding/json writes (expected text from Go 1.21, side by side)."""

from __future__ import annotations

import json

import pytest

from base.gojson import marshal, marshal_indent

# (value, json.Marshal, json.MarshalIndent(value, "", "\t"))
GOLDEN = [
    ({"b": "<x & y>", "a": "é"}, '{"b":"\\u003cx \\u0026 y\\u003e","a":"é"}',
     '{\n\t"b": "\\u003cx \\u0026 y\\u003e",\n\t"a": "é"\n}'),
    ({"k<>": ["\u2028", "\u2029", "\n\t\"\\"]}, '{"k\\u003c\\u003e":["\\u2028","\\u2029","\\n\\t\\"\\\\"]}',
     '{\n\t"k\\u003c\\u003e": [\n\t\t"\\u2028",\n\t\t"\\u2029",\n\t\t"\\n\\t\\"\\\\"\n\t]\n}'),
    ({"empty": {}, "list": [], "none": None, "n": 1, "t": True}, '{"empty":{},"list":[],"none":null,"n":1,"t":true}',
     '{\n\t"empty": {},\n\t"list": [],\n\t"none": null,\n\t"n": 1,\n\t"t": true\n}'),
    (None, "null", "null"),
    ("\x01 \U0001f600", '"\\u0001 \U0001f600"', '"\\u0001 \U0001f600"'),
]


@pytest.mark.parametrize("value,compact,indented", GOLDEN)
def test_marshal_writes_what_go_writes(value, compact, indented):
    assert marshal(value) == compact
    assert marshal_indent(value) == indented
    assert json.loads(compact) == value  # the escapes are plain JSON: any reader gets the value back


def test_sort_keys_orders_every_object_as_go_orders_a_map():
    value = {"z": {"b": 1, "a": 2}, "a": "&"}
    assert marshal(value, sort_keys=True) == '{"a":"\\u0026","z":{"a":2,"b":1}}'
    assert marshal(value) == '{"z":{"b":1,"a":2},"a":"\\u0026"}'  # dict order kept: a Go struct's field order


def test_indent_may_be_spaces():
    assert marshal_indent({"a": [1]}, 2) == '{\n  "a": [\n    1\n  ]\n}'
    assert marshal_indent({"a": [1]}, "  ") == marshal_indent({"a": [1]}, 2)
