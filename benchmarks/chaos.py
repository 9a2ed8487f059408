"""Faults in the middle of a 200 k-message live scenario, with the figures.

Usage::

    python -m benchmarks.chaos                      # the full run (about 15 minutes)
    python -m benchmarks.chaos --predictions 6000 --duration 60 --kills 3 --no-docs

One seeded scenario (predictions with drift that starts and ends, labels
arriving up to 45 minutes of event time later, late and retried predictions,
malformed messages) is produced live, paced over ``--duration`` seconds, to
four runs of ``driftline worker`` at once, each with its own consumer groups,
data directory, output topics and VictoriaMetrics (see
``tests/support/chaos.py``):

* ``none`` — the reference: one worker, undisturbed;
* ``kill -9`` — its worker killed with SIGKILL at ``--kills`` seeded random
  moments and restarted each time (checkpoints every 0.2 s or 5 s, alternating
  in a seeded order);
* ``rebalance`` — a second worker joins at 30 % of the scenario; at 42 % the
  one merging the model's partials stalls (SIGSTOP) past its group session
  timeout and goes on (SIGCONT); the first one leaves (SIGTERM) at 65 %;
* ``broker restart`` — its broker (noida-db, which keeps its data on disk) is
  stopped at 50 % and started again.

The reference, kill and rebalance runs use a Tansu broker (in memory) started
here. The table printed at the end is also written into
``docs/reliability.md`` between its ``chaos`` markers (unless ``--no-docs``).

Columns: *events in* is every message produced (predictions, retried
predictions, labels, malformed and rejected messages); *accounted for* adds up
the final ``volume`` points of every window (predictions on time and late,
labels joined), the join counters of the last checkpoints (retried
predictions, duplicate and orphan labels) and the distinct dead letters;
*results equal* compares the run's final points (the last value of every
series and timestamp), alerts, retrain requests and dead letters (duplicates
removed) with the reference run's, and the join figures of every window with
an offline computation on the generated events; *duplicates* counts extra
copies on the output topics and repeated chat notifications; *crashes* counts
workers that exited unasked or failed to stop cleanly; *recovery* is the time
from the fault until the run had applied every input message produced before
the fault.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tests.servers import start_tansu
from tests.support.chaos import (
    RunReport,
    SessionPlan,
    SessionReport,
    join_differences,
    run_session,
    state_differences,
)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"
HEADER = (
    "fault injected",
    "events in",
    "events accounted for",
    "results equal",
    "duplicates on output topics",
    "worker crashes",
    "recovery time",
)
FAULTS = {"reference": "none (reference)", "kill": "kill -9", "rebalance": "rebalance",
          "broker": "broker restart"}  # fmt: skip


def _equal(session: SessionReport, run: RunReport) -> str:
    reference = session.runs["reference"]
    problems = join_differences(session.facts, run.state)
    if run.name != "reference":
        problems += state_differences(reference.state, run.state)
        if run.outputs.unique_alerts() != reference.outputs.unique_alerts():
            problems.append("alerts differ")
        if run.outputs.unique_requests() != reference.outputs.unique_requests():
            problems.append("retrain requests differ")
        if run.outputs.dead_letter_contents() != reference.outputs.dead_letter_contents():
            problems.append("dead letters differ")
    problems += run.store_missing
    return "yes" if not problems else f"no ({len(problems)} differences)"


def _duplicates(run: RunReport) -> str:
    counts = run.outputs.duplicates()
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def _recovery(run: RunReport) -> str:
    if not run.faults:
        return "—"
    parts = []
    for fault in run.faults:
        seconds = "never" if fault.recovery_s is None else f"{fault.recovery_s:.1f} s"
        parts.append(f"{fault.kind} at {fault.progress:.0%}: {seconds}")
    return "; ".join(parts)


def rows(session: SessionReport) -> list[tuple[str, ...]]:
    """One row per run, in the order of :data:`HEADER`."""
    found: list[tuple[str, ...]] = []
    for name, run in session.runs.items():
        fault = FAULTS[name]
        if name == "kill":
            fault = f"kill -9 × {len(run.faults)}"
        found.append(
            (
                fault,
                f"{session.scenario.events_in:,}",
                f"{run.accounting.total:,}",
                _equal(session, run),
                _duplicates(run),
                str(len(run.crashes)),
                _recovery(run),
            )
        )
    return found


def markdown(session: SessionReport, command: str) -> str:
    """The table in Markdown, with the command and the date."""
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} with `{command}` "
        f"({session.seconds / 60:.1f} minutes; {len(session.facts)} windows of 5 minutes):",
        "",
        "| " + " | ".join(HEADER) + " |",
        "| " + " | ".join("---" for _ in HEADER) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(session)]
    return "\n".join(lines)


def write_docs(text: str) -> None:
    """Put ``text`` between the markers of docs/reliability.md."""
    document = DOC.read_text()
    if BEGIN not in document or END not in document:
        raise SystemExit(f"{DOC} has no {BEGIN} … {END} markers")
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    DOC.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", document))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=int, default=111_000)
    parser.add_argument("--duration", type=float, default=480.0, help="seconds of production")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--no-docs", action="store_true", help="do not update the docs")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    console = Console()
    plan = SessionPlan(
        predictions=args.predictions,
        duration_s=args.duration,
        seed=args.seed,
        kills=args.kills,
    )
    command = "python -m benchmarks.chaos" + (
        "" if argv is None and len(sys.argv) == 1 else " " + " ".join(argv or sys.argv[1:])
    )
    work = Path(tempfile.mkdtemp(prefix="driftline-chaos-"))
    broker = start_tansu(work / "tansu")
    try:
        started = time.monotonic()
        session = run_session(
            plan,
            work / "session",
            broker.endpoint,
            say=lambda text: console.print(f"[{time.monotonic() - started:6.1f} s] {text}"),
        )
    finally:
        broker.stop()
    table = Table(title="driftline under faults")
    for column in HEADER:
        table.add_column(column)
    for row in rows(session):
        table.add_row(*row)
    console.print(table)
    console.print(f"work directory: {work}" if args.keep else "")
    if not args.no_docs:
        write_docs(markdown(session, command))
        console.print(f"written into {DOC.relative_to(ROOT)}")
    if not args.keep:
        import shutil  # noqa: PLC0415

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
