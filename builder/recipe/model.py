"""The recipe model: what a definition file says, stage by stage, losing nothing.

A ``Recipe`` is the file's bytes cut into chunks at each ``Bootstrap:`` line (Apptainer's
stage split). Each chunk that holds a stage is parsed into a ``Stage``; a stage keeps its
scanner tokens (every line as written, with its number), so ``Recipe.to_bytes()`` gives
the file back byte for byte. On top of that each stage carries Apptainer's merged view
(header map, scripts, labels, ``%files`` blocks, app sections) that the build uses and that
``sbuild check --json`` prints.

Line numbers are 1-based and refer to the file, not to the stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from base.errors import Diagnostic
from builder.recipe.scan import Token

__all__ = [
    "Script",
    "FileTransfer",
    "FilesBlock",
    "HeaderEntry",
    "Section",
    "Stage",
    "Chunk",
    "Recipe",
    "STANDARD_SECTIONS",
    "APP_SECTIONS",
    "HEADER_KEYS",
]

# validSections in Apptainer's parser, in the order of its JSON output's scripts.
STANDARD_SECTIONS = (
    "help", "setup", "files", "labels", "environment", "pre", "post",
    "runscript", "test", "startscript", "arguments",
)
APP_SECTIONS = (
    "appinstall", "applabels", "appfiles", "appenv", "apptest", "apphelp", "apprun", "appstart",
)
HEADER_KEYS = (
    "bootstrap", "from", "includecmd", "mirrorurl", "updateurl", "osversion", "include",
    "library", "registry", "namespace", "stage", "product", "user", "regcode", "productpgp",
    "registerurl", "modules", "otherurl&n", "fingerprints", "confurl", "setopt", "target",
    "frontend", "filename", "buildargs",
)


@dataclass
class Script:
    args: str = ""
    script: str = ""


@dataclass(frozen=True)
class FileTransfer:
    source: str
    destination: str  # "" when the line names only a source
    line: int


@dataclass
class FilesBlock:
    """All ``%files`` sections with the same argument string, merged in order."""

    args: str
    files: list[FileTransfer]
    line: int  # the first section's line


@dataclass(frozen=True)
class HeaderEntry:
    key: str  # lower-cased
    value: str
    line: int  # the line the key is on (a continued value ends further down)
    column: int


@dataclass(frozen=True)
class Section:
    """One section as written: ``%name args`` and the lines below it."""

    key: str  # Apptainer's key: "post", or "<word> <app>" for app sections
    name: str  # the lower-cased section word, e.g. "post" or "apprun"
    args: str | None  # text after the first space of the section line; None without one
    app: str | None
    token: Token
    body: str  # the body as Apptainer stores it
    line: int
    end_line: int


@dataclass
class Stage:
    raw: str  # this stage's text as parsed (after templating when templated)
    first_line: int  # line number of the stage's first line in the file
    tokens: list[Token]
    header: dict[str, str] | None
    header_entries: list[HeaderEntry]
    sections: list[Section]
    scripts: dict[str, Script]
    labels: dict[str, str]
    files: list[FilesBlock]
    custom_data: dict[str, str] | None
    app_order: list[str]
    warnings: list[Diagnostic] = field(default_factory=list)
    path: str = "<recipe>"  # the recipe file (or the URI a one-stage recipe was made from)

    @property
    def name(self) -> str:
        """The ``Stage:`` header value ("" when unnamed), used by ``%files from``."""
        return (self.header or {}).get("stage", "")

    @property
    def bootstrap(self) -> str:
        return (self.header or {}).get("bootstrap", "")

    @property
    def line(self) -> int:
        """The line the stage's header starts on (its first header entry), else its first line."""
        return self.header_entries[0].line if self.header_entries else self.first_line

    def locate(self, message: str, *, key: str | None = None, hint: str | None = None) -> Diagnostic:
        """``message`` at ``path:line:1``: the line of header ``key``, or where the header starts."""
        return Diagnostic(self.path, self.header_line(key) if key else self.line, 1, message, hint=hint)

    def header_line(self, key: str) -> int:
        """The line of the last ``key:`` entry (the one that counts), or the stage's first line."""
        for entry in reversed(self.header_entries):
            if entry.key == key:
                return entry.line
        return self.first_line

    def section(self, name: str) -> Section | None:
        """The first occurrence of a standard section, for locating messages."""
        return next((s for s in self.sections if s.key == name), None)

    def text(self) -> str:
        """The stage's text rebuilt from its tokens (equal to ``raw``)."""
        return "".join(line.text for token in self.tokens for line in token.lines)


@dataclass
class Chunk:
    """A piece of the file between two ``Bootstrap:`` lines (the first may have none)."""

    text: str
    first_line: int
    stage: Stage | None  # None when the chunk holds no stage (comments, blank lines)


@dataclass
class Recipe:
    path: str
    data: bytes  # the file as read
    chunks: list[Chunk]  # the untemplated parse, losslessly
    stages: list[Stage]  # the stages as built: templated and parsed again
    full_raw: bytes  # what the image stores as /.singularity.d/Singularity
    build_args: dict[str, str] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """The file rebuilt from the parsed chunks: equal to ``data``."""
        from builder.recipe.gostr import to_bytes

        parts = []
        for chunk in self.chunks:
            parts.append(chunk.stage.text() if chunk.stage is not None else chunk.text)
        return to_bytes("".join(parts))

    @property
    def final(self) -> Stage:
        """The stage that is assembled into the image (the last one)."""
        return self.stages[-1]
