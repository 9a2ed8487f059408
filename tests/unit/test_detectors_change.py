"""river's change detectors through driftline's adapter, on streams with a known change."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from detectors.change import CHANGE_DETECTORS, ChangeDetector
from detectors.errors import DetectorError

CHANGE_AT = 1_000


def _errors(seed: int, change_at: int = CHANGE_AT, after: int = 1_000) -> NDArray[np.float64]:
    """Absolute errors around 0.2, then around 0.5 from ``change_at`` on."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0.2, 0.1, change_at), rng.normal(0.5, 0.1, after)])


def _mistakes(seed: int, before: float, after: float, change_at: int) -> NDArray[np.bool_]:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.random(change_at) < before, rng.random(1_000) < after])


# name, params, stream for a seed, change point, most samples until detection
SCENARIOS: list[tuple[str, dict[str, Any], Any, int, int]] = [
    ("adwin", {}, _errors, CHANGE_AT, 100),
    ("page_hinkley", {}, _errors, CHANGE_AT, 250),
    # KSWIN runs scipy's KS test on every value: a shorter stream keeps the suite fast.
    ("kswin", {"alpha": 1e-5, "seed": 7}, lambda seed: _errors(seed, 400, 200), 400, 60),
    ("ddm", {"warm_start": 500}, lambda seed: _mistakes(seed, 0.1, 0.5, 1_000), 1_000, 100),
    (
        "eddm",
        {"warm_start": 200, "beta": 0.8},
        lambda seed: _mistakes(seed, 0.05, 0.5, 2_000),
        2_000,
        400,
    ),
]


@pytest.mark.parametrize(
    ("name", "params", "stream", "change_at", "within"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
@pytest.mark.parametrize("seed", range(8))
def test_detects_the_change_soon_after_it_and_never_before(
    name: str, params: dict[str, Any], stream: Any, change_at: int, within: int, seed: int
) -> None:
    detections = ChangeDetector(name, **params).update(stream(seed))
    assert detections.size >= 1, "the change was missed"
    assert detections[0] >= change_at, f"false alarm at {detections[0]}"
    assert detections[0] <= change_at + within, f"detected late, at {detections[0]}"


def test_pinned_detection_indices() -> None:
    # Seed 0; values computed once from river 0.26 and checked against the
    # scenario above (after the change at 1000 and within its delay).
    assert ChangeDetector("adwin").update(_errors(0)).tolist() == [1055]
    assert ChangeDetector("page_hinkley").update(_errors(0))[:1].tolist() == [1178]
    mistakes = _mistakes(0, 0.1, 0.5, 1_000)
    assert ChangeDetector("ddm", warm_start=500).update(mistakes)[:1].tolist() == [1034]


@pytest.mark.parametrize("name", ["adwin", "page_hinkley", "ddm"])
def test_batches_give_the_same_positions_as_one_stream(name: str) -> None:
    values = _mistakes(3, 0.1, 0.5, 1_000) if name == "ddm" else _errors(3)
    whole = ChangeDetector(name).update(values)
    detector = ChangeDetector(name)
    found: list[int] = []
    for batch in np.array_split(values, 13):
        offset = detector.n_seen
        found.extend((detector.update(batch) + offset).tolist())
    assert found == whole.tolist()
    assert detector.n_seen == values.size and detector.n_detections == whole.size


def test_state_survives_pickling() -> None:
    values = _errors(4)
    detector = ChangeDetector("adwin")
    detector.update(values[:900])
    restored = pickle.loads(pickle.dumps(detector))
    assert restored.update(values[900:]).tolist() == detector.update(values[900:]).tolist()


def test_no_detection_on_a_calm_stream() -> None:
    rng = np.random.default_rng(11)
    assert ChangeDetector("adwin").update(rng.normal(0.3, 0.1, 5_000)).size == 0
    assert not ChangeDetector("adwin").update([]).size


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("cusum", {}, "'cusum' is not a change detector; valid: adwin, page_hinkley"),
        ("adwin", {"delta": 0.0}, r"delta must be a number in \(0.0, 1.0\) \(got 0.0\)"),
        ("adwin", {"clock": 0}, r"clock must be an integer >= 1 \(got 0\)"),
        ("adwin", {"speed": 3}, "'speed' is not a parameter of adwin; valid: delta, clock"),
        ("page_hinkley", {"mode": "sideways"}, "mode must be one of up, down, both"),
        ("page_hinkley", {"threshold": 0}, r"threshold must be a number in \(0.0, inf\)"),
        ("kswin", {"window_size": 50, "stat_size": 60}, "stat_size must be smaller"),
        ("kswin", {"alpha": 1.5}, r"alpha must be a number in \(0.0, 1.0\)"),
        ("ddm", {"warm_start": -1}, r"warm_start must be an integer >= 1"),
        ("eddm", {"alpha": 0.8, "beta": 0.9}, "beta .* must be smaller than alpha"),
    ],
)
def test_invalid_parameters_name_the_parameter(
    name: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(DetectorError, match=message):
        ChangeDetector(name, **params)


def test_invalid_values() -> None:
    with pytest.raises(DetectorError, match="values of ddm must be 0/1 or booleans"):
        ChangeDetector("ddm").update([0.5])
    with pytest.raises(DetectorError, match="values of adwin must be finite numbers"):
        ChangeDetector("adwin").update([np.nan])
    assert set(CHANGE_DETECTORS) == {"adwin", "page_hinkley", "kswin", "ddm", "eddm"}
    assert "delta=0.01" in repr(ChangeDetector("adwin", delta=0.01))


def test_kswin_finds_the_same_changes_in_the_same_stream_unless_seeded_otherwise() -> None:
    stream = _errors(3)
    first = ChangeDetector("kswin").update(stream).tolist()
    assert first  # the stream has a change
    assert ChangeDetector("kswin").update(stream).tolist() == first
    assert ChangeDetector("kswin", seed=42).update(stream).tolist() == first


def test_page_hinkley_takes_alpha_1_which_is_no_forgetting() -> None:
    assert ChangeDetector("page_hinkley", alpha=1.0).params == {"alpha": 1.0}
    with pytest.raises(DetectorError, match="alpha"):
        ChangeDetector("page_hinkley", alpha=1.5)
