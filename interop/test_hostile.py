"""Hostile and unusual clients on raw sockets: garbage, lies about sizes, endless headers,
subscribers that never read, too many connections, and frames cut or glued in every way.

What must hold every time: the offender gets an ERROR frame (or is cut off) quickly, the
broker does not read or buffer what it was told to expect, and every other client
carries on as if nothing happened.
"""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest

from rawstomp import RawStomp, encode_frame
from stomputil import close_conn, open_conn, send_sync, subscribe, unique

MIB = 1024 * 1024


def rss_mib(broker, field="VmRSS") -> float:
    return broker.process.rss_kib(field) / 1024


def round_trip(broker, body="ping"):
    """A well-behaved client: connect, subscribe, send, receive, disconnect."""
    conn, c = open_conn(broker)
    try:
        dest = "/queue/" + unique("healthy")
        subscribe(conn, c, dest, "s")
        send_sync(conn, c, dest, body)
        assert [m.body for m in c.wait_messages(1)] == [body]
    finally:
        close_conn(conn, c)


def send_ignoring_reset(sock: socket.socket, data: bytes) -> int:
    """Sends what the broker will take; it may stop reading and close at any point."""
    sent = 0
    try:
        view = memoryview(data)
        while sent < len(data):
            sent += sock.send(view[sent : sent + 64 * 1024])
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    return sent


# -- garbage ----------------------------------------------------------------------------------


_rng = random.Random(20240601)  # fixed, so a failure can be reproduced

GARBAGE = {
    "tls-client-hello": bytes.fromhex("16030100a5010000a10303") + _rng.randbytes(64) + b"\n\n\x00",
    "http-request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "binary-with-newline": bytes(range(1, 10)) + b"\n" + _rng.randbytes(200),
    "lowercase-command": b"connect\naccept-version:1.2\n\n\x00",
    "nul-then-newline": b"\x00\x00\x00\n\n\x00",
    "lone-carriage-returns": b"\r\r\r\r",
    "header-without-colon": b"CONNECT\naccept-version 1.2\n\n\x00",
    "bad-content-length": b"CONNECT\naccept-version:1.2\ncontent-length:-5\n\n\x00",
    "bad-utf8-header": b"CONNECT\naccept-version:1.2\nx-bad:\xff\xfe\n\n\x00",
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_gets_error_and_others_carry_on(broker, name):
    host, port = broker
    good, gc = open_conn(broker)
    try:
        dest = "/queue/" + unique()
        subscribe(good, gc, dest, "s")
        with RawStomp(host, port) as raw:
            raw.send_bytes(GARBAGE[name])
            f = raw.read_frame(5.0)
            assert f is None or f.command == "ERROR", f"expected ERROR or close, got {f!r}"
            raw.expect_closed(5.0)
        send_sync(good, gc, dest, "still fine")
        assert [m.body for m in gc.wait_messages(1)] == ["still fine"]
    finally:
        close_conn(good, gc)
    round_trip(broker)


def test_garbage_after_connect(broker):
    host, port = broker
    with RawStomp(host, port) as raw:
        raw.connect()
        raw.send_bytes(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n")
        f = raw.read_frame(5.0)
        assert f is None or f.command == "ERROR", f
        raw.expect_closed(5.0)
    round_trip(broker)


def test_escape_not_defined_by_1_2_is_an_error(broker):
    host, port = broker
    with RawStomp(host, port) as raw:
        raw.connect("1.2")
        raw.send_frame("SEND", {"destination": "/queue/" + unique(), "x": "bad\\tescape"}, b"b")
        raw.expect_error_and_close()


# -- sizes --------------------------------------------------------------------------------


def test_huge_content_length_rejected_before_reading_body(broker):
    host, port = broker
    before = rss_mib(broker)
    with RawStomp(host, port) as raw:
        raw.connect()
        start = time.monotonic()
        raw.send_bytes(b"SEND\ndestination:/queue/" + unique().encode() + b"\ncontent-length:104857600\n\n")
        raw.send_bytes(b"x" * 1024)
        err = raw.expect("ERROR", 2.0)
        elapsed = time.monotonic() - start
        raw.expect_closed(5.0)
    assert elapsed < 2.0, f"ERROR took {elapsed:.1f} s: the broker seems to wait for the body"
    text = (err.headers.get("message", "") + err.body.decode("utf-8", "replace")).lower()
    assert "large" in text or "limit" in text or "exceeds" in text, err
    after = rss_mib(broker)
    assert after - before < 50, f"broker RSS grew from {before:.0f} MiB to {after:.0f} MiB"
    round_trip(broker)


def test_body_limit_is_configurable(start_broker):
    broker = start_broker(FERROMQ_STOMP__FRAME_BODY_MAX_BYTES="1024")
    host, port = broker
    dest = "/queue/" + unique()
    with RawStomp(host, port) as raw:
        raw.connect()
        raw.send_frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "r0"})
        raw.expect("RECEIPT")
        raw.send_frame("SEND", {"destination": dest, "content-length": "1024"}, b"a" * 1024)
        assert raw.expect("MESSAGE").body == b"a" * 1024
        raw.send_frame("SEND", {"destination": dest, "content-length": "1025"}, b"a" * 1025)
        raw.expect_error_and_close()
    with RawStomp(host, port) as raw:
        raw.connect()
        # Without content-length the limit holds too: the broker stops looking for the NUL.
        n = send_ignoring_reset(raw.sock, b"SEND\ndestination:/queue/x\n\n" + b"b" * 64 * 1024)
        assert n > 1024
        raw.expect_error_and_close()


@pytest.mark.parametrize("when", ["before-connect", "after-connect"])
def test_megabyte_of_header_without_newline(broker, when):
    host, port = broker
    before = rss_mib(broker)
    with RawStomp(host, port) as raw:
        if when == "after-connect":
            raw.connect()
            prefix = b"SEND\ndestination:/queue/x\nx-long:"
        else:
            prefix = b"CONNECT"
        sent = send_ignoring_reset(raw.sock, prefix + b"A" * MIB)
        err = raw.expect("ERROR", 5.0)
        raw.expect_closed(5.0)
    assert "header" in (err.headers.get("message", "") + err.body.decode()).lower(), err
    assert sent >= 64 * 1024, "the broker should read up to its header limit before refusing"
    assert rss_mib(broker) - before < 50
    round_trip(broker)


def test_too_many_headers(broker):
    host, port = broker
    with RawStomp(host, port) as raw:
        raw.connect()
        headers = [("destination", "/queue/x")] + [(f"h{i}", "v") for i in range(5000)]
        send_ignoring_reset(raw.sock, encode_frame("SEND", headers, b"x"))
        raw.expect_error_and_close()


# -- slow consumers -------------------------------------------------------------------------


class CountingReader(threading.Thread):
    """Reads MESSAGE frames as fast as it can and records their sequence numbers."""

    def __init__(self, raw: RawStomp, expected: int):
        super().__init__(daemon=True)
        self.raw = raw
        self.expected = expected
        self.seqs: list[int] = []
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self):
        try:
            while len(self.seqs) < self.expected:
                f = self.raw.read_frame(60.0)
                if f is None:
                    raise AssertionError("broker closed the good subscriber's connection")
                if f.command == "MESSAGE":
                    self.seqs.append(int(f.headers["seq"]))
                elif f.command == "ERROR":
                    raise AssertionError(f"good subscriber got {f!r}")
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.done.set()


def test_subscriber_that_never_reads_does_not_block_others(start_broker):
    broker = start_broker()
    host, port = broker
    topic = "/topic/" + unique("busy")
    n, size = 20_000, 1024

    # The stuck client: subscribes, then never reads a byte (tiny receive window).
    stuck = RawStomp(host, port, rcvbuf=4096)
    stuck.connect()
    stuck.send_frame("SUBSCRIBE", {"destination": topic, "id": "stuck", "receipt": "r"})
    stuck.expect("RECEIPT")

    good = RawStomp(host, port, timeout=60)
    good.connect()
    good.send_frame("SUBSCRIBE", {"destination": topic, "id": "good", "receipt": "r"})
    good.expect("RECEIPT")
    reader = CountingReader(good, n)
    reader.start()

    body = b"x" * size
    peak = 0.0
    start = time.monotonic()
    try:
        with RawStomp(host, port, timeout=30) as prod:
            prod.connect()
            batch = []
            for i in range(n):
                headers = {"destination": topic, "seq": str(i), "content-length": str(size)}
                if i == n - 1:
                    headers["receipt"] = "all-sent"
                batch.append(encode_frame("SEND", headers, body))
                if len(batch) == 500 or i == n - 1:
                    prod.send_bytes(b"".join(batch))
                    batch.clear()
                    peak = max(peak, rss_mib(broker))
            prod.expect("RECEIPT", 30.0)
        published = time.monotonic() - start
        while not reader.done.wait(0.25):
            peak = max(peak, rss_mib(broker))
            assert time.monotonic() - start < 60, f"good subscriber got {len(reader.seqs)}/{n} in 60 s"
        if reader.error:
            raise reader.error
        assert reader.seqs == list(range(n)), "every message, once, in order"
        elapsed = time.monotonic() - start
        peak = max(peak, rss_mib(broker), rss_mib(broker, "VmHWM"))
        assert peak < 300, f"broker RSS peaked at {peak:.0f} MiB"
        print(f"published {n} in {published:.1f} s, all received in {elapsed:.1f} s, peak RSS {peak:.0f} MiB")
        round_trip(broker)
    finally:
        stuck.close()
        good.close()


def test_slow_topic_subscriber_keeps_newest_within_backlog(start_broker):
    """A topic subscriber that falls behind keeps at most `topic_backlog_max` messages
    queued, dropping the oldest (ActiveMQ's pending-message limit): memory stays bounded,
    and when it reads again it gets an in-order subsequence that ends with the newest."""
    broker = start_broker(FERROMQ_STOMP__TOPIC_BACKLOG_MAX="100")
    host, port = broker
    topic = "/topic/" + unique("backlog")
    n, size = 20_000, 1024
    slow = RawStomp(host, port, rcvbuf=4096, timeout=30)
    try:
        slow.connect()
        slow.send_frame("SUBSCRIBE", {"destination": topic, "id": "slow", "receipt": "r"})
        slow.expect("RECEIPT")
        with RawStomp(host, port, timeout=30) as prod:
            prod.connect()
            body = b"b" * size
            frames = [encode_frame("SEND", {"destination": topic, "seq": str(i), "content-length": str(size)}, body)
                      for i in range(n)]
            for i in range(0, n, 500):
                prod.send_bytes(b"".join(frames[i : i + 500]))
            prod.send_frame("SEND", {"destination": "/queue/" + unique(), "receipt": "sent"}, b"")
            prod.expect("RECEIPT", 30.0)
        assert rss_mib(broker) < 300
        seqs = []
        while not seqs or seqs[-1] != n - 1:
            f = slow.read_frame(10.0)
            assert f is not None and f.command == "MESSAGE", f"after {len(seqs)} messages: {f!r}"
            seqs.append(int(f.headers["seq"]))
        assert seqs == sorted(set(seqs)), "in order, no duplicates"
        assert len(seqs) < n, "a subscriber 20,000 messages behind should have lost the oldest"
        print(f"slow subscriber got {len(seqs)} of {n}")
    finally:
        slow.close()


def drain_until_closed(raw: RawStomp, timeout: float) -> int:
    """Reads and discards until the broker closes the connection; returns bytes read."""
    deadline = time.monotonic() + timeout
    total = 0
    raw.sock.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            chunk = raw.sock.recv(1 << 20)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return total
        if not chunk:
            return total
        total += len(chunk)
    raise AssertionError(f"connection still open after {timeout} s (read {total} bytes)")


def stuff_stuck_subscriber(host, port, topic, n=5000, size=1024):
    """Publishes enough to a topic that a subscriber which never reads blocks the
    broker's writes to it."""
    with RawStomp(host, port, timeout=30) as prod:
        prod.connect()
        body = b"s" * size
        frame = encode_frame("SEND", {"destination": topic, "content-length": str(size)}, body)
        for _ in range(n // 500):
            prod.send_bytes(frame * 500)
        prod.send_frame("SEND", {"destination": topic, "receipt": "stuffed"}, b"end")
        prod.expect("RECEIPT", 30.0)


def test_stuck_queue_consumer_is_cut_off_and_its_messages_redelivered(start_broker):
    """With a short write-stall timeout the broker disconnects a consumer that stopped
    reading; the messages it held unacknowledged go to the other consumer, none lost."""
    broker = start_broker(FERROMQ_STOMP__WRITE_STALL_TIMEOUT_MS="1000")
    host, port = broker
    dest = "/queue/" + unique("stall")
    n, size = 3000, 10 * 1024

    stuck = RawStomp(host, port, rcvbuf=4096)
    stuck.connect()
    stuck.send_frame("SUBSCRIBE", {"destination": dest, "id": "stuck", "ack": "client-individual", "receipt": "r"})
    stuck.expect("RECEIPT")
    # A big receive buffer, so the Python reader's pauses never look like a stall.
    good = RawStomp(host, port, timeout=60, rcvbuf=4 * MIB)
    good.connect()
    good.send_frame("SUBSCRIBE", {"destination": dest, "id": "good", "receipt": "r"})
    good.expect("RECEIPT")
    reader = CountingReader(good, n)
    reader.start()
    try:
        with RawStomp(host, port, timeout=30) as prod:
            prod.connect()
            body = b"q" * size
            frames = [encode_frame("SEND", {"destination": dest, "seq": str(i), "content-length": str(size)}, body)
                      for i in range(n)]
            for i in range(0, n, 100):
                prod.send_bytes(b"".join(frames[i : i + 100]))
            prod.send_frame("SEND", {"destination": "/queue/" + unique(), "receipt": "sent"}, b"")
            prod.expect("RECEIPT", 30.0)
        # The stuck consumer's share comes back only once the broker has cut it off.
        assert reader.done.wait(30.0), f"good consumer got {len(reader.seqs)}/{n}"
        if reader.error:
            raise reader.error
        drain_until_closed(stuck, 10.0)
        assert sorted(reader.seqs) == list(range(n)), "every message exactly once"
        assert reader.seqs != list(range(n)), "the stuck consumer should have held some messages"
    finally:
        stuck.close()
        good.close()


def test_stuck_subscriber_does_not_hold_up_shutdown(start_broker):
    """SIGTERM with a subscriber that stopped reading: the broker still exits promptly
    (and with status 0), instead of waiting out its whole shutdown timeout."""
    broker = start_broker()
    host, port = broker
    topic = "/topic/" + unique("stuck")
    stuck = RawStomp(host, port, rcvbuf=4096)
    try:
        stuck.connect()
        stuck.send_frame("SUBSCRIBE", {"destination": topic, "id": "s", "receipt": "r"})
        stuck.expect("RECEIPT")
        stuff_stuck_subscriber(host, port, topic)
        start = time.monotonic()
        broker.process.terminate()
        code = broker.process.wait_exit(5.0)
        elapsed = time.monotonic() - start
        assert code is not None, "ferromq was still running 5 s after SIGTERM because of one stuck client"
        assert code == 0
        print(f"exited {elapsed:.2f} s after SIGTERM")
    finally:
        stuck.close()  # lets a broker that is still waiting on this client finish


# -- connection limit ---------------------------------------------------------------------


def test_connection_cap(start_broker):
    broker = start_broker(FERROMQ_STOMP__CONNECTIONS_MAX="3")
    host, port = broker
    clients = [open_conn(broker) for _ in range(3)]
    try:
        with RawStomp(host, port) as fourth:
            err = fourth.expect("ERROR", 5.0)
            assert err.headers.get("message") == "Too many connections", err
            fourth.expect_closed(5.0)
        # The three keep working.
        for i, (conn, c) in enumerate(clients):
            dest = "/queue/" + unique()
            subscribe(conn, c, dest, "s")
            send_sync(conn, c, dest, f"client {i}")
            assert [m.body for m in c.wait_messages(1)] == [f"client {i}"]
        # A slot freed is a slot reusable.
        conn, c = clients.pop()
        close_conn(conn, c)
        deadline = time.monotonic() + 5
        while True:
            with RawStomp(host, port) as again:
                again.send_frame("CONNECT", {"accept-version": "1.2", "host": "/", "login": "guest", "passcode": "guest"})
                f = again.read_frame(5.0)
                if f is not None and f.command == "CONNECTED":
                    break
                assert time.monotonic() < deadline, f"no slot came free after a DISCONNECT: {f!r}"
    finally:
        for conn, c in clients:
            close_conn(conn, c)


# -- framing ---------------------------------------------------------------------------------


def scripted_session(dest: str) -> tuple[bytes, int]:
    """A whole session's frames, with heart-beat EOLs, CRLF lines and a body holding NUL
    between them; returns the bytes and the number of MESSAGEs they cause."""
    frames = [
        b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\x00",
        b"\n",
        encode_frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "r-sub"}),
        b"\r\n",
        encode_frame("SEND", {"destination": dest}, b"plain"),
        b"SEND\r\ndestination:" + dest.encode() + b"\r\n\r\ncrlf\x00\n",
        encode_frame("SEND", {"destination": dest, "content-length": "9"}, b"nul\x00in\x00it"),
        encode_frame("SEND", {"destination": dest, "receipt": "r-send"}, b"last"),
    ]
    return b"".join(frames), 4


def check_scripted_session(raw: RawStomp) -> None:
    got = []
    receipts = []
    first = raw.expect("CONNECTED")
    assert first.headers["version"] == "1.2"
    while len(got) < 4 or len(receipts) < 2:
        f = raw.read_frame(5.0)
        assert f is not None, f"closed early; got {got} {receipts}"
        if f.command == "MESSAGE":
            got.append(f.body)
        elif f.command == "RECEIPT":
            receipts.append(f.headers["receipt-id"])
        else:
            raise AssertionError(f"unexpected {f!r}")
    assert got == [b"plain", b"crlf", b"nul\x00in\x00it", b"last"]
    assert receipts == ["r-sub", "r-send"]
    raw.send_frame("DISCONNECT", {"receipt": "bye"})
    assert raw.expect("RECEIPT").headers["receipt-id"] == "bye"
    raw.expect_closed()


def test_pipelined_frames_in_one_send(broker):
    host, port = broker
    data, _ = scripted_session("/queue/" + unique())
    with RawStomp(host, port) as raw:
        raw.send_bytes(data)
        check_scripted_session(raw)


def test_frames_split_byte_by_byte(broker):
    host, port = broker
    data, _ = scripted_session("/queue/" + unique())
    with RawStomp(host, port) as raw:
        for i in range(len(data)):
            raw.send_bytes(data[i : i + 1])
        check_scripted_session(raw)


@pytest.mark.parametrize("chunk", [2, 3, 7, 64])
def test_frames_split_in_chunks(broker, chunk):
    host, port = broker
    data, _ = scripted_session("/queue/" + unique())
    with RawStomp(host, port) as raw:
        for i in range(0, len(data), chunk):
            raw.send_bytes(data[i : i + chunk])
        check_scripted_session(raw)


def test_heartbeats_before_and_between_frames(broker):
    host, port = broker
    with RawStomp(host, port) as raw:
        raw.send_bytes(b"\n\r\n\n")
        raw.connect()
        raw.send_bytes(b"\n" * 100)
        raw.send_frame("DISCONNECT", {"receipt": "bye"})
        assert raw.expect("RECEIPT").headers["receipt-id"] == "bye"


def test_idle_connection_without_connect_is_closed(start_broker):
    broker = start_broker(FERROMQ_STOMP__CONNECT_TIMEOUT_MS="300")
    host, port = broker
    with RawStomp(host, port) as raw:
        start = time.monotonic()
        f = raw.read_frame(5.0)
        assert f is None or f.command == "ERROR", f
        raw.expect_closed(5.0)
        assert time.monotonic() - start < 4.0
