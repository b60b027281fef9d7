"""ferromq's STOMP listener driven by stomp.py, the Python STOMP client, at STOMP 1.0,
1.1 and 1.2: what RabbitMQ and ActiveMQ users do with it, frame by frame.

Every test uses destinations of its own (`unique()`), so tests share one broker.
Waits are bounded and event driven (the collector's condition variable); the few
checks that something does *not* happen wait a short bounded time for it.
"""

from __future__ import annotations

import threading
import time

import pytest

from rawstomp import RawStomp
from stomputil import (
    WAIT_S,
    Collector,
    close_conn,
    drop_conn,
    open_conn,
    send_sync,
    subscribe,
    unique,
)

ALL_VERSIONS = ["1.0", "1.1", "1.2"]
ACK_VERSIONS = ["1.1", "1.2"]  # NACK and the ack id rules of 1.1+


@pytest.fixture
def conns(broker):
    """Opens stomp.py connections for a test and closes them all afterwards."""
    opened = []

    def connect(version="1.2", **kw):
        conn, c = open_conn(broker, version, **kw)
        opened.append((conn, c))
        return conn, c

    yield connect
    for conn, c in opened:
        close_conn(conn, c)


def ack_id(frame, version):
    """What ACK/NACK must name: the `ack` header on 1.2, the `message-id` before."""
    return frame.headers["ack"] if version == "1.2" else frame.headers["message-id"]


def do_ack(conn, frame, version, positive=True, **kw):
    if version == "1.2":
        (conn.ack if positive else conn.nack)(frame.headers["ack"], **kw)
    else:
        (conn.ack if positive else conn.nack)(frame.headers["message-id"], frame.headers["subscription"], **kw)


def assert_nothing_more(c: Collector, count: int, timeout: float = 0.5, what="message"):
    """A bounded wait for something that must not happen: no more than `count` messages."""
    with c.cond:
        extra = c.cond.wait_for(lambda: len(c.messages) > count, timeout)
    assert not extra, f"unexpected extra {what}: {c.messages[count:]!r}"


# -- point to point ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_queue_send_receive(conns, version):
    conn, c = conns(version)
    assert c.connected_frame.headers.get("version") == version
    dest = "/queue/" + unique()
    subscribe(conn, c, dest, "sub-1", version=version)
    for i in range(3):
        send_sync(conn, c, dest, f"hello {i}")
    msgs = c.wait_messages(3)
    assert [m.body for m in msgs] == ["hello 0", "hello 1", "hello 2"]
    for m in msgs:
        assert m.headers["destination"] == dest
        assert m.headers["subscription"] == "sub-1"
        assert m.headers["message-id"]
    assert len({m.headers["message-id"] for m in msgs}) == 3, "message-ids must be unique"
    if version == "1.2":
        assert all("ack" not in m.headers for m in msgs), "auto-ack MESSAGEs carry no ack header"


@pytest.mark.parametrize("producer_version,consumer_version", [("1.0", "1.2"), ("1.2", "1.0"), ("1.1", "1.2")])
def test_queue_across_versions(conns, producer_version, consumer_version):
    prod, pc = conns(producer_version)
    cons, cc = conns(consumer_version)
    dest = "/queue/" + unique()
    subscribe(cons, cc, dest, "s", version=consumer_version)
    send_sync(prod, pc, dest, "across", **{"x-app": "v1"})
    (m,) = cc.wait_messages(1)
    assert m.body == "across"
    assert m.headers["x-app"] == "v1"


def test_message_sent_before_subscribe_is_kept(conns):
    conn, c = conns()
    dest = "/queue/" + unique()
    send_sync(conn, c, dest, "waiting")
    subscribe(conn, c, dest, "late")
    (m,) = c.wait_messages(1)
    assert m.body == "waiting"


def test_competing_consumers_each_message_once(conns):
    dest = "/queue/" + unique()
    shared = threading.Condition()
    consumers = []
    for i in range(3):
        conn, c = conns()
        c.cond = shared  # one condition for all, so one wait sees every consumer
        subscribe(conn, c, dest, f"worker-{i}")
        consumers.append(c)
    prod, pc = conns()
    n = 60
    for i in range(n):
        prod.send(dest, f"job-{i}")
    send_sync(prod, pc, "/queue/" + unique("flush"), "x")

    def total():
        return sum(len(c.messages) for c in consumers)

    with shared:
        ok = shared.wait_for(lambda: total() >= n, WAIT_S)
    assert ok, f"only {total()} of {n} messages arrived"
    got = [m.body for c in consumers for m in c.messages]
    assert sorted(got) == sorted(f"job-{i}" for i in range(n)), "each message exactly once"
    assert all(c.messages for c in consumers), (
        f"round-robin should give every consumer some: {[len(c.messages) for c in consumers]}"
    )
    # Per consumer, messages keep the queue's order.
    for c in consumers:
        nums = [int(m.body.split("-")[1]) for m in c.messages]
        assert nums == sorted(nums)


# -- publish / subscribe -----------------------------------------------------------------------


def test_topic_every_subscriber_gets_every_message(conns):
    topic = "/topic/" + unique("news") + ".sport"
    subs = []
    for i in range(3):
        conn, c = conns()
        subscribe(conn, c, topic, f"s{i}")
        subs.append(c)
    prod, pc = conns("1.1")
    for i in range(5):
        send_sync(prod, pc, topic, f"score {i}")
    for c in subs:
        msgs = c.wait_messages(5)
        assert [m.body for m in msgs] == [f"score {i}" for i in range(5)]
        assert all(m.headers["destination"] == topic for m in msgs)


def test_topic_without_subscribers_drops_messages(conns):
    conn, c = conns()
    topic = "/topic/" + unique("void")
    send_sync(conn, c, topic, "nobody listens")
    subscribe(conn, c, topic, "s")
    send_sync(conn, c, topic, "now someone does")
    msgs = c.wait_messages(1)
    assert [m.body for m in msgs] == ["now someone does"]
    assert_nothing_more(c, 1)


def test_topic_wildcards(conns):
    p = unique("wc")
    conn, c = conns()
    patterns = {
        "star": f"{p}.a.*",
        "hash": f"{p}.a.#",
        "activemq": f"{p}.a.>",
        "mid": f"{p}.*.b.*",
        "exact": f"{p}.a.b",
        "hash-mid": f"{p}.#.c",
    }
    for sid, pattern in patterns.items():
        subscribe(conn, c, "/topic/" + pattern, sid)
    prod, pc = conns()
    for key in [f"{p}.a", f"{p}.a.b.c", f"{p}.x.b.c", f"{p}.a.b"]:
        send_sync(prod, pc, "/topic/" + key, key)
    expected = {
        "star": [f"{p}.a.b"],
        "hash": [f"{p}.a", f"{p}.a.b.c", f"{p}.a.b"],
        "mid": [f"{p}.a.b.c", f"{p}.x.b.c"],
        "exact": [f"{p}.a.b"],
        "hash-mid": [f"{p}.a.b.c", f"{p}.x.b.c"],
    }

    def of(sid):
        return [m.body for m in c.messages if m.headers["subscription"] == sid]

    # Each subscription is one FIFO queue: once its last expected message is in,
    # everything routed to it before that is in too.
    c.wait_for(lambda: all(exp[-1] in of(sid) for sid, exp in expected.items())
               and f"{p}.a.b" in of("activemq"), what="every subscription's last message")
    for sid, exp in expected.items():
        assert of(sid) == exp, f"subscription {sid} ({patterns[sid]})"
    # ActiveMQ's `>` is "everything below": a.b and a.b.c (whether it also matches the
    # bare prefix `a` differs between brokers, so it is not asserted).
    assert [b for b in of("activemq") if b != f"{p}.a"] == [f"{p}.a.b.c", f"{p}.a.b"]
    for m in c.messages:
        assert m.headers["destination"] == "/topic/" + m.body


def test_exchange_amq_fanout(conns):
    tag = unique("fan")
    a, ca = conns()
    b, cb = conns("1.1")
    subscribe(a, ca, "/exchange/amq.fanout/" + unique("ka"), "fa")
    subscribe(b, cb, "/exchange/amq.fanout", "fb", version="1.1")
    prod, pc = conns()
    dest = "/exchange/amq.fanout/" + unique("any-key")
    send_sync(prod, pc, dest, tag)
    for c in (ca, cb):
        (m,) = c.wait_messages(1, where=lambda m: m.body == tag)
        assert m.headers["destination"] == dest


def test_exchange_amq_topic_and_direct(conns):
    p = unique("ex")
    conn, c = conns()
    subscribe(conn, c, f"/exchange/amq.topic/{p}.*", "t")
    subscribe(conn, c, f"/exchange/amq.direct/{p}", "d")
    send_sync(conn, c, f"/topic/{p}.one", "via /topic")
    send_sync(conn, c, f"/exchange/amq.direct/{p}", "via direct")
    msgs = c.wait_messages(2)
    by_sub = {m.headers["subscription"]: m.body for m in msgs}
    assert by_sub == {"t": "via /topic", "d": "via direct"}


# -- acknowledgement -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_ack_client_is_cumulative(conns, version):
    dest = "/queue/" + unique()
    conn, c = conns(version)
    subscribe(conn, c, dest, "cumulative", ack="client", version=version)
    for i in range(5):
        send_sync(conn, c, dest, f"m{i}")
    msgs = c.wait_messages(5)
    if version == "1.2":
        assert all(m.headers.get("ack") for m in msgs), "client-ack MESSAGEs carry an ack header on 1.2"
    rid = unique("ack")
    if version == "1.0":
        conn.ack(msgs[2].headers["message-id"], receipt=rid)
    else:
        do_ack(conn, msgs[2], version, receipt=rid)
    c.wait_receipt(rid)
    close_conn(conn, c)

    # m0..m2 are settled by the one ACK; m3, m4 come back, flagged redelivered.
    conn2, c2 = conns(version)
    subscribe(conn2, c2, dest, "again", version=version)
    send_sync(conn2, c2, dest, "marker")
    got = c2.wait_messages(3)
    assert [m.body for m in got] == ["m3", "m4", "marker"]
    assert [m.headers["redelivered"] for m in got] == ["true", "true", "false"]


@pytest.mark.parametrize("version", ACK_VERSIONS)
def test_ack_client_individual(conns, version):
    dest = "/queue/" + unique()
    conn, c = conns(version)
    subscribe(conn, c, dest, "indiv", ack="client-individual", version=version)
    for i in range(5):
        send_sync(conn, c, dest, f"m{i}")
    msgs = c.wait_messages(5)
    rid = None
    for m in (msgs[4], msgs[0], msgs[2]):  # out of order on purpose
        rid = unique("ack")
        do_ack(conn, m, version, receipt=rid)
        c.wait_receipt(rid)
    close_conn(conn, c)

    conn2, c2 = conns(version)
    subscribe(conn2, c2, dest, "again", version=version)
    send_sync(conn2, c2, dest, "marker")
    got = c2.wait_messages(3)
    assert [m.body for m in got] == ["m1", "m3", "marker"]
    assert [m.headers["redelivered"] for m in got] == ["true", "true", "false"]


@pytest.mark.parametrize("version", ACK_VERSIONS)
def test_nack_requeues_and_redelivers(conns, version):
    dest = "/queue/" + unique()
    conn, c = conns(version)
    subscribe(conn, c, dest, "n", ack="client-individual", version=version)
    send_sync(conn, c, dest, "try me")
    (first,) = c.wait_messages(1)
    assert first.headers["redelivered"] == "false"
    do_ack(conn, first, version, positive=False)
    second = c.wait_messages(2)[1]
    assert second.body == "try me"
    assert second.headers["redelivered"] == "true"
    rid = unique("ack")
    do_ack(conn, second, version, receipt=rid)
    c.wait_receipt(rid)
    # Settled now: a new consumer finds only what is sent after.
    close_conn(conn, c)
    conn2, c2 = conns(version)
    subscribe(conn2, c2, dest, "after", version=version)
    send_sync(conn2, c2, dest, "marker")
    assert [m.body for m in c2.wait_messages(1)] == ["marker"]
    assert_nothing_more(c2, 1)


@pytest.mark.parametrize("how", ["disconnect", "socket-drop"])
def test_unacked_message_goes_to_another_consumer(conns, how):
    dest = "/queue/" + unique()
    a, ca = conns()
    subscribe(a, ca, dest, "a", ack="client-individual")
    send_sync(a, ca, dest, "precious")
    (m,) = ca.wait_messages(1)
    assert m.headers["redelivered"] == "false"
    b, cb = conns("1.1")
    subscribe(b, cb, dest, "b", ack="client-individual", version="1.1")
    if how == "disconnect":
        close_conn(a, ca)
    else:
        drop_conn(a, ca)
    (again,) = cb.wait_messages(1)
    assert again.body == "precious"
    assert again.headers["redelivered"] == "true"


# -- transactions ---------------------------------------------------------------------------


def test_transaction_commit_delivers(conns):
    dest = "/queue/" + unique()
    cons, cc = conns()
    subscribe(cons, cc, dest, "c")
    prod, pc = conns()
    tx = prod.begin(unique("tx"))
    for i in range(2):
        send_sync(prod, pc, dest, f"tx-{i}", transaction=tx)
    send_sync(prod, pc, dest, "outside")
    # The queue is FIFO: when "outside" is in, anything committed early would be too.
    cc.wait_messages(1)
    assert cc.bodies() == ["outside"], "transactional SENDs must wait for COMMIT"
    rid = unique("commit")
    prod.commit(tx, headers={"receipt": rid})
    pc.wait_receipt(rid)
    assert [m.body for m in cc.wait_messages(3)] == ["outside", "tx-0", "tx-1"]


def test_transaction_abort_discards(conns):
    dest = "/queue/" + unique()
    cons, cc = conns()
    subscribe(cons, cc, dest, "c")
    prod, pc = conns("1.1")
    tx = prod.begin(unique("tx"))
    send_sync(prod, pc, dest, "doomed", transaction=tx)
    rid = unique("abort")
    prod.abort(tx, headers={"receipt": rid})
    pc.wait_receipt(rid)
    send_sync(prod, pc, dest, "marker")
    cc.wait_messages(1)
    assert cc.bodies() == ["marker"]
    assert_nothing_more(cc, 1)


def test_ack_in_aborted_transaction_redelivers(conns):
    dest = "/queue/" + unique()
    conn, c = conns()
    subscribe(conn, c, dest, "s", ack="client-individual")
    send_sync(conn, c, dest, "keep me")
    (m,) = c.wait_messages(1)
    tx = conn.begin(unique("tx"))
    conn.ack(m.headers["ack"], transaction=tx)
    rid = unique("abort")
    conn.abort(tx, headers={"receipt": rid})
    c.wait_receipt(rid)
    again = c.wait_messages(2)[1]
    assert again.body == "keep me"
    assert again.headers["redelivered"] == "true"


def test_ack_in_committed_transaction_settles(conns):
    dest = "/queue/" + unique()
    conn, c = conns()
    subscribe(conn, c, dest, "s", ack="client-individual")
    send_sync(conn, c, dest, "done")
    (m,) = c.wait_messages(1)
    tx = conn.begin(unique("tx"))
    conn.ack(m.headers["ack"], transaction=tx)
    rid = unique("commit")
    conn.commit(tx, headers={"receipt": rid})
    c.wait_receipt(rid)
    close_conn(conn, c)
    conn2, c2 = conns()
    subscribe(conn2, c2, dest, "s2")
    send_sync(conn2, c2, dest, "marker")
    assert [m.body for m in c2.wait_messages(1)] == ["marker"]


# -- receipts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ACK_VERSIONS)
def test_receipt_for_every_client_frame(conns, version):
    dest = "/queue/" + unique()
    conn, c = conns(version)
    r = {}

    def rid(name):
        r[name] = unique(name)
        return r[name]

    conn.subscribe(dest, "s", ack="client-individual", headers={"receipt": rid("subscribe")})
    c.wait_receipt(r["subscribe"])
    conn.send(dest, "one", headers={"receipt": rid("send")})
    c.wait_receipt(r["send"])
    (m,) = c.wait_messages(1)
    do_ack(conn, m, version, positive=False, receipt=rid("nack"))
    c.wait_receipt(r["nack"])
    m2 = c.wait_messages(2)[1]
    do_ack(conn, m2, version, receipt=rid("ack"))
    c.wait_receipt(r["ack"])
    tx = unique("tx")
    conn.begin(tx, headers={"receipt": rid("begin")})
    c.wait_receipt(r["begin"])
    conn.send(dest, "two", headers={"transaction": tx, "receipt": rid("send-in-tx")})
    c.wait_receipt(r["send-in-tx"])
    conn.commit(tx, headers={"receipt": rid("commit")})
    c.wait_receipt(r["commit"])
    tx2 = unique("tx")
    conn.begin(tx2)
    conn.abort(tx2, headers={"receipt": rid("abort")})
    c.wait_receipt(r["abort"])
    conn.unsubscribe("s", headers={"receipt": rid("unsubscribe")})
    c.wait_receipt(r["unsubscribe"])
    conn.disconnect(receipt=rid("disconnect"))
    c.wait_receipt(r["disconnect"])
    assert not c.errors, c.describe()


def test_receipt_frames_on_1_0(conns):
    dest = "/queue/" + unique()
    conn, c = conns("1.0")
    conn.subscribe(dest, id="s", ack="client", headers={"receipt": "r-sub"})
    conn.send(dest, "x", headers={"receipt": "r-send"})
    c.wait_receipt("r-sub")
    c.wait_receipt("r-send")
    (m,) = c.wait_messages(1)
    conn.ack(m.headers["message-id"], receipt="r-ack")
    c.wait_receipt("r-ack")
    conn.unsubscribe(id="s", headers={"receipt": "r-unsub"})
    c.wait_receipt("r-unsub")


def test_disconnect_with_receipt_then_close(broker, conns):
    conn, c = conns()
    conn.disconnect(receipt="goodbye")
    c.wait_receipt("goodbye")
    assert c.disconnected.wait(WAIT_S)
    # On the wire: RECEIPT, then the broker closes its end.
    host, port = broker
    with RawStomp(host, port) as raw:
        raw.connect()
        raw.send_frame("DISCONNECT", {"receipt": "bye-raw"})
        f = raw.expect("RECEIPT")
        assert f.headers["receipt-id"] == "bye-raw"
        raw.expect_closed()


# -- headers and bodies ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_message_properties_round_trip(conns, version):
    dest = "/queue/" + unique()
    conn, c = conns(version)
    subscribe(conn, c, dest, "s", version=version)
    headers = {
        "correlation-id": "corr-42",
        "persistent": "true",
        "priority": "7",
        "reply-to": "/queue/replies-" + unique(),
        "type": "order.created",
        "x-custom": "custom value",
        "tenant": "acme",
        "JMSXGroupID": "group-1",
    }
    conn.send(dest, '{"id": 1}', content_type="application/json", headers=dict(headers, receipt="r1"))
    c.wait_receipt("r1")
    (m,) = c.wait_messages(1)
    assert m.body == '{"id": 1}'
    assert m.headers["content-type"] == "application/json"
    for k, v in headers.items():
        assert m.headers.get(k) == v, f"header {k}: sent {v!r}, got {m.headers.get(k)!r}"


def test_repeated_header_first_wins(broker):
    host, port = broker
    dest = "/queue/" + unique()
    with RawStomp(host, port) as raw:
        raw.connect()
        raw.send_frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "r0"})
        raw.expect("RECEIPT")
        raw.send_frame("SEND", [("destination", dest), ("x-dup", "first"), ("x-dup", "second")], b"d")
        m = raw.expect("MESSAGE")
        values = [v for k, v in m.raw_headers if k == b"x-dup"]
        assert values[:1] == [b"first"], m.raw_headers


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_body_with_nul_bytes(conns, version):
    dest = "/queue/" + unique()
    conn, c = conns(version, auto_decode=False)
    subscribe(conn, c, dest, "s", version=version)
    body = b"head\x00middle\x00\x00tail" + bytes(range(256)) + b"\x00"
    conn.send(dest, body, headers={"receipt": "r", "content-type": "application/octet-stream"})
    c.wait_receipt("r")
    (m,) = c.wait_messages(1)
    assert m.body == body
    assert int(m.headers["content-length"]) == len(body)


def test_empty_and_large_bodies(conns):
    dest = "/queue/" + unique()
    conn, c = conns(auto_decode=False)
    subscribe(conn, c, dest, "s")
    big = bytes(i % 251 for i in range(2 * 1024 * 1024))
    conn.send(dest, b"", headers={"receipt": "r-empty"})
    conn.send(dest, big, headers={"receipt": "r-big"})
    c.wait_receipt("r-empty")
    c.wait_receipt("r-big")
    msgs = c.wait_messages(2)
    assert msgs[0].body == b""
    assert msgs[1].body == big


ESCAPE_VALUES_1_1 = {
    "x-colon": "a:b:c",
    "x-newline": "line1\nline2",
    "x-backslash": "back\\slash\\\\double",
    "x-all": "k:v\n\\n literal\\c",
}


@pytest.mark.parametrize("version", ACK_VERSIONS)
def test_header_escaping(conns, version):
    values = dict(ESCAPE_VALUES_1_1)
    if version == "1.2":
        values["x-cr"] = "carriage\rreturn"
    dest = "/queue/" + unique()
    conn, c = conns(version)
    subscribe(conn, c, dest, "s", version=version)
    send_sync(conn, c, dest, "escaped", **values)
    (m,) = c.wait_messages(1)
    for k, v in values.items():
        assert m.headers.get(k) == v, f"{k}: sent {v!r}, got {m.headers.get(k)!r}"


def test_header_escaping_on_the_wire_1_2(broker):
    """What the broker writes for escaped names and values, byte for byte."""
    host, port = broker
    dest = "/queue/" + unique()
    with RawStomp(host, port) as raw:
        raw.connect("1.2")
        raw.send_frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "r0"})
        raw.expect("RECEIPT")
        raw.send_frame("SEND", [("destination", dest), ("x\\cname", "a\\cb\\nc\\\\d\\re")], b"w")
        m = raw.expect("MESSAGE")
        assert (b"x\\cname", b"a\\cb\\nc\\\\d\\re") in m.raw_headers, m.raw_headers
        assert m.headers["x:name"] == "a:b\nc\\d\re"


def test_headers_not_escaped_on_1_0(broker):
    """1.0 has no escapes: a backslash is a backslash, both ways."""
    host, port = broker
    dest = "/queue/" + unique()
    with RawStomp(host, port) as raw:
        raw.unescape = False
        raw.connect("1.0")
        raw.send_frame("SUBSCRIBE", {"destination": dest, "receipt": "r0"})
        raw.expect("RECEIPT")
        raw.send_frame("SEND", {"destination": dest, "x-lit": "a\\cb\\n"}, b"w")
        m = raw.expect("MESSAGE")
        assert m.headers["x-lit"] == "a\\cb\\n"


def test_newline_in_header_cannot_inject_into_1_0_frames(conns, broker):
    """A value with a newline sent on 1.2 must not split a 1.0 subscriber's header line."""
    host, port = broker
    dest = "/queue/" + unique()
    with RawStomp(host, port) as raw:
        raw.unescape = False
        raw.connect("1.0")
        raw.send_frame("SUBSCRIBE", {"destination": dest, "receipt": "r0"})
        raw.expect("RECEIPT")
        conn, c = conns("1.2")
        send_sync(conn, c, dest, "payload", **{"x-evil": "v\ninjected:1\n\nbody?"})
        m = raw.expect("MESSAGE")
        assert m.body == b"payload"
        assert "injected" not in m.headers, m.raw_headers
        assert m.headers["x-evil"].startswith("v")


def test_unicode_empty_and_long_header_values(conns):
    dest = "/queue/" + unique()
    conn, c = conns()
    subscribe(conn, c, dest, "s")
    headers = {
        "x-unicode": "h\u00e9llo \u2713 \u65e5\u672c",
        "x-empty": "",
        "x-long": "L" * 32_000,
    }
    send_sync(conn, c, dest, "\u00fcn\u00efc\u00f6d\u00e9 \u2713", **headers)
    (m,) = c.wait_messages(1)
    assert m.body == "\u00fcn\u00efc\u00f6d\u00e9 \u2713"
    for k, v in headers.items():
        assert m.headers.get(k) == v, k


def test_many_messages_with_individual_acks(conns):
    """2,000 messages through stomp.py with an ACK each: all arrive once, in order."""
    dest = "/queue/" + unique()
    cons, cc = conns()
    cc.on_message = lambda f: (Collector.on_message(cc, f), cons.ack(f.headers["ack"]))
    subscribe(cons, cc, dest, "s", ack="client-individual", **{"prefetch-count": "50"})
    prod, pc = conns()
    n = 2000
    for i in range(n):
        prod.send(dest, str(i))
    send_sync(prod, pc, dest, "end")
    cc.wait_messages(n + 1, timeout=30)
    assert [m.body for m in cc.messages] == [str(i) for i in range(n)] + ["end"]


# -- durable subscriptions ---------------------------------------------------------------------


def _publish(conns, topic, bodies):
    prod, pc = conns()
    for b in bodies:
        send_sync(prod, pc, topic, b)
    close_conn(prod, pc)


@pytest.mark.parametrize("style", ["rabbitmq", "activemq"])
def test_durable_subscription_survives_disconnect(conns, style):
    topic = "/topic/" + unique("dur")
    client_id = unique("client")
    name = unique("subname")
    connect_headers = {"client-id": client_id} if style == "activemq" else {}
    sub_headers = (
        {"activemq.subscriptionName": name}
        if style == "activemq"
        else {"durable": "true", "auto-delete": "false"}
    )
    sub_id = name if style == "rabbitmq" else "any-id"

    conn, c = conns(headers=connect_headers)
    subscribe(conn, c, topic, sub_id, ack="client-individual", **sub_headers)
    send_sync(conn, c, topic, "while connected")
    (m,) = c.wait_messages(1)
    conn.ack(m.headers["ack"])
    close_conn(conn, c)

    _publish(conns, topic, ["missed-1", "missed-2", "missed-3"])

    conn, c = conns(headers=connect_headers)
    subscribe(conn, c, topic, sub_id, ack="client-individual", **sub_headers)
    got = c.wait_messages(3)
    assert [m.body for m in got] == ["missed-1", "missed-2", "missed-3"]
    for m in got:
        conn.ack(m.headers["ack"])
    # Resubscribing must not have doubled the binding: each new message arrives once.
    send_sync(conn, c, topic, "live-1")
    send_sync(conn, c, topic, "live-2")
    c.wait_messages(5)
    assert [m.body for m in c.messages] == ["missed-1", "missed-2", "missed-3", "live-1", "live-2"]
    assert_nothing_more(c, 5)
    # Clean up the durable queue.
    rid = unique("unsub")
    conn.unsubscribe(sub_id, headers=dict(sub_headers, receipt=rid))
    c.wait_receipt(rid)


@pytest.mark.parametrize("style", ["rabbitmq", "activemq"])
def test_unsubscribe_durable_removes_it(conns, style):
    topic = "/topic/" + unique("dur")
    client_id = unique("client")
    name = unique("subname")
    connect_headers = {"client-id": client_id} if style == "activemq" else {}
    sub_headers = (
        {"activemq.subscriptionName": name} if style == "activemq" else {"durable": "true", "auto-delete": "false"}
    )
    sub_id = name if style == "rabbitmq" else "any-id"

    conn, c = conns(headers=connect_headers)
    subscribe(conn, c, topic, sub_id, **sub_headers)
    rid = unique("unsub")
    conn.unsubscribe(sub_id, headers=dict(sub_headers, receipt=rid))
    c.wait_receipt(rid)
    close_conn(conn, c)

    _publish(conns, topic, ["nobody-keeps-this"])

    conn, c = conns(headers=connect_headers)
    subscribe(conn, c, topic, sub_id, **sub_headers)
    send_sync(conn, c, topic, "fresh")
    c.wait_messages(1)
    assert c.bodies() == ["fresh"], "the durable subscription should have been deleted by UNSUBSCRIBE"
    rid = unique("unsub")
    conn.unsubscribe(sub_id, headers=dict(sub_headers, receipt=rid))
    c.wait_receipt(rid)


def test_plain_unsubscribe_keeps_durable_subscription(conns):
    """UNSUBSCRIBE without `durable:true` only detaches (RabbitMQ's rule)."""
    topic = "/topic/" + unique("dur")
    sub_id = unique("d")
    hdrs = {"durable": "true", "auto-delete": "false"}
    conn, c = conns()
    subscribe(conn, c, topic, sub_id, **hdrs)
    rid = unique("unsub")
    conn.unsubscribe(sub_id, headers={"receipt": rid})
    c.wait_receipt(rid)
    send_sync(conn, c, topic, "kept")
    subscribe(conn, c, topic, sub_id, **hdrs)
    assert [m.body for m in c.wait_messages(1)] == ["kept"]
    rid = unique("unsub")
    conn.unsubscribe(sub_id, headers=dict(hdrs, receipt=rid))
    c.wait_receipt(rid)


def test_non_durable_topic_subscription_forgets_on_disconnect(conns):
    topic = "/topic/" + unique("nd")
    conn, c = conns()
    subscribe(conn, c, topic, "s")
    close_conn(conn, c)
    _publish(conns, topic, ["gone"])
    conn, c = conns()
    subscribe(conn, c, topic, "s")
    send_sync(conn, c, topic, "new")
    c.wait_messages(1)
    assert c.bodies() == ["new"]


# -- request / reply -------------------------------------------------------------------------------


def test_temp_queue_request_reply(conns):
    svc = "/queue/" + unique("svc")
    responder, rc = conns("1.1")
    subscribe(responder, rc, svc, "svc", version="1.1")

    def respond(frame):
        if frame.headers.get("destination") == svc:
            responder.send(frame.headers["reply-to"], "pong: " + frame.body,
                           headers={"correlation-id": frame.headers.get("correlation-id", "")})

    rc.on_message = lambda frame: (Collector.on_message(rc, frame), respond(frame))

    requester, qc = conns()
    requester.send(svc, "ping", headers={"reply-to": "/temp-queue/r", "correlation-id": "c-1"})
    (req,) = rc.wait_messages(1)
    assert req.headers["reply-to"] != "/temp-queue/r", "reply-to should name a queue the responder can reach"
    (reply,) = qc.wait_messages(1)
    assert reply.body == "pong: ping"
    assert reply.headers["destination"] == "/temp-queue/r"
    assert reply.headers["correlation-id"] == "c-1"

    # A second request reuses the same temp queue.
    requester.send(svc, "ping2", headers={"reply-to": "/temp-queue/r"})
    rc.wait_messages(2)
    assert rc.messages[1].headers["reply-to"] == req.headers["reply-to"]
    assert [m.body for m in qc.wait_messages(2)] == ["pong: ping", "pong: ping2"]


def test_temp_queue_is_private_and_goes_with_its_connection(conns):
    svc = "/queue/" + unique("svc")
    responder, rc = conns()
    subscribe(responder, rc, svc, "svc")
    requester, qc = conns()
    requester.send(svc, "ping", headers={"reply-to": "/temp-queue/x"})
    (req,) = rc.wait_messages(1)
    reply_to = req.headers["reply-to"]
    # Others may send to it, but not consume from it.
    intruder, ic = conns()
    intruder.subscribe(reply_to, "steal")
    expect_error(ic, "locked")
    close_conn(requester, qc)
    # The requester is gone, and its temp queue with it: a late reply is dropped, not an error.
    send_sync(responder, rc, reply_to, "too late")
    assert not rc.errors


def test_temp_queue_names_are_per_connection(conns):
    """Two requesters may both say `/temp-queue/r`: each gets its own queue and replies."""
    svc = "/queue/" + unique("svc")
    responder, rc = conns()
    subscribe(responder, rc, svc, "svc")
    rc.on_message = lambda f: (Collector.on_message(rc, f), responder.send(f.headers["reply-to"], "re: " + f.body))
    a, ac = conns()
    b, bc = conns("1.1")
    a.send(svc, "from a", headers={"reply-to": "/temp-queue/r"})
    b.send(svc, "from b", headers={"reply-to": "/temp-queue/r"})
    rc.wait_messages(2)
    assert rc.messages[0].headers["reply-to"] != rc.messages[1].headers["reply-to"]
    assert [m.body for m in ac.wait_messages(1)] == ["re: from a"]
    assert [m.body for m in bc.wait_messages(1)] == ["re: from b"]
    assert_nothing_more(ac, 1)
    assert len(bc.messages) == 1


# -- flow control ---------------------------------------------------------------------------


def test_prefetch_count_limits_unacked(conns):
    dest = "/queue/" + unique()
    a, ca = conns()
    subscribe(a, ca, dest, "a", ack="client-individual", **{"prefetch-count": "2"})
    prod, pc = conns()
    for i in range(4):
        send_sync(prod, pc, dest, f"m{i}")
    first = ca.wait_messages(2)
    # With two unacked, the consumer gets nothing more: a second consumer takes the rest.
    b, cb = conns()
    subscribe(b, cb, dest, "b")
    assert sorted(m.body for m in cb.wait_messages(2)) == ["m2", "m3"]
    assert [m.body for m in first] == ["m0", "m1"]
    assert len(ca.messages) == 2
    rid = unique("unsub")
    b.unsubscribe("b", headers={"receipt": rid})
    cb.wait_receipt(rid)

    for i in range(4, 7):
        send_sync(prod, pc, dest, f"m{i}")
    assert_nothing_more(ca, 2)
    a.ack(first[0].headers["ack"])
    ca.wait_messages(3)
    assert_nothing_more(ca, 3)
    a.ack(first[1].headers["ack"])
    a.ack(ca.messages[2].headers["ack"])
    assert [m.body for m in ca.wait_messages(5)] == ["m0", "m1", "m4", "m5", "m6"]


def test_activemq_prefetch_size(conns):
    dest = "/queue/" + unique()
    a, ca = conns()
    subscribe(a, ca, dest, "a", ack="client-individual", **{"activemq.prefetchSize": "1"})
    for i in range(3):
        send_sync(a, ca, dest, f"m{i}")
    ca.wait_messages(1)
    assert_nothing_more(ca, 1)
    a.ack(ca.messages[0].headers["ack"])
    assert [m.body for m in ca.wait_messages(2)] == ["m0", "m1"]


# -- heart-beats ----------------------------------------------------------------------------


def test_server_heartbeats_when_client_asks(conns):
    """heart-beat: 0,500 — the client wants to hear from the broker every 500 ms. With
    their default configuration RabbitMQ and ActiveMQ send heart-beats at (about) the
    rate the client asks for, so a client detects a dead broker in about a second."""
    conn, c = conns(heartbeats=(0, 500))
    c.wait_for(lambda: len(c.heartbeats) >= 2, 3.0, "two heart-beats within 3 s")


def test_server_heartbeats_at_negotiated_rate(start_broker):
    broker = start_broker(FERROMQ_STOMP__HEARTBEAT_SEND_MS="200")
    conn, c = open_conn(broker, heartbeats=(0, 500))
    try:
        sx, sy = (int(v) for v in c.connected_frame.headers["heart-beat"].split(","))
        assert sx == 200
        c.wait_for(lambda: len(c.heartbeats) >= 4, 5.0, "four heart-beats")
        gaps = [b - a for a, b in zip(c.heartbeats, c.heartbeats[1:])]
        # Negotiated max(200, 500) = 500 ms: not much more often, not much less.
        assert all(g > 0.3 for g in gaps), gaps
        assert all(g < 1.5 for g in gaps), gaps
    finally:
        close_conn(conn, c)


def test_client_heartbeats_keep_connection_alive(start_broker):
    broker = start_broker(FERROMQ_STOMP__HEARTBEAT_RECEIVE_MS="500")
    conn, c = open_conn(broker, heartbeats=(500, 0))
    try:
        assert c.connected_frame.headers["heart-beat"].split(",")[1] == "500"
        # Well past the 1 s the broker tolerates for silence: heart-beats keep it open.
        assert not c.disconnected.wait(2.5), f"disconnected despite heart-beats: {c.describe()}"
        dest = "/queue/" + unique()
        subscribe(conn, c, dest, "s")
        send_sync(conn, c, dest, "still here")
        c.wait_messages(1)
    finally:
        close_conn(conn, c)


def test_silent_client_is_disconnected(start_broker):
    broker = start_broker(FERROMQ_STOMP__HEARTBEAT_RECEIVE_MS="500")
    host, port = broker
    with RawStomp(host, port) as raw:
        connected = raw.connect("1.2", extra={"heart-beat": "500,0"})
        assert connected.headers["heart-beat"].split(",")[1] == "500"
        start = time.monotonic()
        err = raw.expect_error_and_close(timeout=5.0)
        elapsed = time.monotonic() - start
        assert "heart" in err.headers.get("message", "").lower(), err
        assert elapsed >= 0.5, f"disconnected after {elapsed:.2f} s, before the heart-beat period"
    # A stomp.py client that promises heart-beats and sends none: same fate.
    conn, c = open_conn(broker, "1.2", headers={"heart-beat": "500,0"})
    try:
        assert c.disconnected.wait(5.0), "silent client was not disconnected"
    finally:
        close_conn(conn, c)


# -- errors ---------------------------------------------------------------------------------


def expect_error(c: Collector, contains: str, receipt: str | None = None):
    err = c.wait_error()
    text = (err.headers.get("message", "") + " " + (err.body or "")).lower()
    assert contains.lower() in text, f"ERROR should mention {contains!r}: {err.headers} {err.body!r}"
    if receipt is not None:
        assert err.headers.get("receipt-id") == receipt, err.headers
    assert c.disconnected.wait(WAIT_S), "the broker should close the connection after ERROR"
    return err


@pytest.mark.parametrize("dest", ["/nowhere/x", "queue/no-slash", "/queue/", "/exchange/no-such-exchange-zz/k"])
def test_error_bad_destination(conns, dest):
    conn, c = conns()
    if dest.startswith("/exchange/"):
        conn.subscribe(dest, "s", headers={"receipt": "r-bad"})
        expect_error(c, "exchange", receipt="r-bad")
    else:
        conn.send(dest, "x", headers={"receipt": "r-bad"})
        expect_error(c, "destination", receipt="r-bad")


def test_error_missing_destination(conns):
    conn, c = conns()
    conn.send_frame("SEND", {"receipt": "r-missing"}, "no destination")
    expect_error(c, "destination", receipt="r-missing")


def test_error_subscribe_missing_destination_and_id(conns):
    conn, c = conns()
    conn.send_frame("SUBSCRIBE", {"id": "s"})
    expect_error(c, "destination")
    conn, c = conns()
    conn.send_frame("SUBSCRIBE", {"destination": "/queue/" + unique()})
    expect_error(c, "id")


def test_error_unknown_ack_id(conns):
    conn, c = conns()
    conn.ack("424242", receipt="r-ack")
    expect_error(c, "424242", receipt="r-ack")


def test_error_unknown_transaction(conns):
    conn, c = conns()
    conn.commit("no-such-tx")
    expect_error(c, "no-such-tx")
    conn, c = conns()
    conn.send("/queue/" + unique(), "x", headers={"transaction": "ghost-tx"})
    expect_error(c, "ghost-tx")
    conn, c = conns()
    conn.abort("never-begun")
    expect_error(c, "never-begun")


def test_error_wrong_passcode(broker):
    conn, c = open_conn(broker, login="guest", passcode="not-the-password", expect_connected=False)
    try:
        err = c.wait_error()
        assert c.connected_frame is None
        assert "refused" in err.headers.get("message", "").lower() or "auth" in err.headers.get("message", "").lower()
        assert c.disconnected.wait(WAIT_S)
    finally:
        close_conn(conn, c)
    conn, c = open_conn(broker, login="nobody", passcode="guest", expect_connected=False)
    try:
        c.wait_error()
        assert c.connected_frame is None
    finally:
        close_conn(conn, c)


def test_error_unsupported_version(broker):
    host, port = broker
    with RawStomp(host, port) as raw:
        raw.send_frame("CONNECT", {"accept-version": "2.0,3.1", "host": "/", "login": "guest", "passcode": "guest"})
        err = raw.expect_error_and_close()
        assert "1.2" in err.headers.get("message", "") + err.body.decode(), err


def test_error_unsupported_version_names_supported_ones(broker):
    """STOMP 1.2, protocol negotiation: the ERROR for no common version carries a
    `version` header listing the versions the server supports."""
    host, port = broker
    with RawStomp(host, port) as raw:
        raw.send_frame("CONNECT", {"accept-version": "2.0", "host": "/"})
        err = raw.expect_error_and_close()
        assert set(err.headers.get("version", "").split(",")) == {"1.0", "1.1", "1.2"}, err


def test_error_frame_before_connect(broker):
    host, port = broker
    with RawStomp(host, port) as raw:
        raw.send_frame("SEND", {"destination": "/queue/x"}, b"too early")
        err = raw.expect_error_and_close()
        assert "connect" in (err.headers.get("message", "") + err.body.decode()).lower()


def test_error_second_connect(broker):
    host, port = broker
    with RawStomp(host, port) as raw:
        raw.connect()
        raw.send_frame("CONNECT", {"accept-version": "1.2", "host": "/"})
        raw.expect_error_and_close()


def test_error_does_not_disturb_other_connections(conns):
    dest = "/queue/" + unique()
    good, gc = conns()
    subscribe(good, gc, dest, "s")
    bad, bc = conns()
    bad.ack("999999")
    bc.wait_error()
    send_sync(good, gc, dest, "unaffected")
    assert [m.body for m in gc.wait_messages(1)] == ["unaffected"]


def test_error_duplicate_subscription_id(conns):
    conn, c = conns()
    dest = "/queue/" + unique()
    subscribe(conn, c, dest, "same")
    conn.subscribe("/queue/" + unique(), "same")
    expect_error(c, "same")


def test_error_unsubscribe_unknown_id(conns):
    conn, c = conns()
    conn.unsubscribe("never-subscribed")
    expect_error(c, "never-subscribed")


def test_error_double_ack(conns):
    conn, c = conns()
    dest = "/queue/" + unique()
    subscribe(conn, c, dest, "s", ack="client-individual")
    send_sync(conn, c, dest, "once")
    (m,) = c.wait_messages(1)
    conn.ack(m.headers["ack"], receipt="r1")
    c.wait_receipt("r1")
    conn.ack(m.headers["ack"], receipt="r2")
    expect_error(c, m.headers["ack"], receipt="r2")


def test_error_too_many_subscriptions(start_broker):
    broker = start_broker(FERROMQ_STOMP__SUBSCRIPTIONS_MAX="2")
    conn, c = open_conn(broker)
    try:
        subscribe(conn, c, "/queue/" + unique(), "s1")
        subscribe(conn, c, "/topic/" + unique(), "s2")
        conn.subscribe("/queue/" + unique(), "s3")
        expect_error(c, "subscriptions")
    finally:
        close_conn(conn, c)
    # The limit is per connection: another one may subscribe again.
    conn, c = open_conn(broker)
    try:
        subscribe(conn, c, "/queue/" + unique(), "s1")
    finally:
        close_conn(conn, c)


# -- more of what RabbitMQ and ActiveMQ users rely on -----------------------------------------


def test_connect_1_0_without_credentials_or_version(broker):
    """A bare 1.0 CONNECT from loopback is the guest user (as RabbitMQ's default)."""
    host, port = broker
    with RawStomp(host, port) as raw:
        raw.unescape = False
        raw.send_bytes(b"CONNECT\n\n\x00")
        f = raw.expect("CONNECTED")
        assert f.headers.get("version", "1.0") == "1.0"
        assert "heart-beat" not in f.headers
        dest = "/queue/" + unique()
        raw.send_frame("SUBSCRIBE", {"destination": dest, "receipt": "r1"})
        raw.expect("RECEIPT")
        raw.send_frame("SEND", {"destination": dest}, b"hi")
        m = raw.expect("MESSAGE")
        assert m.body == b"hi" and m.headers["destination"] == dest


def test_connected_frame_headers(conns):
    conn, c = conns(heartbeats=(0, 0))
    h = c.connected_frame.headers
    assert h["version"] == "1.2"
    assert h.get("server", "").startswith("ferromq")
    assert h.get("session")
    assert h.get("heart-beat") is not None


def test_nack_without_requeue_drops(conns):
    """RabbitMQ's `requeue:false` on NACK: the message is rejected, not redelivered."""
    dest = "/queue/" + unique()
    conn, c = conns()
    subscribe(conn, c, dest, "s", ack="client-individual")
    send_sync(conn, c, dest, "poison")
    (m,) = c.wait_messages(1)
    conn.nack(m.headers["ack"], requeue="false")
    send_sync(conn, c, dest, "marker")
    c.wait_messages(2)
    assert c.bodies() == ["poison", "marker"]
    conn.ack(c.messages[1].headers["ack"])
    assert_nothing_more(c, 2)


def test_amq_queue_destination(conns):
    name = unique("existing")
    conn, c = conns()
    send_sync(conn, c, "/queue/" + name, "declared by /queue/")
    subscribe(conn, c, "/amq/queue/" + name, "s")
    assert [m.body for m in c.wait_messages(1)] == ["declared by /queue/"]
    send_sync(conn, c, "/amq/queue/" + name, "sent to /amq/queue/")
    assert c.wait_messages(2)[1].body == "sent to /amq/queue/"
    # /amq/queue/ never declares: a missing queue is an error.
    conn2, c2 = conns()
    conn2.subscribe("/amq/queue/" + unique("missing"), "s")
    expect_error(c2, "not")


def test_message_expiration(conns):
    """RabbitMQ's `expiration` (a TTL in ms): an expired message is never delivered."""
    dest = "/queue/" + unique()
    conn, c = conns()
    send_sync(conn, c, dest, "short-lived", expiration="1")
    send_sync(conn, c, dest, "long-lived", expiration="60000")
    time.sleep(0.05)  # let the 1 ms TTL pass: there is no event to wait for
    subscribe(conn, c, dest, "s")
    c.wait_messages(1)
    assert c.bodies() == ["long-lived"]
    assert_nothing_more(c, 1)


def test_consumer_priority(conns):
    """`x-priority` (RabbitMQ) / `activemq.priority`: the higher-priority consumer gets
    the messages while it has credit."""
    dest = "/queue/" + unique()
    low, lc = conns()
    subscribe(low, lc, dest, "low")
    high, hc = conns()
    subscribe(high, hc, dest, "high", **{"x-priority": "10"})
    prod, pc = conns()
    for i in range(10):
        send_sync(prod, pc, dest, f"m{i}")
    assert [m.body for m in hc.wait_messages(10)] == [f"m{i}" for i in range(10)]
    assert lc.bodies() == []


def test_activemq_exclusive_consumer_fails_over(conns):
    """ActiveMQ's exclusive consumer (`activemq.exclusive:true`): one consumer gets every
    message; others may subscribe and wait, and take over when it leaves."""
    dest = "/queue/" + unique()
    hdrs = {"activemq.exclusive": "true"}
    first, fc = conns()
    subscribe(first, fc, dest, "first", **hdrs)
    standby, sc = conns()
    subscribe(standby, sc, dest, "standby", **hdrs)
    assert not sc.errors, f"a second exclusive consumer must be accepted as a standby: {sc.describe()}"
    prod, pc = conns()
    for i in range(5):
        send_sync(prod, pc, dest, f"a{i}")
    assert [m.body for m in fc.wait_messages(5)] == [f"a{i}" for i in range(5)]
    assert sc.bodies() == []
    close_conn(first, fc)
    for i in range(3):
        send_sync(prod, pc, dest, f"b{i}")
    assert [m.body for m in sc.wait_messages(3)] == ["b0", "b1", "b2"]


def test_durable_subscription_redelivers_unacked_after_reconnect(conns):
    topic = "/topic/" + unique("dur")
    sub_id = unique("d")
    hdrs = {"durable": "true", "auto-delete": "false"}
    conn, c = conns()
    subscribe(conn, c, topic, sub_id, ack="client-individual", **hdrs)
    send_sync(conn, c, topic, "unacked")
    c.wait_messages(1)
    drop_conn(conn, c)
    conn, c = conns()
    subscribe(conn, c, topic, sub_id, ack="client-individual", **hdrs)
    (m,) = c.wait_messages(1)
    assert m.body == "unacked" and m.headers["redelivered"] == "true"
    conn.ack(m.headers["ack"])
    rid = unique("unsub")
    conn.unsubscribe(sub_id, headers=dict(hdrs, receipt=rid))
    c.wait_receipt(rid)


# -- shutdown ---------------------------------------------------------------------------------


def test_shutdown_says_goodbye(start_broker):
    """SIGTERM: every client gets an ERROR frame and a closed socket; the broker exits 0."""
    broker = start_broker()
    host, port = broker
    conn, c = open_conn(broker)
    subscribe(conn, c, "/queue/" + unique(), "s")
    raw = RawStomp(host, port)
    try:
        raw.connect()
        broker.process.stop()  # asserts exit status 0 within 10 s
        err = raw.expect("ERROR")
        assert "shut" in err.headers.get("message", "").lower(), err
        raw.expect_closed()
        assert c.disconnected.wait(WAIT_S)
        assert c.errors and "shut" in c.errors[0].headers.get("message", "").lower()
    finally:
        raw.close()
        close_conn(conn, c)
