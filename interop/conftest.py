"""Fixtures for the interop suite: a real `ferromq serve` process per session (and more,
with extra configuration, for tests that need one), plus the known-failures list.

The broker binary is `$FERROMQ_BIN`, or `target/debug/ferromq` under the repository root.
Every broker gets a free loopback port and its own temporary data directory, and its
stderr goes to a file whose tail is attached to the report of any test that fails.
Stopping a broker is part of the test: SIGTERM must make it exit with status 0 within
10 s (graceful shutdown is a feature).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from rawstomp import RawStomp  # noqa: E402

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
KNOWN_FAILURES = HERE / "known_failures.txt"


def broker_binary() -> Path:
    configured = os.environ.get("FERROMQ_BIN")
    if configured:
        p = Path(configured)
        if not p.is_absolute() and not p.exists():
            p = REPO_ROOT / p
    else:
        p = REPO_ROOT / "target" / "debug" / "ferromq"
    if not p.exists():
        pytest.exit(
            f"ferromq binary not found at {p}: run `cargo build --bin ferromq` or set FERROMQ_BIN",
            returncode=2,
        )
    return p.resolve()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerAddr(tuple):
    """`(host, port)` of a running broker's STOMP listener, with a handle on its process.

    Unpacks like the tuple the STOMP tests mostly need (`host, port = broker`);
    `amqp_port` is the AMQP 0-9-1 listener's port, `mqtt_port` the MQTT one's.
    """

    def __new__(cls, proc: "BrokerProcess"):
        self = super().__new__(cls, (proc.host, proc.port))
        self.process = proc
        return self

    @property
    def host(self) -> str:
        return self[0]

    @property
    def port(self) -> int:
        return self[1]

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    @property
    def amqp_port(self) -> int:
        return self.process.amqp_port

    @property
    def mqtt_port(self) -> int:
        return self.process.mqtt_port


class BrokerProcess:
    """One `ferromq serve` child process."""

    running: list["BrokerProcess"] = []

    def __init__(self, env: dict[str, str] | None = None):
        self.extra_env = dict(env or {})
        self.host = "127.0.0.1"
        self.port = 0
        self.amqp_port = 0
        self.mqtt_port = 0
        self.proc: subprocess.Popen | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="ferromq-interop-"))
        self.log_path = self.tmp / "stderr.log"
        self.stopped = False
        self._term_sent = False
        self._term_at = 0.0

    def log_tail(self, n_bytes: int = 6000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "<no log>"
        text = data[-n_bytes:].decode("utf-8", "replace")
        # tracing colours are off for files, but be safe.
        return re.sub(r"\x1b\[[0-9;]*m", "", text)

    def start(self) -> "BrokerProcess":
        binary = broker_binary()
        for attempt in range(3):
            self.port = free_port()
            self.amqp_port = free_port()
            self.mqtt_port = free_port()
            # Every FERROMQ_* variable is a config key to the broker (FERROMQ_BIN would be
            # an unknown one), so none is inherited: a test gets exactly what it asks for.
            env = {k: v for k, v in os.environ.items() if not k.startswith("FERROMQ_")}
            env.update(
                {
                    "FERROMQ_LISTENERS__STOMP": f"{self.host}:{self.port}",
                    "FERROMQ_LISTENERS__AMQP": f"{self.host}:{self.amqp_port}",
                    "FERROMQ_LISTENERS__MQTT": f"{self.host}:{self.mqtt_port}",
                    # The JMS suite runs from `cargo test` (tests/openwire.rs); off here, so
                    # parallel brokers do not race for 61616.
                    "FERROMQ_LISTENERS__OPENWIRE": "",
                    # TLS and WebSocket listeners only where a test asks for them.
                    "FERROMQ_LISTENERS__AMQP_TLS": "",
                    "FERROMQ_LISTENERS__MQTT_TLS": "",
                    "FERROMQ_LISTENERS__STOMP_TLS": "",
                    "FERROMQ_LISTENERS__OPENWIRE_TLS": "",
                    "FERROMQ_LISTENERS__WS": "",
                    "FERROMQ_LISTENERS__WSS": "",
                    "FERROMQ_DATA_DIR": str(self.tmp / "data"),
                    "FERROMQ_LOG": "info",
                }
            )
            env.update(self.extra_env)
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(binary), "serve"],
                    cwd=self.tmp,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            if self._wait_ready():
                BrokerProcess.running.append(self)
                return self
            # Lost the race for the port to another process: try another one.
            if "Address already in use" in self.log_tail() and attempt < 2:
                self.proc.wait(5)
                continue
            break
        self._kill()
        tail = self.log_tail()
        shutil.rmtree(self.tmp, ignore_errors=True)
        pytest.fail(
            f"ferromq did not start listening on {self.host}:{self.port} within "
            f"{START_TIMEOUT_S:.0f} s (exit status {self.proc.poll()}). Its stderr:\n{tail}",
            pytrace=False,
        )

    def _wait_ready(self) -> bool:
        """Waits until the STOMP port accepts a STOMP connection (CONNECT, then DISCONNECT
        with a receipt, then the broker's close, so the probe holds no connection slot
        afterwards) and the AMQP port accepts a TCP connection."""
        deadline = time.monotonic() + START_TIMEOUT_S
        if not self._wait_stomp(deadline):
            return False
        return self._wait_amqp(deadline)

    def _wait_amqp(self, deadline: float) -> bool:
        if self.extra_env.get("FERROMQ_LISTENERS__AMQP", None) == "":
            return True
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection((self.host, self.amqp_port), timeout=2.0).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def _wait_stomp(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                c = RawStomp(self.host, self.port, timeout=2.0)
            except OSError:
                time.sleep(0.02)
                continue
            try:
                c.connect(timeout=5.0)
                c.send_frame("DISCONNECT", {"receipt": "ready-probe"})
                c.expect("RECEIPT", 5.0)
                c.expect_closed(5.0)
                return True
            except (OSError, AssertionError) as e:
                self._kill()
                tail = self.log_tail()
                shutil.rmtree(self.tmp, ignore_errors=True)
                pytest.fail(
                    f"ferromq accepted a connection on port {self.port} but the STOMP probe "
                    f"failed: {e}. Its stderr:\n{tail}",
                    pytrace=False,
                )
            finally:
                c.close()
        return False

    def _kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def rss_kib(self, field: str = "VmRSS") -> int:
        """Resident memory of the broker in KiB (`VmRSS`, or `VmHWM` for the peak)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"{field} not in /proc/{self.proc.pid}/status")

    def terminate(self) -> None:
        """Sends SIGTERM (once); `stop()` then waits for the exit and checks it."""
        if self.proc.poll() is None and not self._term_sent:
            self._term_sent = True
            self._term_at = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or None if the broker is still running after `timeout`."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM, wait up to 10 s (then SIGKILL), and assert a clean exit (status 0)."""
        if self.stopped:
            return
        self.stopped = True
        if self in BrokerProcess.running:
            BrokerProcess.running.remove(self)
        if self.proc.poll() is not None and not self._term_sent:
            msg = (f"ferromq exited on its own during the tests with status {self.proc.returncode}. "
                   f"Its stderr:\n{self.log_tail()}")
            shutil.rmtree(self.tmp, ignore_errors=True)
            pytest.fail(msg, pytrace=False)
        self.terminate()
        remaining = max(STOP_TIMEOUT_S - (time.monotonic() - self._term_at), 0.1)
        code = self.wait_exit(remaining)
        killed = code is None
        if killed:
            self.proc.kill()
            code = self.proc.wait(5)
        tail = self.log_tail()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if killed:
            pytest.fail(
                f"ferromq did not exit within {STOP_TIMEOUT_S:.0f} s of SIGTERM and was killed. "
                f"Its stderr:\n{tail}",
                pytrace=False,
            )
        if code != 0:
            pytest.fail(f"ferromq exited with status {code} after SIGTERM (expected 0). Its stderr:\n{tail}",
                        pytrace=False)


@pytest.fixture(scope="session")
def broker():
    """The shared broker with the default configuration: yields `(host, port)`."""
    b = BrokerProcess().start()
    yield BrokerAddr(b)
    b.stop()


@pytest.fixture
def start_broker():
    """Starts a dedicated broker with extra `FERROMQ_*` environment, e.g.
    `start_broker(FERROMQ_STOMP__CONNECTIONS_MAX="3")`; returns its `(host, port)`.
    Every broker started is stopped (and checked for a clean exit) after the test."""
    started: list[BrokerProcess] = []

    def start(**env: str) -> BrokerAddr:
        b = BrokerProcess({k: str(v) for k, v in env.items()}).start()
        started.append(b)
        return BrokerAddr(b)

    yield start
    errors = []
    for b in started:
        try:
            b.stop()
        except pytest.fail.Exception as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


# -- reports ---------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for b in list(BrokerProcess.running):
            report.sections.append((f"ferromq stderr (port {b.port}, last lines)", b.log_tail(4000)))
    return report


# -- known failures ------------------------------------------------------------------------


def load_known_failures() -> dict[str, str]:
    """`test_id  # reason` per line; blank lines and lines starting with `#` are ignored.
    A test id is `file.py::test_name` (a full pytest node id also works)."""
    entries: dict[str, str] = {}
    if not KNOWN_FAILURES.exists():
        return entries
    for n, line in enumerate(KNOWN_FAILURES.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        test_id, _, reason = stripped.partition("#")
        test_id, reason = test_id.strip(), reason.strip()
        if not reason:
            raise pytest.UsageError(f"{KNOWN_FAILURES.name}:{n}: '{test_id}' has no '# reason'")
        entries[test_id] = reason
    return entries


def _matches(entry: str, item: pytest.Item) -> bool:
    short = f"{item.path.name}::{item.name}"
    return entry in (short, item.nodeid) or item.nodeid.endswith("/" + entry)


def pytest_collection_modifyitems(config, items):
    entries = load_known_failures()
    used = set()
    for item in items:
        for entry, reason in entries.items():
            if _matches(entry, item):
                used.add(entry)
                item.add_marker(
                    pytest.mark.xfail(
                        reason=f"known broker bug in interop/known_failures.txt (an XPASS means it is fixed: remove the entry): {reason}",
                        strict=True,
                    )
                )
    # An entry is stale when its file was collected but no test in it matched.
    files = {item.path.name for item in items}
    config._ferromq_unused_known_failures = [
        e for e in entries if e not in used and e.split("::")[0].rsplit("/", 1)[-1] in files
    ]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    unused = getattr(config, "_ferromq_unused_known_failures", [])
    if unused and not config.option.keyword and not config.option.markexpr:
        terminalreporter.write_line(
            "known_failures.txt lists tests that no longer exist (remove them): " + ", ".join(unused),
            yellow=True,
        )
