"""The identity of one alert: rule, model, version, segment and feature.

An alert is a state machine per key, so one problem produces one notification
however many windows it lasts. The id of one *occurrence* (from firing to
resolution) is a digest of the key and the window in which it fired, so a
replay of the same windows produces the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alerts.errors import AlertError


@dataclass(frozen=True)
class AlertKey:
    """Rule + model + version + segment + feature (None when not per feature).

    Examples
    --------
    >>> key = AlertKey("feature-drift", "churn", "3", "region=eu", "tenure")
    >>> AlertKey.from_list(key.to_list()) == key
    True
    >>> from datetime import UTC, datetime
    >>> key.alert_id(datetime(2026, 11, 23, 10, tzinfo=UTC))
    'a1df83a5036b7f893446d68bd0fc34a9'
    """

    rule: str
    model_id: str
    model_version: str
    segment: str
    feature: str | None = None

    def to_list(self) -> list[str | None]:
        """JSON-ready form (see :meth:`from_list`)."""
        return [self.rule, self.model_id, self.model_version, self.segment, self.feature]

    @classmethod
    def from_list(cls, data: Sequence[Any]) -> AlertKey:
        """Inverse of :meth:`to_list`; raises :class:`AlertError` on a malformed entry."""
        if (
            len(data) != 5
            or not all(isinstance(part, str) and part for part in data[:4])
            or not (data[4] is None or isinstance(data[4], str))
        ):
            raise AlertError(
                f"alert key must be [rule, model_id, model_version, segment, feature|null] "
                f"(got {list(data)!r})"
            )
        return cls(data[0], data[1], data[2], data[3], data[4])

    def sort_key(self) -> tuple[str, str, str, str, str]:
        """A total order over keys (the feature None sorts first)."""
        return (self.rule, self.model_id, self.model_version, self.segment, self.feature or "")

    def alert_id(self, fired_window_start: datetime) -> str:
        """Stable id of the occurrence that fired in the window starting at ``fired_window_start``.

        32 hex digits of a SHA-256 over the key and the window start, so the
        same windows replayed after a restart give the same id.
        """
        feature = "\x00" if self.feature is None else self.feature
        parts = [self.rule, self.model_id, self.model_version, self.segment, feature]
        parts.append(fired_window_start.isoformat())
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
