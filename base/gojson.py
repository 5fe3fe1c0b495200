"""JSON text as Go's ``encoding/json`` writes it, for files and objects Apptainer tools read.

``marshal(value)`` is ``json.Marshal``: compact (``,`` and ``:`` without spaces).
``marshal_indent(value, indent)`` is ``json.MarshalIndent(value, "", indent)``: one member
a line, ``": "`` after a key, ``indent`` (a string, or a number of spaces) per level.

Both write UTF-8 as is (no ``\\uXXXX`` for non-ASCII) except the characters Go escapes by
default for HTML safety: ``<``, ``>``, ``&`` and U+2028, U+2029 become ``\\u003c``,
``\\u003e``, ``\\u0026``, ``\\u2028``, ``\\u2029``. Dict order is kept, so a caller lays out a
Go struct by building the dict in field order; ``sort_keys=True`` sorts every object's
keys, as Go does for a map.

``unmarshal(data)`` is ``json.loads`` that fails as ``json.Unmarshal`` does on nesting too
deep for it: a ``ValueError`` (Go refuses past 10000 levels; Python's decoder recurses per
level and would raise ``RecursionError``, so the limit here is Python's recursion limit,
about 1000 levels — no image config or manifest comes near).

Limits: Python's ``json`` decides the rest (control characters as ``\\uXXXX`` or the short
``\\n``/``\\t`` forms, floats by ``repr``); strings must be valid Unicode (no lone surrogates:
Go would write U+FFFD). Only the standard library is imported.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["marshal", "marshal_indent", "unmarshal"]

_HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                            "\u2028": "\\u2028", "\u2029": "\\u2029"})


def marshal(value: Any, *, sort_keys: bool = False) -> str:
    """``value`` as Go's ``json.Marshal`` writes it (compact)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    return text.translate(_HTML_SAFE)


def marshal_indent(value: Any, indent: str | int = "\t", *, sort_keys: bool = False) -> str:
    """``value`` as Go's ``json.MarshalIndent(value, "", indent)`` writes it."""
    text = json.dumps(value, ensure_ascii=False, indent=indent, separators=(",", ": "), sort_keys=sort_keys)
    return text.translate(_HTML_SAFE)


def unmarshal(data: str | bytes | bytearray) -> Any:
    """``json.loads(data)``; nesting too deep to decode is a ``ValueError`` too."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply (more levels than can be decoded)") from None
