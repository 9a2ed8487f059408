"""Chat notifications through apprise, off the stream's path.

Notifications wait in a bounded queue and are sent by a background task, each
to every apprise URL of its channel, with retries and exponential back-off. A
slow or dead chat service therefore never blocks the stream, and never loses
an alert event (those go to the alerts topic independently). When the queue
is full the oldest waiting notification is dropped and counted, so a long
outage cannot grow the worker's memory. URLs carry secrets (webhook tokens):
they are never logged; a notification target is named by its channel, its
position and its scheme only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import apprise
from pydantic import SecretStr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingNotification:
    """One message for one channel."""

    channel: str
    title: str
    body: str


@dataclass
class NotifierStats:
    """Counters of the notifier (exported in logs)."""

    sent: int = 0
    failed: int = 0
    retries: int = 0
    dropped: int = 0
    abandoned: int = 0
    """Queued or being sent when the worker stopped (one being sent may still arrive)."""


def describe_target(channel: str, index: int, url: SecretStr) -> str:
    """A loggable name for an apprise URL: channel, position and scheme only.

    Examples
    --------
    >>> describe_target("oncall", 0, SecretStr("slack://T000/B000/abcdefgh"))
    'oncall[0] (slack://…)'
    """
    scheme = url.get_secret_value().split("://", 1)[0] if "://" in url.get_secret_value() else "?"
    return f"{channel}[{index}] ({scheme}://…)"


class RedactSecrets(logging.Filter):
    """Removes known secrets from log records (apprise logs the URLs it posts to).

    Examples
    --------
    >>> redact = RedactSecrets(["json://host/hook/T0KEN-123456"])
    >>> url = "http://host/hook/T0KEN-123456"
    >>> record = logging.LogRecord("apprise", 10, "", 0, "POST %s", (url,), None)
    >>> redact.filter(record), record.getMessage()
    (True, 'POST http://host/hook/…')
    """

    def __init__(self, urls: Sequence[str]) -> None:
        super().__init__()
        parts: set[str] = set()
        for url in urls:
            rest = url.split("://", 1)[-1]
            for piece in re.split(r"[/@:?&=#]", rest):
                if len(piece) >= 6:
                    parts.add(piece)
        # longest first, so a secret containing another is removed whole
        self._secrets = sorted(parts, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for secret in self._secrets:
            redacted = redacted.replace(secret, "…")
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


HTTP_LOGGERS = ("apprise", "urllib3.connectionpool", "requests")
"""Loggers that write request URLs (filters apply per logger, not to children)."""


def protect_logs(channels: Mapping[str, Sequence[SecretStr]]) -> RedactSecrets:
    """Install a redacting filter on the loggers that print the channels' URLs."""
    guard = RedactSecrets([url.get_secret_value() for urls in channels.values() for url in urls])
    for name in HTTP_LOGGERS:
        logging.getLogger(name).addFilter(guard)
    return guard


Sender = Callable[[str, str, str], bool]
"""``(url, title, body) -> delivered``; apprise by default, replaceable in tests."""


def apprise_send(url: str, title: str, body: str) -> bool:
    """Send one notification to one apprise URL; True when apprise reports success."""
    client = apprise.Apprise()
    if not client.add(url):
        return False
    return bool(client.notify(title=title, body=body))


@dataclass
class Notifier:
    """Bounded, retrying, non-blocking notification sender.

    Each channel has its own queue and sender, so a channel whose receiver is
    down (its messages waiting out their retries) never holds back another's.

    Parameters
    ----------
    channels
        Channel name to its apprise URLs.
    max_queued
        Notifications kept waiting at most per channel; beyond that the
        channel's oldest is dropped.
    attempts
        Tries per URL (first try included).
    base_delay_s, max_delay_s
        Exponential back-off between tries (with up to 20 % jitter).
    send
        The transport (apprise); each call runs in a thread.
    """

    channels: Mapping[str, Sequence[SecretStr]]
    max_queued: int = 1000
    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    send: Sender = apprise_send
    stats: NotifierStats = field(default_factory=NotifierStats)
    drop_warning_interval_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _queues: dict[str, deque[OutgoingNotification]] = field(default_factory=dict)
    _wakeup: asyncio.Event | None = None
    _in_flight: int = 0
    _task: asyncio.Task[None] | None = None
    _senders: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _closing: bool = False
    _drops_unreported: int = 0
    _drop_warned_at: float | None = None

    def __post_init__(self) -> None:
        protect_logs(self.channels)

    def submit(self, notification: OutgoingNotification) -> None:
        """Queue a notification; returns at once."""
        if notification.channel not in self.channels:
            log.error("notification for unknown channel %r dropped", notification.channel)
            self.stats.dropped += 1
            return
        queue = self._queues.setdefault(notification.channel, deque())
        if len(queue) >= self.max_queued:
            dropped = queue.popleft()
            self.stats.dropped += 1
            self._drops_unreported += 1
            now = self.clock()
            last = self._drop_warned_at
            if last is None or now - last >= self.drop_warning_interval_s:
                # one line per interval, not one per notification, in a long outage
                log.warning(
                    "notification queue full (%d): dropped the oldest %d since the last such "
                    "warning (%d in all); latest for channel %s: %s",
                    self.max_queued,
                    self._drops_unreported,
                    self.stats.dropped,
                    dropped.channel,
                    dropped.title,
                )
                self._drops_unreported = 0
                self._drop_warned_at = now
        queue.append(notification)
        if self._wakeup is not None:
            self._wakeup.set()

    @property
    def queued(self) -> int:
        """Notifications waiting to be sent, over all channels."""
        return sum(map(len, self._queues.values()))

    @property
    def in_flight(self) -> int:
        """Notifications being sent (taken from the queue, not yet delivered or failed)."""
        return self._in_flight

    def abandon(self) -> int:
        """Count what is still queued as abandoned (the worker is stopping).

        Returns how many; the queue is emptied. One cancelled while being sent
        was counted when it was cancelled. Every notification submitted
        is then in exactly one of ``sent``, ``failed``, ``dropped`` or
        ``abandoned`` (one URL per channel; each URL counts on its own).
        """
        count = self.queued
        self.stats.abandoned += count
        for queue in self._queues.values():
            queue.clear()
        return count

    async def _deliver(self, notification: OutgoingNotification) -> None:
        self._in_flight += 1
        try:
            await self._deliver_to_each(notification)
        except asyncio.CancelledError:
            # stopped mid-send (shutdown): its request may still complete
            self.stats.abandoned += 1
            raise
        finally:
            self._in_flight -= 1

    async def _deliver_to_each(self, notification: OutgoingNotification) -> None:
        for index, url in enumerate(self.channels[notification.channel]):
            target = describe_target(notification.channel, index, url)
            for attempt in range(1, self.attempts + 1):
                try:
                    delivered = await asyncio.to_thread(
                        self.send, url.get_secret_value(), notification.title, notification.body
                    )
                except Exception as exc:  # a transport bug must not kill the sender task
                    log.warning("notification to %s raised %s", target, type(exc).__name__)
                    delivered = False
                if delivered:
                    self.stats.sent += 1
                    break
                if attempt == self.attempts:
                    self.stats.failed += 1
                    log.error(
                        "notification %r to %s failed after %d attempts",
                        notification.title,
                        target,
                        attempt,
                    )
                    break
                self.stats.retries += 1
                delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
                delay *= 1 - 0.2 * random.random()
                log.warning(
                    "notification to %s not delivered (attempt %d); retrying in %.1f s",
                    target,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _send_channel(self, channel: str) -> None:
        queue = self._queues[channel]
        while queue:
            await self._deliver(queue.popleft())

    async def run(self) -> None:
        """Send queued notifications until cancelled, or :meth:`close` says to stop.

        One sender task per channel with something queued; this task starts
        them as notifications come and waits for them when closing.
        """
        self._task = asyncio.current_task()
        self._wakeup = asyncio.Event()
        senders = self._senders
        try:
            while True:
                for channel, queue in self._queues.items():
                    running = senders.get(channel)
                    if queue and (running is None or running.done()):
                        senders[channel] = asyncio.create_task(self._send_channel(channel))
                if self._closing:
                    await asyncio.gather(*senders.values())
                    if not self.queued:
                        return
                    continue
                self._wakeup.clear()
                # woken by a submission, or by a sender finishing (its queue may
                # have filled again since it last looked)
                waiting = asyncio.create_task(self._wakeup.wait())
                await asyncio.wait(
                    [waiting, *(t for t in senders.values() if not t.done())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiting.cancel()
        finally:
            for sender in senders.values():
                sender.cancel()
            await asyncio.gather(*senders.values(), return_exceptions=True)
            senders.clear()

    async def close(self, timeout_s: float) -> int:
        """Send what is queued within ``timeout_s``; count the rest as abandoned.

        Returns how many were abandoned (still queued, or cut off while being
        sent). Used at shutdown.
        """
        self._closing = True
        before = self.stats.abandoned
        task = self._task
        try:
            if task is not None and not task.done():
                if self._wakeup is not None:
                    self._wakeup.set()
                await asyncio.wait_for(task, timeout_s)  # on timeout, cancelled mid-send
            else:
                await self.drain(timeout_s)
        except TimeoutError:
            pass
        self.abandon()
        return self.stats.abandoned - before

    async def drain(self, timeout_s: float) -> None:
        """Send what is queued now (used at shutdown and in tests)."""

        async def all_of_them() -> None:
            await asyncio.gather(*(self._send_channel(channel) for channel in list(self._queues)))

        await asyncio.wait_for(all_of_them(), timeout_s)
