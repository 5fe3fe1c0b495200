"""Go's string rules, as Apptainer's parser applies them, for Python strings.

Apptainer's parser is Go code working on UTF-8 bytes, and its behaviour depends on
Go's notion of white space and case. Python's differs in small ways (``str.split()``
treats ``\\x1c``-``\\x1f`` as space; ``"İ".lower()`` is two characters), so the parser
uses these helpers instead of the ``str`` methods.

Text is decoded with ``surrogateescape``: bytes that are not UTF-8 become lone
surrogates, which, like Go's ``utf8.RuneError``, are not space, and ``to_bytes``
gives the original bytes back.
"""

from __future__ import annotations

__all__ = [
    "GO_SPACE",
    "from_bytes",
    "to_bytes",
    "trim_space",
    "trim_left_space",
    "fields",
    "lower",
    "is_space",
    "json_text",
]

# unicode.IsSpace: the Latin-1 spaces, then the White_Space property above U+00FF.
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + (
    "\u2028\u2029\u202f\u205f\u3000"
)
_SPACE_SET = frozenset(GO_SPACE)


def from_bytes(data: bytes) -> str:
    """Decode recipe bytes losslessly (invalid UTF-8 kept as surrogate escapes)."""
    return data.decode("utf-8", "surrogateescape")


def to_bytes(text: str) -> bytes:
    """The original bytes of text made by ``from_bytes``."""
    return text.encode("utf-8", "surrogateescape")


def is_space(char: str) -> bool:
    return char in _SPACE_SET


def trim_space(text: str) -> str:
    """``strings.TrimSpace``."""
    return text.strip(GO_SPACE)


def trim_left_space(text: str) -> str:
    return text.lstrip(GO_SPACE)


def fields(text: str) -> list[str]:
    """``strings.Fields``: split on runs of Go white space, dropping empty fields."""
    out: list[str] = []
    word: list[str] = []
    for char in text:
        if char in _SPACE_SET:
            if word:
                out.append("".join(word))
                word = []
        else:
            word.append(char)
    if word:
        out.append("".join(word))
    return out


def lower(text: str) -> str:
    """``strings.ToLower``: one rune in, one rune out (``unicode.ToLower``)."""
    if text.isascii():
        return text.lower()
    out = []
    for char in text:
        low = char.lower()
        if len(low) != 1:
            low = "i" if char == "\u0130" else char
        out.append(low)
    return "".join(out)


def json_text(text: str) -> str:
    """The string Go's ``encoding/json`` would emit for these bytes (invalid UTF-8 → U+FFFD)."""
    if text.isascii():
        return text
    return to_bytes(text).decode("utf-8", "replace")
