"""Rules on single observations: every kind, filters, defaults and rule checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from alerts import (
    AlertError,
    AlertKey,
    ChangePoints,
    WindowObservation,
    check_rule,
    evaluate_rule,
)
from alerts.outcome import RuleOutcome
from alerts.selector import series_values
from alerts.volume import VolumeBaseline
from detectors.multiple_testing import dataset_drift
from detectors.performance import PerformanceResult
from detectors.quality import DataQualityResult
from detectors.result import DriftResult, insufficient
from schemas.config import ModelConfig, RuleConfig, SelectorConfig

START = datetime(2026, 11, 23, 10, tzinfo=UTC)
END = START + timedelta(hours=1)

CHURN = ModelConfig.model_validate(
    {
        "id": "churn",
        "task": "binary",
        "reference": "ref.json",
        "features": [
            {"name": "tenure", "kind": "numeric"},
            {"name": "plan", "kind": "categorical"},
        ],
    }
)
ETA = ModelConfig.model_validate(
    {
        "id": "eta",
        "task": "regression",
        "reference": "ref.json",
        "features": [{"name": "distance", "kind": "numeric"}],
    }
)


def rule(**fields: Any) -> RuleConfig:
    return RuleConfig.model_validate({"name": "r", **fields})


def observe(segment: str = "all", model_id: str = "churn", **parts: Any) -> WindowObservation:
    return WindowObservation(model_id, "3", segment, START, END, **parts)


def psi(value: float, threshold: float = 0.2) -> DriftResult:
    return DriftResult("psi", value, None, threshold, value >= threshold, 5000, 800)


def ks(statistic: float, p_value: float) -> DriftResult:
    return DriftResult("ks", statistic, p_value, 0.05, p_value <= 0.05, 5000, 800)


def chi2(p_value: float) -> DriftResult:
    return DriftResult("chi2", 12.0, p_value, 0.05, p_value <= 0.05, 5000, 800)


def summary_of(outcomes: list[RuleOutcome]) -> list[tuple[str | None, str, float, bool, bool]]:
    return [(o.key.feature, o.metric, o.value, o.breached, o.resolved_ok) for o in outcomes]


# feature_drift ---------------------------------------------------------------


def test_feature_drift_with_threshold_compares_the_statistic_with_hysteresis() -> None:
    drift_rule = rule(
        kind="feature_drift", metric="psi", op=">", threshold=0.2, resolve={"threshold": 0.1}
    )
    values = {"a": 0.31, "b": 0.2, "c": 0.15, "d": 0.1}
    observation = observe(feature_drift={name: {"psi": psi(v)} for name, v in values.items()})
    assert summary_of(evaluate_rule(drift_rule, observation)) == [
        ("a", "psi", 0.31, True, False),
        ("b", "psi", 0.2, False, False),  # > is strict
        ("c", "psi", 0.15, False, False),  # between the thresholds: neither
        ("d", "psi", 0.1, False, True),  # back past the resolve threshold
    ]
    outcome = evaluate_rule(drift_rule, observation)[0]
    assert outcome.key == AlertKey("r", "churn", "3", "all", "a")
    assert (outcome.op, outcome.threshold, outcome.resolve_threshold) == (">", 0.2, 0.1)
    assert outcome.n == 800
    assert outcome.subject == "feature a drifted"
    assert outcome.evidence["n_reference"] == 5000


def test_feature_drift_threshold_without_op_means_at_least() -> None:
    drift_rule = rule(kind="feature_drift", metric="psi", threshold=0.2)
    observation = observe(feature_drift={"tenure": {"psi": psi(0.2)}})
    (outcome,) = evaluate_rule(drift_rule, observation)
    assert (outcome.op, outcome.breached) == (">=", True)


def test_feature_drift_default_method_is_the_first_configured_and_uses_the_decision() -> None:
    # churn's numeric methods default to (ks, psi): ks decides by p-value <= 0.05
    observation = observe(
        feature_drift={
            "tenure": {"psi": psi(0.5), "ks": ks(0.04, 0.3)},
            "plan": {"jensenshannon": psi(0.01), "chi2": chi2(0.001)},
        }
    )
    outcomes = evaluate_rule(rule(kind="feature_drift"), observation, model=CHURN)
    assert summary_of(outcomes) == [
        ("tenure", "ks.p_value", 0.3, False, True),
        ("plan", "chi2.p_value", 0.001, True, False),
    ]
    assert (outcomes[1].op, outcomes[1].threshold) == ("<=", 0.05)


def test_feature_drift_decision_of_a_statistic_test_and_fallback_method() -> None:
    # tenure has only psi although ks is configured first: psi, statistic >= its threshold
    observation = observe(feature_drift={"tenure": {"psi": psi(0.25)}})
    (outcome,) = evaluate_rule(rule(kind="feature_drift"), observation, model=CHURN)
    assert (outcome.metric, outcome.value, outcome.op, outcome.threshold) == (
        "psi",
        0.25,
        ">=",
        0.2,
    )
    assert outcome.breached
    # without a model configuration the first method present is used
    (outcome,) = evaluate_rule(rule(kind="feature_drift"), observation)
    assert outcome.metric == "psi"


def test_feature_drift_resolve_threshold_on_a_p_value_test() -> None:
    # decision ks p <= 0.05; resolved only once p > 0.2
    drift_rule = rule(kind="feature_drift", metric="ks", resolve={"threshold": 0.2})
    for p_value, expected in [(0.01, (True, False)), (0.1, (False, False)), (0.3, (False, True))]:
        observation = observe(feature_drift={"tenure": {"ks": ks(0.1, p_value)}})
        (outcome,) = evaluate_rule(drift_rule, observation)
        assert (outcome.breached, outcome.resolved_ok) == expected, p_value


def test_feature_drift_skips_insufficient_data_missing_methods_and_filtered_features() -> None:
    observation = observe(
        feature_drift={
            "tenure": {"psi": insufficient("psi", 0.2, 5000, 3)},
            "plan": {"chi2": chi2(0.001)},
            "age": {"psi": psi(0.4)},
        }
    )
    assert evaluate_rule(rule(kind="feature_drift", metric="psi"), observation) == [
        evaluate_rule(rule(kind="feature_drift", metric="psi", features=["age"]), observation)[0]
    ]
    assert evaluate_rule(rule(kind="feature_drift", features=["tenure"]), observation) == []
    assert evaluate_rule(rule(kind="feature_drift"), observe(performance={})) == []


def test_model_and_segment_filters() -> None:
    observation = observe(segment="region=eu,tier=gold", feature_drift={"a": {"psi": psi(0.4)}})
    assert evaluate_rule(rule(kind="feature_drift", models=["eta"]), observation) == []
    assert len(evaluate_rule(rule(kind="feature_drift", models=["churn"]), observation)) == 1
    assert len(evaluate_rule(rule(kind="feature_drift", segments=["region=eu"]), observation)) == 1
    both = rule(kind="feature_drift", segments=["tier=gold,region=eu"])
    assert len(evaluate_rule(both, observation)) == 1
    assert evaluate_rule(rule(kind="feature_drift", segments=["region=us"]), observation) == []
    assert evaluate_rule(rule(kind="feature_drift", segments=["all"]), observation) == []
    whole = observe(feature_drift={"a": {"psi": psi(0.4)}})
    assert len(evaluate_rule(rule(kind="feature_drift", segments=["all"]), whole)) == 1


# prediction_drift ------------------------------------------------------------


def test_prediction_drift_uses_the_methods_of_the_prediction_kind() -> None:
    results = {"ks": ks(0.2, 0.001), "chi2": chi2(0.5)}
    observation = observe(prediction_drift=results)
    # binary model: class predictions, categorical methods (chi2 first)
    (outcome,) = evaluate_rule(rule(kind="prediction_drift"), observation, model=CHURN)
    assert (outcome.key.feature, outcome.metric, outcome.breached) == (None, "chi2.p_value", False)
    assert outcome.subject == "predictions drifted"
    # regression model: numeric methods (ks first)
    regression = observe(model_id="eta", prediction_drift=results)
    (outcome,) = evaluate_rule(rule(kind="prediction_drift"), regression, model=ETA)
    assert (outcome.metric, outcome.breached) == ("ks.p_value", True)
    with_threshold = rule(kind="prediction_drift", metric="ks", op=">", threshold=0.15)
    (outcome,) = evaluate_rule(with_threshold, observation)
    assert (outcome.metric, outcome.value, outcome.breached) == ("ks", 0.2, True)
    assert evaluate_rule(rule(kind="prediction_drift", metric="psi"), observation) == []


# dataset_drift ---------------------------------------------------------------


def decision() -> Any:
    # no correction, alpha 0.05: a, b, c drift; d does not; e untested
    return dataset_drift({"a": 0.001, "b": 0.01, "c": 0.02, "d": 0.5, "e": None}, correction="none")


def test_dataset_drift_counts_drifted_features_against_min_features() -> None:
    observation = observe(dataset_drift=decision())
    (outcome,) = evaluate_rule(rule(kind="dataset_drift", min_features=3), observation)
    assert (outcome.metric, outcome.value, outcome.op, outcome.threshold) == (
        "drifted_features",
        3.0,
        ">=",
        3.0,
    )
    assert outcome.breached and not outcome.resolved_ok
    assert outcome.subject == "dataset drifted: a, b, c"
    assert outcome.evidence["n_tested"] == 4
    assert outcome.evidence["drifted_features"] == "a,b,c"
    (outcome,) = evaluate_rule(rule(kind="dataset_drift", min_features=4), observation)
    assert not outcome.breached and outcome.resolved_ok


def test_dataset_drift_on_the_top_features_only_and_with_hysteresis() -> None:
    observation = observe(dataset_drift=decision())
    top = rule(kind="dataset_drift", features=["a", "d"], min_features=2, resolve={"threshold": 1})
    (outcome,) = evaluate_rule(top, observation)
    assert (outcome.value, outcome.breached, outcome.resolved_ok) == (1.0, False, False)
    assert outcome.evidence["n_tested"] == 2
    calm = observe(dataset_drift=dataset_drift({"a": 0.4, "d": 0.5}, correction="none"))
    (outcome,) = evaluate_rule(top, calm)
    assert (outcome.value, outcome.resolved_ok) == (0.0, True)
    assert evaluate_rule(rule(kind="dataset_drift", features=["e"]), observation) == []
    assert evaluate_rule(rule(kind="dataset_drift"), observe()) == []


# performance_drop ------------------------------------------------------------


def performance(metric: str, value: float, coverage: float | None, **kw: Any) -> WindowObservation:
    return observe(
        performance={metric: PerformanceResult(metric, value, 600)},
        coverage=coverage,
        baseline={"accuracy": 0.9, "log_loss": 0.3, "mae": 4.0},
        **kw,
    )


def test_performance_drop_relative_to_baseline_higher_is_better() -> None:
    drop = rule(kind="performance_drop", metric="accuracy", baseline_delta=0.05, min_coverage=0.3)
    (outcome,) = evaluate_rule(drop, performance("accuracy", 0.84, 0.5))
    assert (outcome.op, outcome.breached) == ("<", True)
    assert outcome.threshold == pytest.approx(0.85)
    assert outcome.subject == "accuracy dropped"
    assert outcome.evidence["baseline"] == 0.9 and outcome.evidence["coverage"] == 0.5
    assert outcome.n == 600
    (outcome,) = evaluate_rule(drop, performance("accuracy", 0.86, 0.5))
    assert not outcome.breached and outcome.resolved_ok


@pytest.mark.parametrize(
    ("metric", "value", "threshold", "breached"),
    [("log_loss", 0.36, 0.35, True), ("log_loss", 0.34, 0.35, False), ("mae", 4.2, 4.05, True)],
)
def test_performance_drop_relative_to_baseline_lower_is_better(
    metric: str, value: float, threshold: float, breached: bool
) -> None:
    delta = 0.05
    drop = rule(kind="performance_drop", metric=metric, baseline_delta=delta)
    (outcome,) = evaluate_rule(drop, performance(metric, value, 0.5))
    assert (outcome.op, outcome.breached) == (">", breached)
    assert outcome.threshold == pytest.approx(threshold)
    assert outcome.subject == f"{metric} rose"


def test_performance_drop_only_with_enough_label_coverage() -> None:
    drop = rule(kind="performance_drop", metric="accuracy", baseline_delta=0.05, min_coverage=0.3)
    assert evaluate_rule(drop, performance("accuracy", 0.5, 0.29)) == []
    assert evaluate_rule(drop, performance("accuracy", 0.5, None)) == []
    assert len(evaluate_rule(drop, performance("accuracy", 0.5, 0.3))) == 1
    anyway = rule(kind="performance_drop", metric="accuracy", baseline_delta=0.05, min_coverage=0)
    assert len(evaluate_rule(anyway, performance("accuracy", 0.5, None))) == 1


def test_performance_drop_static_threshold_missing_baseline_and_insufficient_data() -> None:
    static = rule(kind="performance_drop", metric="accuracy", threshold=0.8)
    (outcome,) = evaluate_rule(static, performance("accuracy", 0.79, 0.9))
    assert (outcome.op, outcome.threshold, outcome.breached) == ("<", 0.8, True)
    f1 = rule(kind="performance_drop", metric="f1", baseline_delta=0.05)
    assert evaluate_rule(f1, performance("f1", 0.1, 0.9)) == []  # no f1 baseline
    thin = observe(
        performance={"accuracy": PerformanceResult("accuracy", None, 3, insufficient_data=True)},
        coverage=0.9,
    )
    assert evaluate_rule(static, thin) == []
    assert evaluate_rule(static, observe(coverage=0.9)) == []


# data_quality ----------------------------------------------------------------


def test_data_quality_per_feature_rate() -> None:
    quality = {
        "tenure": DataQualityResult(400, 0.25, 0.0),
        "plan": DataQualityResult(400, 0.05, None, 0.01, 0.0),
        "empty": DataQualityResult(0, 0.0, 0.0),
    }
    observation = observe(data_quality=quality)
    missing = rule(kind="data_quality", metric="missing_rate", op=">", threshold=0.1)
    assert summary_of(evaluate_rule(missing, observation)) == [
        ("tenure", "missing_rate", 0.25, True, False),
        ("plan", "missing_rate", 0.05, False, True),
    ]
    assert (
        evaluate_rule(missing, observation)[0].subject == "missing_rate of feature tenure too high"
    )
    out_of_range = rule(kind="data_quality", metric="out_of_range_rate", threshold=0.1)
    assert [o.key.feature for o in evaluate_rule(out_of_range, observation)] == ["tenure"]


# volume_drop -----------------------------------------------------------------


def test_volume_drop_needs_a_baseline_and_compares_with_a_fraction_of_it() -> None:
    drop = rule(kind="volume_drop", threshold=0.5, resolve={"threshold": 0.8})
    usual = VolumeBaseline(1000.0, 24)
    assert evaluate_rule(drop, observe(predictions=10)) == []
    assert evaluate_rule(drop, observe(predictions=10), volume_baseline=None) == []
    cases = [(499, True, False), (500, False, False), (799, False, False), (800, False, True)]
    for predictions, breached, resolved_ok in cases:
        (outcome,) = evaluate_rule(drop, observe(predictions=predictions), volume_baseline=usual)
        assert (outcome.value, outcome.threshold, outcome.resolve_threshold) == (
            predictions,
            500.0,
            800.0,
        )
        assert (outcome.breached, outcome.resolved_ok) == (breached, resolved_ok), predictions
    (outcome,) = evaluate_rule(drop, observe(predictions=300), volume_baseline=usual)
    assert outcome.evidence["ratio_of_usual"] == 0.3
    assert outcome.evidence["history_windows"] == 24


# threshold -------------------------------------------------------------------


def test_threshold_rule_on_volume_and_drift_fields() -> None:
    low = rule(kind="threshold", select={"measurement": "volume", "field": "predictions"},
               op="<", threshold=100)  # fmt: skip
    (outcome,) = evaluate_rule(low, observe(predictions=99))
    assert (outcome.metric, outcome.value, outcome.breached) == ("predictions", 99.0, True)
    assert evaluate_rule(low, observe(feature_drift={})) == []
    p_value = rule(
        kind="threshold",
        select={"measurement": "feature_drift", "field": "p_value",
                "tags": {"method": "ks", "feature": "tenure"}},
        op="<", threshold=0.001,
    )  # fmt: skip
    observation = observe(
        feature_drift={"tenure": {"ks": ks(0.3, 0.0001)}, "age": {"ks": ks(0.3, 0.0001)}}
    )
    (outcome,) = evaluate_rule(p_value, observation)
    assert (outcome.key.feature, outcome.metric, outcome.value) == ("tenure", "ks.p_value", 0.0001)
    assert outcome.breached
    drifted = rule(
        kind="threshold", select={"measurement": "prediction_drift", "field": "drifted"},
        op=">=", threshold=1, metric="chi2",
    )  # fmt: skip
    (outcome,) = evaluate_rule(drifted, observe(prediction_drift={"chi2": chi2(0.01)}))
    assert (outcome.metric, outcome.value, outcome.breached) == ("chi2.drifted", 1.0, True)


def test_threshold_rule_tags_filter_model_and_segment() -> None:
    low = rule(kind="threshold", op="<", threshold=100,
               select={"measurement": "volume", "field": "predictions",
                       "tags": {"segment": "region=eu", "model_id": "churn"}})  # fmt: skip
    assert len(evaluate_rule(low, observe(segment="region=eu", predictions=5))) == 1
    assert evaluate_rule(low, observe(segment="region=us", predictions=5)) == []
    assert evaluate_rule(low, observe(segment="region=eu", model_id="eta", predictions=5)) == []


def test_threshold_rule_on_performance_respects_min_coverage() -> None:
    accuracy = rule(kind="threshold", op="<", threshold=0.8, min_coverage=0.3,
                    select={"measurement": "model_performance", "field": "value",
                            "tags": {"metric": "accuracy"}})  # fmt: skip
    assert evaluate_rule(accuracy, performance("accuracy", 0.7, 0.2)) == []
    (outcome,) = evaluate_rule(accuracy, performance("accuracy", 0.7, 0.4))
    assert (outcome.metric, outcome.value, outcome.breached) == ("accuracy", 0.7, True)
    coverage = rule(kind="threshold", op="<", threshold=0.5, metric="accuracy",
                    select={"measurement": "model_performance", "field": "coverage"})  # fmt: skip
    (outcome,) = evaluate_rule(coverage, performance("accuracy", 0.7, 0.2))
    assert (outcome.metric, outcome.value, outcome.breached) == ("coverage", 0.2, True)


def test_threshold_rule_on_data_quality() -> None:
    unseen = rule(
        kind="threshold",
        op=">",
        threshold=0.05,
        select={"measurement": "data_quality", "field": "unseen_category_rate"},
    )
    quality = {
        "plan": DataQualityResult(100, 0.0, None, 0.2),
        "age": DataQualityResult(9, 0.0, 0.0),
    }
    (outcome,) = evaluate_rule(unseen, observe(data_quality=quality))
    assert (outcome.key.feature, outcome.value, outcome.breached, outcome.n) == (
        "plan",
        0.2,
        True,
        100,
    )


# rule checks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "feature_drift", "op": ">"}, "rules[2] 'r': op needs a threshold"),
        (
            {"kind": "feature_drift", "op": ">", "threshold": 0.2, "resolve": {"threshold": 0.3}},
            "rules[2] 'r': resolve.threshold 0.3 must be on the good side of threshold 0.2 "
            "(at most it, as op is >)",
        ),
        (
            {"kind": "performance_drop", "metric": "accuracy", "threshold": 0.8,
             "resolve": {"threshold": 0.7}},
            "resolve.threshold 0.7 must be on the good side of threshold 0.8 (at least it",
        ),
        ({"kind": "dataset_drift", "threshold": 3}, "use min_features, not threshold"),
        (
            {"kind": "dataset_drift", "min_features": 2, "resolve": {"threshold": 3}},
            "resolve.threshold 3.0 must be at most min_features=2",
        ),
        ({"kind": "volume_drop", "threshold": 1.5}, "fraction of the usual volume in (0, 1]"),
        ({"kind": "volume_drop", "threshold": 0.5, "op": ">"}, "must be < or <="),
        (
            {"kind": "performance_drop", "metric": "accuracy", "baseline_delta": 0.05, "op": ">"},
            "op only applies to a static threshold",
        ),
        ({"kind": "prediction_drift", "features": ["a"]}, "features only applies to"),
        (
            {"kind": "threshold", "op": ">", "threshold": 1,
             "select": {"measurement": "label_lag", "field": "p95_s"}},
            "select.measurement label_lag is not observed by the alert engine",
        ),
        (
            {"kind": "threshold", "op": ">", "threshold": 1,
             "select": {"measurement": "volume", "field": "dead_letters"}},
            "select.field dead_letters of volume is not observed",
        ),
        (
            {"kind": "threshold", "op": ">", "threshold": 1,
             "select": {"measurement": "volume", "field": "predictions",
                        "tags": {"feature": "x"}}},
            "select.tags.feature is not a tag of volume",
        ),
        (
            {"kind": "threshold", "op": "<", "threshold": 1,
             "select": {"measurement": "model_performance", "field": "value"}},
            "needs select.tags.metric or metric",
        ),
    ],
)  # fmt: skip
def test_check_rule_names_the_rule_and_the_problem(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(AlertError) as caught:
        check_rule(rule(**fields), 2)
    assert str(caught.value).startswith("rules[2] 'r': ")
    assert message in str(caught.value)


def test_check_rule_accepts_the_example_rules() -> None:
    for fields in (
        {"kind": "feature_drift", "metric": "psi", "op": ">", "threshold": 0.2,
         "resolve": {"threshold": 0.1, "for": 2}},
        {"kind": "dataset_drift", "min_features": 3},
        {"kind": "performance_drop", "metric": "accuracy", "baseline_delta": 0.05},
        {"kind": "data_quality", "metric": "missing_rate", "op": ">", "threshold": 0.1},
        {"kind": "volume_drop", "threshold": 0.5},
    ):  # fmt: skip
        check_rule(rule(**fields), 0)


def test_observation_checks_name_the_field() -> None:
    with pytest.raises(AlertError, match="window_start must be a timezone-aware datetime"):
        WindowObservation("churn", "3", "all", START.replace(tzinfo=None), END)
    with pytest.raises(AlertError, match=r"coverage must be a number in \[0, 1\]"):
        observe(coverage=1.5)
    with pytest.raises(AlertError, match="predictions must be an integer >= 0"):
        observe(predictions=-1)
    with pytest.raises(AlertError, match="baseline\\['accuracy'\\] must be finite"):
        observe(baseline={"accuracy": float("nan")})
    with pytest.raises(AlertError, match="model_version must be a non-empty string"):
        WindowObservation("churn", "", "all", START, END)
    local = datetime(2026, 11, 23, 14, tzinfo=timezone(timedelta(hours=2)))
    assert observe().window_start.tzinfo is UTC
    shifted = WindowObservation("churn", "3", "all", local, local + timedelta(hours=1))
    assert shifted.window_start == datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert shifted.window_start.utcoffset() == timedelta(0)


def test_a_threshold_rule_reads_change_points_by_detector_and_skips_a_missing_place() -> None:
    start = datetime(2026, 11, 23, 10, tzinfo=UTC)

    def window(detections: int, first_at_s: float) -> WindowObservation:
        return WindowObservation(
            "churn", "1", "all", start, start + timedelta(minutes=1),
            change_points=ChangePoints("adwin", detections, first_at_s, 300),
        )  # fmt: skip

    def select(field: str, **tags: str) -> SelectorConfig:
        return SelectorConfig(measurement="change_points", field=field, tags=tags)

    changed = window(2, 40.0)
    assert [v.value for v in series_values(select("detections"), changed)] == [2.0]
    assert [v.value for v in series_values(select("first_at_s"), changed)] == [40.0]
    assert series_values(select("detections", detector="ddm"), changed) == []
    assert series_values(select("detections", segment="region=eu"), changed) == []
    # Without a change there is no place: first_at_s < 30 must not read the point's -1.
    assert series_values(select("first_at_s"), window(0, -1.0)) == []
    assert [v.value for v in series_values(select("detections"), window(0, -1.0))] == [0.0]
