"""The alert engine: scripted observations → events, notifications, retrain requests.

Also the volume history behind ``volume_drop`` and the snapshot/restore path
that lets a worker restart in the middle of a scenario without a difference.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts import (
    AlertEngine,
    AlertError,
    AlertKey,
    EngineOutput,
    VolumeBaseline,
    VolumeHistory,
    WindowObservation,
    request_id,
)
from detectors.multiple_testing import dataset_drift
from detectors.performance import PerformanceResult
from detectors.regression import RegressionStats
from detectors.result import DriftResult
from schemas.config import MonitorConfig

T0 = datetime(2026, 11, 23, tzinfo=UTC)
HOUR = timedelta(hours=1)
EU = "region=eu"

MODEL: dict[str, Any] = {
    "id": "churn",
    "task": "binary",
    "reference": "ref-{version}.json",
    "segment_by": ["region"],
    "features": [
        {"name": "tenure", "kind": "numeric"},
        {"name": "plan", "kind": "categorical"},
    ],
}
RULES: list[dict[str, Any]] = [
    {"name": "feature-drift", "kind": "feature_drift", "metric": "psi", "op": ">",
     "threshold": 0.2, "for": 2, "resolve": {"threshold": 0.1, "for": 2}, "cooldown": "6h",
     "channel": "oncall"},
    {"name": "dataset-drift", "kind": "dataset_drift", "min_features": 2,
     "severity": "critical", "channel": "oncall"},
    {"name": "accuracy-drop", "kind": "performance_drop", "metric": "accuracy",
     "baseline_delta": 0.05, "min_coverage": 0.3, "severity": "critical", "channel": "oncall"},
    {"name": "traffic-drop", "kind": "volume_drop", "threshold": 0.5},
]  # fmt: skip
RETRAIN: list[dict[str, Any]] = [
    {"name": "retrain-on-decay", "rules": ["accuracy-drop", "dataset-drift"], "min_alerts": 2,
     "cooldown": "1d"},
]  # fmt: skip


def config(**overrides: Any) -> MonitorConfig:
    document: dict[str, Any] = {
        "models": [MODEL],
        "channels": {"oncall": {"urls": ["json://127.0.0.1:9/hook"]}},
        "rules": RULES,
        "retrain": RETRAIN,
        "grafana_url": "http://grafana.local:3000/",
    }
    return MonitorConfig.model_validate({**document, **overrides})


def drift(
    hour: int,
    segment: str = EU,
    *,
    predictions: int | None = None,
    p_values: dict[str, float] | None = None,
    **psi: float,
) -> WindowObservation:
    return WindowObservation(
        "churn",
        "3",
        segment,
        T0 + hour * HOUR,
        T0 + (hour + 1) * HOUR,
        feature_drift={
            name: {"psi": DriftResult("psi", value, None, 0.2, value >= 0.2, 5000, 800)}
            for name, value in psi.items()
        },
        dataset_drift=None if p_values is None else dataset_drift(p_values, correction="none"),
        predictions=predictions,
    )


def perf(hour: int, accuracy: float, coverage: float, segment: str = EU) -> WindowObservation:
    return WindowObservation(
        "churn",
        "3",
        segment,
        T0 + hour * HOUR,
        T0 + (hour + 1) * HOUR,
        performance={"accuracy": PerformanceResult("accuracy", accuracy, 450)},
        coverage=coverage,
        baseline={"accuracy": 0.9},
    )


def transitions(outputs: list[EngineOutput]) -> list[tuple[int, str, str, str | None]]:
    return [
        (index, event.rule, event.state, event.feature)
        for index, output in enumerate(outputs)
        for event in output.alert_events
    ]


def test_feature_drift_fires_once_notifies_with_the_numbers_and_resolves_once() -> None:
    engine = AlertEngine(config())
    script = [
        drift(0, tenure=0.3, plan=0.05),
        drift(1, tenure=0.31, plan=0.05),  # second breach: fires
        drift(2, tenure=0.15, plan=0.05),  # between 0.1 and 0.2: stays firing
        drift(3, tenure=0.05, plan=0.05),
        drift(4, tenure=0.08, plan=0.05),  # second good window: resolves
        drift(5, tenure=0.08, plan=0.05),
    ]
    outputs = [engine.observe(observation) for observation in script]
    assert transitions(outputs) == [
        (1, "feature-drift", "firing", "tenure"),
        (4, "feature-drift", "resolved", "tenure"),
    ]
    fired = outputs[1].alert_events[0]
    (message,) = outputs[1].notifications
    assert message.channel == "oncall" and message.event == fired
    assert message.title == "[FIRING] warning: feature-drift on churn v3 [region=eu]"
    assert message.body == (
        "churn v3 [region=eu] · feature tenure · psi 0.31 > 0.2 · "
        "window 2026-11-23 01:00–02:00 UTC · n=800"
    )
    assert message.link == (
        "http://grafana.local:3000/d/driftline-model/driftline-model?var-model_id=churn"
        "&var-model_version=3&var-segment=region%3Deu&var-feature=tenure"
        f"&from={int((T0 - 5 * HOUR).timestamp() * 1000)}"
        f"&to={int((T0 + 3 * HOUR).timestamp() * 1000)}"
    )
    (resolved,) = outputs[4].notifications
    assert resolved.title == "[RESOLVED] warning: feature-drift on churn v3 [region=eu]"
    assert "psi 0.08 ≤ 0.1" in resolved.body and "04:00–05:00" in resolved.body
    assert resolved.event.alert_id == fired.alert_id
    assert fired.alert_id == AlertKey("feature-drift", "churn", "3", EU, "tenure").alert_id(
        T0 + HOUR
    )
    assert all(not output.retrain_requests for output in outputs)
    assert engine.firing() == []


def test_no_link_without_a_grafana_url_and_no_message_without_a_channel() -> None:
    engine = AlertEngine(config(grafana_url=None), volume_history=3, volume_min_history=3)
    for hour in range(2):
        engine.observe(drift(hour, tenure=0.5))
    assert engine.firing()[0].rule == "feature-drift"
    output = engine.observe(drift(2, tenure=0.05))
    assert output.notifications == []  # the first good window does not resolve (for: 2)
    output = engine.observe(drift(3, tenure=0.05))
    assert [message.link for message in output.notifications] == [None]
    # traffic-drop has no channel: its events come without messages
    for hour, count in [(4, 1000), (5, 1000), (6, 1000)]:
        assert engine.observe(drift(hour, predictions=count)).empty
    output = engine.observe(drift(7, predictions=100))
    assert [(e.rule, e.state) for e in output.alert_events] == [("traffic-drop", "firing")]
    assert output.notifications == []


def test_volume_drop_waits_for_history_then_compares_with_the_median() -> None:
    engine = AlertEngine(config(), volume_history=4, volume_min_history=3)
    volumes = [1000, 1100, 900, 400, 950, 300]
    outputs = [engine.observe(drift(hour, predictions=n)) for hour, n in enumerate(volumes)]
    # 0-2: not enough history, no state at all; 3: 400 < 0.5 x median(1000, 1100, 900) = 500;
    # 4: median(1000, 1100, 900, 400) = 950, 950 >= 475 resolves (resolved at 05:00);
    # 5: median(1100, 900, 400, 950) = 925, 300 < 462.5, and its window ends at 06:00, the
    #    end of the rule's 1 h cooldown: a new occurrence fires
    assert transitions(outputs) == [
        (3, "traffic-drop", "firing", None),
        (4, "traffic-drop", "resolved", None),
        (5, "traffic-drop", "firing", None),
    ]
    assert [s.key.rule for s in engine.status()] == ["traffic-drop"]
    fired, resolved, again = (output.alert_events[0] for output in outputs[3:])
    assert (fired.value, fired.threshold) == (400.0, 500.0)
    assert fired.evidence["usual_volume"] == 1000.0
    assert (resolved.value, resolved.threshold) == (950.0, 475.0)
    assert (again.value, again.threshold) == (300.0, 462.5)
    assert again.alert_id != fired.alert_id == resolved.alert_id


def test_a_segment_that_goes_silent_fires_volume_drop_while_others_go_on() -> None:
    engine = AlertEngine(config(), volume_history=4, volume_min_history=3)
    fired: list[tuple[int, str, str]] = []
    for hour in range(7):
        segments = {"all": 2000, EU: 1000} if hour < 4 else {"all": 1000}  # eu stops at 4
        closed = [drift(hour, segment, predictions=n) for segment, n in segments.items()]
        silent = engine.silences(closed)
        # A window still held for a partition that is behind is not silence.
        assert engine.silences(closed, {("churn", "3", EU, T0 + hour * HOUR)}) == []
        if hour >= 4:  # eu had a window every hour: it is missing now, read as 0
            assert [(o.segment, o.predictions, o.window_start) for o in silent] == [
                (EU, 0, T0 + hour * HOUR)
            ]
        else:
            assert silent == []
        for observation in [*closed, *silent]:
            for event in engine.observe(observation).alert_events:
                fired.append((hour, event.segment, event.state))
    # eu: 0 < 0.5 x 1000 at 04:00; all: 1000 < 0.5 x 2000 is false (= 1000), no alert
    assert fired == [(4, EU, "firing")]
    # A segment whose history is zeros by now is no longer read as silent.
    quiet = AlertEngine(config(), volume_history=3, volume_min_history=3)
    for hour in range(3):
        quiet.observe(drift(hour, EU, predictions=0))
    assert quiet.silences([drift(3, "all", predictions=10)]) == []
    # Without a volume_drop rule nothing is made up.
    without = AlertEngine(config(rules=RULES[:3]), volume_history=4, volume_min_history=3)
    for hour in range(4):
        without.observe(drift(hour, EU, predictions=1000))
    assert without.silences([drift(4, "all", predictions=1000)]) == []


def test_volume_history_is_kept_per_segment_and_stable_under_replay() -> None:
    history = VolumeHistory(size=3, min_windows=2)
    start = [T0 + hour * HOUR for hour in range(6)]
    assert history.observe("churn", "3", EU, start[0], 100) is None
    assert history.observe("churn", "3", "region=us", start[1], 5) is None
    assert history.observe("churn", "3", EU, start[1], 300) is None
    assert history.observe("churn", "3", EU, start[2], 50) == VolumeBaseline(200.0, 2)
    assert history.observe("churn", "3", EU, start[3], 80) == VolumeBaseline(100.0, 3)
    assert history.observe("churn", "3", EU, start[4], 70) == VolumeBaseline(80.0, 3)
    # replaying window 3 gives the baseline it had, though window 0 is no longer kept
    assert history.observe("churn", "3", EU, start[3], 80) == VolumeBaseline(100.0, 3)
    # older than every kept window: too old to judge
    assert history.observe("churn", "3", EU, start[0], 100) is None
    assert list(history.windows("churn", "3", EU).values()) == [50, 80, 70]
    copy = VolumeHistory(size=3, min_windows=2)
    copy.load(json.loads(json.dumps(history.to_list())))
    assert copy.to_list() == history.to_list()
    with pytest.raises(AlertError, match="volume min_windows must be an integer in"):
        VolumeHistory(size=3, min_windows=4)
    with pytest.raises(AlertError, match="malformed"):
        copy.load([["churn", "3"]])


def test_performance_drop_ignores_thin_coverage_and_follows_re_evaluations() -> None:
    engine = AlertEngine(config())
    outputs = [
        engine.observe(perf(0, 0.70, coverage=0.10)),  # too few labels yet
        engine.observe(perf(0, 0.80, coverage=0.35)),  # 0.80 < 0.9 - 0.05: fires
        engine.observe(perf(0, 0.82, coverage=0.50)),  # same window, still bad: nothing
        engine.observe(perf(0, 0.87, coverage=0.90)),  # corrected: resolves
    ]
    assert transitions(outputs) == [
        (1, "accuracy-drop", "firing", None),
        (3, "accuracy-drop", "resolved", None),
    ]
    fired = outputs[1].alert_events[0]
    assert fired.value == 0.8 and fired.threshold == pytest.approx(0.85)
    assert fired.evidence["coverage"] == 0.35 and fired.evidence["baseline"] == 0.9
    assert "n=450" in outputs[1].notifications[0].body
    assert fired.summary.startswith("churn v3 [region=eu]: accuracy dropped (accuracy 0.8 < 0.85)")


def test_the_configured_baseline_overrides_the_reference_profile() -> None:
    model = {**MODEL, "performance": {"baseline": {"accuracy": 0.8}}}
    engine = AlertEngine(config(models=[model]))
    assert engine.observe(perf(0, 0.78, coverage=0.9)).empty  # 0.78 >= 0.8 - 0.05
    output = engine.observe(perf(1, 0.74, coverage=0.9))
    assert output.alert_events[0].threshold == pytest.approx(0.75)


def test_dataset_drift_and_accuracy_drop_make_one_retrain_request() -> None:
    engine = AlertEngine(config())
    two = {"tenure": 0.001, "plan": 0.01, "age": 0.5}
    one = {"tenure": 0.001, "plan": 0.5, "age": 0.5}
    outputs = [
        engine.observe(drift(0, p_values=one)),  # 1 feature < 2: nothing
        engine.observe(drift(1, p_values=two)),  # dataset-drift fires; 1 alert < min_alerts 2
        engine.observe(perf(1, 0.8, coverage=0.6, segment="region=us")),  # second alert
        engine.observe(drift(2, p_values=two)),
        engine.observe(perf(2, 0.8, coverage=0.6, segment="region=us")),
    ]
    assert transitions(outputs) == [
        (1, "dataset-drift", "firing", None),
        (2, "accuracy-drop", "firing", None),
    ]
    assert [len(output.retrain_requests) for output in outputs] == [0, 0, 1, 0, 0]
    dataset_alert = outputs[1].alert_events[0]
    accuracy_alert = outputs[2].alert_events[0]
    assert (dataset_alert.value, dataset_alert.threshold) == (2.0, 2.0)
    assert dataset_alert.summary == (
        "churn v3 [region=eu]: dataset drifted: tenure, plan (drifted_features 2 ≥ 2) "
        "in 2026-11-23 01:00–02:00 UTC"
    )
    (request,) = outputs[2].retrain_requests
    assert request.request_id == request_id(
        "churn", "3", [dataset_alert.alert_id, accuracy_alert.alert_id]
    )
    assert [reason.rule for reason in request.reasons] == ["accuracy-drop", "dataset-drift"]
    assert (request.window_start, request.window_end) == (T0 + HOUR, T0 + 2 * HOUR)
    assert request.requested_at == T0 + 2 * HOUR


def scenario() -> list[WindowObservation]:
    """A day of two segments: drift, recovery, a performance decay, a traffic drop."""
    script: list[WindowObservation] = []
    for hour in range(14):
        tenure = 0.35 if 3 <= hour <= 6 else 0.04
        plan = 0.25 if hour in (4, 6, 8) else 0.02  # flapping: never two in a row
        drifting = 3 <= hour <= 6 or hour >= 9
        p_values = {"tenure": 0.001 if drifting else 0.4, "plan": 0.01 if hour >= 9 else 0.3}
        volume = 1000 + 10 * hour if hour != 11 else 200
        script.append(drift(hour, predictions=volume, p_values=p_values, tenure=tenure, plan=plan))
        script.append(drift(hour, "region=us", predictions=500, tenure=0.05))
        if hour >= 2:
            accuracy = 0.8 if hour >= 8 else 0.9
            script.append(perf(hour - 2, accuracy, coverage=0.1))
            script.append(perf(hour - 2, accuracy, coverage=0.5))
    return script


def run_all(engine: AlertEngine, observations: list[WindowObservation]) -> list[EngineOutput]:
    return [engine.observe(observation) for observation in observations]


def test_the_scenario_has_the_expected_transitions() -> None:
    engine = AlertEngine(config(), volume_history=6, volume_min_history=3)
    outputs = run_all(engine, scenario())
    events = [event for output in outputs for event in output.alert_events]
    assert [(e.rule, e.state, e.feature, e.window_start.hour) for e in events] == [
        ("feature-drift", "firing", "tenure", 4),
        ("feature-drift", "resolved", "tenure", 8),
        ("accuracy-drop", "firing", None, 6),  # window 6 judged at hour 8 (labels lag 2 h)
        ("dataset-drift", "firing", None, 9),
        ("traffic-drop", "firing", None, 11),
        ("traffic-drop", "resolved", None, 12),
    ]
    requests = [request for output in outputs for request in output.retrain_requests]
    assert len(requests) == 1
    assert {reason.rule for reason in requests[0].reasons} == {"accuracy-drop", "dataset-drift"}
    assert sum(len(output.notifications) for output in outputs) == 4


@pytest.mark.parametrize("cut", [1, 7, 20, 33, 45, 58])
def test_a_restart_in_the_middle_gives_the_uninterrupted_output(cut: int) -> None:
    observations = scenario()
    expected = run_all(AlertEngine(config(), volume_history=6, volume_min_history=3), observations)
    before = AlertEngine(config(), volume_history=6, volume_min_history=3)
    head = run_all(before, observations[:cut])
    document = json.loads(json.dumps(before.snapshot(), allow_nan=False))
    after = AlertEngine(config(), volume_history=6, volume_min_history=3)
    after.restore(document)
    assert after.snapshot() == before.snapshot()
    # the stream hands over a few already-processed observations again: nothing new
    replayed = run_all(after, observations[max(0, cut - 5) : cut])
    assert all(output.empty for output in replayed)
    tail = run_all(after, observations[cut:])
    assert head + tail == expected


def test_replaying_everything_after_a_restore_emits_nothing() -> None:
    engine = AlertEngine(config(), volume_history=6, volume_min_history=3)
    run_all(engine, scenario())
    restored = AlertEngine(config(), volume_history=6, volume_min_history=3)
    restored.restore(engine.snapshot())
    assert all(output.empty for output in run_all(restored, scenario()))


def test_status_and_firing_filters() -> None:
    engine = AlertEngine(config())
    engine.observe(perf(0, 0.5, coverage=0.9))
    engine.observe(perf(0, 0.5, coverage=0.9, segment="region=us"))
    engine.observe(drift(0, tenure=0.4))
    assert [event.segment for event in engine.firing("churn", "3")] == ["region=eu", "region=us"]
    assert engine.firing("churn", "4") == [] and engine.firing("eta") == []
    phases = {(s.key.rule, s.key.segment): s.phase for s in engine.status()}
    assert phases == {
        ("accuracy-drop", EU): "firing",
        ("accuracy-drop", "region=us"): "firing",
        ("feature-drift", EU): "pending",
    }


def test_an_unconfigured_model_is_judged_by_rules_without_a_model_filter() -> None:
    engine = AlertEngine(config())
    observation = WindowObservation(
        "fraud", "1", "all", T0, T0 + HOUR,
        performance={"accuracy": PerformanceResult("accuracy", 0.5, 100)},
        coverage=1.0, baseline={"accuracy": 0.9},
    )  # fmt: skip
    (event,) = engine.observe(observation).alert_events
    assert (event.model_id, event.rule) == ("fraud", "accuracy-drop")


def test_restore_keeps_known_rules_and_refuses_other_documents() -> None:
    engine = AlertEngine(config())
    engine.observe(perf(0, 0.5, coverage=0.9))
    engine.observe(drift(0, tenure=0.4))
    fewer = AlertEngine(config(rules=RULES[:1], retrain=[]))
    fewer.restore(engine.snapshot())
    assert [status.key.rule for status in fewer.status()] == ["feature-drift"]
    with pytest.raises(AlertError, match="snapshot format must be 1"):
        fewer.restore({"format": 2})
    with pytest.raises(AlertError, match="snapshot lacks 'volume'"):
        fewer.restore({"format": 1, "alerts": [], "retrain": {}})
    with pytest.raises(AlertError, match="snapshot alerts must be a list"):
        fewer.restore({"format": 1, "alerts": {}, "volume": [], "retrain": {}})
    assert [status.key.rule for status in fewer.status()] == ["feature-drift"]  # unchanged


def test_an_overflowed_error_fires_and_a_value_nan_skips_only_its_rule(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rules = [
        {"name": "rmse-high", "kind": "performance_drop", "metric": "rmse", "threshold": 10.0,
         "min_coverage": 0.0},
        {"name": "traffic-drop", "kind": "volume_drop", "threshold": 0.5},
    ]  # fmt: skip
    model = {**MODEL, "task": "regression", "performance": {"metrics": ["rmse", "mae"]}}
    engine = AlertEngine(config(models=[model], rules=rules, retrain=[]), volume_min_history=1)
    # A diverging model: its squared errors overflow a float, RMSE is inf.
    stats = RegressionStats().update([1.0] * 5, [1e160] * 5)
    results = stats.compute(["rmse", "mae"], min_labelled=1)
    assert results["rmse"].value == math.inf
    window = WindowObservation(
        "churn", "3", EU, T0, T0 + HOUR, performance=results, coverage=1.0, predictions=5
    )
    [event] = engine.observe(window).alert_events
    assert (event.rule, event.state, event.value) == ("rmse-high", "firing", sys.float_info.max)
    # A NaN the rule cannot compare: that rule is skipped, the others still judge.
    nan = {"rmse": dataclasses.replace(results["rmse"], value=math.nan)}
    later = WindowObservation(
        "churn", "3", EU, T0 + HOUR, T0 + 2 * HOUR, performance=nan, coverage=1.0, predictions=1
    )
    with caplog.at_level(logging.WARNING, logger="alerts.engine"):
        output = engine.observe(later)
    assert [(e.rule, e.state) for e in output.alert_events] == [("traffic-drop", "firing")]
    assert engine.rule_errors == 1
    assert "rule 'rmse-high' skipped on churn v3 region=eu" in caplog.text


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            {"kind": "feature_drift", "metric": "ks", "op": "<", "threshold": 0.01},
            "op < would fire while the drift statistic stays small",
        ),
        (
            {"kind": "data_quality", "metric": "missing_rate", "threshold": 1.5},
            "threshold must be a rate in [0, 1] for missing_rate (got 1.5)",
        ),
        (
            {"kind": "data_quality", "metric": "missing_rate", "threshold": -0.1},
            "threshold must be a rate in [0, 1]",
        ),
    ],
)
def test_a_rule_that_would_fire_the_wrong_way_is_refused(
    rule: dict[str, Any], expected: str
) -> None:
    with pytest.raises(AlertError, match=r"^rules\[0\] 'r': ") as refused:
        AlertEngine(config(rules=[{"name": "r", **rule}], retrain=[]))
    assert expected in str(refused.value)


def test_a_rule_the_engine_cannot_judge_is_named() -> None:
    bad = [*RULES, {"name": "lag", "kind": "threshold", "op": ">", "threshold": 60,
                    "select": {"measurement": "label_lag", "field": "p95_s"}}]  # fmt: skip
    with pytest.raises(AlertError, match=r"^rules\[4\] 'lag': select.measurement label_lag"):
        AlertEngine(config(rules=bad))
