"""A long chat outage: the notifier stays bounded, drops the oldest, delivers the newest.

The notifier (:class:`streams.notify.Notifier`) runs its real sender task and
posts through apprise to a real HTTP receiver (:class:`tests.servers.ChatReceiver`)
that answers 500 for :data:`OUTAGE_S` while alerts keep coming, then 200
again. Every notification has its own title, so the test tells from what the
receiver recorded which ones were tried, which failed, which were delivered
and which never left the queue, and checks the notifier's counters against
that:

* the queue never holds more than its bound, sampled after every submit;
* ``dropped`` = fired − delivered − failed − still queued (all computed here
  from the receiver's records), and the dropped ones are the oldest: none of
  them is among the newest ``max_queued``;
* once the receiver answers 200 again, the newest ``max_queued``
  notifications are delivered;
* the process's resident memory grows by less than
  :data:`RSS_GROWTH_BOUND_KIB` over the outage.

Then a real ``driftline worker`` with ``DRIFTLINE_NOTIFY_MAX_QUEUED`` set low
fires alerts (drift in several features and segments) at a chat URL nothing
listens on: its counter line at shutdown accounts for every alert it
published (failed, dropped, or abandoned at shutdown), and the drops are
reported once a minute rather than once per notification.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from schemas import AlertEvent
from streams.embedded import free_port
from streams.notify import Notifier, OutgoingNotification
from streams.synthetic import ScenarioConfig, generate
from tests.servers import ChatReceiver, consume_at_least, unique_topic_name
from tests.support.pipeline import (
    FEATURES_YAML,
    Run,
    build_reference,
    create_topics,
    load_reference,
    produce_predictions,
    scenario_start,
    start_worker,
    stop,
    topic_env,
)

pytestmark = pytest.mark.integration

OUTAGE_S = 12.0
"""How long the receiver answers 500 while notifications keep coming."""

FIRED = 600
"""Notifications submitted during the outage (50 a second)."""

MAX_QUEUED = 20
"""The notifier's queue bound."""

ATTEMPTS = 3
"""Tries per notification before it counts as failed."""

RSS_GROWTH_BOUND_KIB = 16 * 1024
"""Most this process's VmRSS may grow over the outage."""


def rss_kib() -> int:
    """Resident set size of this process, from ``/proc/self/status`` (kiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def title(index: int) -> str:
    return f"alert {index:04d}"


def test_a_long_outage_drops_the_oldest_counts_them_and_delivers_the_newest(
    chat_receiver: ChatReceiver,
) -> None:
    sender = Notifier(
        {"oncall": [SecretStr(f"json://{chat_receiver.url_base}/outage-hook")]},
        max_queued=MAX_QUEUED,
        attempts=ATTEMPTS,
        base_delay_s=0.05,
        max_delay_s=0.2,
    )
    queue_lengths: list[int] = []
    rss: list[int] = []

    async def scenario() -> None:
        task = asyncio.create_task(sender.run())
        try:
            # Warm-up: apprise loads its plugins on the first send.
            sender.submit(OutgoingNotification("oncall", "warm-up", "body"))
            while sender.stats.sent < 1:
                await asyncio.sleep(0.01)
            rss.append(rss_kib())

            chat_receiver.respond_with(500, '{"error": "down"}')
            for index in range(FIRED):
                sender.submit(OutgoingNotification("oncall", title(index), f"body {index}"))
                queue_lengths.append(sender.queued)
                if index % 25 == 0:
                    rss.append(rss_kib())
                await asyncio.sleep(OUTAGE_S / FIRED)
            chat_receiver.respond_with(200)

            deadline = time.monotonic() + 30
            accounted = 0
            while accounted < FIRED + 1 and time.monotonic() < deadline:
                stats = sender.stats
                accounted = stats.sent + stats.failed + stats.dropped + sender.queued
                await asyncio.sleep(0.05)
            # Everything is sent, failed or dropped, and nothing is in flight any more.
            while sender.queued and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
        rss.append(rss_kib())

    asyncio.run(scenario())

    requests = [r for r in chat_receiver.requests if r.path == "/outage-hook"]
    titles = [title(index) for index in range(FIRED)]
    delivered = {r.json["title"] for r in requests if r.status == 200} - {"warm-up"}
    refused: dict[str, int] = {}
    for request in requests:
        if request.status == 500:
            refused[request.json["title"]] = refused.get(request.json["title"], 0) + 1
    failed = {name for name, count in refused.items() if count == ATTEMPTS} - delivered
    never_tried = set(titles) - delivered - set(refused)

    assert max(queue_lengths) == MAX_QUEUED
    assert sender.queued == 0
    # The outage was long: many notifications were tried and given up on.
    assert len(failed) >= 10
    assert sender.stats.failed == len(failed)
    assert sender.stats.sent == len(delivered) + 1  # and the warm-up
    assert sender.stats.dropped == FIRED - len(delivered) - len(failed) - sender.queued
    assert sender.stats.dropped == len(never_tried)
    # The oldest were dropped: every dropped one is older than the newest MAX_QUEUED.
    index_of = {name: index for index, name in enumerate(titles)}
    assert max(index_of[n] for n in never_tried) < FIRED - MAX_QUEUED
    # The newest were delivered once the receiver was back (the one in flight may be too).
    assert set(titles[-MAX_QUEUED:]) <= delivered
    assert len(delivered) <= MAX_QUEUED + 1
    growth = max(rss) - rss[0]
    assert growth < RSS_GROWTH_BOUND_KIB, rss
    print(
        f"fired {FIRED} in {OUTAGE_S:.0f} s; queue max {max(queue_lengths)} (bound {MAX_QUEUED}); "
        f"delivered {len(delivered)}, failed {len(failed)}, dropped {sender.stats.dropped}; "
        f"RSS KiB {rss[0]} -> max {max(rss)} -> {rss[-1]}"
    )


WORKER_MAX_QUEUED = 3
"""``DRIFTLINE_NOTIFY_MAX_QUEUED`` of the worker."""

WORKER_RSS_BOUND_KIB = 512 * 1024
"""Most VmRSS the worker may reach (it runs near 250 MiB with this scenario)."""

NOTIFICATION_COUNTERS = re.compile(
    r"notifications: sent=(\d+), failed=(\d+), retries=(\d+), dropped=(\d+), "
    r"abandoned=(\d+), queued=(\d+)"
)


def worker_config(chat_url: str) -> str:
    return f"""
models:
  - id: churn
    task: binary
    reference: ref-{{version}}.json
    segment_by: [region]
    window: {{size: 300s, allowed_lateness: 30s, label_horizon: 1h, emit_interval: 1s}}
    drift: {{numeric_methods: [psi], categorical_methods: [psi], min_samples: 50}}
    features:
{FEATURES_YAML}
channels:
  oncall:
    urls: ["{chat_url}"]
rules:
  - name: any-drift
    kind: feature_drift
    metric: psi
    for: 1
    resolve: {{for: 1}}
    cooldown: 0s
    channel: oncall
"""


def test_a_worker_with_chat_down_keeps_its_queue_bounded_and_counts_the_drops(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    dead = f"json://127.0.0.1:{free_port()}/hook"  # nothing listens there
    env = {
        **topic_env(unique_topic_name("chat-outage"), kafka_bootstrap, tmp_path / "data"),
        "DRIFTLINE_NOTIFY_MAX_QUEUED": str(WORKER_MAX_QUEUED),
    }
    (tmp_path / "monitors.yaml").write_text(worker_config(dead))
    build_reference(tmp_path, env)
    create_topics(tmp_path, env)
    scenario = generate(
        ScenarioConfig(
            start=scenario_start(3), predictions=4_000, rate_per_s=2.0, drift_from=0.3,
            drift_until=0.7, seed=5, malformed_every=0,
        )
    )  # fmt: skip
    produce_predictions(kafka_bootstrap, env["DRIFTLINE_TOPIC_PREDICTIONS"], scenario.predictions)
    run = Run(env, tmp_path, scenario.predictions, [], 0, load_reference(tmp_path))
    worker = start_worker(run, "worker")
    log_path = tmp_path / "worker.log"
    try:
        assert worker.pid is not None
        alerts = [
            AlertEvent.model_validate_json(m.value())
            for m in consume_at_least(
                kafka_bootstrap, env["DRIFTLINE_TOPIC_ALERTS"], 2 * WORKER_MAX_QUEUED, timeout=60
            )
        ]
        rss = int(
            next(
                line.split()[1]
                for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
        )
    finally:
        stop(worker)
    log = log_path.read_text()
    assert worker.returncode == 0, log[-3000:]
    # Every alert the worker published, read again now that it has stopped.
    alerts = [
        AlertEvent.model_validate_json(m.value())
        for m in consume_at_least(
            kafka_bootstrap, env["DRIFTLINE_TOPIC_ALERTS"], len(alerts), quiet_s=2.0
        )
    ]
    fired = len({(a.alert_id, a.state, a.window_start) for a in alerts})
    counters = NOTIFICATION_COUNTERS.findall(log)
    assert counters, log[-3000:]
    sent, failed, _, dropped, abandoned, queued = (int(v) for v in counters[-1])
    assert sent == 0
    assert queued == 0  # sent, failed or abandoned at shutdown
    assert dropped > 1
    # Every fired notification is in exactly one counter.
    assert fired == failed + dropped + abandoned
    # One warning per minute about the drops, not one per notification.
    warnings = log.count(f"notification queue full ({WORKER_MAX_QUEUED}): dropped the oldest")
    assert 1 <= warnings < dropped
    assert rss < WORKER_RSS_BOUND_KIB
    print(
        f"worker: fired {fired}, failed {failed}, dropped {dropped} ({warnings} warnings), "
        f"abandoned {abandoned} (bound {WORKER_MAX_QUEUED}), RSS {rss} KiB"
    )
