"""A ``driftline worker`` as a child process, for the benchmarks that run one.

:mod:`benchmarks.alert_latency` and :mod:`benchmarks.e2e_throughput` both start
workers on their own topics against an embedded broker: the topic names of a
prefix, the worker's environment (no inherited ``DRIFTLINE_*``, so the file
sink), the process itself (stopped by PID) and its CPU time and memory, read
from ``/proc``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from streams.embedded import parent_death_prefix

ROOT = Path(__file__).resolve().parents[1]
WORKER_ENV = {
    "DRIFTLINE_KAFKA_SESSION_TIMEOUT_S": "6",
    "DRIFTLINE_KAFKA_HEARTBEAT_INTERVAL_S": "1",
    "DRIFTLINE_LOG_LEVEL": "INFO",
}
"""Settings of every benchmark worker: a quick rebalance when one leaves, INFO logs."""


class BenchmarkError(RuntimeError):
    """A step of the benchmark failed (the message says which and why)."""


def topic_names(prefix: str) -> dict[str, str]:
    """Role (as in ``DriftlineSettings.topics``) to topic name."""
    roles = ("predictions", "labels", "alerts", "retrain_requests", "dead_letter", "partials")
    return {role: f"{prefix}.{role.replace('_', '-')}" for role in roles}


def worker_env(bootstrap: str, data_dir: Path, topics: dict[str, str]) -> dict[str, str]:
    """A worker's environment: no inherited ``DRIFTLINE_*`` (so the file sink), these topics."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DRIFTLINE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(WORKER_ENV)
    env["DRIFTLINE_KAFKA_BOOTSTRAP"] = bootstrap
    env["DRIFTLINE_DATA_DIR"] = str(data_dir)
    for role, name in topics.items():
        env[f"DRIFTLINE_TOPIC_{role.upper()}"] = name
    return env


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from ``/proc/PID/stat`` (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WorkerProcess:
    """``driftline worker -c monitors.yaml`` as a child process, stopped by PID.

    With ``profile_to`` the worker runs under cProfile, which writes its
    statistics to that file when the worker stops cleanly.
    """

    def __init__(
        self,
        config_dir: Path,
        env: dict[str, str],
        log_path: Path,
        profile_to: Path | None = None,
    ) -> None:
        self.config_dir = config_dir
        self.env = env
        self.log_path = log_path
        self.profile_to = profile_to
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def argv(self) -> list[str]:
        python = [sys.executable]
        if self.profile_to is not None:
            python += ["-m", "cProfile", "-o", str(self.profile_to)]
        return [*python, "-m", "streams.cli", "worker", "-c", "monitors.yaml"]

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BenchmarkError("the worker is not running")
        return self._process.pid

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*parent_death_prefix(), *self.argv],
                cwd=self.config_dir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def check(self) -> None:
        """Raise if the worker has exited."""
        if self._process is not None and self._process.poll() is not None:
            raise BenchmarkError(
                f"the worker exited with status {self._process.returncode}; "
                f"end of {self.log_path}:\n{self.log_tail()}"
            )

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker so far (all threads)."""
        return process_cpu_seconds(self.pid)

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM of the worker, in KiB, from ``/proc/PID/status``."""
        found: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
        return found

    def log_tail(self, max_chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean faust shutdown, which also writes a cProfile file), then SIGKILL."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
