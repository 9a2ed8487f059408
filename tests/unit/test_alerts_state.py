"""The alert state machine: scripted windows → exact phases and transitions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import AlertError, AlertKey, AlertMachine, RuleOutcome, WindowVerdict
from schemas.config import RuleConfig
from schemas.outputs import AlertEvent

T0 = datetime(2026, 11, 23, tzinfo=UTC)
HOUR = timedelta(hours=1)
KEY = AlertKey("drift", "churn", "3", "region=eu", "tenure")


def rule(**fields: Any) -> RuleConfig:
    base = {"name": "drift", "kind": "feature_drift", "metric": "psi", "op": ">", "threshold": 0.2}
    return RuleConfig.model_validate({**base, **fields})


def verdict(hour: int, psi: float, resolve: float | None = None) -> WindowVerdict:
    outcome = RuleOutcome.judge(KEY, "psi", psi, ">", 0.2, resolve, "feature tenure drifted", n=800)
    return WindowVerdict(T0 + hour * HOUR, T0 + (hour + 1) * HOUR, outcome)


@dataclass
class Run:
    phases: list[str]
    events: dict[int, AlertEvent]  # index in the script → event


def run(
    machine: AlertMachine,
    alert_rule: RuleConfig,
    script: list[tuple[int, float]],
    resolve: float | None = None,
) -> Run:
    phases: list[str] = []
    events: dict[int, AlertEvent] = {}
    for index, (hour, psi) in enumerate(script):
        event = machine.step(alert_rule, verdict(hour, psi, resolve))
        phases.append(machine.phase + ("*" if machine.status().held else ""))
        if event is not None:
            events[index] = event
    return Run(phases, events)


BAD, GOOD, MID = 0.3, 0.05, 0.15


def test_for_two_fires_on_the_second_breach_and_resolves_once() -> None:
    script = [(0, GOOD), (1, BAD), (2, 0.35), (3, 0.4), (4, BAD), (5, GOOD), (6, GOOD)]
    result = run(AlertMachine(KEY), rule(**{"for": 2}), script)
    assert result.phases == ["ok", "pending", "firing", "firing", "firing", "resolved", "ok"]
    assert sorted(result.events) == [2, 5]
    fired, resolved = result.events[2], result.events[5]
    assert fired.state == "firing" and resolved.state == "resolved"
    assert fired.alert_id == resolved.alert_id == KEY.alert_id(T0 + 2 * HOUR)
    assert (fired.window_start, fired.window_end) == (T0 + 2 * HOUR, T0 + 3 * HOUR)
    assert fired.fired_at == resolved.fired_at == T0 + 3 * HOUR
    assert (fired.value, fired.threshold, fired.severity) == (0.35, 0.2, "warning")
    assert (resolved.window_start, resolved.value, resolved.threshold) == (T0 + 5 * HOUR, GOOD, 0.2)
    assert fired.summary == (
        "churn v3 [region=eu]: feature tenure drifted (psi 0.35 > 0.2) "
        "in 2026-11-23 02:00–03:00 UTC"
    )
    assert resolved.summary == (
        "churn v3 [region=eu]: resolved: feature tenure drifted (psi 0.05 ≤ 0.2) "
        "in 2026-11-23 05:00–06:00 UTC"
    )
    assert fired.evidence["for_windows"] == 2 and fired.evidence["n"] == 800
    assert (fired.model_id, fired.model_version, fired.segment, fired.feature, fired.metric) == (
        "churn",
        "3",
        "region=eu",
        "tenure",
        "psi",
    )


def test_flapping_values_never_fire_with_for_two() -> None:
    script = [(hour, BAD if hour % 2 == 0 else GOOD) for hour in range(10)]
    result = run(AlertMachine(KEY), rule(**{"for": 2}), script)
    assert result.events == {}
    assert result.phases == ["pending", "ok"] * 5


def test_a_missing_window_restarts_the_pending_count() -> None:
    # hour 1 never arrives: 0 and 2 are not consecutive
    script = [(0, BAD), (2, BAD), (3, BAD)]
    result = run(AlertMachine(KEY), rule(**{"for": 2}), script)
    assert result.phases == ["pending", "pending", "firing"]
    assert list(result.events) == [2]
    assert result.events[2].window_start == T0 + 3 * HOUR


def test_the_same_window_twice_counts_once() -> None:
    result = run(AlertMachine(KEY), rule(**{"for": 2}), [(0, BAD), (0, BAD), (0, 0.5)])
    assert result.phases == ["pending"] * 3 and result.events == {}
    assert AlertMachine(KEY).status().streak == 0


def test_a_re_evaluated_window_replaces_its_verdict() -> None:
    machine = AlertMachine(KEY)
    result = run(machine, rule(**{"for": 2}), [(0, BAD), (0, GOOD), (1, BAD)])
    assert result.phases == ["pending", "ok", "pending"]
    assert machine.status().streak == 1


def test_a_late_window_closing_a_gap_completes_the_streak() -> None:
    # 0 and 2 breach with 1 missing; then 1 arrives (a late re-evaluation): 0, 1, 2 consecutive
    machine = AlertMachine(KEY)
    result = run(machine, rule(**{"for": 3}), [(0, BAD), (2, BAD), (1, BAD)])
    assert result.phases == ["pending", "pending", "firing"]
    event = result.events[2]
    assert event.window_start == T0 + 2 * HOUR  # the newest window completes the streak
    assert event.alert_id == KEY.alert_id(T0 + 2 * HOUR)


def test_a_verdict_older_than_the_kept_windows_is_ignored() -> None:
    machine = AlertMachine(KEY)
    run(machine, rule(**{"for": 2}), [(5, GOOD), (6, GOOD)])
    before = machine.to_dict()
    assert machine.step(rule(**{"for": 2}), verdict(1, BAD)) is None
    assert machine.to_dict() == before


def test_hysteresis_resolves_only_past_the_resolve_threshold() -> None:
    alert_rule = rule(resolve={"threshold": 0.1})
    script = [(0, BAD), (1, MID), (2, 0.12), (3, BAD), (4, MID), (5, 0.1), (6, BAD)]
    result = run(AlertMachine(KEY), alert_rule, script, resolve=0.1)
    assert result.phases == ["firing"] * 5 + ["resolved", "firing"]
    assert sorted(result.events) == [0, 5, 6]
    resolved = result.events[5]
    assert (resolved.value, resolved.threshold) == (0.1, 0.1)
    assert resolved.evidence["resolve_threshold"] == 0.1 and resolved.evidence["threshold"] == 0.2
    assert "(psi 0.1 ≤ 0.1)" in resolved.summary
    assert result.events[6].alert_id != result.events[0].alert_id  # cooldown 1h has passed


def test_resolve_for_needs_consecutive_good_windows_and_a_gap_restarts_them() -> None:
    alert_rule = rule(resolve={"for": 2})
    # fire at 0; 1 good; 2 breach; 3 good; gap at 4; 5 good; 6 good → resolved at 6
    script = [(0, BAD), (1, GOOD), (2, BAD), (3, GOOD), (5, GOOD), (6, GOOD)]
    result = run(AlertMachine(KEY), alert_rule, script)
    assert result.phases == ["firing"] * 5 + ["resolved"]
    assert sorted(result.events) == [0, 5]
    assert result.events[5].evidence["resolve_for_windows"] == 2


def test_cooldown_holds_a_new_firing_then_releases_it_if_the_breach_persists() -> None:
    alert_rule = rule(cooldown="3h")
    machine = AlertMachine(KEY)
    # fire at 0, resolve at 1 (resolved_at = 02:00); new breaches from 2 are held while their
    # window ends before 05:00; the window 4 (04:00–05:00) is the first that may fire
    script = [(0, BAD), (1, GOOD), (2, BAD), (3, BAD), (4, BAD), (5, BAD)]
    result = run(machine, alert_rule, script)
    assert result.phases == ["firing", "resolved", "pending*", "pending*", "firing", "firing"]
    assert sorted(result.events) == [0, 1, 4]
    second = result.events[4]
    assert second.alert_id == KEY.alert_id(T0 + 4 * HOUR) != result.events[0].alert_id
    assert second.fired_at == T0 + 5 * HOUR
    status = machine.status()
    assert (status.phase, status.streak, status.alert_id) == ("firing", 0, second.alert_id)


def test_a_breach_that_ends_during_the_cooldown_never_fires() -> None:
    script = [(0, BAD), (1, GOOD), (2, BAD), (3, GOOD), (4, GOOD), (5, GOOD)]
    result = run(AlertMachine(KEY), rule(cooldown="3h"), script)
    assert result.phases == ["firing", "resolved", "pending*", "ok", "ok", "ok"]
    assert sorted(result.events) == [0, 1]


def test_no_cooldown_before_the_first_firing_and_zero_cooldown() -> None:
    result = run(AlertMachine(KEY), rule(cooldown="1d"), [(0, BAD)])
    assert list(result.events) == [0]
    result = run(AlertMachine(KEY), rule(cooldown=0), [(0, BAD), (1, GOOD), (2, BAD)])
    assert sorted(result.events) == [0, 1, 2]


def test_the_resolving_window_never_counts_towards_a_new_firing() -> None:
    machine = AlertMachine(KEY)
    alert_rule = rule(cooldown=0)
    run(machine, alert_rule, [(0, BAD), (1, GOOD)])
    assert machine.step(alert_rule, verdict(1, BAD)) is None  # re-evaluated: still resolved
    assert machine.phase == "resolved"
    event = machine.step(alert_rule, verdict(2, BAD))
    assert event is not None and event.window_start == T0 + 2 * HOUR


def test_a_re_evaluation_of_the_firing_window_can_resolve_it() -> None:
    machine = AlertMachine(KEY)
    result = run(machine, rule(), [(0, BAD), (0, GOOD)])
    assert result.phases == ["firing", "resolved"]
    assert result.events[1].window_start == T0


def test_severity_comes_from_the_rule() -> None:
    result = run(AlertMachine(KEY), rule(severity="critical"), [(0, BAD), (1, GOOD)])
    assert [event.severity for event in result.events.values()] == ["critical", "critical"]


def test_outcomes_of_another_key_are_refused() -> None:
    other = RuleOutcome.judge(
        AlertKey("drift", "churn", "3", "all", "age"), "psi", 0.3, ">", 0.2, None, "x"
    )
    with pytest.raises(AlertError, match="does not belong to the machine"):
        AlertMachine(KEY).step(rule(), WindowVerdict(T0, T0 + HOUR, other))


def test_round_trip_through_json_in_the_middle_continues_identically() -> None:
    alert_rule = rule(**{"for": 2, "cooldown": "2h", "resolve": {"for": 2}})
    script = [(0, BAD), (1, BAD), (2, GOOD), (3, GOOD), (4, BAD), (5, BAD), (6, BAD), (7, GOOD)]
    whole = run(AlertMachine(KEY), alert_rule, script)
    first = AlertMachine(KEY)
    head = run(first, alert_rule, script[:5])
    copy = AlertMachine.from_dict(json.loads(json.dumps(first.to_dict(), allow_nan=False)))
    assert copy.to_dict() == first.to_dict()
    tail = run(copy, alert_rule, script[5:])
    assert head.phases + tail.phases == whole.phases
    assert list(head.events.values()) + list(tail.events.values()) == list(whole.events.values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"phase": "burning"}, "alert phase must be one of ok, pending, firing, resolved"),
        ({"key": ["drift", "churn"]}, "alert key must be"),
        ({"firing": None}, "is firing but its firing event disagrees"),
        ({"resolved_at": "2026-11-23T10:00:00"}, "lacks a UTC offset"),
        ({"verdicts": [["x", "y", {}]]}, "malformed"),
    ],
)
def test_malformed_entries_are_refused_with_the_reason(
    change: dict[str, Any], message: str
) -> None:
    machine = AlertMachine(KEY)
    machine.step(rule(), verdict(0, BAD))
    data = {**machine.to_dict(), **change}
    with pytest.raises(AlertError, match=message):
        AlertMachine.from_dict(data)
    clean = machine.to_dict()
    del clean["streak"]
    with pytest.raises(AlertError, match="lacks 'streak'"):
        AlertMachine.from_dict(clean)


# Property: an independent, counter-based model of the documented semantics ---------


def oracle(
    values: list[float], for_windows: int, resolve_for: int, cooldown_h: int, resolve: float
) -> list[tuple[int, str]]:
    """Windows in order, no gaps, no repeats: transitions by plain counting."""
    transitions: list[tuple[int, str]] = []
    firing = False
    breaches = goods = 0
    resolved_end: int | None = None
    for hour, value in enumerate(values):
        end = hour + 1
        if firing:
            goods = goods + 1 if value <= resolve else 0
            if goods >= resolve_for:
                transitions.append((hour, "resolved"))
                firing, breaches, resolved_end = False, 0, end
        else:
            breaches = breaches + 1 if value > 0.2 else 0
            cooled = resolved_end is None or end >= resolved_end + cooldown_h
            if breaches >= for_windows and cooled:
                transitions.append((hour, "firing"))
                firing, goods = True, 0
    return transitions


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.sampled_from([0.05, 0.1, 0.15, 0.2, 0.3]), max_size=40),
    for_windows=st.integers(1, 4),
    resolve_for=st.integers(1, 3),
    cooldown_h=st.integers(0, 5),
    resolve=st.sampled_from([0.2, 0.1]),
    cut=st.integers(0, 40),
)
def test_matches_a_counting_model_and_survives_a_restart_anywhere(
    values: list[float],
    for_windows: int,
    resolve_for: int,
    cooldown_h: int,
    resolve: float,
    cut: int,
) -> None:
    alert_rule = rule(
        **{"for": for_windows, "resolve": {"threshold": resolve, "for": resolve_for}},
        cooldown=cooldown_h * 3600,
    )
    machine = AlertMachine(KEY)
    got: list[tuple[int, str]] = []
    events: list[AlertEvent] = []
    for hour, value in enumerate(values):
        if hour == cut:
            machine = AlertMachine.from_dict(json.loads(json.dumps(machine.to_dict())))
        event = machine.step(alert_rule, verdict(hour, value, resolve))
        # a replay of the same window never changes anything
        assert machine.step(alert_rule, verdict(hour, value, resolve)) is None
        if event is not None:
            got.append((hour, event.state))
            events.append(event)
    assert got == oracle(values, for_windows, resolve_for, cooldown_h, resolve)
    assert [e.state for e in events] == ["firing", "resolved"] * (len(events) // 2) + (
        ["firing"] if len(events) % 2 else []
    )
    for fired, resolved in zip(events[::2], events[1::2], strict=False):
        assert fired.alert_id == resolved.alert_id and fired.fired_at == resolved.fired_at
