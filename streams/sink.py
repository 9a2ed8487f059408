"""Sinks: where metric points go — InfluxDB (or anything speaking its v2 write API) or a file.

A sink is used like this by a worker::

    sink.add(points)      # cheap, no I/O; raises SinkBackpressure when full
    ...
    sink.flush()          # before committing the Kafka offsets of those points
    consumer.commit()

:meth:`BufferedSink.add` only encodes and buffers.  :meth:`BufferedSink.flush`
writes everything added before the call, in chunks, one INFO log line per
chunk written (count, time range of the points, elapsed ms), and returns only
when all of it is stored; otherwise it raises and keeps what was not written.
Nothing is dropped silently:

* a retryable failure (HTTP 5xx or 429, timeout, connection error) is retried
  with exponential back-off (:class:`RetryPolicy`), one WARNING per retry;
  when the attempts or the time budget run out, :class:`SinkUnavailable` is
  raised and the points stay buffered for the next flush;
* a server's ``Retry-After`` (seconds or an HTTP date) is waited for as
  asked; one longer than the retry budget ends the flush, and no write is
  tried before it has passed;
* a partial write (InfluxDB 2.x's HTTP 422, or 400 with "partial write" from
  1.8 and 3.x: the server stored the chunk but refused some or all of its
  points for good, e.g. older than the bucket's retention or a field of
  another type) cannot succeed on a retry: the chunk is done, the refused
  points are counted (``rejected_points``, from the server's ``dropped=N``,
  else the chunk's size) and logged with a WARNING naming the server's
  reason, and writing goes on;
* a chunk refused with another HTTP 400 (2.x refuses a whole request for one
  line it cannot take) is written in halves down to the lines refused alone,
  which are counted in ``rejected_points`` and logged with an ERROR naming
  each, and writing goes on;
* a permanent failure (any other 4xx: bad token, missing bucket; or a chunk
  whose every line is refused alone) raises :class:`SinkError` naming the
  status and the first rejected line; the points stay buffered, so the worker
  holds its windows and offsets rather than losing them;
* the buffer is bounded: when ``max_buffered_points`` are pending (the store
  is down and flushes keep failing), :meth:`~BufferedSink.add` raises
  :class:`SinkBackpressure` and accepts nothing of that batch; the worker
  pauses consuming and retries :meth:`~BufferedSink.flush`;
* NaN and ±inf fields cannot be written: they are left out and counted
  (``dropped_non_finite``); a point left without fields is counted in
  ``dropped_empty_points``; both with a WARNING.

Overwrites
----------
A point's time is its window start, and a performance window is re-emitted
with corrected values under the same series and timestamp.  InfluxDB (1.x,
2.x, 3.x) keeps one row per series and timestamp: the later write replaces
the fields it carries.  VictoriaMetrics (1.79, measured) keeps *every*
sample: ``/api/v1/export`` returns all the values written for that
timestamp, and queries pick the largest of them, not the latest.
``-dedup.minScrapeInterval`` does not help: with ``=1ms`` it keeps one sample
per timestamp, again the largest value, so a correction downwards is lost.
Readers of the file sink get overwrite semantics from
:func:`streams.points.latest_points`.

Secrets
-------
The InfluxDB token is sent in the ``Authorization`` header only; it appears
in no log line, exception message or ``repr``, and URLs are logged without
credentials or query strings.
"""

from __future__ import annotations

import abc
import email.utils
import errno
import fcntl
import json
import logging
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self, cast

import urllib3.exceptions
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS, WriteApi
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from pydantic import SecretStr

from schemas.settings import DriftlineSettings
from streams.points import LineProtocolError, Point, from_epoch_ns, parse_line_protocol

log = logging.getLogger(__name__)

METRICS_FILE_NAME: Final = "metrics.lp"
"""Name of the line-protocol file the file sink writes under the data directory."""

DEFAULT_MAX_BUFFERED_POINTS: Final = 100_000
DEFAULT_INFLUX_CHUNK_SIZE: Final = 5_000
DEFAULT_FILE_CHUNK_SIZE: Final = 50_000
DEFAULT_TIMEOUT_S: Final = 10.0


class SinkError(RuntimeError):
    """A write failed for good, or a sink was used wrongly.

    Parameters
    ----------
    message
        What happened (never contains the token).
    status
        HTTP status, when the server answered.
    rejected_line
        The first line the server refused (or the first line of the refused
        chunk when the server does not say which), when known.
    """

    def __init__(
        self, message: str, *, status: int | None = None, rejected_line: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.rejected_line = rejected_line


class SinkUnavailable(SinkError):
    """The store could not be reached within the retry budget; points stay buffered."""


class SinkBackpressure(SinkError):
    """``add`` refused a batch: too many points are waiting to be written.

    Parameters
    ----------
    message
        What happened.
    pending
        Points buffered when the batch was refused.
    adding
        Points in the refused batch.
    limit
        ``max_buffered_points`` of the sink.
    """

    def __init__(self, message: str, *, pending: int, adding: int, limit: int) -> None:
        super().__init__(message)
        self.pending = pending
        self.adding = adding
        self.limit = limit


@dataclass
class SinkStats:
    """Counters of a sink since it was created.

    Attributes
    ----------
    points_written
        Points the store acknowledged.
    write_retries
        Retried write attempts.
    write_failures
        Chunk writes that raised (retries exhausted or a permanent error).
    dropped_non_finite
        NaN / ±inf fields left out.
    dropped_empty_points
        Points not written because every field was NaN / ±inf.
    rejected_points
        Points the store refused for good (a partial write, or a line refused
        alone with HTTP 400); not in ``points_written``.
    """

    points_written: int = 0
    write_retries: int = 0
    write_failures: int = 0
    dropped_non_finite: int = 0
    dropped_empty_points: int = 0
    rejected_points: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off for retryable write failures.

    The delay before retry ``k`` (1-based) is
    ``min(max_delay_s, initial_delay_s * multiplier ** (k - 1))``, shortened
    by up to ``jitter`` (a fraction) at random, or the server's
    ``Retry-After`` when it gives one (capped by ``max_delay_s``).  A write
    gives up after ``max_attempts`` attempts, or when the next delay would end
    later than ``max_elapsed_s`` after the first attempt started; one chunk
    therefore takes at most about ``max_elapsed_s`` plus one request timeout.

    Parameters
    ----------
    max_attempts
        Attempts in all, >= 1 (1 disables retries).
    initial_delay_s
        First delay, > 0.
    multiplier
        Growth of the delay, >= 1.
    max_delay_s
        Longest single delay, >= ``initial_delay_s``.
    max_elapsed_s
        Time budget of one chunk's attempts, > 0.
    jitter
        Random shortening of each delay, in [0, 1).
    """

    max_attempts: int = 5
    initial_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 8.0
    max_elapsed_s: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        checks = [
            (self.max_attempts >= 1, f"max_attempts must be >= 1, got {self.max_attempts}"),
            (self.initial_delay_s > 0, f"initial_delay_s must be > 0, got {self.initial_delay_s}"),
            (self.multiplier >= 1, f"multiplier must be >= 1, got {self.multiplier}"),
            (
                self.max_delay_s >= self.initial_delay_s,
                f"max_delay_s must be >= initial_delay_s ({self.initial_delay_s}), "
                f"got {self.max_delay_s}",
            ),
            (self.max_elapsed_s > 0, f"max_elapsed_s must be > 0, got {self.max_elapsed_s}"),
            (0 <= self.jitter < 1, f"jitter must be in [0, 1), got {self.jitter}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"RetryPolicy: {message}")

    def delay(self, retry: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based).

        A server's ``Retry-After`` is waited for as asked, even beyond
        ``max_delay_s`` (the time budget may then end the flush first).
        """
        if retry_after_s is not None:
            return max(0.0, retry_after_s)
        nominal = min(self.max_delay_s, self.initial_delay_s * self.multiplier ** (retry - 1))
        return nominal * (1.0 - self.jitter * random.random())


class Sink(Protocol):
    """What the worker needs of a sink."""

    @property
    def stats(self) -> SinkStats:
        """Counters since creation."""
        ...

    @property
    def pending(self) -> int:
        """Points added and not yet written."""
        ...

    def add(self, points: Iterable[Point]) -> None:
        """Buffer points; raise :class:`SinkBackpressure` when full."""
        ...

    def flush(self) -> None:
        """Write every point added before the call, or raise."""
        ...

    def close(self) -> None:
        """Flush, then release connections and files."""
        ...


def _utc_text(ns: int) -> str:
    return from_epoch_ns(ns).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


class BufferedSink(abc.ABC):
    """Buffering, bounds, counters and logging shared by the sinks.

    Subclasses implement :meth:`_write_chunk`, which stores the lines or
    raises :class:`SinkError` / :class:`SinkUnavailable`.  ``add`` and
    ``flush`` may be called from different threads (e.g. ``flush`` in an
    executor); flushes are serialised.

    Parameters
    ----------
    max_buffered_points
        Most points held while the store does not take them, >= 1.
    chunk_size
        Most points per write request, >= 1.
    """

    target: str = ""
    """Where the points go, for log lines (no credentials)."""

    def __init__(self, *, max_buffered_points: int, chunk_size: int) -> None:
        if max_buffered_points < 1:
            raise ValueError(f"max_buffered_points must be >= 1, got {max_buffered_points}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.max_buffered_points = max_buffered_points
        self.chunk_size = chunk_size
        self._stats = SinkStats()
        self._buffer: list[tuple[int, str]] = []  # (time ns, line), in add order
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._last_failure: str | None = None
        self._closed = False

    @property
    def stats(self) -> SinkStats:
        """Counters since creation (a live object; read, don't modify)."""
        return self._stats

    @property
    def pending(self) -> int:
        """Points added and not yet written."""
        with self._lock:
            return len(self._buffer)

    @property
    def last_failure(self) -> str | None:
        """Why the last write failed, until a write succeeds again."""
        with self._lock:
            return self._last_failure

    def add(self, points: Iterable[Point]) -> None:
        """Encode points and buffer them for the next :meth:`flush`; no I/O.

        All or nothing: when the batch does not fit, none of it is buffered.

        Parameters
        ----------
        points
            Points to write.

        Raises
        ------
        SinkBackpressure
            When more than ``max_buffered_points`` would be pending; flush
            (successfully) and add the same batch again.
        SinkError
            When the batch alone is larger than ``max_buffered_points``.
        """
        self._check_open()
        encoded: list[tuple[int, str]] = []
        dropped: dict[str, int] = {}
        empty = 0
        for point in points:
            bad = point.non_finite_fields
            for name in bad:
                key = f"{point.measurement}.{name}"
                dropped[key] = dropped.get(key, 0) + 1
            if len(bad) == len(point.fields):
                empty += 1
                continue
            encoded.append((point.time_ns, point.to_line_protocol()))
        if len(encoded) > self.max_buffered_points:
            raise SinkError(
                f"a batch of {len(encoded)} points is larger than max_buffered_points="
                f"{self.max_buffered_points} of {self.target}; add smaller batches or raise "
                "the limit"
            )
        with self._lock:
            pending = len(self._buffer)
            if pending + len(encoded) > self.max_buffered_points:
                why = f" (last failure: {self._last_failure})" if self._last_failure else ""
                raise SinkBackpressure(
                    f"{pending} points wait for {self.target} and {len(encoded)} more would "
                    f"exceed max_buffered_points={self.max_buffered_points}{why}; pause "
                    "consuming and flush() until it succeeds",
                    pending=pending,
                    adding=len(encoded),
                    limit=self.max_buffered_points,
                )
            self._buffer.extend(encoded)
            self._stats.dropped_non_finite += sum(dropped.values())
            self._stats.dropped_empty_points += empty
        if dropped:
            log.warning(
                "left out %d NaN/inf fields (%s) and dropped %d points without a finite field",
                sum(dropped.values()),
                ", ".join(f"{key} x{count}" for key, count in sorted(dropped.items())),
                empty,
            )

    def flush(self) -> None:
        """Write every point added before this call, chunk by chunk.

        Chunks written stay written; on failure the rest stays buffered and
        the next flush starts with it.

        Raises
        ------
        SinkUnavailable
            The store was unreachable within the retry budget.
        SinkError
            The store refused a chunk for good (status and line named).
        """
        self._check_open()
        with self._flush_lock:
            with self._lock:
                remaining = len(self._buffer)
            while remaining > 0:
                with self._lock:
                    chunk = self._buffer[: min(self.chunk_size, remaining)]
                lines = [line for _, line in chunk]
                started = time.monotonic()
                try:
                    self._write_chunk(lines)
                except SinkError as exc:
                    with self._lock:
                        self._stats.write_failures += 1
                        self._last_failure = str(exc)
                    raise
                elapsed_ms = (time.monotonic() - started) * 1000
                with self._lock:
                    # What is left of the chunk is the head of the buffer
                    # (discard() may have taken some of it out meanwhile).
                    written = {id(entry) for entry in chunk}
                    head = 0
                    while head < len(self._buffer) and id(self._buffer[head]) in written:
                        head += 1
                    del self._buffer[:head]
                    self._stats.points_written += len(chunk)
                    self._last_failure = None
                remaining -= len(chunk)
                times = [ns for ns, _ in chunk]
                log.info(
                    "wrote %d points to %s, time range %s .. %s, in %.0f ms",
                    len(chunk),
                    self.target,
                    _utc_text(min(times)),
                    _utc_text(max(times)),
                    elapsed_ms,
                )

    def discard(self, lines: Iterable[str]) -> int:
        """Take buffered lines out unwritten (those of a partition another worker took over).

        A chunk being written at the time is written all the same.  Returns
        how many buffered entries were taken out.
        """
        unwanted = set(lines)
        if not unwanted:
            return 0
        with self._lock:
            kept = [entry for entry in self._buffer if entry[1] not in unwanted]
            taken = len(self._buffer) - len(kept)
            self._buffer[:] = kept
        return taken

    def close(self) -> None:
        """Flush, then release resources (also when the flush raises); idempotent.

        Raises
        ------
        SinkError
            From the flush: the points it names were not written.
        """
        if self._closed:
            return
        try:
            self.flush()
        except SinkError as exc:
            raise SinkError(
                f"closed {self.target} with {self.pending} points not written: {exc}",
                status=exc.status,
                rejected_line=exc.rejected_line,
            ) from None
        finally:
            self._closed = True
            self._release()

    def _check_open(self) -> None:
        if self._closed:
            raise SinkError(f"the sink for {self.target} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.target} pending={self.pending}>"

    @abc.abstractmethod
    def _write_chunk(self, lines: Sequence[str]) -> None:
        """Store ``lines`` or raise :class:`SinkError` (retryable: :class:`SinkUnavailable`)."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Close connections or files."""


# ---------------------------------------------------------------------------
# InfluxDB
# ---------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """Return ``url`` without user, password, query string or fragment, for logs.

    Examples
    --------
    >>> redact_url("https://user:pw@influx.example:8086/base?token=x")
    'https://influx.example:8086/base'
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_PRECISION_NS: Final = cast(WritePrecision, WritePrecision.NS)  # the lines carry epoch ns

_UNABLE_TO_PARSE = re.compile(r"unable to parse '(.*?)': ", re.DOTALL)
_LINE_NUMBER = re.compile(r"\bline (\d+)\b")
_DROPPED = re.compile(r"\bdropped=(\d+)")
"""How InfluxDB counts the points a partial write refused."""


def _retry_after_s(exc: ApiException) -> float | None:
    """The server's ``Retry-After`` in seconds: a number, or an HTTP date."""
    headers = getattr(exc, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime.now(UTC)).total_seconds()


def _server_message(exc: ApiException) -> str:
    body = getattr(exc, "body", None)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        text = str(parsed.get("message") or parsed.get("error") or text)
    return text.strip()


class _Refused(Exception):
    """A request the server refused with HTTP 400 (while a refused chunk is halved)."""

    def __init__(self, error: ApiException) -> None:
        super().__init__(str(error))
        self.error = error


class InfluxSink(BufferedSink):
    """Writes points to InfluxDB's v2 write API with influxdb-client.

    Uses a synchronous :class:`~influxdb_client.client.write_api.WriteApi`
    (``write_precision`` ns: the lines carry epoch nanoseconds) and does the
    retrying itself (the client's own retries are off), so every attempt is
    counted and logged.  Also fits servers that accept ``/api/v2/write``:
    InfluxDB 1.8+, 2.x, 3.x, VictoriaMetrics (which keeps milliseconds).

    Parameters
    ----------
    url
        Base URL, e.g. ``http://127.0.0.1:8086``.
    org, bucket
        Destination.
    token
        API token (``SecretStr`` preferred); empty for servers without auth.
    max_buffered_points
        Bound of the buffer (see :class:`BufferedSink`).
    chunk_size
        Lines per write request.
    timeout_s
        Timeout of one request, seconds.
    retry
        Back-off for retryable failures.
    enable_gzip
        Compress request bodies.

    Examples
    --------
    >>> sink = InfluxSink("http://u:pw@127.0.0.1:9/", org="o", bucket="b", token="t0ken-123")
    >>> sink
    <InfluxSink http://127.0.0.1:9/ bucket=b pending=0>
    >>> sink.close()
    """

    def __init__(
        self,
        url: str,
        *,
        org: str,
        bucket: str,
        token: SecretStr | str = "",
        max_buffered_points: int = DEFAULT_MAX_BUFFERED_POINTS,
        chunk_size: int = DEFAULT_INFLUX_CHUNK_SIZE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        enable_gzip: bool = False,
    ) -> None:
        super().__init__(max_buffered_points=max_buffered_points, chunk_size=chunk_size)
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._url = url
        self.org = org
        self.bucket = bucket
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.target = f"{self.url} bucket={bucket}"
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        # Any: InfluxDBClient's own methods carry no annotations.
        self._client: Any = InfluxDBClient(
            url=url,
            token=self._token.get_secret_value(),
            org=org,
            timeout=int(timeout_s * 1000),
            enable_gzip=enable_gzip,
        )
        self._write_api: WriteApi = self._client.write_api(write_options=SYNCHRONOUS)
        self._quiet_until = 0.0
        """Monotonic time before which the server asked (``Retry-After``) not to be called."""

    @property
    def url(self) -> str:
        """The server URL without credentials (see :func:`redact_url`)."""
        return redact_url(self._url)

    @classmethod
    def from_settings(cls, settings: DriftlineSettings, **options: Any) -> InfluxSink:
        """Build from ``DRIFTLINE_INFLUX_*`` settings; ``options`` go to the constructor.

        Raises
        ------
        ValueError
            When ``settings.influx_url`` is not set.
        """
        if not settings.influx_url:
            raise ValueError("DRIFTLINE_INFLUX_URL is not set; use FileSink or make_sink()")
        return cls(
            settings.influx_url,
            org=settings.influx_org,
            bucket=settings.influx_bucket,
            token=settings.influx_token,
            **options,
        )

    def _scrub(self, text: str) -> str:
        secret = self._token.get_secret_value()
        if len(secret) >= 4:
            text = text.replace(secret, "**********")
        if self._url != self.url:
            text = text.replace(self._url.rstrip("/"), self.url.rstrip("/"))
        return text[:500]

    def _permanent(self, exc: ApiException, lines: Sequence[str]) -> SinkError:
        status = int(exc.status or 0)
        reason = str(getattr(exc, "reason", "") or "")
        if status == 0:  # influxdb-client's way of reporting a TLS failure
            return SinkError(self._scrub(f"cannot write to {self.target}: {reason}"))
        message = _server_message(exc)
        named = _UNABLE_TO_PARSE.search(message)
        number = _LINE_NUMBER.search(message)
        if named:
            rejected, which = named.group(1), "first rejected line"
        elif number and 1 <= int(number.group(1)) <= len(lines):
            rejected, which = lines[int(number.group(1)) - 1], "first rejected line"
        else:
            rejected, which = lines[0], "first line of the refused chunk"
        shown = " ".join(message.split()) or "(no message)"
        return SinkError(
            self._scrub(
                f"{self.target} refused a write of {len(lines)} points with HTTP {status} "
                f"{reason}: {shown}"
            )
            + f"; {which}: {self._scrub(rejected)[:300]}",
            status=status,
            rejected_line=rejected,
        )

    def _partial_write(self, exc: ApiException, lines: Sequence[str]) -> None:
        """Count and log the points a partial write refused; the rest of the chunk is stored."""
        message = " ".join(_server_message(exc).split()) or "(no message)"
        dropped = _DROPPED.search(message)
        refused = min(int(dropped.group(1)), len(lines)) if dropped else len(lines)
        self._count_rejected(refused)
        log.warning(
            "%s refused %d of %d points for good (HTTP %s, not retried): %s",
            self.target,
            refused,
            len(lines),
            exc.status,
            self._scrub(message)[:300],
        )

    def _refused_lines(
        self, lines: Sequence[str], refused_by: ApiException | None = None
    ) -> list[tuple[str, ApiException]]:
        """Write a chunk in halves, down to the lines the server refuses alone (HTTP 400).

        InfluxDB 2.x refuses a whole request for one line it cannot take;
        halving finds that line and writes the others.  ``refused_by``: the
        server's answer when the chunk was sent already.  Returns each line
        refused alone, with the server's answer.
        """
        error = refused_by
        if error is None:
            try:
                self._write_chunk(lines, split=False)
                return []
            except _Refused as refused:
                error = refused.error
        if len(lines) == 1:
            return [(lines[0], error)]
        middle = len(lines) // 2
        return self._refused_lines(lines[:middle]) + self._refused_lines(lines[middle:])

    def _count_rejected(self, count: int) -> None:
        with self._lock:
            self._stats.rejected_points += count
            self._stats.points_written -= count  # flush() adds the whole chunk

    def _write_chunk(self, lines: Sequence[str], *, split: bool = True) -> None:
        body = "\n".join(lines).encode("utf-8")
        started = time.monotonic()
        if started < self._quiet_until:
            raise SinkUnavailable(
                f"{self.target} asked for no writes for {self._quiet_until - started:.1f} s more "
                "(Retry-After); the points stay buffered"
            )
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                self._write_api.write(
                    bucket=self.bucket, org=self.org, record=body, write_precision=_PRECISION_NS
                )
                return
            except ApiException as exc:
                status = int(exc.status or 0)
                if status == 422 or (
                    status == 400 and "partial write" in _server_message(exc).lower()
                ):
                    self._partial_write(exc, lines)
                    return
                if status == 400 and not split:
                    raise _Refused(exc) from None
                if status == 400:
                    self._split_refused(exc, lines)
                    return
                if status != 429 and status < 500:
                    raise self._permanent(exc, lines) from None
                reason = f"HTTP {status} {getattr(exc, 'reason', '') or ''}".rstrip()
                message = " ".join(_server_message(exc).split())
                if message:
                    reason += f": {message[:200]}"
                retry_after = _retry_after_s(exc)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            reason = self._scrub(reason)
            delay = self.retry.delay(attempt, retry_after)
            elapsed = time.monotonic() - started
            if attempt >= self.retry.max_attempts or elapsed + delay > self.retry.max_elapsed_s:
                if retry_after is not None:  # later flushes wait for it too
                    self._quiet_until = time.monotonic() + delay
                raise SinkUnavailable(
                    f"giving up writing {len(lines)} points to {self.target} after {attempt} "
                    f"attempts in {elapsed:.1f} s; last error: {reason}; the points stay "
                    "buffered"
                ) from None
            with self._lock:
                self._stats.write_retries += 1
            log.warning(
                "write of %d points to %s failed (attempt %d/%d): %s; retrying in %.2f s",
                len(lines),
                self.target,
                attempt,
                self.retry.max_attempts,
                reason,
                delay,
            )
            time.sleep(delay)

    def _split_refused(self, exc: ApiException, lines: Sequence[str]) -> None:
        """A chunk refused with HTTP 400: the lines the server takes are written, the others
        counted and logged; a chunk refused line by line stays buffered (SinkError)."""
        refused = self._refused_lines(lines, exc)
        if len(lines) > 1 and len(refused) == len(lines):
            # Every line alone is refused too: the request, not a line, is at fault.
            raise self._permanent(exc, lines) from None
        self._count_rejected(len(refused))
        for line, error in refused:
            log.error(
                "%s refused a point for good (HTTP 400, not retried): %s; the point: %s",
                self.target,
                self._scrub(" ".join(_server_message(error).split()) or "(no message)")[:300],
                self._scrub(line)[:300],
            )

    def _release(self) -> None:
        self._client.close()


# ---------------------------------------------------------------------------
# file
# ---------------------------------------------------------------------------


class FileSink(BufferedSink):
    """Appends line protocol to a file (``DRIFTLINE_DATA_DIR/metrics.lp`` by default).

    Each chunk is appended with one ``write`` under an exclusive ``flock`` (so
    several workers can share the file) and fsynced before :meth:`flush`
    goes on.  A line cut short by a crash (a file not ending in a newline) is
    removed when the sink opens the file, with a WARNING: such a line was
    never acknowledged, so its offsets were not committed and it will be
    written again.  A failed write is cut off the same way.

    Parameters
    ----------
    path
        The file; its directory is created.
    max_buffered_points, chunk_size
        See :class:`BufferedSink`.

    Raises
    ------
    SinkError
        When the file cannot be opened for appending.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_buffered_points: int = DEFAULT_MAX_BUFFERED_POINTS,
        chunk_size: int = DEFAULT_FILE_CHUNK_SIZE,
    ) -> None:
        super().__init__(max_buffered_points=max_buffered_points, chunk_size=chunk_size)
        self.path = Path(path)
        self.target = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SinkError(f"cannot open {self.path} for appending: {exc.strerror}") from None
        if created:
            _fsync_directory(self.path.parent)
        with self._locked():
            self._cut_torn_tail()

    def _locked(self) -> _Flock:
        return _Flock(self._fd, fcntl.LOCK_EX)

    def _cut_torn_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with self.path.open("rb") as reader:
            reader.seek(max(0, size - 65_536))
            tail = reader.read()
            if tail.endswith(b"\n"):
                return
            cut = tail.rfind(b"\n")
            if cut < 0 and size > len(tail):
                reader.seek(0)
                tail = reader.read()
                cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1
        os.ftruncate(self._fd, keep)
        os.fsync(self._fd)
        log.warning(
            "removed an incomplete last line (%d bytes) from %s, left by an interrupted write",
            size - keep,
            self.path,
        )

    def _ends_a_line(self, size: int) -> bool:
        with self.path.open("rb") as reader:
            reader.seek(size - 1)
            return reader.read(1) == b"\n"

    def _write_chunk(self, lines: Sequence[str]) -> None:
        data = ("\n".join(lines) + "\n").encode("utf-8")
        with self._locked():
            size = os.fstat(self._fd).st_size
            if size and not self._ends_a_line(size):
                # Another worker sharing the file died in the middle of an append:
                # its torn line would swallow the start of this chunk.
                self._cut_torn_tail()
                size = os.fstat(self._fd).st_size
            try:
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
                os.fsync(self._fd)
            except OSError as exc:
                try:
                    os.ftruncate(self._fd, size)
                except OSError as cut_exc:
                    log.error("cannot cut a partial write off %s: %s", self.path, cut_exc)
                kind = "out of space" if exc.errno == errno.ENOSPC else exc.strerror
                raise SinkUnavailable(
                    f"cannot append {len(lines)} points to {self.path}: {kind}; "
                    "the points stay buffered"
                ) from None

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Flock:
    """``flock`` on a file descriptor as a context manager."""

    def __init__(self, fd: int, operation: int) -> None:
        self._fd = fd
        self._operation = operation

    def __enter__(self) -> None:
        fcntl.flock(self._fd, self._operation)

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_line_protocol(path: Path | str) -> list[Point]:
    """Read the points of a line-protocol file written by :class:`FileSink`.

    Takes a shared ``flock`` so it never sees a half-written chunk.  Every
    write is returned, in file order; apply
    :func:`streams.points.latest_points` for what a database would hold.

    Parameters
    ----------
    path
        The file (``DRIFTLINE_DATA_DIR/metrics.lp``).

    Returns
    -------
    list of Point
        The points; empty for an empty file.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    streams.points.LineProtocolError
        Naming the file and line number of a line that does not parse.
    """
    path = Path(path)
    with path.open("rb") as reader, _Flock(reader.fileno(), fcntl.LOCK_SH):
        data = reader.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineProtocolError(f"not UTF-8 at byte {exc.start}", source=str(path)) from None
    try:
        return parse_line_protocol(text)
    except LineProtocolError as exc:
        raise LineProtocolError(exc.reason, exc.line_number, str(path)) from None


def make_sink(settings: DriftlineSettings, **options: Any) -> BufferedSink:
    """The sink the settings ask for: InfluxDB when ``influx_url`` is set, else the file.

    Parameters
    ----------
    settings
        Process settings (``DRIFTLINE_INFLUX_*``, ``DRIFTLINE_DATA_DIR``,
        ``DRIFTLINE_SINK_MAX_BUFFERED_POINTS``).
    **options
        Passed to the sink's constructor (``max_buffered_points``, ``chunk_size``, …);
        ``max_buffered_points`` given here wins over the setting.

    Returns
    -------
    BufferedSink
        An :class:`InfluxSink` or a :class:`FileSink` on
        ``settings.data_dir / "metrics.lp"``.
    """
    options.setdefault("max_buffered_points", settings.sink_max_buffered_points)
    if settings.influx_url:
        return InfluxSink.from_settings(settings, **options)
    return FileSink(settings.data_dir / METRICS_FILE_NAME, **options)
