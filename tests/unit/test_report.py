"""``driftline report``: reading line protocol, first vs final values, the files it writes.

The points come from :mod:`streams.points`' own constructors, written by the
real :class:`~streams.sink.FileSink`, or from lines typed out here; expected
values are the inputs of the scenario below, not outputs of the report code.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from streams import points as pts
from streams.cli import main
from streams.points import Point
from streams.report import (
    PREDICTION,
    GroupKey,
    ReportError,
    Selection,
    StoreData,
    build_report,
    highlighted_features,
    influxql_queries,
    parse_report_time,
    performance_windows,
    points_from_influxql,
    read_file_store,
    write_report,
)
from streams.sink import FileSink

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
T0_NS = 1_709_294_400 * 10**9  # 2024-03-01T12:00:00Z, by hand: 19783 days * 86400 + 12 h
WINDOW = timedelta(minutes=10)
WINDOW_NS = 600 * 10**9
SEGMENT_EU = "region=eu west"
EU_HASH = hashlib.sha256(b"churn\x003\x00region=eu west").hexdigest()[:6]
"""File names replace ``=`` and space, and add this hash of model, version and segment."""
ODD_FEATURE = "plan, tier=1"
SUMMARY = 'dataset drifted: "monthly_charges" \\ <b>plan</b>'

KS_P = [0.4, 0.3, 0.2, 1e-9, 1e-30, 0.0]
PSI = [0.01, 0.02, 0.03, 0.5, 0.9, 1.2]
JS = [0.02, 0.03, 0.02, 0.04, 0.03, 0.02]
# accuracy writes per window: (value, coverage, n_labelled, is_final); NaN = no value yet
ACCURACY_WRITES: dict[int, list[tuple[float, float, int, bool]]] = {
    0: [(0.5, 0.1, 10, False), (0.7, 0.6, 60, False), (0.75, 0.9, 90, True)],
    1: [(0.8, 0.9, 90, True)],
    2: [(math.nan, 0.05, 5, False), (0.6, 0.5, 50, False), (0.65, 0.7, 70, False)],
}


def window(index: int) -> datetime:
    return T0 + index * WINDOW


def scenario_points() -> list[Point]:
    """A model whose ``monthly_charges`` drifts from window 3, with late labels and alerts."""
    written: list[Point] = []
    common = {"model_id": "churn", "model_version": "3"}
    for segment in ("all", SEGMENT_EU):
        for index in range(6):
            drifted = index >= 3
            written.append(
                pts.feature_drift(
                    **common, segment=segment, feature="monthly_charges", method="ks",
                    statistic=0.05 + 0.1 * index, p_value=KS_P[index], threshold=0.05,
                    drifted=drifted, n_current=500, n_reference=10_000,
                    window_start=window(index),
                )
            )  # fmt: skip
            written.append(
                pts.feature_drift(
                    **common, segment=segment, feature="monthly_charges", method="psi",
                    statistic=PSI[index], p_value=None, threshold=0.2, drifted=drifted,
                    n_current=500, n_reference=10_000, window_start=window(index),
                )
            )  # fmt: skip
            written.append(
                pts.feature_drift(
                    **common, segment=segment, feature=ODD_FEATURE, method="jensenshannon",
                    statistic=JS[index], p_value=None, threshold=0.1, drifted=False,
                    n_current=500, n_reference=10_000, window_start=window(index),
                )
            )  # fmt: skip
            written.append(
                pts.prediction_drift(
                    **common, segment=segment, method="ks", statistic=0.04, p_value=0.5,
                    threshold=0.05, drifted=False, n_current=500, n_reference=10_000,
                    window_start=window(index),
                )
            )  # fmt: skip
            written.append(
                pts.volume(
                    **common, segment=segment, predictions=500 + index, labels=400,
                    late_predictions=index, dead_letters=0, window_start=window(index),
                )
            )  # fmt: skip
    # late labels: performance re-emitted, interleaved with other points
    for rewrite in range(3):
        for index, writes in ACCURACY_WRITES.items():
            if rewrite < len(writes):
                value, coverage, n_labelled, is_final = writes[rewrite]
                written.append(
                    pts.model_performance(
                        **common, segment="all", metric="accuracy", value=value,
                        n_labelled=n_labelled, coverage=coverage, is_final=is_final,
                        window_start=window(index),
                    )
                )  # fmt: skip
    written.append(
        pts.alerts(
            **common, segment="all", feature="monthly_charges", rule="feature-drift",
            severity="warning", state="firing", value=1e-30, summary="monthly_charges drifted",
            time=window(5),
        )
    )  # fmt: skip
    written.append(
        pts.alerts(
            **common, segment="all", feature=None, rule="dataset-drift", severity="critical",
            state="firing", value=2.0, summary=SUMMARY, time=window(5),
        )
    )  # fmt: skip
    written.append(
        pts.alerts(
            **common, segment="all", feature="monthly_charges", rule="feature-drift",
            severity="warning", state="resolved", value=0.3, summary="back to normal",
            time=window(6),
        )
    )  # fmt: skip
    written.append(
        pts.feature_drift(
            model_id="fraud", model_version="1", segment="all", feature="amount", method="psi",
            statistic=0.1, p_value=None, threshold=0.2, drifted=False, n_current=100,
            n_reference=1000, window_start=window(0),
        )
    )  # fmt: skip
    return written


def write_scenario(data_dir: Path) -> Path:
    """Write the scenario with the real file sink; return ``metrics.lp``."""
    path = data_dir / "metrics.lp"
    with FileSink(path) as sink:
        sink.add(scenario_points())
        sink.flush()
    return path


# ---------------------------------------------------------------------------
# line protocol
# ---------------------------------------------------------------------------


def test_reads_back_what_the_encoder_and_the_file_sink_wrote(tmp_path: Path) -> None:
    write_scenario(tmp_path)
    store = read_file_store(tmp_path)
    expected = [p for p in scenario_points() if p.measurement != "model_performance"]
    read = [p for p in store.points if p.measurement != "model_performance"]
    assert [(p.measurement, p.tags, p.time_ns) for p in read] == [
        (p.measurement, p.tags, p.time_ns) for p in expected
    ]
    assert [p.fields for p in read] == [p.fields for p in expected]
    tags = {dict(p.tags).get("segment") for p in read}
    assert SEGMENT_EU in tags
    summaries = [p.fields["summary"] for p in read if p.measurement == "alerts"]
    assert SUMMARY in summaries
    assert store.keeps_rewrites


def test_parses_hand_written_lines(tmp_path: Path) -> None:
    (tmp_path / "metrics.lp").write_text(
        "# a comment, then a blank line\n"
        "\n"
        "feature_drift,feature=monthly\\ charges,method=ks,model_id=churn,model_version=1,"
        "segment=region\\=eu\\,west statistic=0.5,p_value=1e-05,threshold=0.05,drifted=true,"
        "n_current=120i,n_reference=-3i 1704067200000000000\n"
        'alerts,feature=-,model_id=churn,rule=a\\ b,state=firing value=2,summary="say \\"hi\\" '
        '\\\\ ok, x=1" 1704067200000000001\n'
        "model_performance,metric=f1,model_id=churn,segment=all is_final=F,value=1.5E2 7\n",
        encoding="utf-8",
    )
    drift, alert, performance = read_file_store(tmp_path).points
    assert drift.measurement == "feature_drift"
    assert dict(drift.tags) == {
        "feature": "monthly charges",
        "method": "ks",
        "model_id": "churn",
        "model_version": "1",
        "segment": "region=eu,west",
    }
    assert drift.fields == {
        "statistic": 0.5,
        "p_value": 0.00001,
        "threshold": 0.05,
        "drifted": True,
        "n_current": 120,
        "n_reference": -3,
    }
    assert isinstance(drift.fields["n_current"], int)
    assert drift.time_ns == 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
    assert dict(alert.tags)["rule"] == "a b"
    assert alert.fields == {"value": 2.0, "summary": 'say "hi" \\ ok, x=1'}
    assert alert.time_ns == 1_704_067_200_000_000_001
    assert performance.fields == {"is_final": False, "value": 150.0}
    assert performance.time_ns == 7


def test_a_bad_line_is_a_clear_error_with_its_number(tmp_path: Path) -> None:
    (tmp_path / "metrics.lp").write_text("volume predictions=1i 5\nvolume predictions= 6\n")
    with pytest.raises(ReportError, match=r"metrics.lp, line 2"):
        read_file_store(tmp_path)


def test_a_missing_file_names_the_place_and_the_demo(tmp_path: Path) -> None:
    (tmp_path / "demo" / "data").mkdir(parents=True)
    (tmp_path / "demo" / "data" / "metrics.lp").write_text("")
    with pytest.raises(ReportError) as caught:
        read_file_store(tmp_path)
    message = str(caught.value)
    assert f"no time series at {tmp_path / 'metrics.lp'}" in message
    assert f"--data-dir {tmp_path / 'demo' / 'data'}" in message


# ---------------------------------------------------------------------------
# aggregation
# ---------------------------------------------------------------------------


def test_first_and_final_value_of_a_rewritten_point(tmp_path: Path) -> None:
    write_scenario(tmp_path)
    windows = performance_windows(read_file_store(tmp_path).points)
    (series,) = windows.values()
    assert [w.time_ns for w in series] == [T0_NS, T0_NS + WINDOW_NS, T0_NS + 2 * WINDOW_NS]
    first, second, third = series
    assert (first.first_value, first.first_coverage) == (0.5, 0.1)
    assert (first.final_value, first.final_coverage) == (0.75, 0.9)
    assert (first.n_labelled, first.is_final, first.writes) == (90, True, 3)
    assert first.corrected
    assert (second.first_value, second.final_value, second.writes) == (0.8, 0.8, 1)
    assert not second.corrected
    # the first write had no value (NaN is not written): the first value is the second write's
    assert (third.first_value, third.first_coverage) == (0.6, 0.5)
    assert (third.final_value, third.final_coverage, third.is_final) == (0.65, 0.7, False)
    assert third.writes == 3


def test_build_report_groups_series_by_model_version_and_segment(tmp_path: Path) -> None:
    write_scenario(tmp_path)
    report = build_report(read_file_store(tmp_path))
    keys = [group.key for group in report.groups]
    assert keys == [
        GroupKey("churn", "3", "all"),
        GroupKey("churn", "3", SEGMENT_EU),
        GroupKey("fraud", "1", "all"),
    ]
    churn = report.groups[0]
    series = {(s.feature, s.method): s for s in churn.drift}
    assert set(series) == {
        ("monthly_charges", "ks"),
        ("monthly_charges", "psi"),
        (ODD_FEATURE, "jensenshannon"),
        (PREDICTION, "ks"),
    }
    ks = series[("monthly_charges", "ks")]
    assert ks.uses_p_value and ks.ever_drifted
    assert [s.p_value for s in ks.samples] == KS_P
    assert [s.time_ns for s in ks.samples] == [T0_NS + i * WINDOW_NS for i in range(6)]
    assert [s.drifted for s in ks.samples] == [False] * 3 + [True] * 3
    psi = series[("monthly_charges", "psi")]
    assert not psi.uses_p_value
    assert [s.statistic for s in psi.samples] == PSI
    assert {s.threshold for s in psi.samples} == {0.2}
    assert not series[(ODD_FEATURE, "jensenshannon")].ever_drifted
    assert [(a.state, a.subject) for a in churn.alerts] == [
        ("firing", "dataset-drift"),
        ("firing", "feature-drift: monthly_charges"),
        ("resolved", "feature-drift: monthly_charges"),
    ]
    assert churn.alerts[0].summary == SUMMARY
    assert [v.late_predictions for v in churn.volume] == list(range(6))
    (accuracy,) = churn.performance
    assert accuracy.metric == "accuracy"
    assert [w.final_value for w in accuracy.windows] == [0.75, 0.8, 0.65]
    assert report.groups[1].performance == ()


def test_missing_thresholds_come_from_the_configuration_then_the_default() -> None:
    line = "feature_drift,feature=x,method={m},model_id={model},model_version=1,segment=all"
    points = [
        pts.parse_line(line.format(m="psi", model="a") + " statistic=0.3 0"),
        pts.parse_line(line.format(m="psi", model="b") + " statistic=0.3 0"),
    ]
    report = build_report(StoreData(tuple(points), "test", True), thresholds={"a": {"psi": 0.25}})
    by_model = {g.key.model_id: g.drift[0].samples[0].threshold for g in report.groups}
    assert by_model == {"a": 0.25, "b": 0.2}  # 0.2: PSI's documented default


def test_selection_by_model_and_time(tmp_path: Path) -> None:
    write_scenario(tmp_path)
    selection = Selection("churn", since=window(2), until=window(4))
    report = build_report(read_file_store(tmp_path, selection))
    assert {g.key.model_id for g in report.groups} == {"churn"}
    times = {s.time_ns for g in report.groups for d in g.drift for s in d.samples}
    assert times == {T0_NS + i * WINDOW_NS for i in (2, 3, 4)}
    with pytest.raises(ReportError, match=r"nothing to report.*model 'nobody'"):
        build_report(read_file_store(tmp_path, Selection("nobody")))


def test_parse_report_time() -> None:
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_report_time("2024-05-01T12:00:00Z") == now
    assert parse_report_time("2024-05-01T14:00:00+02:00") == now
    assert parse_report_time("2024-05-01 12:00") == now
    assert parse_report_time("90m", now=now) == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither a time"):
        parse_report_time("yesterday")


def test_influxql_queries_and_their_results() -> None:
    queries = influxql_queries(Selection("o'brien", since=T0, until=T0 + WINDOW))
    assert queries[0] == (
        'SELECT * FROM "feature_drift" WHERE "model_id" = \'o\\\'brien\' '
        f"AND time >= {T0_NS} AND time <= {T0_NS + WINDOW_NS} GROUP BY *"
    )
    assert [q.split('"')[1] for q in queries] == [
        "feature_drift",
        "prediction_drift",
        "model_performance",
        "volume",
        "alerts",
    ]
    series: dict[str, Any] = {
        "name": "model_performance",
        "tags": {"metric": "f1", "model_id": "churn", "model_version": "", "segment": "all"},
        "columns": ["time", "coverage", "is_final", "n_labelled", "value"],
        "values": [[T0_NS, 0.5, False, 12, None], [T0_NS + 1, 1, True, 24, 0.9]],
    }
    first, second = points_from_influxql([{"statement_id": 0, "series": [series]}])
    assert first.tags == (("metric", "f1"), ("model_id", "churn"), ("segment", "all"))
    assert first.fields == {"coverage": 0.5, "is_final": False, "n_labelled": 12}
    assert (second.time_ns, second.fields["value"]) == (T0_NS + 1, 0.9)
    assert points_from_influxql([{"statement_id": 1}]) == []
    partial = [{"series": [{**series, "partial": True}]}]
    with pytest.raises(ReportError, match="only part"):
        points_from_influxql(partial)


# ---------------------------------------------------------------------------
# the files
# ---------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int


def read_png(data: bytes) -> tuple[PngHeader, bytes]:
    """The IHDR header and the decompressed image data of a PNG, checking every CRC."""
    assert data[:8] == PNG_SIGNATURE
    offset, header, compressed = 8, None, b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            header = PngHeader(width, height, depth, colour)
        elif kind == b"IDAT":
            compressed += body
        offset += 12 + length
    assert header is not None
    return header, zlib.decompress(compressed)


def check_png(data: bytes) -> PngHeader:
    header, raw = read_png(data)
    channels = {2: 3, 6: 4}[header.colour_type]
    assert header.bit_depth == 8
    # one filter byte per row, then the pixels
    assert len(raw) == header.height * (1 + header.width * channels)
    return header


class References(HTMLParser):
    """Every attribute of a page that can load something, and the tags used."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action") and value:
                self.references.append((tag, name, value))


def test_report_files_are_valid_pngs_and_one_self_contained_page(tmp_path: Path) -> None:
    write_scenario(tmp_path / "data")
    report = build_report(read_file_store(tmp_path / "data"))
    files = write_report(report, tmp_path / "out")
    names = sorted(path.name for path in files.images)
    assert names == [
        "churn-v3-all-drift.png",
        "churn-v3-all-overview.png",
        "churn-v3-all-performance.png",
        f"churn-v3-region_eu_west-{EU_HASH}-drift.png",
        "fraud-v1-all-drift.png",
    ]
    for image in files.images:
        header = check_png(image.read_bytes())
        assert header.width == 1200  # 12 in at 100 dpi
        assert 300 <= header.height < 3000
    page = files.html.read_text(encoding="utf-8")
    parser = References()
    parser.feed(page)
    embedded = [value for tag, name, value in parser.references if tag == "img"]
    assert len(embedded) == len(files.images)
    for value in embedded:
        assert value.startswith("data:image/png;base64,")
        check_png(base64.b64decode(value.split(",", 1)[1]))
    assert {base64.b64decode(v.split(",", 1)[1]) for v in embedded} == {
        image.read_bytes() for image in files.images
    }
    others = [(t, n, v) for t, n, v in parser.references if t != "img"]
    assert all(value.startswith("#") for _, _, value in others), others
    assert not parser.tags & {"script", "link", "iframe", "object", "embed"}
    assert "url(" not in page and "@import" not in page
    assert "http:" not in page and "https:" not in page
    # text from the data is escaped, and the late-label corrections are listed
    assert "&lt;b&gt;plan&lt;/b&gt;" in page and "<b>plan</b>" not in page
    assert "Late-label corrections: 2 window values changed" in page


def test_report_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_scenario(tmp_path / "data")
    out = tmp_path / "out"
    args = ["report", "--data-dir", str(tmp_path / "data"), "-o", str(out), "--model", "fraud"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed
    assert f"image: {out / 'fraud-v1-all-drift.png'}" in printed
    assert sorted(p.name for p in out.iterdir()) == ["fraud-v1-all-drift.png", "report.html"]


def test_report_command_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRIFTLINE_INFLUX_URL", raising=False)
    assert main(["report", "--data-dir", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith(f"driftline report: no time series at {tmp_path / 'metrics.lp'}")
    assert "Traceback" not in printed
    # nothing listens on port 9 of 127.0.0.1 (discard): connection refused
    monkeypatch.setenv("DRIFTLINE_INFLUX_URL", "http://user:secret@127.0.0.1:9")
    assert main(["report", "-o", str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("driftline report: cannot reach InfluxDB at http://127.0.0.1:9")
    assert "secret" not in printed
    with pytest.raises(SystemExit) as exited:
        main(["report", "--since", "last tuesday"])
    assert exited.value.code == 2


def test_the_features_that_drifted_most_are_highlighted() -> None:
    line = "feature_drift,feature={f},method=ks,model_id=m,model_version=1,segment=all"
    drifted_windows = {"a": 8, "b": 2, "c": 1, "d": 0}
    points = [
        pts.parse_line(
            line.format(f=feature)
            + f" statistic=0.5,p_value=0.5,threshold=0.05,drifted={str(w < count).lower()} {w}"
        )
        for feature, count in drifted_windows.items()
        for w in range(10)
    ]
    (group,) = build_report(StoreData(tuple(points), "test", True)).groups
    # a quarter of the most drifted feature's 8 windows is 2: b is in, c (1 window) is not
    assert highlighted_features(group) == ["a", "b"]
    assert highlighted_features(group, most=1) == ["a"]
