"""Retrain policies: min_alerts, cooldown per model, idempotent request ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts import AlertError, RetrainPlanner, request_id
from schemas.config import RetrainPolicyConfig
from schemas.outputs import AlertEvent

T0 = datetime(2026, 11, 23, tzinfo=UTC)
HOUR = timedelta(hours=1)


def policy(**fields: Any) -> RetrainPolicyConfig:
    base = {"name": "decay", "rules": ["accuracy-drop", "feature-drift"], "min_alerts": 2}
    return RetrainPolicyConfig.model_validate({**base, **fields})


def alert(
    alert_id: str,
    hour: int,
    rule: str = "feature-drift",
    feature: str | None = "tenure",
    version: str = "3",
    model: str = "churn",
    state: str = "firing",
) -> AlertEvent:
    return AlertEvent.model_validate(
        {
            "alert_id": alert_id,
            "rule": rule,
            "state": state,
            "severity": "warning",
            "model_id": model,
            "model_version": version,
            "segment": "all",
            "metric": "psi",
            "feature": feature,
            "value": 0.3 + hour / 100,
            "threshold": 0.2,
            "window_start": T0 + hour * HOUR,
            "window_end": T0 + (hour + 1) * HOUR,
            "fired_at": T0 + (hour + 1) * HOUR,
            "summary": f"alert {alert_id}",
        }
    )


def test_min_alerts_firing_at_once_make_one_request() -> None:
    planner = RetrainPlanner([policy()])
    a = alert("a", 2, feature="tenure")
    b = alert("b", 5, rule="accuracy-drop", feature=None)
    assert planner.evaluate("churn", "3", [a], T0 + 3 * HOUR) == []
    (request,) = planner.evaluate("churn", "3", [a, b], T0 + 6 * HOUR)
    assert request.request_id == request_id("churn", "3", ["a", "b"])
    assert (request.model_id, request.model_version) == ("churn", "3")
    assert request.requested_at == T0 + 6 * HOUR
    assert (request.window_start, request.window_end) == (T0 + 2 * HOUR, T0 + 6 * HOUR)
    assert [(r.alert_id, r.rule, r.feature, r.value, r.threshold) for r in request.reasons] == [
        ("b", "accuracy-drop", None, 0.35, 0.2),
        ("a", "feature-drift", "tenure", 0.32, 0.2),
    ]
    # the same firing alerts never ask twice, whatever the time
    assert planner.evaluate("churn", "3", [a, b], T0 + 100 * HOUR) == []


def test_only_the_policys_rules_models_and_firing_alerts_count() -> None:
    planner = RetrainPlanner([policy(models=["churn"])])
    other_rule = alert("x", 1, rule="missing-values")
    resolved = alert("y", 1, state="resolved")
    other_version = alert("z", 1, version="2")
    mine = alert("a", 1)
    assert planner.evaluate("churn", "3", [mine, other_rule, resolved, other_version], T0) == []
    eta = [alert("e1", 1, model="eta"), alert("e2", 1, model="eta", feature="age")]
    assert planner.evaluate("eta", "3", eta, T0) == []


def test_cooldown_per_model_holds_a_new_trigger_until_it_has_passed() -> None:
    planner = RetrainPlanner([policy(cooldown="1d")])
    a, b, c = alert("a", 0), alert("b", 0, feature="age"), alert("c", 3, feature="plan")
    (first,) = planner.evaluate("churn", "3", [a, b], T0 + HOUR)
    assert first.requested_at == T0 + HOUR
    # a new alert joins within the cooldown: held
    assert planner.evaluate("churn", "3", [a, b, c], T0 + 4 * HOUR) == []
    assert planner.evaluate("churn", "3", [a, b, c], T0 + 24 * HOUR) == []  # 23 h after
    (second,) = planner.evaluate("churn", "3", [a, b, c], T0 + 25 * HOUR)
    assert second.requested_at == T0 + 25 * HOUR
    assert second.request_id == request_id("churn", "3", ["a", "b", "c"]) != first.request_id
    assert [reason.alert_id for reason in second.reasons] == [
        "b",
        "c",
        "a",
    ]  # by feature: age, plan, tenure
    # the cooldown is per model, across versions
    v4 = [alert("d", 26, version="4"), alert("e", 26, version="4", feature="age")]
    assert planner.evaluate("churn", "4", v4, T0 + 27 * HOUR) == []
    (other_model,) = planner.evaluate(
        "eta", "1", [alert("f", 26, model="eta", version="1"),
                     alert("g", 26, model="eta", version="1", feature="age")], T0 + 27 * HOUR,
    )  # fmt: skip
    assert other_model.model_id == "eta"


def test_event_time_going_backwards_is_within_the_cooldown() -> None:
    planner = RetrainPlanner([policy(min_alerts=1, cooldown="1h")])
    planner.evaluate("churn", "3", [alert("a", 10)], T0 + 11 * HOUR)
    # a performance alert of an older window fires later in processing order
    late = alert("b", 2, rule="accuracy-drop", feature=None)
    assert planner.evaluate("churn", "3", [alert("a", 10), late], T0 + 3 * HOUR) == []


def test_a_resolved_alert_leaves_the_memory_and_a_new_occurrence_asks_again() -> None:
    planner = RetrainPlanner([policy(min_alerts=1, cooldown=0)])
    (first,) = planner.evaluate("churn", "3", [alert("a1", 0)], T0 + HOUR)
    assert planner.evaluate("churn", "3", [], T0 + 2 * HOUR) == []  # a1 resolved
    assert planner.to_dict()["covered"] == []
    (second,) = planner.evaluate("churn", "3", [alert("a2", 3)], T0 + 4 * HOUR)
    assert second.request_id == request_id("churn", "3", ["a2"]) != first.request_id


def test_two_policies_share_the_models_cooldown() -> None:
    planner = RetrainPlanner(
        [
            policy(name="decay", rules=["accuracy-drop"], min_alerts=1, cooldown="1d"),
            policy(name="drift", rules=["feature-drift"], min_alerts=1, cooldown="2h"),
        ]
    )
    decay, drift = alert("p", 0, rule="accuracy-drop", feature=None), alert("d", 0)
    requests = planner.evaluate("churn", "3", [decay, drift], T0 + HOUR)
    assert [r.reasons[0].rule for r in requests] == ["accuracy-drop"]
    assert planner.evaluate("churn", "3", [decay, drift], T0 + 2 * HOUR) == []
    (late,) = planner.evaluate("churn", "3", [decay, drift], T0 + 3 * HOUR)  # drift's 2 h passed
    assert late.reasons[0].alert_id == "d"


def test_requests_are_idempotent_across_a_restart() -> None:
    a, b = alert("a", 0), alert("b", 1, feature="age")
    planner = RetrainPlanner([policy()])
    (request,) = planner.evaluate("churn", "3", [a, b], T0 + 2 * HOUR)
    restored = RetrainPlanner([policy()])
    restored.load(json.loads(json.dumps(planner.to_dict())))
    assert restored.to_dict() == planner.to_dict()
    assert restored.evaluate("churn", "3", [a, b], T0 + 2 * HOUR) == []
    # a planner that lost its state asks again, with the same idempotency key
    (again,) = RetrainPlanner([policy()]).evaluate("churn", "3", [b, a], T0 + 2 * HOUR)
    assert again == request


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"covered": []}, "lacks 'last_request'"),
        ({"last_request": {"churn": "yesterday"}, "covered": []}, "malformed"),
        ({"last_request": {"churn": "2026-11-23T10:00:00"}, "covered": []}, "UTC offset"),
        ({"last_request": {}, "covered": [["decay", "churn"]]}, "malformed"),
    ],
)
def test_malformed_state_is_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(AlertError, match=message):
        RetrainPlanner([policy()]).load(data)
