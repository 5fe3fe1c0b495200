"""Split one build stage's text into its header and section tokens, as Apptainer's scanner does.

The line structure comes from the lark grammar ``grammar/recipe.lark`` (compiled once per
process, and cached between processes in sbuild's cache directory (base.cachedir)). Each line keeps its original text
(with ``\\r\\n`` and all) for the lossless model; ``go`` gives the line as Go's
``bufio.ScanLines`` sees it: one trailing ``\\r`` removed and ``\\n`` appended.

Go's ``bufio.Scanner`` refuses a token (a header, or a section together with the line that
ends it) that does not fit its 64 KiB buffer; ``token_too_long`` replays the scanner's
buffer arithmetic to find the token it would refuse.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass

import lark
from lark import Lark, Transformer
from lark.exceptions import LarkError

from grammar import grammar_text

__all__ = ["Line", "Token", "scan", "token_too_long", "MAX_TOKEN"]

MAX_TOKEN = 64 * 1024  # bufio.MaxScanTokenSize


@dataclass(frozen=True)
class Line:
    text: str  # the line as written, with its newline (if any)
    number: int  # 1-based line number within the scanned text
    size: int  # its length in bytes

    @property
    def go(self) -> str:
        """The line as Apptainer's scanner stores it: one ``\\r`` dropped, ``\\n`` added."""
        body = self.text[:-1] if self.text.endswith("\n") else self.text
        if body.endswith("\r"):
            body = body[:-1]
        return body + "\n"


@dataclass(frozen=True)
class Token:
    """A header (``section=False``) or a section: its lines, the first being the section line."""

    lines: tuple[Line, ...]
    section: bool

    @property
    def go(self) -> str:
        return "".join(line.go for line in self.lines)


class _Lines(Transformer):
    def __init__(self) -> None:
        super().__init__()
        self.number = 0

    def _line(self, token) -> Line:  # noqa: ANN001 - a lark Token
        text = str(token)
        return Line(text, token.line, len(text.encode("utf-8", "surrogateescape")))

    def header(self, items) -> Token:  # noqa: ANN001
        return Token(tuple(self._line(t) for t in items), section=False)

    def section(self, items) -> Token:  # noqa: ANN001
        return Token(tuple(self._line(t) for t in items), section=True)

    def start(self, items) -> list[Token]:  # noqa: ANN001
        return list(items)


def _private_cache_dir() -> str | None:
    """``grammar/`` under sbuild's cache root, if it is ours alone.

    lark's cache is a pickle: loading one from a directory others can write (such as a
    shared /tmp, lark's default) would let them run code as us, so we never do.
    """
    from base.cachedir import cache_root

    path = os.path.join(cache_root(), "grammar")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError:
        return None
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return None
    return path


@functools.cache
def _parser() -> Lark:
    """The grammar, compiled once per process and cached on disk between processes."""
    options = dict(parser="lalr", lexer="basic", maybe_placeholders=False)
    text = grammar_text()
    cache_dir = _private_cache_dir()
    if cache_dir:
        digest = hashlib.sha256(f"{text}{options}{lark.__version__}".encode()).hexdigest()[:16]
        try:
            return Lark(text, cache=os.path.join(cache_dir, f"grammar-{digest}.lark"), **options)
        except (OSError, EOFError, ValueError):  # unwritable or damaged cache: compile in memory
            pass
    return Lark(text, **options)


def scan(text: str) -> list[Token]:
    """The header token (if the text has header lines) followed by the section tokens."""
    if not text:
        return []
    try:
        tree = _parser().parse(text)
    except LarkError as e:  # the grammar accepts every text; this is a bug if it happens
        raise AssertionError(f"recipe grammar rejected its input: {e}") from e
    return _Lines().transform(tree)


def token_too_long(tokens: list[Token], total: int) -> int | None:
    """Index of the first token Go's ``bufio.Scanner`` would refuse, or None.

    A token is complete once the scanner has read the whole line that ends it (the next
    token's section line), or the end of input for the last token.
    """
    if total < MAX_TOKEN:
        return None
    start = 0
    needs: list[tuple[int, int, bool]] = []  # (start, bytes needed up to, needs EOF)
    for i, token in enumerate(tokens):
        size = sum(line.size for line in token.lines)
        if i + 1 < len(tokens):
            ender = tokens[i + 1].lines[0]
            at_eof = not ender.text.endswith("\n")
            needs.append((start, start + size + ender.size, at_eof))
        else:
            needs.append((start, start + size, True))
        start += size
    cap = base = end = 0
    eof = False
    for i, (tstart, need_end, need_eof) in enumerate(needs):
        while True:
            if (end > tstart or eof) and ((eof and need_eof) or (not need_eof and end >= need_end)):
                break
            rel_start, rel_end = tstart - base, end - base
            if rel_start > 0 and (rel_end == cap or rel_start > cap // 2):
                base = tstart
            if end - base == cap:
                if cap >= MAX_TOKEN:
                    return i
                cap = min(cap * 2 or 4096, MAX_TOKEN)
                base = tstart
            if end == total:
                eof = True
            else:
                end += min(cap - (end - base), total - end)
    return None
