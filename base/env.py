"""Apptainer's environment settings: ``APPTAINER_<NAME>``, else the legacy ``SINGULARITY_<NAME>``.

``apptainer_env("CACHEDIR", environ)`` is the value of ``$APPTAINER_CACHEDIR`` when it is set
and not empty, else that of ``$SINGULARITY_CACHEDIR`` (likewise), else ``None``: the
``APPTAINER_`` name wins, as in Apptainer, which still reads the ``SINGULARITY_`` one.
``apptainer_flag("NOHTTPS", environ)`` reads such a value as a switch: on for ``1``,
``true`` or ``yes`` (any case), off otherwise or when unset.

Each name is looked up on its own: ``DOCKER_USERNAME`` may come from one prefix and
``DOCKER_PASSWORD`` from the other, as Apptainer binds each to its flag separately.
Flags' environment twins, as Apptainer's command line reads them (``pkg/cmdline``; reference
apptainer-cli.md §2–3), for the drop-in command line:

- ``twin(keys, environ)``: the value of the first key set among ``keys`` (a flag may have
  several, e.g. ``("APP", "APPNAME")``), each tried as ``APPTAINER_<key>`` then
  ``SINGULARITY_<key>``; empty or whitespace-only values are ignored. Returns a ``Twin``
  (variable name, value, and the note Apptainer prints: an INFO line when only the legacy
  name is set, a WARNING when both are set to different values) or ``None``.
- ``appended(keys, environ)``: Apptainer's append handler (``--bind``, ``--mount``): every
  key that is set contributes its value, to go after the command line's (``MOUNT`` holds one
  mount per line); returns the values and the notes.
- ``twin_value(keys, kind, environ, convert)``: ``twin`` read as a flag of ``kind`` takes it
  (``bool``: ``parse_bool``; ``append``: one element; ``list``: comma-separated, as pflag's
  stringSlice; ``value``: the text, through ``convert`` when given): ``(value, note)`` or
  ``None``. The one reader of scalar twins for every table of flags of the command line.
- ``parse_bool(text, name)``: Go's ``strconv.ParseBool`` (``1 t T TRUE true True`` / ``0 f
  F FALSE false False``); anything else, ``yes`` included, is a ``UsageError`` saying which
  variable, as Apptainer's fatal "While parsing environment variables".

``environ`` defaults to ``os.environ``. Cheap to import (``base.lean_os`` and ``base.records`` only;
``base.errors`` on first error): ``base.cachedir`` uses it on the runtime's launch path.
"""

from __future__ import annotations

from base import lean_os as os
from base.records import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["apptainer_env", "apptainer_flag", "twin", "twin_value", "appended", "parse_bool", "Twin", "PREFIXES"]

PREFIXES = ("APPTAINER_", "SINGULARITY_")
_TRUE = ("1", "true", "yes")


def apptainer_env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``$APPTAINER_<name>``, else ``$SINGULARITY_<name>``; empty counts as unset."""
    env = os.environ if environ is None else environ
    for prefix in PREFIXES:
        value = env.get(prefix + name)
        if value:
            return value
    return None


def apptainer_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``apptainer_env(name)`` is ``1``, ``true`` or ``yes`` (in any case)."""
    return (apptainer_env(name, environ) or "").lower() in _TRUE


class Twin(Frozen):
    """A flag's value from the environment: where it came from, and what to tell the user.
    (``base.records.Frozen``, not ``typing.NamedTuple``: ``typing`` costs ~6 ms, and
    ``base.cachedir`` imports this module on the runtime's launch path.)"""

    __slots__ = _fields = ("name", "value", "note")

    def __init__(self, name: str, value: str, note: tuple[str, str] | None = None) -> None:
        # name: the variable that gave the value, e.g. SINGULARITY_BIND; note: ("info" |
        # "warning", message), as Apptainer prints it
        self._set(name, value, note)


def twin(keys: Sequence[str], environ: Mapping[str, str] | None = None) -> Twin | None:
    """The environment twin of a flag whose keys are ``keys`` (see the module docstring)."""
    env = os.environ if environ is None else environ
    for key in keys:
        new, old = (env.get(prefix + key, "") for prefix in PREFIXES)
        if new.strip():
            if old.strip() and old != new:
                return Twin(PREFIXES[0] + key, new, ("warning", f"{PREFIXES[1]}{key} and {PREFIXES[0]}{key} have "
                                                                 "different values, using the latter"))
            return Twin(PREFIXES[0] + key, new)
        if old.strip():
            return Twin(PREFIXES[1] + key, old, ("info", f"Environment variable {PREFIXES[1]}{key} is set, "
                                                          f"but {PREFIXES[0]}{key} is preferred"))
    return None


def twin_value(keys: Sequence[str], kind: str, environ: Mapping[str, str] | None = None,
               convert=None) -> tuple[object, tuple[str, str] | None] | None:  # noqa: ANN001
    """The twin of a flag of ``kind`` as its value (see the module docstring), with its note."""
    found = twin(keys, environ)
    if found is None:
        return None
    if kind == "bool":
        return parse_bool(found.value, found.name), found.note
    if kind == "append":
        return [found.value], found.note
    if kind == "list":
        return [v.strip() for v in found.value.split(",") if v.strip()], found.note
    if convert is None:
        return found.value, found.note
    try:
        return convert(found.value), found.note
    except (TypeError, ValueError) as e:
        from base.errors import UsageError

        raise UsageError(f"while parsing environment variables: {found.name}={found.value!r}: {e}") from e


def appended(keys: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """The values every key in ``keys`` adds after the command line's, and the notes to print."""
    values: list[str] = []
    notes: list[tuple[str, str]] = []
    for key in keys:
        found = twin((key,), environ)
        if found is None:
            continue
        if found.note:
            notes.append(found.note)
        values += [v for v in found.value.split("\n") if v.strip()] if key == "MOUNT" else [found.value]
    return values, notes


_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def parse_bool(text: str, name: str) -> bool:
    """``text`` as Go's ``strconv.ParseBool`` reads it; ``name``: the variable, for the error."""
    value = _BOOLS.get(text.strip())
    if value is None:
        from base.errors import UsageError

        raise UsageError(f"while parsing environment variables: {name}={text!r} is not a boolean",
                         hint="use 1, t, true, TRUE or True (or 0, f, false, FALSE, False)")
    return value
