"""Bounds on what an input event may contain.

The limits protect a worker from messages whose parsing or storage cost grows
without bound: one huge string, a hundred thousand features, a megabyte-long
identifier. They are checked before (size) and during (counts, lengths)
validation, and every rejection names the limit it broke.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class InputLimits(BaseModel):
    """Upper bounds applied to every prediction and label event.

    Parameters
    ----------
    max_message_bytes
        Largest encoded event accepted, in bytes; larger messages are rejected
        before they are parsed.
    max_id_length
        Longest ``prediction_id``, ``model_id`` or ``model_version``.
    max_features
        Most entries in ``features`` (and in ``scores``).
    max_name_length
        Longest feature, score or segment name.
    max_string_length
        Longest string value of a feature, segment or label.
    max_segments
        Most entries in ``segment``.

    Examples
    --------
    >>> InputLimits().max_features
    2000
    >>> InputLimits(max_features=0)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for InputLimits
    max_features
      Input should be greater than or equal to 1 ...
        ...
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_message_bytes: int = Field(default=1_048_576, ge=64)
    max_id_length: int = Field(default=256, ge=1)
    max_features: int = Field(default=2000, ge=1)
    max_name_length: int = Field(default=256, ge=1)
    max_string_length: int = Field(default=1024, ge=1)
    max_segments: int = Field(default=16, ge=1)


DEFAULT_LIMITS = InputLimits()
