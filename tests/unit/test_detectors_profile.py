"""Reference profiles: construction, ties, edge cases, exact JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.coarse import coarse_edges
from detectors.errors import DetectorError
from detectors.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    build_profile,
)


def test_numeric_profile_of_a_continuous_column() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, 100_000)
    profile = NumericProfile.build(values)
    assert profile.edges.size == 2049
    assert profile.counts.size == 2 * 2049 + 1
    assert profile.n == 100_000 and profile.missing == 0
    assert profile.minimum == values.min() and profile.maximum == values.max()
    assert profile.mean == pytest.approx(values.mean(), abs=1e-12)
    assert profile.std == pytest.approx(values.std(), abs=1e-12)
    assert profile.counts[0] == 0 and profile.counts[-1] == 0
    # Quantile bins: every bin holds about n / 2048 values.
    inner = profile.counts[2:-1:2]
    assert inner.max() <= 100_000 // 2048 and inner.min() >= 100_000 // 2048 - 2
    assert profile.ks_error_bound <= 1 / 2048


def test_ties_collapse_and_discrete_columns_keep_every_value() -> None:
    values = np.repeat([1.0, 2.0, 7.0], [500, 300, 200])
    profile = NumericProfile.build(values)
    assert profile.edges.tolist() == [1.0, 2.0, 7.0]
    assert profile.counts.tolist() == [0, 500, 0, 300, 0, 200, 0]
    assert profile.ks_error_bound == 0.0


def test_heavy_ties_with_many_distinct_values() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([np.zeros(50_000), rng.exponential(size=50_000)])
    profile = NumericProfile.build(values, bins=100)
    assert np.all(np.diff(profile.edges) > 0)
    assert profile.edges[0] == 0.0
    assert profile.counts[1] == 50_000  # the point mass sits on its own edge
    assert profile.ks_error_bound <= 1 / 100 + 1e-12


def test_constant_and_empty_columns() -> None:
    constant = NumericProfile.build(np.full(1_000, 4.2))
    assert constant.edges.tolist() == [4.2]
    assert constant.counts.tolist() == [0, 1_000, 0]
    assert (constant.std, constant.ks_error_bound) == (0.0, 0.0)
    nothing = NumericProfile.build([None, float("nan"), float("inf")])
    assert nothing.edges.size == 0 and nothing.counts.tolist() == [0]
    assert (nothing.n, nothing.missing, nothing.minimum, nothing.maximum) == (0, 3, None, None)
    assert NumericProfile.build([]).n == 0


def test_values_near_the_float_limit_have_finite_moments() -> None:
    profile = NumericProfile.build([1.7e308, -1.7e308, 1.6e308])
    assert np.isfinite(profile.mean) and np.isfinite(profile.std)
    ReferenceProfile("m", "1", {"x": profile}).to_json()


def test_categorical_profile_keeps_the_top_categories() -> None:
    values = ["b"] * 5 + ["a"] * 5 + ["c"] * 3 + ["d"] * 2 + ["e"] + [None] * 4
    profile = CategoricalProfile.build(values, max_categories=3)
    assert profile.categories == ("a", "b", "c")  # ties broken by name
    assert profile.counts.tolist() == [5, 5, 3]
    assert (profile.other, profile.missing, profile.n) == (3, 4, 16)
    assert profile.other_share == pytest.approx(3 / 16)


def test_single_category_and_empty_categorical() -> None:
    single = CategoricalProfile.build(["only"] * 10)
    assert single.categories == ("only",) and single.n == 10
    empty = CategoricalProfile.build([None, None])
    assert (empty.categories, empty.n, empty.missing, empty.other_share) == ((), 0, 2, 0.0)


def test_coarse_edges_are_reference_quantiles() -> None:
    profile = NumericProfile.build(np.arange(1_000.0))
    below_zero = float(np.nextafter(0.0, -1.0))
    # Below the minimum, nine quantile boundaries, and above the maximum.
    assert coarse_edges(profile).tolist() == [
        below_zero,
        *(99.0 + 100 * k for k in range(9)),
        999.0,
    ]
    # With more distinct values than fine bins, boundaries are the nearest fine edges.
    values = np.random.default_rng(4).normal(size=100_000)
    shares = np.bincount(np.searchsorted(coarse_edges(NumericProfile.build(values)), values))
    assert shares[0] == 0 and shares.size == 11  # nothing below the minimum or above the maximum
    assert np.all(np.abs(shares[1:] / values.size - 0.1) <= 1 / 2048)
    binary = NumericProfile.build(np.repeat([0.0, 1.0], [700, 300]))
    assert coarse_edges(binary).tolist() == [below_zero, 0.0, 1.0]
    assert coarse_edges(NumericProfile.build([3.0] * 10)).tolist() == [np.nextafter(3.0, 0.0), 3.0]
    assert coarse_edges(NumericProfile.build([None, None])).size == 0


def _reference() -> ReferenceProfile:
    rng = np.random.default_rng(3)
    return ReferenceProfile(
        model_id="churn",
        model_version="2024-05-01",
        features={
            "age": NumericProfile.build(rng.normal(40, 12, 20_000)),
            "plan": CategoricalProfile.build(rng.choice(["basic", "pro", "team"], 5_000)),
            "clicks": NumericProfile.build(rng.poisson(2, 5_000)),
            "empty": NumericProfile.build([None]),
        },
        prediction=CategoricalProfile.build(rng.choice(["0", "1"], 5_000)),
        scores={"1": NumericProfile.build(rng.random(5_000), bins=100)},
        baseline={"roc_auc": 0.8734, "f1": 0.61},
    )


def test_reference_profile_json_round_trip_is_exact() -> None:
    reference = _reference()
    text = reference.to_json()
    again = ReferenceProfile.from_json(text)
    assert again == reference
    assert again.to_json() == text
    age = again.features["age"]
    assert isinstance(age, NumericProfile)
    assert age.edges.tobytes() == reference.features["age"].edges.tobytes()  # type: ignore[union-attr]
    assert age.fingerprint == reference.features["age"].fingerprint
    assert len(text) < 120_000


@given(values=st.lists(st.one_of(st.floats(allow_nan=True), st.none()), max_size=100))
@settings(max_examples=100, deadline=None)
def test_any_numeric_profile_round_trips(values: list[float | None]) -> None:
    reference = ReferenceProfile("m", "v", {"x": NumericProfile.build(values, bins=16)})
    assert ReferenceProfile.from_json(reference.to_json()) == reference


@given(values=st.lists(st.one_of(st.text(max_size=5), st.none(), st.booleans()), max_size=100))
@settings(max_examples=100, deadline=None)
def test_any_categorical_profile_round_trips(values: list[object]) -> None:
    reference = ReferenceProfile("m", "v", {"x": CategoricalProfile.build(values)})
    assert ReferenceProfile.from_json(reference.to_json()) == reference


def test_unreadable_profiles_raise_detector_error() -> None:
    with pytest.raises(DetectorError, match="reference profile: not readable"):
        ReferenceProfile.from_json("{")
    with pytest.raises(DetectorError, match="format is not"):
        ReferenceProfile.from_json(json.dumps({"format": "other"}))
    document = json.loads(_reference().to_json())
    document["features"]["age"]["counts"] = [1, 2]
    with pytest.raises(DetectorError, match="counts must have"):
        ReferenceProfile.from_json(json.dumps(document))


def test_invalid_parameters_name_the_parameter_and_range() -> None:
    with pytest.raises(DetectorError, match=r"bins must be an integer in \[1, 65536\] \(got 0\)"):
        NumericProfile.build([1.0], bins=0)
    with pytest.raises(DetectorError, match=r"max_categories must be an integer in \[1, "):
        CategoricalProfile.build(["a"], max_categories=0)
    with pytest.raises(DetectorError, match="kind must be 'numeric' or 'categorical'"):
        build_profile([1], "text")  # type: ignore[arg-type]
    with pytest.raises(DetectorError, match="strictly increasing"):
        NumericProfile(np.array([2.0, 1.0]), np.zeros(5, dtype=np.int64))
    with pytest.raises(DetectorError, match="must be a finite number"):
        ReferenceProfile("m", "v", {}, baseline={"f1": float("nan")})
    with pytest.raises(DetectorError, match="categories must be distinct"):
        CategoricalProfile(("a", "a"), np.array([1, 2]))
