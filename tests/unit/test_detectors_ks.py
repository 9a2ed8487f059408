"""KS from sketches against scipy.stats.ks_2samp on the raw values."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats

from detectors.ks import ks, ks_p_value, ks_statistic
from detectors.profile import NumericProfile
from detectors.sketch import NumericSketch

Generator = Callable[[np.random.Generator, int], NDArray[np.float64]]


def _normal(shift: float) -> Generator:
    return lambda rng, size: rng.normal(shift, 1.0, size)


def _cauchy(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    return rng.standard_cauchy(size)


def _lognormal(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    return rng.lognormal(0.0, 2.0, size)


def _pareto(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    return rng.pareto(0.7, size)


def _mixture(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    narrow = rng.normal(-5.0, 0.1, size)
    wide = rng.exponential(3.0, size)
    return np.where(rng.random(size) < 0.3, narrow, wide)


def _small_integers(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    return rng.integers(0, 10, size).astype(np.float64)


def _poisson(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    return rng.poisson(3.0, size).astype(np.float64)


def _many_integers(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    return rng.integers(0, 50_000, size).astype(np.float64)


def _rounded(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    return np.round(rng.normal(0.0, 30.0, size)) / 2


def _zero_inflated(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    return np.where(rng.random(size) < 0.6, 0.0, rng.exponential(10.0, size))


def _constant(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    return np.full(size, 5.0)


def _mostly_constant(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    return np.where(rng.random(size) < 0.9, 5.0, rng.normal(5.0, 1.0, size))


def _far_away(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    return rng.normal(100.0, 1.0, size)


# (name, reference generator, current generator, reference size, bins)
CASES: list[tuple[str, Generator, Generator, int, int]] = [
    ("same normal", _normal(0.0), _normal(0.0), 20_000, 2048),
    ("small shift", _normal(0.0), _normal(0.05), 20_000, 2048),
    ("large shift", _normal(0.0), _normal(0.8), 20_000, 2048),
    ("coarse bins", _normal(0.0), _normal(0.1), 20_000, 32),
    ("very coarse bins", _normal(0.0), _normal(0.0), 5_000, 4),
    ("cauchy", _cauchy, _cauchy, 20_000, 2048),
    ("cauchy vs normal", _cauchy, _normal(0.0), 20_000, 256),
    ("lognormal", _lognormal, _lognormal, 20_000, 2048),
    ("pareto", _pareto, _pareto, 20_000, 512),
    ("mixture", _mixture, _mixture, 20_000, 2048),
    ("mixture vs normal", _mixture, _normal(0.0), 20_000, 2048),
    ("small integers", _small_integers, _small_integers, 10_000, 2048),
    ("poisson vs integers", _poisson, _small_integers, 10_000, 2048),
    ("many integers", _many_integers, _many_integers, 20_000, 2048),
    ("rounded", _rounded, _rounded, 20_000, 64),
    ("zero inflated", _zero_inflated, _zero_inflated, 20_000, 2048),
    ("zero inflated vs normal", _zero_inflated, _normal(1.0), 20_000, 128),
    ("constant", _constant, _constant, 1_000, 2048),
    ("constant vs normal", _constant, _normal(5.0), 1_000, 2048),
    ("mostly constant", _mostly_constant, _mostly_constant, 10_000, 16),
    ("small reference", _normal(0.0), _normal(0.3), 300, 2048),
    ("outside the range", _normal(0.0), _far_away, 5_000, 2048),
]
WINDOW_SIZES = [1, 2, 3, 4, 5, 50, 1_000, 8_000]


def _case_id(case: tuple[str, Generator, Generator, int, int]) -> str:
    return case[0].replace(" ", "-")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("seed", [0, 1])
def test_statistic_within_the_bound_of_scipy(
    case: tuple[str, Generator, Generator, int, int], seed: int
) -> None:
    _, reference_of, current_of, reference_size, bins = case
    rng = np.random.default_rng(seed)
    reference = reference_of(rng, reference_size)
    profile = NumericProfile.build(reference, bins=bins)
    bound = profile.ks_error_bound
    assert bound <= 1.0 / bins + 1.0 / reference_size
    for size in WINDOW_SIZES:
        current = current_of(rng, size)
        sketch = NumericSketch.empty(profile).update(current)
        result = ks(profile, sketch, min_samples=1)
        exact = stats.ks_2samp(reference, current, method="asymp")
        assert result.statistic is not None and result.p_value is not None
        difference = exact.statistic - result.statistic
        assert -1e-12 <= difference <= bound + 1e-12, (size, exact.statistic, result.statistic)
        # The p-value is scipy's asymptotic one for the sketched D …
        assert result.p_value == ks_p_value(result.statistic, reference.size, size)
        # … and ks_p_value reproduces scipy's for the same D.
        same_d = ks_p_value(float(exact.statistic), reference.size, size)
        assert abs(same_d - exact.pvalue) <= 1e-6
        assert result.n_reference == reference.size and result.n_current == size


@pytest.mark.parametrize("seed", range(6))
def test_discrete_columns_are_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.poisson(4.0, 30_000).astype(float)
    current = rng.poisson(4.0 + 0.1 * seed, 2_000).astype(float)
    profile = NumericProfile.build(reference)
    assert profile.ks_error_bound == 0.0
    result = ks(profile, NumericSketch.empty(profile).update(current))
    exact = stats.ks_2samp(reference, current, method="asymp")
    assert result.statistic == pytest.approx(exact.statistic, abs=1e-15)
    assert result.p_value is not None
    assert abs(result.p_value - exact.pvalue) <= 1e-6


def test_observed_error_is_far_below_the_bound() -> None:
    rng = np.random.default_rng(9)
    reference = rng.normal(size=100_000)
    profile = NumericProfile.build(reference)
    errors = []
    for shift in (0.0, 0.01, 0.05, 0.2):
        current = rng.normal(shift, 1.0, 50_000)
        result = ks(profile, NumericSketch.empty(profile).update(current))
        assert result.statistic is not None
        exact = stats.ks_2samp(reference, current, method="asymp").statistic
        errors.append(exact - result.statistic)
    assert max(errors) < profile.ks_error_bound / 2


@pytest.mark.parametrize("n", [20_000, 60_000])
@pytest.mark.parametrize("z", [1.49, 2.0, 3.2, 6.0])
def test_large_sample_p_values_match_kstwo(n: int, z: float) -> None:
    statistic = z / np.sqrt(n)
    # n = m = 2N gives N = round(n m / (n + m)) = n.
    expected = float(stats.kstwo.sf(statistic, n))
    assert abs(ks_p_value(statistic, 2 * n, 2 * n) - expected) <= 1e-6


def test_p_value_edge_sizes() -> None:
    assert ks_p_value(0.0, 1, 1) == 1.0
    # One value a side differ with certainty: scipy's exact p-value is 1.
    assert ks_p_value(1.0, 1, 1) == stats.ks_2samp([0.0], [1.0], method="exact").pvalue == 1.0
    assert ks_p_value(1.0, 1, 2) == pytest.approx(
        stats.ks_2samp([0.0], [1.0, 2.0], method="asymp").pvalue
    )
    assert ks_p_value(1.0, 10**6, 10**6) == 0.0


def test_statistic_of_identical_counts_is_zero() -> None:
    counts = np.array([0, 3, 5, 2, 0], dtype=np.int64)
    assert ks_statistic(counts, counts * 7) == 0.0


@given(
    reference=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300),
    current=st.lists(st.floats(-2e6, 2e6), min_size=1, max_size=300),
    bins=st.integers(1, 64),
)
@settings(max_examples=150, deadline=None)
def test_statistic_in_unit_interval_and_within_bound(
    reference: list[float], current: list[float], bins: int
) -> None:
    profile = NumericProfile.build(reference, bins=bins)
    result = ks(profile, NumericSketch.empty(profile).update(current), min_samples=1)
    assert result.statistic is not None and result.p_value is not None
    assert 0.0 <= result.statistic <= 1.0
    assert 0.0 <= result.p_value <= 1.0
    with warnings.catch_warnings():  # scipy's own p-value for n = m = 1 divides by zero
        warnings.simplefilter("ignore", RuntimeWarning)
        exact = stats.ks_2samp(reference, current, method="asymp").statistic
    assert -1e-12 <= exact - result.statistic <= profile.ks_error_bound + 1e-12
