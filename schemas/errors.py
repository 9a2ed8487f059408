"""Errors raised by :mod:`schemas`, with messages that name the bad field.

pydantic reports a location as a tuple such as ``("models", 0, "features", 3,
"kind")``; driftline prints it as ``models[0].features[3].kind`` followed by
what would have been valid, so a user can find the key in their file at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: where it is and what is wrong.

    Examples
    --------
    >>> str(FieldError("models[0].task", "must be one of binary, multiclass, regression"))
    'models[0].task: must be one of binary, multiclass, regression'
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SchemaError(ValueError):
    """Base class of every error raised by :mod:`schemas`.

    Parameters
    ----------
    errors
        The problems found, each naming its field.
    """

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        super().__init__("; ".join(str(error) for error in self.errors))

    @property
    def reason(self) -> str:
        """All problems on one line, as stored in a dead letter."""
        return str(self)


class InvalidEvent(SchemaError):
    """An input event broke a rule of its schema (type, bound, timezone, size)."""


class ConfigError(SchemaError):
    """A monitor configuration or a process setting is invalid."""


def format_location(loc: Iterable[int | str]) -> str:
    """Render a pydantic location tuple as a key path.

    Examples
    --------
    >>> format_location(("models", 0, "features", 3, "kind"))
    'models[0].features[3].kind'
    >>> format_location(())
    ''
    """
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _message(error: Any) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    received = error.get("input")
    if kind == "literal_error" and "expected" in ctx:
        expected = str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
        return f"must be one of {expected} (got {received!r})"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known key (check the spelling)"
    message = str(error.get("msg", "is invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def describe_validation_error(
    exc: ValidationError, prefix: Sequence[int | str] = ()
) -> list[FieldError]:
    """Turn a pydantic error into :class:`FieldError` items with key paths.

    Parameters
    ----------
    exc
        The error raised by pydantic.
    prefix
        Location prepended to every path (for models nested in a larger file).

    Returns
    -------
    list of FieldError
        One item per problem, in pydantic's order.
    """
    described: list[FieldError] = []
    for error in exc.errors(include_url=False):
        described.append(FieldError(format_location([*prefix, *error["loc"]]), _message(error)))
    return described
