"""Faults in the middle of a live scenario change no result.

One seeded scenario (late labels, drift that starts and ends so alerts fire,
resolve and ask for a retrain, late predictions, retried predictions,
malformed messages) is produced live over a minute to four runs of
``driftline worker`` at once (:mod:`tests.support.chaos`):

* ``reference`` — one worker, undisturbed: the expected results, itself
  checked against an offline computation on the generated events;
* ``kill`` — its worker killed with SIGKILL at three seeded random moments and
  restarted each time, with 0.2 s and 5 s checkpoint intervals;
* ``rebalance`` — a second worker joins mid-scenario, one of the two stalls past its
  session timeout (its partitions move while it believes it owns them), the first one leaves;
* ``broker`` — its broker (noida-db, which keeps its data on disk) is stopped
  and started again mid-scenario.

Every faulted run must end with the reference run's points (the last value of
every series and timestamp), alerts, retrain requests and dead letters (after
removing duplicates by id), and with no join lost or counted twice. The
duplicates each output topic received are printed: they are allowed (the
outputs are at-least-once), and ``benchmarks/chaos.py`` reports them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.chaos import (
    RunReport,
    SessionPlan,
    SessionReport,
    join_differences,
    run_session,
    state_differences,
)
from tests.support.pipeline import load_reference, offline_drift

pytestmark = pytest.mark.integration

PLAN = SessionPlan(predictions=6_000, duration_s=60.0, seed=7, kills=3, broker_down_s=4.0)


@pytest.fixture(scope="module")
def session(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SessionReport]:
    yield run_session(PLAN, tmp_path_factory.mktemp("chaos"), kafka_bootstrap, say=print)


def _failure(run: RunReport) -> str:
    faults = "; ".join(
        f"{f.kind} at {f.progress:.0%} ({f.note}), caught up {f.recovery_s} s later"
        for f in run.faults
    )
    return f"{run.name}: {faults}\n{run.logs_tail}"


def _same_results(session: SessionReport, name: str) -> RunReport:
    """Assert a faulted run ended exactly like the reference run; return its report."""
    reference, run = session.runs["reference"], session.runs[name]
    assert run.crashes == [], _failure(run)
    assert state_differences(reference.state, run.state) == [], _failure(run)
    assert join_differences(session.facts, run.state) == [], _failure(run)
    assert run.store_missing == [], run.store_missing
    assert run.outputs.unique_alerts() == reference.outputs.unique_alerts()
    assert run.outputs.unique_requests() == reference.outputs.unique_requests()
    assert run.outputs.dead_letter_contents() == reference.outputs.dead_letter_contents()
    assert len(run.outputs.unique_dead_letters()) == session.scenario.dead_letters
    assert run.accounting == reference.accounting
    print(f"{name}: duplicates on the output topics {run.outputs.duplicates()}")
    return run


def test_the_reference_run_matches_an_offline_computation(session: SessionReport) -> None:
    reference = session.runs["reference"]
    assert reference.crashes == [], reference.logs_tail
    assert join_differences(session.facts, reference.state) == []
    assert reference.store_missing == []
    # Drift of every feature and method in every window, as computed offline.
    scenario = session.scenario
    on_time = [e for e in scenario.predictions if e["prediction_id"] not in scenario.late_ids]
    profile = load_reference(session.workdir)
    for start in session.facts:
        for (feature, method), result in offline_drift(profile, on_time, start).items():
            key = (
                "feature_drift",
                (("feature", feature), ("method", method), ("model_id", "churn"),
                 ("model_version", "1"), ("segment", "all")),
                start * 1_000_000_000,
            )  # fmt: skip
            if result.statistic is None:
                assert key not in reference.state
                continue
            row = reference.state[key]
            assert row["statistic"] == pytest.approx(result.statistic, rel=1e-9, abs=1e-12)
            assert row["drifted"] == bool(result.drifted)
    # The drift fired and resolved every rule in the `all` segment, and asked for one retrain.
    alerts = reference.outputs.unique_alerts()
    states = {(a.rule, a.state) for a in alerts.values() if a.segment == "all"}
    assert states == {
        ("charges-drift", "firing"),
        ("charges-drift", "resolved"),
        ("plan-drift", "firing"),
        ("plan-drift", "resolved"),
    }
    assert len(reference.outputs.unique_requests()) == 1
    assert len(reference.outputs.unique_dead_letters()) == scenario.dead_letters
    # Undisturbed, nothing is published twice.
    assert reference.outputs.duplicates() == {
        "alerts": 0,
        "retrain requests": 0,
        "dead letters": 0,
        "notifications": 0,
    }
    # Every message is accounted for: volume points, join counters, dead letters.
    assert reference.accounting.total == scenario.events_in
    assert reference.counters.duplicate_predictions == scenario.duplicates


def test_kill_9_at_random_points_loses_nothing_and_counts_nothing_twice(
    session: SessionReport,
) -> None:
    run = _same_results(session, "kill")
    assert [f.kind for f in run.faults] == ["kill -9"] * PLAN.kills
    assert all(0.1 < f.progress < 0.95 for f in run.faults), _failure(run)
    intervals = {f.note for f in run.faults}
    assert len(intervals) == 2, intervals  # kills with 0.2 s and with 5 s checkpoints
    # The restarted workers resumed from checkpoints, not from scratch.
    assert run.restored >= PLAN.kills, _failure(run)
    assert all(f.recovery_s is not None for f in run.faults), _failure(run)


def test_a_worker_added_one_stalled_and_one_removed_change_nothing(
    session: SessionReport,
) -> None:
    run = _same_results(session, "rebalance")
    assert [f.kind for f in run.faults] == ["worker added", "worker stalled", "worker removed"]


def test_a_broker_restart_changes_nothing(session: SessionReport) -> None:
    run = _same_results(session, "broker")
    assert [f.kind for f in run.faults] == ["broker restart"]
    assert all(f.recovery_s is not None for f in run.faults), _failure(run)
