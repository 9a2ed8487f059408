"""The usual volume of a model segment: the median of its recent windows.

A ``volume_drop`` rule compares a window's predictions with a fraction of the
usual volume, so it needs history that the engine keeps per model, version
and segment: the last ``size`` windows' volumes, ordered by window start.

The baseline of a window is the median of the recorded windows that *start
before it* (never the window itself), and it is stored with the window, so a
window observed again (a replay after a restart) gets the same baseline as the
first time even though newer windows have been recorded since. A window older
than every retained one, once the history is full, is too old to judge and
gets no baseline.
"""

from __future__ import annotations

import statistics
from bisect import insort
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alerts.errors import AlertError

DEFAULT_SIZE = 24
"""Windows kept per model segment (a day of hourly windows)."""

DEFAULT_MIN_WINDOWS = 12
"""Fewest earlier windows before a baseline exists (no volume alert until then)."""


@dataclass(frozen=True)
class VolumeBaseline:
    """The usual volume before a window.

    Attributes
    ----------
    median
        Median predictions per window over ``windows`` earlier windows.
    windows
        How many windows the median is over.
    """

    median: float
    windows: int


@dataclass
class _Entry:
    predictions: int
    baseline: VolumeBaseline | None


class VolumeHistory:
    """Recent window volumes per (model, version, segment).

    Parameters
    ----------
    size
        Windows kept per model segment (>= 1).
    min_windows
        Earlier windows needed for a baseline, in [1, size].

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> history = VolumeHistory(size=4, min_windows=3)
    >>> start = datetime(2026, 11, 23, tzinfo=UTC)
    >>> hours = [start + timedelta(hours=h) for h in range(5)]
    >>> [history.observe("churn", "3", "all", hour, n)
    ...  for hour, n in zip(hours, [1000, 1200, 900, 400, 1100])][2:]
    [None, VolumeBaseline(median=1000.0, windows=3), VolumeBaseline(median=950.0, windows=4)]
    """

    def __init__(self, size: int = DEFAULT_SIZE, min_windows: int = DEFAULT_MIN_WINDOWS) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise AlertError(f"volume history size must be an integer >= 1 (got {size!r})")
        if (
            isinstance(min_windows, bool)
            or not isinstance(min_windows, int)
            or not 1 <= min_windows <= size
        ):
            raise AlertError(
                f"volume min_windows must be an integer in [1, size={size}] (got {min_windows!r})"
            )
        self.size = size
        self.min_windows = min_windows
        self._series: dict[tuple[str, str, str], dict[datetime, _Entry]] = {}
        self._order: dict[tuple[str, str, str], list[datetime]] = {}

    def observe(
        self,
        model_id: str,
        model_version: str,
        segment: str,
        window_start: datetime,
        predictions: int,
    ) -> VolumeBaseline | None:
        """Record a window's volume and return its baseline (None: not enough history)."""
        series_key = (model_id, model_version, segment)
        entries = self._series.setdefault(series_key, {})
        order = self._order.setdefault(series_key, [])
        known = entries.get(window_start)
        if known is not None:
            known.predictions = predictions
            return known.baseline
        if len(order) >= self.size and window_start < order[0]:
            return None
        earlier = [entries[start].predictions for start in order if start < window_start]
        earlier = earlier[-self.size :]
        baseline = None
        if len(earlier) >= self.min_windows:
            baseline = VolumeBaseline(float(statistics.median(earlier)), len(earlier))
        entries[window_start] = _Entry(predictions, baseline)
        insort(order, window_start)
        while len(order) > self.size:
            del entries[order.pop(0)]
        return baseline

    def silent(self, model_id: str, model_version: str, window_start: datetime) -> list[str]:
        """Segments of a model version with no window at ``window_start`` that usually have one.

        A segment qualifies when its latest recorded window is earlier, it has
        ``min_windows`` windows recorded and their median volume is above
        zero (a segment long gone stops qualifying once its history is zeros).
        """
        segments = []
        for (model, version, segment), order in self._order.items():
            if model != model_id or version != model_version or not order:
                continue
            if order[-1] >= window_start or len(order) < self.min_windows:
                continue
            entries = self._series[(model, version, segment)]
            if statistics.median(entries[start].predictions for start in order) > 0:
                segments.append(segment)
        return sorted(segments)

    def to_list(self) -> list[Any]:
        """JSON-ready form (see :meth:`from_list`)."""
        return [
            [
                *series_key,
                [
                    [
                        start.isoformat(),
                        self._series[series_key][start].predictions,
                        _baseline_list(self._series[series_key][start].baseline),
                    ]
                    for start in order
                ],
            ]
            for series_key, order in sorted(self._order.items())
        ]

    def load(self, data: Any) -> None:
        """Replace the history with what :meth:`to_list` wrote."""
        series: dict[tuple[str, str, str], dict[datetime, _Entry]] = {}
        orders: dict[tuple[str, str, str], list[datetime]] = {}
        try:
            for model_id, model_version, segment, windows in data:
                series_key = (str(model_id), str(model_version), str(segment))
                entries: dict[datetime, _Entry] = {}
                for start, predictions, baseline in windows:
                    entries[datetime.fromisoformat(start)] = _Entry(
                        int(predictions), _baseline_from(baseline)
                    )
                order = sorted(entries)[-self.size :]
                series[series_key] = {start: entries[start] for start in order}
                orders[series_key] = order
        except (TypeError, ValueError) as error:
            raise AlertError(f"snapshot volume history is malformed: {error}") from None
        self._series = series
        self._order = orders

    def windows(self, model_id: str, model_version: str, segment: str) -> Mapping[datetime, int]:
        """The retained volumes of one model segment, oldest first."""
        series_key = (model_id, model_version, segment)
        entries = self._series.get(series_key, {})
        return {start: entries[start].predictions for start in self._order.get(series_key, [])}


def _baseline_list(baseline: VolumeBaseline | None) -> list[float] | None:
    return None if baseline is None else [baseline.median, baseline.windows]


def _baseline_from(data: Any) -> VolumeBaseline | None:
    if data is None:
        return None
    median, windows = data
    return VolumeBaseline(float(median), int(windows))
