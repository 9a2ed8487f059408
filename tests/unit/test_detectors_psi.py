"""PSI from sketches against a plain computation on the raw values."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from detectors.coarse import coarse_edges
from detectors.profile import CategoricalProfile, NumericProfile
from detectors.psi import psi
from detectors.sketch import CategoricalSketch, NumericSketch


def plain_psi(
    reference: NDArray[np.float64],
    current: NDArray[np.float64],
    edges: list[float],
    epsilon: float = 1e-4,
) -> float:
    """PSI over the bins (-inf, e0], (e0, e1], …, (e_last, inf), written out."""
    bounds = [-math.inf, *edges, math.inf]
    total = 0.0
    for low, high in itertools.pairwise(bounds):
        p = float(np.count_nonzero((reference > low) & (reference <= high))) / reference.size
        q = float(np.count_nonzero((current > low) & (current <= high))) / current.size
        p, q = max(p, epsilon), max(q, epsilon)
        total += (q - p) * math.log(q / p)
    return total


Sample = Callable[[np.random.Generator, int], NDArray[np.float64]]
CASES: dict[str, tuple[Sample, Sample]] = {
    "same": (lambda rng, n: rng.normal(0, 1, n), lambda rng, n: rng.normal(0, 1, n)),
    "shift": (lambda rng, n: rng.normal(0, 1, n), lambda rng, n: rng.normal(0.4, 1, n)),
    "scale": (lambda rng, n: rng.normal(0, 1, n), lambda rng, n: rng.normal(0, 2, n)),
    "lognormal": (lambda rng, n: rng.lognormal(0, 1, n), lambda rng, n: rng.lognormal(0.2, 1, n)),
    "integers": (
        lambda rng, n: rng.integers(0, 5, n).astype(float),
        lambda rng, n: rng.integers(0, 7, n).astype(float),
    ),
    "outside": (lambda rng, n: rng.normal(0, 1, n), lambda rng, n: rng.normal(50, 1, n)),
    "zero inflated": (
        lambda rng, n: np.where(rng.random(n) < 0.5, 0.0, rng.exponential(1, n)),
        lambda rng, n: np.where(rng.random(n) < 0.2, 0.0, rng.exponential(1, n)),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("bins", [10, 4, 20])
@pytest.mark.parametrize("window", [100, 3_000])
def test_psi_equals_plain_computation(name: str, bins: int, window: int) -> None:
    rng = np.random.default_rng(len(name) * 100 + bins + window)
    reference_of, current_of = CASES[name]
    reference = reference_of(rng, 20_000)
    current = current_of(rng, window)
    profile = NumericProfile.build(reference)
    result = psi(profile, NumericSketch.empty(profile).update(current), bins=bins)
    expected = plain_psi(reference, current, coarse_edges(profile, bins).tolist())
    assert result.statistic is not None
    assert abs(result.statistic - expected) <= 1e-12
    assert result.drifted == (expected >= 0.2)


def test_categorical_psi_equals_plain_computation() -> None:
    rng = np.random.default_rng(8)
    reference = rng.choice(["a", "b", "c", "d", "e"], 5_000, p=[0.4, 0.3, 0.2, 0.07, 0.03])
    current = rng.choice(["a", "b", "c", "x"], 800, p=[0.3, 0.3, 0.3, 0.1])
    profile = CategoricalProfile.build(reference, max_categories=3)  # d, e go to "other"
    result = psi(profile, CategoricalSketch.empty(profile).update(current))
    buckets = [["a"], ["b"], ["c"], ["d", "e", "x"]]  # other (reference) ~ unseen (window)
    expected = 0.0
    for bucket in buckets:
        p = max(np.isin(reference, bucket).mean(), 1e-4)
        q = max(np.isin(current, bucket).mean(), 1e-4)
        expected += (q - p) * math.log(q / p)
    assert result.statistic is not None
    assert abs(result.statistic - expected) <= 1e-12


def test_sample_size_aware_threshold_stops_false_alarms_on_small_windows() -> None:
    rng = np.random.default_rng(21)
    profile = NumericProfile.build(rng.normal(size=100_000))
    fixed, aware = 0, 0
    windows = 300
    for _ in range(windows):
        sketch = NumericSketch.empty(profile).update(rng.normal(size=100))
        fixed += psi(profile, sketch, threshold=0.1).drifted
        result = psi(profile, sketch, threshold=0.1, sample_size_alpha=0.05)
        assert result.p_value is not None and 0.0 <= result.p_value <= 1.0
        assert result.threshold > 0.1
        aware += result.drifted
    assert fixed / windows > 0.3  # a fixed 0.1 fires on ordinary noise
    assert aware / windows <= 0.1  # about alpha


def test_sample_size_aware_threshold_keeps_the_fixed_floor_on_large_windows() -> None:
    rng = np.random.default_rng(22)
    profile = NumericProfile.build(rng.normal(size=100_000))
    sketch = NumericSketch.empty(profile).update(rng.normal(0.05, 1, size=100_000))
    result = psi(profile, sketch, sample_size_alpha=0.05)
    assert result.threshold == 0.2
    assert result.p_value is not None and result.p_value < 0.05
    assert not result.drifted  # significant but immaterial


@given(
    reference=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=200),
    current=st.lists(st.floats(-2e3, 2e3), min_size=1, max_size=200),
    bins=st.integers(2, 12),
)
@settings(max_examples=150, deadline=None)
def test_psi_is_never_negative(reference: list[float], current: list[float], bins: int) -> None:
    profile = NumericProfile.build(reference, bins=64)
    result = psi(profile, NumericSketch.empty(profile).update(current), bins=bins, min_samples=1)
    assert result.statistic is not None and result.statistic >= 0.0
    assert math.isfinite(result.statistic)


@given(current=st.lists(st.sampled_from(["a", "b", "c", "new"]), min_size=1, max_size=100))
@settings(max_examples=100, deadline=None)
def test_categorical_psi_is_never_negative(current: list[str]) -> None:
    profile = CategoricalProfile.build(["a", "b", "b", "c"])
    result = psi(profile, CategoricalSketch.empty(profile).update(current), min_samples=1)
    assert result.statistic is not None and result.statistic >= 0.0


Bin = Callable[[NDArray[np.float64]], NDArray[np.bool_]]
BELOW_AT_ABOVE_ZERO: list[Bin] = [lambda x: x < 0, lambda x: x == 0, lambda x: x > 0]


@pytest.mark.parametrize(
    ("reference", "current", "bins"),
    [
        # A constant reference (a flag always 0 in training) that moves up, or down.
        ([0.0] * 1_000, [7.0] * 500, BELOW_AT_ABOVE_ZERO),
        ([0.0] * 1_000, [-1.0] * 500, BELOW_AT_ABOVE_ZERO),
        # A binary reference whose ones become fives: in the ones' bin before.
        (
            [0.0] * 500 + [1.0] * 500,
            [0.0] * 250 + [5.0] * 250,
            [lambda x: x < 0, lambda x: x == 0, lambda x: (x > 0) & (x <= 1), lambda x: x > 1],
        ),
    ],
)
def test_values_outside_the_reference_range_are_a_shift_whatever_the_reference(
    reference: list[float], current: list[float], bins: list[Bin]
) -> None:
    # The bins written out by hand: below the range, the quantile bins, above it.
    ref, cur = np.array(reference), np.array(current)
    expected = 0.0
    for inside in bins:
        p = max(np.count_nonzero(inside(ref)) / ref.size, 1e-4)
        q = max(np.count_nonzero(inside(cur)) / cur.size, 1e-4)
        expected += (q - p) * math.log(q / p)
    profile = NumericProfile.build(reference)
    result = psi(profile, NumericSketch.empty(profile).update(current))
    assert result.statistic is not None and result.drifted
    assert abs(result.statistic - expected) <= 1e-12
