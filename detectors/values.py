"""Turning a batch of raw feature values into what the sketches count.

Numeric values become a float64 array of the finite values plus a count of the
missing ones. A value is *missing* when it is ``None``, NaN or infinite: an
infinite feature value is almost always a bug upstream (a division by zero), it
has no place among the reference's quantiles, and counting it as missing makes
it show up in the ``missing_rate`` data-quality series rather than silently
shifting a distribution.

Categorical values are compared by a canonical string key so that the same
category written by different producers (``true`` in JSON, ``True`` from
Python, ``"true"`` from a CSV file; ``3`` and ``3.0``) is one category:

- ``str`` is its own key;
- ``bool`` becomes ``"true"`` / ``"false"``;
- an integer, or a float with an integral value, becomes its decimal digits
  (``3``, ``3.0`` → ``"3"``); other floats their shortest repr (``"2.5"``);
- ``None``, NaN and infinities are missing.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.errors import DetectorError

CategoryValues = Sequence[object] | NDArray[Any]
"""A batch of categorical values: a list (any objects) or a numpy array."""

NumericValues = ArrayLike | Sequence[float | None]
"""A batch of numeric values: an array, or a list where None is a missing value."""


def _float_or_nan(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.nan


def numeric_values(values: NumericValues) -> tuple[NDArray[np.float64], int]:
    """Split a batch into its finite values and the number of missing ones.

    Parameters
    ----------
    values
        Numbers; ``None``, NaN and ±inf are missing.

    Returns
    -------
    tuple
        The finite values (float64, original order) and the missing count.

    Examples
    --------
    >>> finite, missing = numeric_values([1.5, None, float("nan"), 3, float("inf")])
    >>> finite.tolist(), missing
    ([1.5, 3.0], 3)
    """
    try:
        try:
            array = np.asarray(values, dtype=np.float64).reshape(-1)
        except OverflowError:  # an integer beyond the floats: missing, as infinities are
            numbers = [_float_or_nan(value) for value in values]  # type: ignore[union-attr]
            array = np.array(numbers, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DetectorError(
            f"values must be numbers or missing (None/NaN); could not read them: {exc}"
        ) from None
    finite = np.isfinite(array)
    if finite.all():
        return array, 0
    return array[finite], int(array.size - np.count_nonzero(finite))


def object_array(values: CategoryValues) -> NDArray[np.object_]:
    """A flat object array of the values, each keeping its Python type.

    Examples
    --------
    >>> object_array(["a", 3, None]).tolist()
    ['a', 3, None]
    """
    if isinstance(values, np.ndarray):
        return values.reshape(-1).astype(object, copy=False)
    items = list(values)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def category_key(value: object) -> str | None:
    """The canonical key of one categorical value, or ``None`` when it is missing.

    Examples
    --------
    >>> [category_key(v) for v in ["red", True, 3, 3.0, 2.5, None, float("nan")]]
    ['red', 'true', '3', '3', '2.5', None, None]
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        number = float(value)
        if not math.isfinite(number):
            return None
        if number.is_integer():  # any size: 1e19 is the integer 10**19
            return str(int(number))
        return repr(number)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def category_counts(values: Iterable[object] | NDArray[np.generic]) -> tuple[dict[str, int], int]:
    """Count a batch of categorical values by canonical key.

    The values are counted in C (``collections.Counter``) and only the distinct
    values are canonicalised in Python, so a batch of a million values with a
    few hundred categories costs one pass.

    Returns
    -------
    tuple
        Key → count, and the number of missing values.

    Examples
    --------
    >>> category_counts(["a", "b", "a", None, True, "true"])
    ({'a': 2, 'b': 1, 'true': 2}, 1)
    """
    items = values.tolist() if isinstance(values, np.ndarray) else values
    counts: dict[str, int] = {}
    missing = 0
    counted = Counter(items)
    if (0 in counted or 1 in counted) and _bools_beside_numbers(items):
        # True == 1 and False == 0 in Python: counted apart by type, so that
        # 1 stays "1" and True "true" whichever comes first in the batch.
        by_type = Counter(zip(map(type, items), items, strict=True))
        pairs = [(value, count) for (_, value), count in by_type.items()]
    else:
        pairs = list(counted.items())
    for value, count in pairs:
        key = category_key(value)
        if key is None:
            missing += count
        else:
            counts[key] = counts.get(key, 0) + count
    return counts, missing


def _bools_beside_numbers(items: Iterable[object]) -> bool:
    """Whether booleans and numbers are both among ``items``.

    ``True == 1`` and ``hash(True) == hash(1)``, so a ``Counter`` or
    ``np.unique`` would count them as one value, keyed by whichever came
    first, though their canonical keys differ (``"true"`` and ``"1"``).
    """
    kinds = set(map(type, items))
    bools = {bool, np.bool_} & kinds
    return bool(bools) and any(issubclass(kind, int | float | np.number) for kind in kinds - bools)


def label_codes(values: CategoryValues, name: str = "labels") -> tuple[list[str], NDArray[np.intp]]:
    """Canonical keys of the distinct labels in a batch, and each label's position among them.

    Distinct values are found with ``np.unique`` (C speed) and only they are
    canonicalised, so ``1``, ``1.0`` and ``"1"`` are one class, as are ``True``
    and ``"true"``.

    Raises
    ------
    DetectorError
        When a label is missing (None or NaN), naming ``name``.

    Examples
    --------
    >>> keys, codes = label_codes(np.array([2.0, 1.0, 2.0]))
    >>> keys, codes.tolist()
    (['1', '2'], [1, 0, 1])
    """
    if isinstance(values, np.ndarray):
        array = values.reshape(-1)
    else:  # a list: keep each value's type (numpy would turn [3, "a"] into ["3", "a"])
        items: list[object] = (
            list(values)
            if isinstance(values, Iterable) and not isinstance(values, str | bytes)
            else [values]
        )
        array = np.empty(len(items), dtype=object)
        array[:] = items
    try:
        if array.dtype == object and _bools_beside_numbers(array.tolist()):
            raise TypeError("booleans beside numbers: np.unique would merge True and 1")
        distinct, inverse = np.unique(array, return_inverse=True)
        raw_keys = [category_key(value) for value in distinct.tolist()]
    except TypeError:  # mixed types that numpy cannot order: canonicalise each value
        per_value = [category_key(value) for value in array.tolist()]
        if any(key is None for key in per_value):
            raise DetectorError(f"{name} must not contain missing values (None or NaN)") from None
        distinct, inverse = np.unique(np.array(per_value, dtype=object), return_inverse=True)
        raw_keys = [str(value) for value in distinct.tolist()]
    if any(key is None for key in raw_keys):
        raise DetectorError(f"{name} must not contain missing values (None or NaN)")
    keys = sorted({key for key in raw_keys if key is not None})
    position = {key: index for index, key in enumerate(keys)}
    remap = np.array([position[key] for key in raw_keys if key is not None], dtype=np.intp)
    return keys, remap[inverse.reshape(-1)] if remap.size else np.zeros(0, dtype=np.intp)
