"""Chat notifications through apprise to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from pydantic import SecretStr

from streams.embedded import free_port
from streams.notify import Notifier, OutgoingNotification
from tests.servers import ChatReceiver

pytestmark = pytest.mark.integration

SECRET = "T0KEN-s3cr3t-9f8e7d"


def notifier(receiver: ChatReceiver, **options: float) -> Notifier:
    urls = [
        SecretStr(f"json://{receiver.url_base}/hook/{SECRET}"),
        SecretStr(f"mmost://{receiver.url_base}/{SECRET}"),
    ]
    return Notifier({"oncall": urls}, base_delay_s=0.05, max_delay_s=0.2, **options)  # type: ignore[arg-type]


def test_every_url_of_the_channel_receives_title_and_body(chat_receiver: ChatReceiver) -> None:
    sender = notifier(chat_receiver)
    sender.submit(OutgoingNotification("oncall", "churn: tenure drifted", "psi 0.31 ≥ 0.2"))
    asyncio.run(sender.drain(20))
    requests = chat_receiver.wait_for(2)
    by_path = {request.path: request for request in requests}
    posted = by_path[f"/hook/{SECRET}"].json
    assert isinstance(posted, dict)
    assert posted["title"] == "churn: tenure drifted"
    assert posted["message"] == "psi 0.31 ≥ 0.2"
    mattermost = by_path[f"/hooks/{SECRET}"].json
    assert isinstance(mattermost, dict)
    assert "churn: tenure drifted" in mattermost["text"]
    assert sender.stats.sent == 2
    assert sender.stats.failed == 0


def test_errors_are_retried_then_counted_and_secrets_never_logged(
    chat_receiver: ChatReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    chat_receiver.respond_with(500)
    sender = notifier(chat_receiver, attempts=3)
    with caplog.at_level(logging.DEBUG):
        sender.submit(OutgoingNotification("oncall", "accuracy dropped", "0.71 < 0.80"))
        asyncio.run(sender.drain(30))
    assert len(chat_receiver.requests) == 6  # two URLs, three attempts each
    assert sender.stats.failed == 2
    assert sender.stats.retries == 4
    assert SECRET not in caplog.text
    assert "oncall[0] (json://…)" in caplog.text


def test_a_dead_receiver_never_blocks_and_the_queue_stays_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    sender = Notifier(
        {"oncall": [SecretStr(f"json://{dead}/{SECRET}")]},
        max_queued=5,
        attempts=2,
        base_delay_s=0.01,
    )
    with caplog.at_level(logging.WARNING):
        for index in range(50):
            sender.submit(OutgoingNotification("oncall", f"alert {index}", "body"))
    assert sender.queued == 5
    assert sender.stats.dropped == 45
    # one warning for the 45 drops of the same minute, not 45
    full = [r for r in caplog.records if "notification queue full" in r.getMessage()]
    assert len(full) == 1 and "dropped the oldest 1 since" in full[0].getMessage()
    asyncio.run(sender.drain(60))
    assert sender.stats.failed == 5
    assert sender.stats.sent == 0
    assert SECRET not in caplog.text


def test_drop_warnings_come_once_a_minute_with_the_count_since_the_last() -> None:
    now = [0.0]
    sender = Notifier(
        {"oncall": [SecretStr(f"json://127.0.0.1:{free_port()}/hook")]},
        max_queued=1,
        clock=lambda: now[0],
    )
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("streams.notify").addHandler(handler)
    try:
        for index in range(11):  # 10 drops within the minute: one warning
            now[0] = index
            sender.submit(OutgoingNotification("oncall", f"alert {index}", "body"))
        now[0] = 61.0
        sender.submit(OutgoingNotification("oncall", "alert 11", "body"))
    finally:
        logging.getLogger("streams.notify").removeHandler(handler)
    full = [r for r in records if "notification queue full" in r]
    assert sender.stats.dropped == 11
    assert len(full) == 2
    assert "dropped the oldest 1 since" in full[0] and "(1 in all)" in full[0]
    assert "dropped the oldest 10 since" in full[1] and "(11 in all)" in full[1]


def test_notifications_cut_off_at_shutdown_are_counted_as_abandoned() -> None:
    sender = Notifier(
        {"oncall": [SecretStr(f"json://127.0.0.1:{free_port()}/hook")]},
        attempts=4,
        base_delay_s=5.0,  # the first send fails at once, then it waits: cut off there
    )

    async def shutdown() -> int:
        task = asyncio.create_task(sender.run())
        for index in range(3):
            sender.submit(OutgoingNotification("oncall", f"alert {index}", "body"))
        while sender.in_flight == 0:
            await asyncio.sleep(0.01)
        abandoned = await sender.close(1.0)
        assert task.done()
        return abandoned

    assert asyncio.run(shutdown()) == 3  # the one being sent and the two queued
    assert sender.in_flight == 0
    stats = sender.stats
    assert (stats.sent, stats.failed, stats.dropped, stats.abandoned, sender.queued) == (
        0, 0, 0, 3, 0,
    )  # fmt: skip


def test_a_dead_channel_does_not_hold_back_another(chat_receiver: ChatReceiver) -> None:
    dead = f"127.0.0.1:{free_port()}"
    sender = Notifier(
        {
            "team": [SecretStr(f"json://{dead}/hook")],
            "pager": [SecretStr(f"json://{chat_receiver.url_base}/hook/pager")],
        },
        attempts=4,
        base_delay_s=1.0,  # each of team's messages waits out 1 + 2 + 4 s of retries
    )

    async def scenario() -> tuple[float, int]:
        task = asyncio.create_task(sender.run())
        for index in range(5):
            sender.submit(OutgoingNotification("team", f"warning {index}", "body"))
        await asyncio.sleep(0.2)  # team's first message is in its retries by now
        began = time.monotonic()
        sender.submit(OutgoingNotification("pager", "critical", "body"))
        while not chat_receiver.requests:
            await asyncio.sleep(0.01)
        took = time.monotonic() - began
        waiting = sender.queued + sender.in_flight
        await sender.close(0.5)
        assert task.done()
        return took, waiting

    took, waiting = asyncio.run(scenario())
    assert took < 3.0  # behind team's five it would wait at least 35 s
    assert waiting == 5  # team's are still queued or being retried
    assert [request.json["title"] for request in chat_receiver.requests] == ["critical"]
    assert sender.stats.sent == 1
    assert sender.stats.abandoned == 5
