"""Every InfluxQL query of the Grafana dashboards in ``compose/`` runs against a real InfluxDB.

A small real pipeline (reference build, topics, a drifting scenario with late
labels and malformed messages, one ``driftline worker`` without an InfluxDB
URL) writes its points as line protocol to ``DATA_DIR/metrics.lp``; the file is
posted to InfluxDB 1.6.  Then every query of every dashboard JSON — each panel
target, each template variable, each annotation — is taken from the JSON,
Grafana's macros and variables are substituted the way Grafana does
(``$timeFilter``, ``$__interval``, ``/^$var$/`` with regex-escaped values,
``(a|b)`` for "All"; variable values come from the variables' own queries, in
order, with Grafana's default selection), and the query is run.  A query
passes when

* statically, everything it names exists in the service's layout: the
  measurement in :data:`schemas.vocabulary.MEASUREMENTS`, the fields and tags
  of its SELECT, WHERE and GROUP BY in that measurement's fields and
  :data:`streams.points.TAGS`, ``$tag_x`` aliases among the grouped tags;
* against the database, it returns at least one series; its columns are the
  ones named in the SELECT (alias, function name or field), each of them
  non-null in some row; every tag it groups by has a value in every series;
  an annotation's text and tags columns are among the columns.

So a panel that queries a measurement, field or tag that the service does not
write fails twice: ``test_the_check_catches_*`` shows both checks catching such
queries on their own, against the same database.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import yaml
from confluent_kafka import Producer

from alerts.notification import DASHBOARD_PATH, dashboard_link
from schemas import AlertEvent, DriftlineSettings
from schemas.config_file import load_config
from schemas.vocabulary import MEASUREMENTS
from streams.points import TAGS, Point
from streams.sink import METRICS_FILE_NAME, read_line_protocol
from streams.synthetic import ScenarioConfig, generate
from tests.e2e.test_pipeline import CATEGORICAL, NUMERIC, _write_training_csv
from tests.servers import influx_create_database, influx_write, influxql, unique_topic_name

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
DASHBOARDS = COMPOSE / "grafana" / "dashboards"
DATASOURCE_UID = "driftline-influxdb"
OVERVIEW_UID = "driftline-model"
INTERVAL = "5m"
"""What ``$__interval`` becomes: the pipeline's window size."""

# ---------------------------------------------------------------------------
# Dashboards and their queries
# ---------------------------------------------------------------------------


def load_dashboards(directory: Path = DASHBOARDS) -> dict[str, dict[str, Any]]:
    """Every dashboard JSON of ``directory`` by uid."""
    boards: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(board, dict), path
        uid = board.get("uid")
        assert isinstance(uid, str) and uid, f"{path.name} has no uid"
        assert uid not in boards, f"uid {uid} repeats in {path.name}"
        boards[uid] = board
    return boards


@dataclass(frozen=True)
class DashboardQuery:
    """One InfluxQL query of a dashboard.

    Attributes
    ----------
    dashboard
        The dashboard's uid.
    kind
        ``panel``, ``variable`` or ``annotation``.
    name
        Panel title, variable name or annotation name.
    ref
        The target's refId (panels), else empty.
    query
        The InfluxQL text as stored, macros and variables included.
    alias
        The target's alias, when it has one.
    columns
        Columns the consumer reads by name (an annotation's text and tags).
    """

    dashboard: str
    kind: str
    name: str
    ref: str
    query: str
    alias: str | None = None
    columns: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """A readable, unique test id."""
        return re.sub(r"[^\w.:/$=-]+", "_", f"{self.dashboard}/{self.kind}/{self.name}/{self.ref}")


def variable_query(variable: dict[str, Any]) -> str:
    """A query variable's InfluxQL (stored as text, or as ``{"query": text}`` by newer Grafana)."""
    query = variable.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    return str(query or "")


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # rows keep their panels when collapsed


def extract_queries(board: dict[str, Any]) -> list[DashboardQuery]:
    """Every panel target, query variable and annotation query of a dashboard."""
    uid = board["uid"]
    found: list[DashboardQuery] = []
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        found.append(
            DashboardQuery(uid, "variable", variable["name"], "", variable_query(variable))
        )
    for annotation in board.get("annotations", {}).get("list", []):
        if annotation.get("builtIn"):
            continue
        target = annotation.get("target") or {}
        columns = [target.get("textColumn", "")]
        columns.extend(str(target.get("tagsColumn", "")).split(","))
        found.append(
            DashboardQuery(
                uid,
                "annotation",
                annotation["name"],
                "",
                str(target.get("query", "")),
                columns=tuple(c.strip() for c in columns if c.strip()),
            )
        )
    for panel in _panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            found.append(
                DashboardQuery(
                    uid,
                    "panel",
                    f"{panel.get('id')}-{panel.get('title', '')}",
                    str(target.get("refId", "")),
                    str(target.get("query", "")),
                    alias=target.get("alias"),
                )
            )
    return found


BOARDS = load_dashboards()
QUERIES = [query for board in BOARDS.values() for query in extract_queries(board)]

# ---------------------------------------------------------------------------
# Grafana's substitution of macros and variables
# ---------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")
_REGEX_SPECIAL = re.compile(r"[\\^$.|?*+()\[\]{}/]")


def regex_escape(value: str) -> str:
    """Escape a value for an InfluxQL regex literal ``/.../`` (as Grafana's InfluxDB plugin)."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def format_values(values: Sequence[str]) -> str:
    """A variable's values in a regex: ``v`` or ``(v1|v2|...)``, each escaped."""
    escaped = [regex_escape(value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range in epoch milliseconds."""

    start_ms: int
    end_ms: int

    @property
    def filter(self) -> str:
        """What Grafana puts for ``$timeFilter`` with an absolute range."""
        return f"time >= {self.start_ms}ms and time <= {self.end_ms}ms"


def render(
    query: str, values: Mapping[str, Sequence[str]], time_range: TimeRange, interval: str = INTERVAL
) -> str:
    """Substitute Grafana's macros and the variables' values into a query.

    Raises
    ------
    QueryCheckError
        For a variable the dashboard does not define (Grafana would leave it
        in the text).
    """
    macros = {
        "timeFilter": time_range.filter,
        "__interval": interval,
        "interval": interval,
    }

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        if name in macros:
            return macros[name]
        if name in values:
            return format_values(values[name])
        raise QueryCheckError(f"unknown variable or macro {match.group(0)} in {query!r}")

    return _TEMPLATE.sub(replace, query)


def placeholder_values(board: dict[str, Any]) -> dict[str, list[str]]:
    """A value per variable of the dashboard, for checks that need no database."""
    return {v["name"]: ["x"] for v in board.get("templating", {}).get("list", [])}


# ---------------------------------------------------------------------------
# Static check against the service's layout
# ---------------------------------------------------------------------------


class QueryCheckError(AssertionError):
    """A dashboard query asks for something driftline does not write, or gets nothing."""


_QUOTED = r'"(?:[^"\\]|\\.)+"'
_NAME = rf"(?:{_QUOTED}|[A-Za-z_]\w*)"
_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'")
_REGEX_LITERAL = re.compile(r"(=~|!~)\s*/(?:[^/\\]|\\.)*/")
_SELECT = re.compile(
    rf"^\s*SELECT\s+(?P<select>.+?)\s+FROM\s+(?P<measurement>{_NAME})(?P<rest>.*)$", re.I | re.S
)
_SHOW_TAG_VALUES = re.compile(
    rf"^\s*SHOW\s+TAG\s+VALUES\s+FROM\s+(?P<measurement>{_NAME})\s+WITH\s+KEY\s*=\s*(?P<key>{_NAME})"
    r"(?:\s+WHERE\s+(?P<where>.*?))?\s*$",
    re.I | re.S,
)
_CLAUSE = re.compile(r"\b(WHERE|GROUP\s+BY|fill|ORDER\s+BY|LIMIT|SLIMIT|OFFSET|SOFFSET|tz)\b", re.I)
_CONDITION = re.compile(rf"(?P<lhs>{_NAME})\s*(?P<op>=~|!~|!=|<>|>=|<=|=|<|>)")
_IDENTIFIER = re.compile(rf"(?P<quoted>{_QUOTED})|(?P<bare>\b[A-Za-z_]\w*\b)(?P<call>\s*\()?")
_ALIAS = re.compile(rf"^(?P<core>.*?)(?:\s+AS\s+(?P<alias>{_NAME}))?\s*$", re.I | re.S)
_WORDS = frozenset({"and", "or", "not", "true", "false", "null", "none", "time"})


def _unquote(name: str) -> str:
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return name


def _mask_literals(text: str) -> str:
    """Blank out string and regex literals so that nothing inside them looks like a name."""
    text = _STRING_LITERAL.sub("''", text)
    return _REGEX_LITERAL.sub(lambda m: f"{m.group(1)} //", text)


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


@dataclass(frozen=True)
class ParsedQuery:
    """What a dashboard query reads.

    Attributes
    ----------
    statement
        ``select`` or ``show tag values``.
    measurement
        The measurement it reads.
    columns
        Result columns after ``time``, in order (SELECT), or the tag key
        (SHOW TAG VALUES).
    group_tags
        Tags of its GROUP BY.
    names
        Every field or tag it names, with where it names it.
    """

    statement: str
    measurement: str
    columns: tuple[str, ...]
    group_tags: tuple[str, ...] = ()
    names: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def _clauses(rest: str) -> dict[str, str]:
    masked = _mask_literals(rest)
    marks = [(m.start(), re.sub(r"\s+", " ", m.group(1).upper())) for m in _CLAUSE.finditer(masked)]
    clauses: dict[str, str] = {}
    for index, (start, name) in enumerate(marks):
        end = marks[index + 1][0] if index + 1 < len(marks) else len(masked)
        clauses[name] = masked[start:end].split(None, 2 if " " in name else 1)[-1]
    if masked[: marks[0][0] if marks else len(masked)].strip():
        raise QueryCheckError(f"cannot read {rest!r} after the measurement")
    return clauses


def _condition_names(where: str) -> list[str]:
    return [_unquote(m.group("lhs")) for m in _CONDITION.finditer(where)]


def parse_query(query: str) -> ParsedQuery:
    """Read a ``SELECT`` or ``SHOW TAG VALUES`` query (macros and variables already substituted).

    Raises
    ------
    QueryCheckError
        For any other statement, ``SELECT *`` and what cannot be read.
    """
    show = _SHOW_TAG_VALUES.match(query)
    if show is not None:
        where = _mask_literals(show.group("where") or "")
        key = _unquote(show.group("key"))
        conditions = [("WHERE", name) for name in _condition_names(where)]
        return ParsedQuery(
            "show tag values",
            _unquote(show.group("measurement")),
            (key,),
            names=(("WITH KEY", key), *conditions),
        )
    select = _SELECT.match(query)
    if select is None:
        raise QueryCheckError(
            "only SELECT ... FROM and SHOW TAG VALUES FROM ... WITH KEY queries are checked: "
            f"{query!r}"
        )
    measurement = _unquote(select.group("measurement"))
    names: list[tuple[str, str]] = []
    columns: list[str] = []
    for expression in _split_top_level(_mask_literals(select.group("select"))):
        parts = _ALIAS.match(expression)
        assert parts is not None  # the pattern matches any text
        core, alias = parts.group("core").strip(), parts.group("alias")
        if "*" in core:
            raise QueryCheckError(f"SELECT * has no known columns: {query!r}")
        function = re.match(r"^([A-Za-z_]\w*)\s*\(", core)
        referenced = [
            _unquote(m.group("quoted")) if m.group("quoted") else m.group("bare")
            for m in _IDENTIFIER.finditer(core)
            if m.group("quoted") or (not m.group("call") and m.group("bare").lower() not in _WORDS)
        ]
        if not referenced:
            raise QueryCheckError(f"{expression!r} reads no field in {query!r}")
        names += [("SELECT", name) for name in referenced]
        if alias is not None:
            columns.append(_unquote(alias))
        elif function is not None:
            columns.append(function.group(1).lower())
        else:
            columns.append(referenced[0])
    clauses = _clauses(select.group("rest"))
    names += [("WHERE", name) for name in _condition_names(clauses.get("WHERE", ""))]
    group_tags: list[str] = []
    for item in _split_top_level(clauses.get("GROUP BY", "")):
        if re.fullmatch(r"time\s*\(.*\)", item, re.I | re.S):
            continue
        if "*" in item:
            raise QueryCheckError(f"GROUP BY * has no known tags: {query!r}")
        group_tags.append(_unquote(item))
    names += [("GROUP BY", tag) for tag in group_tags]
    return ParsedQuery(
        "select", measurement, _numbered(columns), tuple(group_tags), names=tuple(names)
    )


def _numbered(columns: list[str]) -> tuple[str, ...]:
    """Column names as InfluxDB returns them: a repeated name gets ``_1``, ``_2``, ..."""
    seen: dict[str, int] = {}
    named: list[str] = []
    for column in columns:
        count = seen.get(column, 0)
        named.append(column if count == 0 else f"{column}_{count}")
        seen[column] = count + 1
    return tuple(named)


def check_layout(parsed: ParsedQuery, alias: str | None = None) -> None:
    """Check a query against the measurements, fields and tags driftline writes.

    Raises
    ------
    QueryCheckError
        Naming what is not written.
    """
    measurement = parsed.measurement
    if measurement not in MEASUREMENTS:
        raise QueryCheckError(
            f"measurement {measurement!r} is not written by driftline; it writes "
            f"{sorted(MEASUREMENTS)}"
        )
    fields, tags = set(MEASUREMENTS[measurement]), set(TAGS[measurement])
    for clause, name in parsed.names:
        if name == "time" and clause == "WHERE":
            continue
        allowed = tags if clause in ("GROUP BY", "WITH KEY") else fields | tags
        if name not in allowed:
            raise QueryCheckError(
                f"{clause} names {name!r}, which {measurement} does not have; its fields are "
                f"{sorted(fields)}, its tags {sorted(tags)}"
            )
    if parsed.statement == "select" and not any(
        clause == "SELECT" and name in fields for clause, name in parsed.names
    ):
        raise QueryCheckError(f"the SELECT of {measurement} reads no field (only tags)")
    for tag in re.findall(r"\$tag_(\w+)", alias or ""):
        if tag not in parsed.group_tags:
            raise QueryCheckError(f"alias {alias!r} uses tag {tag!r}, which is not grouped by")


# ---------------------------------------------------------------------------
# Check against the database
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    """The InfluxDB 1.x database holding a pipeline run's points."""

    url: str
    name: str
    time_range: TimeRange


def check_results(
    parsed: ParsedQuery, results: list[dict[str, Any]], required: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Check a query's result against what the query asks for; return its series.

    Raises
    ------
    QueryCheckError
        When there are no series, a column is null in every row, a grouped tag
        has no value, or a required column is missing.
    """
    if len(results) != 1:
        raise QueryCheckError(f"expected one statement's result, got {len(results)}")
    series: list[dict[str, Any]] = results[0].get("series", [])
    if not series:
        raise QueryCheckError(f"no series from {parsed.measurement}")
    if parsed.statement == "show tag values":
        for one in series:
            if one["columns"] != ["key", "value"]:
                raise QueryCheckError(f"unexpected columns {one['columns']}")
            values = [row[1] for row in one.get("values", []) if row[0] == parsed.columns[0]]
            if not values or not all(isinstance(v, str) and v for v in values):
                raise QueryCheckError(f"no values of tag {parsed.columns[0]!r}: {one}")
        return series
    expected = ["time", *parsed.columns]
    for one in series:
        if one["columns"] != expected:
            raise QueryCheckError(f"columns {one['columns']} instead of {expected}")
        for tag in parsed.group_tags:
            if not one.get("tags", {}).get(tag):
                raise QueryCheckError(f"grouped by {tag!r}, which the series do not carry: {one}")
    for index, column in enumerate(parsed.columns, start=1):
        if all(row[index] is None for one in series for row in one.get("values", [])):
            raise QueryCheckError(
                f"column {column!r} is null in every row: nothing of {parsed.measurement} "
                "has the field it reads"
            )
    for column in required:
        if column not in expected:
            raise QueryCheckError(f"column {column!r} is read by name but not returned")
    return series


def run_query(
    database: Database,
    text: str,
    *,
    alias: str | None = None,
    required: Sequence[str] = (),
    layout: bool = True,
) -> list[dict[str, Any]]:
    """Parse a rendered query, check it against the layout (optional), run it, check the result."""
    parsed = parse_query(text)
    if layout:
        check_layout(parsed, alias)
    results = influxql(database.url, database.name, text, epoch="ms")
    try:
        return check_results(parsed, results, required)
    except QueryCheckError as exc:
        raise QueryCheckError(f"{exc}\nquery: {text}") from None


def _first_number(value: str) -> float:
    found = re.search(r"\d+(?:\.\d+)?", value)
    return float(found.group(0)) if found else -math.inf


def _sorted_options(values: list[str], sort: int) -> list[str]:
    """Grafana's variable sort: 0 none, 1/2 alphabetical, 3/4 numerical, 5/6 case-insensitive."""
    if sort in (1, 2):
        return sorted(values, reverse=sort == 2)
    if sort in (3, 4):
        return sorted(values, key=_first_number, reverse=sort == 4)
    if sort in (5, 6):
        return sorted(values, key=str.lower, reverse=sort == 6)
    return values


def resolve_variables(database: Database, board: dict[str, Any]) -> dict[str, list[str]]:
    """The variables' values on a fresh load of the dashboard, in definition order.

    Each query variable's query runs with the earlier variables substituted;
    the selection is Grafana's default: every value for "All", else the
    stored current value when it is an option, else the first option.
    """
    values: dict[str, list[str]] = {}
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        text = render(variable_query(variable), values, database.time_range)
        series = run_query(database, text)
        options = _sorted_options(
            sorted({row[1] for one in series for row in one["values"]}), variable.get("sort", 0)
        )
        current = variable.get("current", {}).get("value")
        current_values = current if isinstance(current, list) else [current]
        if variable.get("includeAll") and (not current or current_values == ["$__all"]):
            values[variable["name"]] = options
        elif current and all(value in options for value in current_values):
            values[variable["name"]] = list(current_values)
        else:
            values[variable["name"]] = options[:1]
    return values


# ---------------------------------------------------------------------------
# A real pipeline run with the file sink
# ---------------------------------------------------------------------------

WINDOW_S = 300
LATENESS_S = 30
CONFIG = f"""
models:
  - id: churn
    task: binary
    reference: ref-{{version}}.json
    segment_by: [region]
    window: {{size: {WINDOW_S}s, allowed_lateness: {LATENESS_S}s, label_horizon: 1h,
              orphan_label_ttl: 2h, emit_interval: 1s}}
    drift:
      numeric_methods: [ks, psi, wasserstein, jensenshannon]
      categorical_methods: [chi2, jensenshannon, psi]
      min_samples: 50
    performance: {{metrics: [accuracy, f1, roc_auc], min_labelled: 20}}
    features:
{chr(10).join(f"      - {{name: {name}, kind: numeric}}" for name in NUMERIC)}
{chr(10).join(f"      - {{name: {name}, kind: categorical}}" for name in CATEGORICAL)}
rules:
  - name: charges-drift
    kind: feature_drift
    features: [monthly_charges]
    metric: ks
    severity: critical
  - name: missing-values
    kind: data_quality
    metric: missing_rate
    op: ">"
    threshold: 0.03
    severity: warning
topics: {{partitions: 2}}
"""
"""Every drift method on every feature it applies to, so every panel has data to show."""


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The test process's environment without DRIFTLINE_* (no InfluxDB URL: the file sink)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _cli(*args: str, env: Mapping[str, str], cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(env),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"driftline {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def _window(moment: str) -> int:
    seconds = int(datetime.fromisoformat(moment).timestamp())
    return seconds - seconds % WINDOW_S


def _wait_for_points(
    path: Path, windows: set[int], worker: subprocess.Popen[bytes], log: Path
) -> list[Point]:
    """Points of the file once every closed window's volume, all measurements and alerts are in."""
    deadline = time.monotonic() + 150
    points: list[Point] = []
    missing: list[str] = ["the file"]
    while time.monotonic() < deadline and worker.poll() is None:
        if path.exists():
            points = read_line_protocol(path)
            measurements = {p.measurement for p in points}
            volume = {p.time_ns // 1_000_000_000 for p in points if p.measurement == "volume"}
            states = {dict(p.tags)["state"] for p in points if p.measurement == "alerts"}
            missing = [
                *(f"measurement {m}" for m in sorted(set(MEASUREMENTS) - measurements)),
                *(f"window {w}" for w in sorted(windows - volume)),
                *(f"a {s} alert" for s in ("firing", "resolved") if s not in states),
            ]
            if not missing:
                return points
        time.sleep(1.0)
    raise AssertionError(f"still missing {missing}; worker log:\n{log.read_text()[-4000:]}")


def run_pipeline(bootstrap: str, workdir: Path) -> tuple[str, list[Point]]:
    """Run a small drifting scenario through a real worker; return its line protocol and points."""
    prefix = unique_topic_name("dashboards")
    env = {
        "DRIFTLINE_KAFKA_BOOTSTRAP": bootstrap,
        "DRIFTLINE_KAFKA_SESSION_TIMEOUT_S": "6",
        "DRIFTLINE_KAFKA_HEARTBEAT_INTERVAL_S": "1",
        "DRIFTLINE_DATA_DIR": str(workdir / "data"),
        **{
            f"DRIFTLINE_TOPIC_{role.upper()}": f"{prefix}.{role}"
            for role in ("predictions", "labels", "alerts", "retrain_requests", "dead_letter")
        },
        "DRIFTLINE_TOPIC_PARTIALS": f"{prefix}.partials",
    }
    (workdir / "monitors.yaml").write_text(CONFIG)
    _write_training_csv(workdir / "train.csv")
    _cli(
        "reference", "build", "--model", "churn", "--version", "1", "--data", "train.csv",
        "--prediction", "prediction", "--score", "score", "--target", "label",
        "-c", "monitors.yaml", "-o", "ref-1.json", env=env, cwd=workdir,
    )  # fmt: skip
    _cli("topics", "create", "-c", "monitors.yaml", env=env, cwd=workdir)

    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    scenario = generate(
        ScenarioConfig(
            start=start, predictions=3_000, rate_per_s=1.0, drift_from=0.4, drift_until=0.8,
            label_delay_s=300.0, seed=5,
        )
    )  # fmt: skip
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for topic, events in (
        (env["DRIFTLINE_TOPIC_PREDICTIONS"], scenario.predictions),
        (env["DRIFTLINE_TOPIC_LABELS"], scenario.labels),
    ):
        for event in events:
            producer.produce(topic, orjson.dumps(event), event["prediction_id"].encode())
            producer.poll(0)
    for index, raw in enumerate(scenario.malformed):
        producer.produce(env["DRIFTLINE_TOPIC_PREDICTIONS"], raw, f"bad-{index}".encode())
    assert producer.flush(30) == 0

    newest = max(datetime.fromisoformat(e["timestamp"]).timestamp() for e in scenario.predictions)
    windows = {
        w
        for w in {_window(e["timestamp"]) for e in scenario.predictions}
        if w + WINDOW_S + LATENESS_S + 120 < newest
    }
    log = workdir / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "-c", "monitors.yaml"],
            cwd=workdir,
            env=_clean_env(env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    metrics = workdir / "data" / METRICS_FILE_NAME
    try:
        _wait_for_points(metrics, windows, worker, log)
        time.sleep(3)  # the last performance re-emissions
    finally:
        code = _stop(worker)
    assert code == 0, log.read_text()[-4000:]
    return metrics.read_text(encoding="utf-8"), read_line_protocol(metrics)


@pytest.fixture(scope="module")
def database(
    kafka_bootstrap: str, influxdb1_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Database:
    """A database of the session's InfluxDB 1.6 holding one pipeline run's points."""
    text, points = run_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("dashboards"))
    name = unique_topic_name("dashboards").replace("-", "_").replace(".", "_")
    influx_create_database(influxdb1_url, name)
    lines = [line for line in text.splitlines() if line.strip()]
    for start in range(0, len(lines), 5_000):
        influx_write(influxdb1_url, name, lines[start : start + 5_000])
    times = [point.time_ns // 1_000_000 for point in points]
    hour_ms = 3_600_000
    return Database(influxdb1_url, name, TimeRange(min(times) - hour_ms, max(times) + hour_ms))


@pytest.fixture(scope="module")
def variable_values(database: Database) -> dict[str, dict[str, list[str]]]:
    """Each dashboard's variable values on a fresh load, by dashboard uid."""
    return {uid: resolve_variables(database, board) for uid, board in BOARDS.items()}


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_the_dashboards_are_the_expected_ones() -> None:
    assert {
        OVERVIEW_UID,
        "driftline-feature-drift",
        "driftline-performance",
        "driftline-data-quality",
        "driftline-volume",
    } <= set(BOARDS)
    for uid, board in BOARDS.items():
        assert 36 <= board["schemaVersion"] <= 41, uid
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[:4] == ["model_id", "model_version", "segment", "feature"], uid
        alert_annotations = [
            q for q in extract_queries(board) if q.kind == "annotation" and '"alerts"' in q.query
        ]
        assert len(alert_annotations) >= 2, f"{uid}: alerts (firing, resolved) as annotations"
        for panel in _panels(board["panels"]):
            if panel.get("type") == "row":
                continue
            assert panel.get("targets"), f"{uid}: panel {panel.get('title')} has no query"
            for target in panel["targets"]:
                assert target.get("rawQuery") is True, (uid, panel["title"])
                assert target.get("query"), (uid, panel["title"])
                assert target.get("datasource", panel["datasource"])["uid"] == DATASOURCE_UID
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] == DATASOURCE_UID, (uid, variable["name"])


def test_alert_links_open_the_model_overview_with_its_variables() -> None:
    event = AlertEvent(
        alert_id="a1", rule="feature-drift", state="firing", severity="warning",
        model_id="churn", model_version="3", segment="region=eu", metric="psi",
        feature="tenure", value=0.31, threshold=0.2,
        window_start="2026-11-23T10:00:00Z", window_end="2026-11-23T11:00:00Z",
        fired_at="2026-11-23T11:00:00Z", summary="tenure drifted", evidence={},
    )  # fmt: skip
    link = urlsplit(dashboard_link("http://grafana:3000", event))
    assert link.path == DASHBOARD_PATH == f"/d/{OVERVIEW_UID}/{OVERVIEW_UID}"
    names = {v["name"] for v in BOARDS[OVERVIEW_UID]["templating"]["list"]}
    linked = {key.removeprefix("var-") for key in parse_qs(link.query) if key.startswith("var-")}
    assert linked == {"model_id", "model_version", "segment", "feature"} <= names


def test_the_provisioning_matches_the_dashboards_and_the_settings() -> None:
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "influxdb", "grafana", "topics", "demo-producer"} <= set(services)
    workers = [s for s in services.values() if s.get("command", [])[:1] == ["worker"]]
    assert len(workers) == 2
    datasources = yaml.safe_load(
        (COMPOSE / "grafana/provisioning/datasources/influxdb.yaml").read_text()
    )["datasources"]
    assert [d["uid"] for d in datasources] == [DATASOURCE_UID]
    assert datasources[0]["jsonData"]["version"] == "InfluxQL"
    provider = yaml.safe_load(
        (COMPOSE / "grafana/provisioning/dashboards/driftline.yaml").read_text()
    )["providers"][0]
    mounts = services["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    # Every variable compose interpolates and every DRIFTLINE_* setting is documented.
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (COMPOSE / ".env.example").read_text(), re.M)
    )
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (COMPOSE / "docker-compose.yml").read_text()))
    assert used <= documented, used - documented
    settings = {f"DRIFTLINE_{name.upper()}" for name in DriftlineSettings.model_fields}
    assert settings <= documented, settings - documented
    assert load_config(COMPOSE / "monitors.yaml").models


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_every_query_names_only_what_driftline_writes(query: DashboardQuery) -> None:
    board = BOARDS[query.dashboard]
    far = TimeRange(0, 1)
    check_layout(parse_query(render(query.query, placeholder_values(board), far)), query.alias)


def test_the_pipeline_wrote_every_measurement(database: Database) -> None:
    (result,) = influxql(database.url, database.name, "SHOW MEASUREMENTS")
    assert {row[0] for row in result["series"][0]["values"]} == set(MEASUREMENTS)


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_every_query_returns_what_its_panel_shows(
    query: DashboardQuery,
    database: Database,
    variable_values: dict[str, dict[str, list[str]]],
) -> None:
    text = render(query.query, variable_values[query.dashboard], database.time_range)
    series = run_query(database, text, alias=query.alias, required=query.columns)
    assert series


BROKEN = [
    pytest.param(
        'SELECT mean("missing_ratio") FROM "data_quality" WHERE $timeFilter'
        ' GROUP BY time($__interval), "feature" fill(none)',
        id="field-not-written",
    ),
    pytest.param(
        'SELECT mean("p50_s") FROM "model_performance" WHERE $timeFilter'
        " GROUP BY time($__interval) fill(none)",
        id="field-of-another-measurement",
    ),
    pytest.param(
        'SELECT mean("predictions"), mean("errors") FROM "volume" WHERE $timeFilter'
        " GROUP BY time($__interval) fill(none)",
        id="one-field-of-two-not-written",
    ),
    pytest.param(
        'SELECT mean("value") FROM "model_perf" WHERE $timeFilter GROUP BY time($__interval)',
        id="measurement-not-written",
    ),
    pytest.param(
        'SELECT mean("statistic") FROM "feature_drift" WHERE $timeFilter'
        " AND \"segmnt\" = 'all' GROUP BY time($__interval)",
        id="tag-not-written-in-where",
    ),
    pytest.param(
        'SELECT mean("statistic") FROM "feature_drift" WHERE $timeFilter'
        ' GROUP BY time($__interval), "featur" fill(none)',
        id="tag-not-written-in-group-by",
    ),
    pytest.param(
        'SELECT mean("missing_rate") FROM "data_quality" WHERE $timeFilter'
        ' GROUP BY time($__interval), "segment" fill(none)',
        id="tag-of-another-measurement",
    ),
    pytest.param(
        'SHOW TAG VALUES FROM "volume" WITH KEY = "feature"',
        id="variable-on-a-tag-not-written",
    ),
]


@pytest.mark.parametrize("query", BROKEN)
def test_the_check_catches_a_query_on_something_driftline_does_not_write(
    query: str, database: Database
) -> None:
    text = render(query, {}, database.time_range)
    with pytest.raises(QueryCheckError):
        check_layout(parse_query(text))
    # The database check alone catches it too.
    with pytest.raises(QueryCheckError):
        run_query(database, text, layout=False)


def test_the_check_passes_the_corrected_queries(database: Database) -> None:
    fixed = [
        'SELECT mean("missing_rate") FROM "data_quality" WHERE $timeFilter'
        ' GROUP BY time($__interval), "feature" fill(none)',
        'SELECT mean("predictions"), mean("labels") FROM "volume" WHERE $timeFilter'
        " GROUP BY time($__interval) fill(none)",
        'SELECT mean("statistic") FROM "feature_drift" WHERE $timeFilter'
        ' AND "segment" = \'all\' GROUP BY time($__interval), "feature" fill(none)',
        'SHOW TAG VALUES FROM "data_quality" WITH KEY = "feature"',
    ]
    for query in fixed:
        assert run_query(database, render(query, {}, database.time_range))


def test_the_check_catches_an_unknown_variable_and_a_missing_annotation_column(
    database: Database,
) -> None:
    with pytest.raises(QueryCheckError, match=r"\$modell"):
        render('SELECT "value" FROM "alerts" WHERE "model_id" =~ /^$modell$/', {}, TimeRange(0, 1))
    text = render('SELECT "summary" FROM "alerts" WHERE $timeFilter', {}, database.time_range)
    with pytest.raises(QueryCheckError, match="'rule'"):
        run_query(database, text, required=("summary", "rule"))


def test_a_dashboard_with_a_misspelt_field_fails_through_the_same_path(
    database: Database, variable_values: dict[str, dict[str, list[str]]]
) -> None:
    board = copy.deepcopy(BOARDS[OVERVIEW_UID])
    broken = 0
    for panel in _panels(board["panels"]):
        for target in panel.get("targets", []):
            if 'mean("value")' in target["query"]:
                target["query"] = target["query"].replace('mean("value")', 'mean("valeu")')
                broken += 1
    assert broken
    queries = [q for q in extract_queries(board) if 'mean("valeu")' in q.query]
    assert len(queries) == broken
    values = variable_values[OVERVIEW_UID]
    for query in queries:
        text = render(query.query, values, database.time_range)
        with pytest.raises(QueryCheckError, match="valeu"):
            check_layout(parse_query(text), query.alias)
        with pytest.raises(QueryCheckError, match="no series"):
            run_query(database, text, alias=query.alias, layout=False)
