"""Window sketches and the slot lookup: exact, mergeable, serialisable."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.binning import SlotIndex
from detectors.errors import DetectorError
from detectors.profile import CategoricalProfile, NumericProfile
from detectors.sketch import CategoricalSketch, NumericSketch, empty_sketch
from detectors.values import label_codes

finite = st.floats(allow_nan=False, allow_infinity=False)
values_or_missing = st.one_of(
    st.floats(-1e3, 1e3), st.just(float("nan")), st.just(float("inf")), st.none()
)
batches = st.lists(values_or_missing, max_size=60)

RNG = np.random.default_rng(2024)
NUMERIC_PROFILE = NumericProfile.build(RNG.normal(0.0, 300.0, 5_000), bins=128)
CATEGORIES = ["a", "b", "c", "d"]
CATEGORICAL_PROFILE = CategoricalProfile.build(
    [*RNG.choice(CATEGORIES, 1_000).tolist(), "rare"], max_categories=4
)
category_batches = st.lists(
    st.one_of(st.sampled_from([*CATEGORIES, "rare", "new", "", "true"]), st.none(), st.booleans()),
    max_size=60,
)


def _expected_slots(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, values, side="left") + np.searchsorted(
        edges, values, side="right"
    )


@given(
    edges=st.lists(finite, min_size=0, max_size=80, unique=True),
    values=st.lists(finite, max_size=200),
)
@settings(max_examples=300, deadline=None)
def test_slot_index_matches_searchsorted(edges: list[float], values: list[float]) -> None:
    edge_array = np.unique(np.array(edges, dtype=np.float64) + 0.0)
    value_array = np.array(values + edges, dtype=np.float64)
    index = SlotIndex(edge_array)
    assert np.array_equal(index.slots(value_array), _expected_slots(edge_array, value_array))


@pytest.mark.parametrize(
    "name",
    ["normal", "cauchy", "lognormal", "integers", "tiny", "huge", "clustered", "pareto"],
)
def test_slot_index_is_exact_next_to_every_edge(name: str) -> None:
    rng = np.random.default_rng(5)
    samples = {
        "normal": rng.normal(size=50_000),
        "cauchy": rng.standard_cauchy(50_000),
        "lognormal": rng.lognormal(0, 3, 50_000),
        "integers": rng.integers(-500, 500, 50_000).astype(float),
        "tiny": rng.normal(size=50_000) * 1e-300,
        "huge": rng.normal(size=50_000) * 1e300,
        "clustered": np.concatenate([rng.normal(0, 1e-9, 25_000), rng.normal(1e6, 1, 25_000)]),
        "pareto": rng.pareto(0.3, 50_000),
    }[name]
    profile = NumericProfile.build(samples)
    edges = profile.edges
    probes = np.concatenate(
        [
            samples,
            edges,
            np.nextafter(edges, np.inf),
            np.nextafter(edges, -np.inf),
            [-1.7e308, 1.7e308, 0.0, -0.0, 5e-324, -5e-324],
        ]
    )
    assert np.array_equal(profile.slot_index.slots(probes), _expected_slots(edges, probes))
    # The reference counts of a profile are the slot counts of its own values.
    assert np.array_equal(profile.slot_index.count(samples), profile.counts)


def test_negative_zero_equals_zero() -> None:
    index = SlotIndex(np.linspace(-1.0, 1.0, 101))
    assert index.slots(np.array([-0.0, 0.0])).tolist() == [101, 101]


@given(first=batches, second=batches, third=batches)
@settings(max_examples=150, deadline=None)
def test_numeric_merge_is_associative_commutative_and_exact(
    first: list[float | None], second: list[float | None], third: list[float | None]
) -> None:
    def sketch(values: list[float | None]) -> NumericSketch:
        return NumericSketch.empty(NUMERIC_PROFILE).update(np.array(values, dtype=float))

    a, b, c = sketch(first), sketch(second), sketch(third)
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(b).merge(c) == sketch(first + second + third)
    # Updating in several batches is the same as one batch.
    assert sketch(first).update(np.array(second, dtype=float)) == sketch(first + second)


@given(first=category_batches, second=category_batches, third=category_batches)
@settings(max_examples=150, deadline=None)
def test_categorical_merge_is_associative_commutative_and_exact(
    first: list[object], second: list[object], third: list[object]
) -> None:
    def sketch(values: list[object]) -> CategoricalSketch:
        return CategoricalSketch.empty(CATEGORICAL_PROFILE).update(values)

    a, b, c = sketch(first), sketch(second), sketch(third)
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(b).merge(c) == sketch(first + second + third)


@given(values=batches)
@settings(max_examples=150, deadline=None)
def test_numeric_bytes_round_trip(values: list[float | None]) -> None:
    sketch = NumericSketch.empty(NUMERIC_PROFILE).update(np.array(values, dtype=float))
    again = NumericSketch.from_bytes(sketch.to_bytes(), NUMERIC_PROFILE)
    assert again == sketch
    assert again.to_bytes() == sketch.to_bytes()
    assert again.minimum == sketch.minimum and again.maximum == sketch.maximum


@given(values=category_batches)
@settings(max_examples=150, deadline=None)
def test_categorical_bytes_round_trip(values: list[object]) -> None:
    sketch = CategoricalSketch.empty(CATEGORICAL_PROFILE).update(values)
    again = CategoricalSketch.from_bytes(sketch.to_bytes(), CATEGORICAL_PROFILE)
    assert again == sketch
    assert again.to_bytes() == sketch.to_bytes()


def test_bytes_are_compact() -> None:
    profile = NumericProfile.build(np.random.default_rng(0).normal(size=100_000))
    sketch = NumericSketch.empty(profile).update(np.random.default_rng(1).normal(size=200))
    assert profile.counts.size == 2 * profile.edges.size + 1 == 4099
    assert len(sketch.to_bytes()) < 1_200


def test_sketch_of_another_profile_is_refused() -> None:
    other = NumericProfile.build([1.0, 2.0, 3.0])
    sketch = NumericSketch.empty(NUMERIC_PROFILE).update([1.0])
    with pytest.raises(DetectorError, match="another reference profile"):
        sketch.merge(NumericSketch.empty(other))
    with pytest.raises(DetectorError, match="another reference profile"):
        NumericSketch.from_bytes(sketch.to_bytes(), other)
    with pytest.raises(DetectorError, match="categorical-sketch"):
        CategoricalSketch.from_bytes(sketch.to_bytes(), CATEGORICAL_PROFILE)
    with pytest.raises(DetectorError, match="not a driftline sketch"):
        NumericSketch.from_bytes(b"nonsense", NUMERIC_PROFILE)
    with pytest.raises(DetectorError, match="corrupt"):
        NumericSketch.from_bytes(sketch.to_bytes()[:-3], NUMERIC_PROFILE)


@given(values=batches)
@settings(max_examples=100, deadline=None)
def test_binned_counts_add_up_like_the_values(values: list[float | None]) -> None:
    finite = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    binned = (
        NumericSketch.empty(NUMERIC_PROFILE)
        .update([0.25])
        .add_binned(
            NUMERIC_PROFILE.slot_index.count(finite),
            len(values) - finite.size,
            float(finite.min()) if finite.size else np.inf,
            float(finite.max()) if finite.size else -np.inf,
        )
    )
    assert binned == NumericSketch.empty(NUMERIC_PROFILE).update([0.25, *values])


def test_binned_counts_of_another_profile_are_refused() -> None:
    sketch = NumericSketch.empty(NUMERIC_PROFILE)
    wrong = np.zeros(sketch.counts.size + 2, dtype=np.int64)
    with pytest.raises(DetectorError, match=f"must have {sketch.counts.size} slots"):
        sketch.add_binned(wrong, 0, np.inf, -np.inf)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([True, 1, 1.0, False, 0], {"1": 2, "true": 1, "0": 1, "false": 1}),
        ([1, True, 0.0, 0, False], {"1": 1, "true": 1, "0": 2, "false": 1}),
        ([0, False, 1.0, True, True], {"1": 1, "true": 2, "0": 1, "false": 1}),
    ],
)
def test_booleans_and_numbers_equal_to_them_are_different_categories(
    values: list[object], expected: dict[str, int]
) -> None:
    # True == 1 in Python; counted together they took the key of whichever came first.
    profile = CategoricalProfile.build(["1", "true", "0", "false"])
    sketch = CategoricalSketch.empty(profile).update(values)
    assert dict(zip(profile.categories, sketch.counts.tolist(), strict=True)) == expected
    one_by_one = CategoricalSketch.empty(profile)
    for value in values:
        one_by_one.update([value])
    assert sketch == one_by_one


@pytest.mark.parametrize("values", [[10**19, 1e19, 2**63], [2.0**63, 10**19, 1e19]])
def test_integral_floats_of_any_size_are_the_integer_they_equal(values: list[object]) -> None:
    profile = CategoricalProfile.build(["10000000000000000000", "9223372036854775808"])
    sketch = CategoricalSketch.empty(profile).update(values)
    assert sketch.unseen == 0
    assert sorted(sketch.counts.tolist()) == [1, 2]


def test_an_integer_beyond_the_floats_is_missing_like_an_infinity() -> None:
    sketch = NumericSketch.empty(NUMERIC_PROFILE).update([1.5, 10**400, None, -(10**400)])
    assert sketch == NumericSketch.empty(NUMERIC_PROFILE).update([1.5, None, None, None])


def test_label_codes_keep_booleans_apart_from_numbers() -> None:
    keys, codes = label_codes([1, True, 1.0, False, 0])
    assert keys == ["0", "1", "false", "true"]
    assert codes.tolist() == [1, 3, 1, 2, 0]


def test_edge_cases_have_defined_counts() -> None:
    empty = NumericSketch.empty(NUMERIC_PROFILE).update([])
    assert (empty.n, empty.missing, empty.minimum, empty.maximum) == (0, 0, None, None)
    missing = NumericSketch.empty(NUMERIC_PROFILE).update([None, float("nan"), float("-inf")])
    assert (missing.n, missing.missing) == (0, 3)
    outside = NumericSketch.empty(NUMERIC_PROFILE).update([-1e9, 1e9, 2e9])
    assert (outside.underflow, outside.overflow, outside.n) == (1, 2, 3)
    assert outside.minimum == -1e9 and outside.maximum == 2e9


def test_categorical_unseen_and_missing() -> None:
    sketch = CategoricalSketch.empty(CATEGORICAL_PROFILE).update(
        ["a", "rare", "brand-new", None, float("nan")]
    )
    assert sketch.counts[CATEGORICAL_PROFILE.index["a"]] == 1
    assert (sketch.unseen, sketch.missing, sketch.n, sketch.n_total) == (2, 2, 3, 5)


def test_canonical_category_keys() -> None:
    profile = CategoricalProfile.build([True, False, "3", 2.5])
    sketch = CategoricalSketch.empty(profile).update(["true", np.bool_(False), 3, 3.0, "2.5"])
    assert sketch.unseen == 0
    assert sketch.n == 5


def test_update_accepts_numpy_string_arrays() -> None:
    profile = CategoricalProfile.build(np.array(["x", "y", "x"]))
    sketch = CategoricalSketch.empty(profile).update(np.array(["x", "z"]))
    assert sketch.counts.tolist() == [1, 0] and sketch.unseen == 1


def test_empty_sketch_picks_the_kind() -> None:
    assert isinstance(empty_sketch(NUMERIC_PROFILE), NumericSketch)
    assert isinstance(empty_sketch(CATEGORICAL_PROFILE), CategoricalSketch)
    with pytest.raises(DetectorError, match="profile must be"):
        empty_sketch("age")  # type: ignore[arg-type]


def test_invalid_inputs_name_the_parameter() -> None:
    with pytest.raises(DetectorError, match="values must be numbers"):
        NumericSketch.empty(NUMERIC_PROFILE).update(["high"])
    with pytest.raises(DetectorError, match="counts must be"):
        NumericSketch(NUMERIC_PROFILE, counts=[1, 2, 3])
    with pytest.raises(DetectorError, match="missing must be an integer >= 0"):
        NumericSketch(NUMERIC_PROFILE, missing=-1)
    with pytest.raises(DetectorError, match="other must be a NumericSketch"):
        NumericSketch.empty(NUMERIC_PROFILE).merge(CategoricalSketch.empty(CATEGORICAL_PROFILE))  # type: ignore[arg-type]
