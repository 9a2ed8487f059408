"""The exception type of :mod:`detectors` and the checks that raise it.

Every message names the parameter and the range that would have been valid, so
a bad setting in a monitor configuration is found without reading the code.
"""

from __future__ import annotations

import math
from numbers import Integral, Real


class DetectorError(ValueError):
    """A parameter or an input of a detector is outside its valid range.

    Examples
    --------
    >>> raise DetectorError("bins must be an integer >= 2 (got 1)")
    Traceback (most recent call last):
    ...
    detectors.errors.DetectorError: bins must be an integer >= 2 (got 1)
    """


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[low, high]``.

    Examples
    --------
    >>> check_int("bins", 10, 2)
    10
    >>> check_int("bins", 1, 2, 65536)
    Traceback (most recent call last):
    ...
    detectors.errors.DetectorError: bins must be an integer in [2, 65536] (got 1)
    """
    valid = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise DetectorError(f"{name} must be {valid} (got {value!r})")
    number = int(value)
    if number < low or (high is not None and number > high):
        raise DetectorError(f"{name} must be {valid} (got {number})")
    return number


def check_float(
    name: str,
    value: object,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a ``float`` if it is a finite number in the given interval.

    Examples
    --------
    >>> check_float("alpha", 0.05, 0.0, 1.0, low_open=True, high_open=True)
    0.05
    >>> check_float("alpha", 1.5, 0.0, 1.0, low_open=True, high_open=True)
    Traceback (most recent call last):
    ...
    detectors.errors.DetectorError: alpha must be a number in (0.0, 1.0) (got 1.5)
    """
    left = "(" if low_open else "["
    right = ")" if high_open or math.isinf(high) else "]"
    valid = f"a number in {left}{low}, {high}{right}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise DetectorError(f"{name} must be {valid} (got {value!r})")
    number = float(value)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if not math.isfinite(number) or too_low or too_high:
        raise DetectorError(f"{name} must be {valid} (got {number!r})")
    return number
