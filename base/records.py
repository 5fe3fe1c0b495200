"""Immutable records without dataclasses.

``dataclasses`` pulls in ``inspect``, ``re`` and ``enum`` (15-18 ms); the modules on the
runtime's launch path (errors, image probing, SIF descriptors) use this base instead. A
subclass names its fields once, as ``__slots__ = _fields = (...)``, and its ``__init__``
calls ``self._set(...)``; equality, hash, repr, ``replace`` and pickling then behave like a
frozen dataclass's.
"""

from __future__ import annotations

__all__ = ["Frozen"]


class Frozen:
    """Base of an immutable record: ``_fields`` (also its ``__slots__``) set once by
    ``__init__`` through ``_set``; equality, hash, repr and copying as a frozen dataclass."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def _set(self, *values: object) -> None:
        for name, value in zip(self._fields, values):
            object.__setattr__(self, name, value)

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._fields)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({inner})"

    def __reduce__(self) -> tuple:
        return type(self), self._values()

    def replace(self, **changes: object):  # noqa: ANN201 - same type as self
        """A copy with some fields changed (``dataclasses.replace``)."""
        values = dict(zip(self._fields, self._values()))
        values.update(changes)
        return type(self)(**values)

