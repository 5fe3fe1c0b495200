"""The exceptions sbuild raises, one root and one subclass per failure mode.

Library code raises these and never prints or exits; ``builder.cli`` is the one place
that turns them into a message and an exit status. Each carries structured context
(path, line, column, section, exit code, hint) so that the message can say exactly what
failed and what to do about it.

Exit statuses (the command-line contract in DESIGN.md):
    1  a build or run failed (``BuildError``, ``RunError``)
    2  usage, recipe or input errors (``UsageError``, ``RecipeError``, ``ImageError``)
    3  a host capability is missing (``CapabilityError``)
"""

from __future__ import annotations

from base.records import Frozen

__all__ = [
    "SbuildError",
    "UsageError",
    "RecipeError",
    "Diagnostic",
    "ImageError",
    "CapabilityError",
    "BuildError",
    "RunError",
]


class SbuildError(Exception):
    """Root of every error sbuild reports to its user."""

    exit_status = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """The text shown to the user: the message, then the hint on its own line."""
        text = self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UsageError(SbuildError):
    """The command line is wrong: an unknown flag value, a missing argument."""

    exit_status = 2


class Diagnostic(Frozen):
    """One located problem in a recipe: ``path:line:column: message``."""

    __slots__ = _fields = ("path", "line", "column", "message", "hint")

    def __init__(self, path: str, line: int, column: int, message: str, hint: str | None = None) -> None:
        self._set(path, line, column, message, hint)

    def render(self, severity: str = "error") -> str:
        text = f"{self.path}:{self.line}:{self.column}: {severity}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class RecipeError(SbuildError):
    """A recipe that cannot be accepted, with every problem found and its location.

    ``diagnostics`` holds at least one entry; the first is the primary one and gives the
    exception its ``path``, ``line`` and ``column``.
    """

    exit_status = 2

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic) -> None:
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        if not diagnostics:
            raise ValueError("RecipeError needs at least one diagnostic")
        first = diagnostics[0]
        super().__init__(first.message, hint=first.hint)
        self.diagnostics = list(diagnostics)
        self.path, self.line, self.column = first.path, first.line, first.column

    def render(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)


class ImageError(SbuildError):
    """An image or sandbox that is missing, corrupt or of a kind sbuild cannot use."""

    exit_status = 2

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class CapabilityError(SbuildError):
    """The host lacks something sbuild needs: a program, a kernel feature, a permission."""

    exit_status = 3


class BuildError(SbuildError):
    """A build step failed. ``section`` and ``exit_code`` name the step and its status."""

    exit_status = 1

    def __init__(
        self,
        message: str,
        *,
        section: str | None = None,
        exit_code: int | None = None,
        line: int | None = None,
        output_tail: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.section = section
        self.exit_code = exit_code
        self.line = line
        self.output_tail = output_tail or []

    def render(self) -> str:
        text = self.message
        if self.output_tail:
            text += "\n  last lines of output:\n" + "\n".join(f"    {l}" for l in self.output_tail)
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class RunError(SbuildError):
    """Starting or running a container failed (not the command's own exit status)."""

    exit_status = 1
