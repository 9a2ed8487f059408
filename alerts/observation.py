"""What the stream knows about one window of one model version and segment.

The stream sends an observation when a drift window closes (drift, data
quality and volume parts) and each time a window's performance is
re-evaluated as labels join (performance part). An observation may carry any
subset of the parts; each rule reads only the parts it needs and ignores an
observation without them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from alerts.errors import AlertError
from detectors.multiple_testing import DatasetDriftDecision
from detectors.performance import PerformanceResult
from detectors.quality import DataQualityResult
from detectors.result import DriftResult

PARTS: tuple[str, ...] = (
    "feature_drift",
    "prediction_drift",
    "dataset_drift",
    "performance",
    "data_quality",
    "volume",
    "change_points",
)
"""Names of the optional parts, as :attr:`WindowObservation.parts` reports them."""


@dataclass(frozen=True)
class ChangePoints:
    """What the change detector found inside a window (the ``change_points`` point).

    Attributes
    ----------
    detector
        The river detector (``adwin``, ``page_hinkley``, ``ddm``, ``eddm``).
    detections
        Times it signalled over the window.
    first_at_s
        Seconds from the window's start to the end of the slice of the first
        signal; −1 without one.
    n_labelled
        Joined predictions it read.
    """

    detector: str
    detections: int
    first_at_s: float
    n_labelled: int


def _utc(name: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise AlertError(f"{name} must be a timezone-aware datetime (got {value!r})")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class WindowObservation:
    """The numbers of one window that rules are evaluated on.

    Attributes
    ----------
    model_id, model_version, segment
        Whose window it is (``segment`` as :func:`schemas.outputs.segment_key`
        writes it, ``"all"`` for the whole model version).
    window_start, window_end
        The window, timezone-aware (normalised to UTC).
    feature_drift
        Feature → method → drift result.
    prediction_drift
        Method → drift result on the prediction (or score).
    dataset_drift
        The window's multiple-testing decision across features.
    performance
        Metric → performance result; with ``coverage`` (labelled / predicted,
        None when unknown) and ``is_final`` (no more labels will join).
    data_quality
        Feature → data-quality rates.
    predictions
        The window's volume (on-time predictions), None when not known.
    change_points
        What the change detector found in the window's errors (with
        ``performance``), None when it does not run.
    baseline
        Metric → reference value (from the reference profile; the engine lays
        the configuration's ``performance.baseline`` over it).

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> from detectors.performance import PerformanceResult
    >>> observation = WindowObservation(
    ...     "churn", "3", "all",
    ...     datetime(2026, 11, 23, 10, tzinfo=UTC), datetime(2026, 11, 23, 11, tzinfo=UTC),
    ...     performance={"accuracy": PerformanceResult("accuracy", 0.81, 900)},
    ...     coverage=0.6, baseline={"accuracy": 0.9},
    ... )
    >>> sorted(observation.parts)
    ['performance']
    >>> WindowObservation("churn", "3", "all", observation.window_end, observation.window_start)
    Traceback (most recent call last):
    ...
    alerts.errors.AlertError: window_end (2026-11-23T10:00:00+00:00) must be after window_start ...
    """

    model_id: str
    model_version: str
    segment: str
    window_start: datetime
    window_end: datetime
    feature_drift: Mapping[str, Mapping[str, DriftResult]] | None = None
    prediction_drift: Mapping[str, DriftResult] | None = None
    dataset_drift: DatasetDriftDecision | None = None
    performance: Mapping[str, PerformanceResult] | None = None
    coverage: float | None = None
    is_final: bool = False
    data_quality: Mapping[str, DataQualityResult] | None = None
    predictions: int | None = None
    baseline: Mapping[str, float] = field(default_factory=dict)
    change_points: ChangePoints | None = None

    def __post_init__(self) -> None:
        for name in ("model_id", "model_version", "segment"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise AlertError(f"{name} must be a non-empty string (got {value!r})")
        start = _utc("window_start", self.window_start)
        end = _utc("window_end", self.window_end)
        if end <= start:
            raise AlertError(
                f"window_end ({end.isoformat()}) must be after window_start ({start.isoformat()})"
            )
        object.__setattr__(self, "window_start", start)
        object.__setattr__(self, "window_end", end)
        if self.coverage is not None and not (
            isinstance(self.coverage, int | float) and 0.0 <= self.coverage <= 1.0
        ):
            raise AlertError(f"coverage must be a number in [0, 1] or None (got {self.coverage!r})")
        if self.predictions is not None and (
            isinstance(self.predictions, bool)
            or not isinstance(self.predictions, int)
            or self.predictions < 0
        ):
            raise AlertError(
                f"predictions must be an integer >= 0 or None (got {self.predictions!r})"
            )
        for metric, value in self.baseline.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise AlertError(f"baseline[{metric!r}] must be a number (got {value!r})")
            if not math.isfinite(value):
                raise AlertError(f"baseline[{metric!r}] must be finite (got {value!r})")

    @property
    def parts(self) -> frozenset[str]:
        """The optional parts this observation carries (names from :data:`PARTS`)."""
        present = {
            "feature_drift": self.feature_drift is not None,
            "prediction_drift": self.prediction_drift is not None,
            "dataset_drift": self.dataset_drift is not None,
            "performance": self.performance is not None,
            "data_quality": self.data_quality is not None,
            "volume": self.predictions is not None,
            "change_points": self.change_points is not None,
        }
        return frozenset(name for name, here in present.items() if here)

    def with_baseline(self, overrides: Mapping[str, float]) -> WindowObservation:
        """A copy whose baseline has ``overrides`` laid over the observation's own.

        Examples
        --------
        >>> from datetime import UTC, datetime
        >>> start = datetime(2026, 11, 23, 10, tzinfo=UTC)
        >>> observation = WindowObservation(
        ...     "churn", "3", "all", start, start.replace(hour=11),
        ...     baseline={"accuracy": 0.9, "f1": 0.7},
        ... )
        >>> dict(observation.with_baseline({"accuracy": 0.88}).baseline)
        {'accuracy': 0.88, 'f1': 0.7}
        """
        if not overrides:
            return self
        return replace(self, baseline={**self.baseline, **overrides})
