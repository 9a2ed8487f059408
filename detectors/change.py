"""Change points inside a window: thin adapters over river's drift detectors.

The joined error stream (absolute error for regression, 0/1 mistakes or the
true-class score for classification) is fed to one of river's detectors:

=============  ==================================  ================================
name           river class                         input
=============  ==================================  ================================
adwin          ``river.drift.ADWIN``               real values (errors, scores)
page_hinkley   ``river.drift.PageHinkley``         real values
kswin          ``river.drift.KSWIN``               real values
ddm            ``river.drift.binary.DDM``          0/1 mistakes
eddm           ``river.drift.binary.EDDM``         0/1 mistakes
=============  ==================================  ================================

The algorithms are river's, untouched; this module checks the parameters
(naming the valid range, which river does not always do), feeds a batch
value by value (river's detectors are sequential by nature, so this is the one
per-value loop in :mod:`detectors`; it runs on the labelled stream, which is
far thinner than the prediction stream), and reports where drift was
detected. Unlike sketches, a detector's state depends on the order of the
values and does not merge: run one per partition (or per model after the
merge) and persist it with :mod:`pickle`, which river's objects support.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from river import drift
from river.drift import binary

from detectors.errors import DetectorError, check_float, check_int


def _probability(low_open: bool = True, high_open: bool = True) -> Callable[[str, object], float]:
    def check(name: str, value: object) -> float:
        return check_float(name, value, 0.0, 1.0, low_open=low_open, high_open=high_open)

    return check


def _positive_int(low: int = 1) -> Callable[[str, object], int]:
    def check(name: str, value: object) -> int:
        return check_int(name, value, low)

    return check


def _non_negative(name: str, value: object) -> float:
    return check_float(name, value, 0.0)


def _positive(name: str, value: object) -> float:
    return check_float(name, value, 0.0, low_open=True)


def _mode(name: str, value: object) -> str:
    if value not in ("up", "down", "both"):
        raise DetectorError(f"{name} must be one of up, down, both (got {value!r})")
    return str(value)


def _seed(name: str, value: object) -> int | None:
    return None if value is None else check_int(name, value, 0)


@dataclass(frozen=True)
class _Spec:
    factory: Callable[..., Any]
    binary: bool
    params: Mapping[str, Callable[[str, object], object]]


_SPECS: Mapping[str, _Spec] = {
    "adwin": _Spec(
        drift.ADWIN,
        False,
        {
            "delta": _probability(),
            "clock": _positive_int(),
            "max_buckets": _positive_int(),
            "min_window_length": _positive_int(),
            "grace_period": _positive_int(),
        },
    ),
    "page_hinkley": _Spec(
        drift.PageHinkley,
        False,
        {
            "min_instances": _positive_int(),
            "delta": _non_negative,
            "threshold": _positive,
            "alpha": _probability(high_open=False),  # 1: no forgetting, river's default
            "mode": _mode,
        },
    ),
    "kswin": _Spec(
        drift.KSWIN,
        False,
        {
            "alpha": _probability(),
            "window_size": _positive_int(2),
            "stat_size": _positive_int(),
            "seed": _seed,
        },
    ),
    "ddm": _Spec(
        binary.DDM,
        True,
        {
            "warm_start": _positive_int(),
            "warning_threshold": _positive,
            "drift_threshold": _positive,
        },
    ),
    "eddm": _Spec(
        binary.EDDM,
        True,
        {"warm_start": _positive_int(), "alpha": _probability(), "beta": _probability()},
    ),
}

KSWIN_SEED = 42
"""KSWIN's seed unless one is given."""

CHANGE_DETECTORS: tuple[str, ...] = tuple(_SPECS)
"""Names accepted by :class:`ChangeDetector`."""


class ChangeDetector:
    """One of river's drift detectors, fed with arrays.

    Parameters
    ----------
    method
        ``adwin``, ``page_hinkley``, ``kswin``, ``ddm`` or ``eddm``.
    **params
        The river detector's parameters (checked; see river's documentation).

    Examples
    --------
    >>> rng = np.random.default_rng(12)
    >>> errors = np.concatenate([rng.normal(0.2, 0.05, 1000), rng.normal(0.5, 0.05, 1000)])
    >>> detector = ChangeDetector("adwin")
    >>> detector.update(errors).tolist()
    [1055]
    >>> mistakes = np.concatenate([rng.random(1000) < 0.1, rng.random(1000) < 0.4])
    >>> ChangeDetector("ddm").update(mistakes).tolist()
    [1063]
    """

    def __init__(self, method: str, **params: Any) -> None:
        spec = _SPECS.get(method)
        if spec is None:
            raise DetectorError(
                f"method {method!r} is not a change detector; valid: {', '.join(_SPECS)}"
            )
        checked: dict[str, object] = {}
        for name, value in params.items():
            check = spec.params.get(name)
            if check is None:
                raise DetectorError(
                    f"{name!r} is not a parameter of {method}; valid: {', '.join(spec.params)}"
                )
            checked[name] = check(name, value)
        if method == "kswin":
            # KSWIN samples its reference window at random: a fixed seed by
            # default, so a replay of the same stream finds the same changes.
            checked.setdefault("seed", KSWIN_SEED)
            window_size = int(checked.get("window_size", 100))  # type: ignore[call-overload]
            stat_size = int(checked.get("stat_size", 30))  # type: ignore[call-overload]
            if stat_size >= window_size:
                raise DetectorError(
                    f"stat_size must be smaller than window_size ({window_size}, got {stat_size})"
                )
        if method == "eddm" and float(checked.get("beta", 0.9)) >= float(  # type: ignore[arg-type]
            checked.get("alpha", 0.95)  # type: ignore[arg-type]
        ):
            raise DetectorError("beta (drift level) must be smaller than alpha (warning level)")
        self.method = method
        self.params: dict[str, object] = checked
        self._binary = spec.binary
        self._detector = spec.factory(**checked)
        self.n_seen = 0
        self.n_detections = 0

    def update(self, values: ArrayLike) -> NDArray[np.int64]:
        """Feed a batch in order; positions in the batch where drift was detected.

        Add :attr:`n_seen` (read before the call) to get positions in the whole
        stream. Binary detectors take 0/1 or booleans (1 = a mistake).
        """
        array = np.asarray(values).reshape(-1)
        if self._binary:
            if array.dtype != np.bool_:
                try:
                    numbers = array.astype(np.float64)
                except (TypeError, ValueError):
                    numbers = np.full(array.size, np.nan)
                if not np.all((numbers == 0.0) | (numbers == 1.0)):
                    raise DetectorError(f"values of {self.method} must be 0/1 or booleans")
                array = numbers == 1.0
            items: list[Any] = array.tolist()
        else:
            try:
                numbers = array.astype(np.float64)
            except (TypeError, ValueError):
                raise DetectorError(f"values of {self.method} must be numbers") from None
            if not np.all(np.isfinite(numbers)):
                raise DetectorError(f"values of {self.method} must be finite numbers")
            items = numbers.tolist()
        detector = self._detector
        detected: list[int] = []
        for position, value in enumerate(items):
            detector.update(value)
            if detector.drift_detected:
                detected.append(position)
        self.n_seen += len(items)
        self.n_detections += len(detected)
        return np.array(detected, dtype=np.int64)

    @property
    def binary(self) -> bool:
        """Whether the detector reads 0/1 mistakes (DDM, EDDM) rather than real values."""
        return self._binary

    @property
    def drift_detected(self) -> bool:
        """Whether the last value fed triggered a detection."""
        return bool(self._detector.drift_detected)

    def __repr__(self) -> str:
        params = ", ".join(f"{name}={value!r}" for name, value in self.params.items())
        return f"ChangeDetector({self.method!r}{', ' if params else ''}{params})"


TIMELINE_STEPS = 60
"""Slices of a window's event time in a :class:`ErrorTimeline` (one minute of an hour)."""

VALUES_PER_STEP = 50
"""Most values a slice feeds a detector in :func:`scan_timeline`."""

STREAM_DETECTORS: tuple[str, ...] = ("adwin", "page_hinkley", "ddm", "eddm")
"""Detectors :func:`scan_timeline` runs; KSWIN's KS test per value is too slow to
rerun at every re-evaluation of a window (about 0.3 ms a value here)."""


@dataclass(frozen=True)
class ChangeScan:
    """What a detector found in one window's error timeline.

    Attributes
    ----------
    detections
        Times the detector signalled.
    first_step
        Slice (0 … ``TIMELINE_STEPS`` − 1) of the first signal; None without one.
    fed
        Values fed.
    """

    detections: int
    first_step: int | None
    fed: int


def scan_timeline(
    method: str,
    params: Mapping[str, Any],
    counts: ArrayLike,
    errors: ArrayLike,
    *,
    per_step: int = VALUES_PER_STEP,
) -> ChangeScan:
    """Run a fresh detector over a window's errors in event-time order.

    The window is cut into slices by the predictions' event time; each
    slice holds the count of joined predictions and the sum of their
    errors (0/1 mistakes, or absolute errors), which add up across batches,
    partitions and workers, so the scan is the same however the labels came.
    A slice with *n* joined predictions feeds ``m = min(n, per_step)`` values
    in order: for mistakes, ``round(m · mistakes / n)`` ones spread evenly
    among zeros; otherwise *m* times the slice's mean error.  Within a slice
    the order of the errors is not kept: that is the resolution.

    Examples
    --------
    >>> counts = [100] * 30
    >>> errors = [5] * 20 + [60] * 10  # 5 % mistakes, then 60 % from slice 20 on
    >>> scan = scan_timeline("adwin", {}, counts, errors)
    >>> scan.detections > 0, scan.first_step is not None and scan.first_step >= 20
    (True, True)
    >>> scan_timeline("adwin", {}, [100] * 30, [5] * 30).detections
    0
    """
    if method not in STREAM_DETECTORS:
        raise DetectorError(
            f"method {method!r} cannot scan a window; valid: {', '.join(STREAM_DETECTORS)}"
        )
    n = np.asarray(counts, dtype=np.int64).reshape(-1)
    total = np.asarray(errors, dtype=np.float64).reshape(-1)
    if n.shape != total.shape:
        raise DetectorError(f"counts and errors differ in length ({n.size} and {total.size})")
    detector = ChangeDetector(method, **params)
    binary = detector.binary
    detections, first, fed = 0, None, 0
    for step, (count, error) in enumerate(zip(n.tolist(), total.tolist(), strict=True)):
        if count <= 0:
            continue
        size = min(count, per_step)
        if binary:
            ones = min(size, max(0, round(size * error / count)))
            # Bresenham: the ones spread evenly among the slice's values.
            positions = np.arange(1, size + 1)
            values = (positions * ones // size) - ((positions - 1) * ones // size)
        else:
            values = np.full(size, error / count)
        found = detector.update(values)
        fed += size
        if found.size:
            detections += int(found.size)
            if first is None:
                first = step
    return ChangeScan(detections, first, fed)
