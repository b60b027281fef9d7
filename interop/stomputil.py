"""Helpers around stomp.py: a listener that records what arrives and lets a test wait
for it (threading primitives, bounded waits, never blind sleeps), and connection setup."""

from __future__ import annotations

import threading
import time
import uuid

import stomp

WAIT_S = 5.0

VERSIONS = {
    "1.0": stomp.Connection10,
    "1.1": stomp.Connection11,
    "1.2": stomp.Connection12,
}


def unique(prefix: str = "t") -> str:
    """A destination-safe name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Collector(stomp.ConnectionListener):
    """Records every frame stomp.py hands to listeners."""

    def __init__(self):
        self.cond = threading.Condition()
        self.messages: list[stomp.utils.Frame] = []
        self.errors: list[stomp.utils.Frame] = []
        self.receipts: list[str] = []
        self.heartbeats: list[float] = []
        self.connected_frame = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.errored = threading.Event()

    # -- stomp.py callbacks -----------------------------------------------------------------

    def _add(self, attr, value):
        with self.cond:
            getattr(self, attr).append(value)
            self.cond.notify_all()

    def on_connected(self, frame):
        with self.cond:
            self.connected_frame = frame
            self.cond.notify_all()
        self.connected.set()

    def on_message(self, frame):
        self._add("messages", frame)

    def on_error(self, frame):
        self._add("errors", frame)
        self.errored.set()

    def on_receipt(self, frame):
        self._add("receipts", frame.headers.get("receipt-id"))

    def on_heartbeat(self):
        self._add("heartbeats", time.monotonic())

    def on_disconnected(self):
        with self.cond:
            self.cond.notify_all()
        self.disconnected.set()

    # -- waiting ------------------------------------------------------------------------------

    def wait_for(self, predicate, timeout: float = WAIT_S, what: str = "condition",
                 stop_on_error: bool = True):
        """Waits until `predicate()` holds; gives up early if an ERROR frame arrives (the
        broker closes the connection after one, so nothing else will come)."""
        with self.cond:
            self.cond.wait_for(lambda: predicate() or (stop_on_error and bool(self.errors)), timeout)
            ok = predicate()
        assert ok, f"gave up after {timeout} s waiting for {what}; state: {self.describe()}"
        return ok

    def wait_messages(self, n: int, timeout: float = WAIT_S, where=None) -> list:
        """Waits until at least `n` messages (matching `where`, if given) have arrived."""
        pick = (lambda: [m for m in self.messages if where(m)]) if where else (lambda: list(self.messages))
        self.wait_for(lambda: len(pick()) >= n, timeout, f"{n} message(s)")
        with self.cond:
            return pick()

    def wait_receipt(self, receipt_id: str, timeout: float = WAIT_S) -> None:
        self.wait_for(lambda: receipt_id in self.receipts, timeout, f"RECEIPT {receipt_id}")

    def wait_error(self, timeout: float = WAIT_S):
        self.wait_for(lambda: bool(self.errors), timeout, "an ERROR frame", stop_on_error=False)
        return self.errors[0]

    def bodies(self, where=None) -> list:
        with self.cond:
            return [m.body for m in self.messages if where is None or where(m)]

    def describe(self) -> str:
        return (
            f"{len(self.messages)} messages {[m.body for m in self.messages][:10]!r}, "
            f"errors {[(e.headers, e.body) for e in self.errors]!r}, receipts {self.receipts!r}, "
            f"{len(self.heartbeats)} heart-beats, disconnected={self.disconnected.is_set()}"
        )


def open_conn(broker, version: str = "1.2", *, login: str | None = "guest", passcode: str | None = "guest",
              headers: dict | None = None, heartbeats=(0, 0), auto_decode: bool = True,
              expect_connected: bool = True, timeout: float = WAIT_S):
    """Connects with stomp.py at `version`; returns (connection, collector)."""
    host, port = broker
    cls = VERSIONS[version]
    kwargs = dict(host_and_ports=[(host, port)], auto_decode=auto_decode, reconnect_attempts_max=1)
    if version != "1.0":
        kwargs["heartbeats"] = heartbeats
    conn = cls(**kwargs)
    c = Collector()
    conn.set_listener("collector", c)
    # wait=False and our own bounded wait: stomp.py's own wait has no timeout.
    conn.connect(login, passcode, wait=False, headers=headers or {})
    if expect_connected:
        c.wait_for(lambda: c.connected_frame is not None or c.errors or c.disconnected.is_set(),
                   timeout, "CONNECTED")
        assert c.connected_frame is not None, f"connect failed: {c.describe()}"
    return conn, c


def close_conn(conn, collector: Collector | None = None) -> None:
    """DISCONNECT with a receipt when still connected, then make sure the socket is closed."""
    try:
        if conn.is_connected():
            rid = unique("bye")
            conn.disconnect(receipt=rid)
            if collector is not None:
                collector.disconnected.wait(WAIT_S)
    except Exception:
        pass
    try:
        conn.transport.stop()
    except Exception:
        pass
    try:
        conn.transport.disconnect_socket()
    except Exception:
        pass


def drop_conn(conn, collector: Collector | None = None) -> None:
    """Closes the socket without DISCONNECT (a client that dies)."""
    try:
        conn.transport.running = False
        sock = conn.transport.socket
        if sock is not None:
            import socket as _s
            try:
                sock.shutdown(_s.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
    except Exception:
        pass
    if collector is not None:
        collector.disconnected.wait(WAIT_S)


def subscribe(conn, collector: Collector, destination: str, sub_id: str, ack: str = "auto",
              version: str = "1.2", **headers) -> None:
    """SUBSCRIBE and wait for its receipt, so the subscription exists before anything is sent."""
    rid = unique("sub")
    if version == "1.0":
        conn.subscribe(destination, id=sub_id, ack=ack, headers=dict(headers, receipt=rid))
    else:
        conn.subscribe(destination, sub_id, ack=ack, headers=dict(headers, receipt=rid))
    collector.wait_receipt(rid)


def send_sync(conn, collector: Collector, destination: str, body, **headers) -> None:
    """SEND with a receipt, and wait for it (so the message is routed when this returns)."""
    rid = unique("send")
    conn.send(destination, body, headers=dict(headers, receipt=rid))
    collector.wait_receipt(rid)
