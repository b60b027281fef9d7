"""AMQP 0-9-1 through pika (BlockingConnection), the Python client of RabbitMQ's own
tutorials: work queues, every exchange type, RPC with direct reply-to, publisher
confirms, transactions, dead-lettering, TTL, max-length, priorities, and the exact
errors RabbitMQ gives.

Waits are bounded and event driven: `BlockingConnection.process_data_events` returns as
soon as a frame arrives, and each wait gives up after `WAIT_S`.
"""

from __future__ import annotations

import time

import pika
import pika.exceptions as pe
import pytest

from rawstomp import RawStomp
from stomputil import unique

WAIT_S = 5.0


def params(broker, **kw) -> pika.ConnectionParameters:
    kw.setdefault("heartbeat", 0)
    return pika.ConnectionParameters(
        host=broker.host,
        port=broker.amqp_port,
        virtual_host="/",
        credentials=pika.PlainCredentials("guest", "guest"),
        blocked_connection_timeout=WAIT_S,
        socket_timeout=WAIT_S,
        **kw,
    )


@pytest.fixture
def conn(broker):
    c = pika.BlockingConnection(params(broker))
    yield c
    if c.is_open:
        c.close()


def until(c: pika.BlockingConnection, predicate, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while not predicate():
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {what}"
        c.process_data_events(time_limit=min(left, 0.2))


def get_body(ch, queue: str):
    method, props, body = ch.basic_get(queue, auto_ack=True)
    return body


def test_work_queue_round_robin_with_acks_and_redelivery(conn, broker):
    q = unique("work")
    ch = conn.channel()
    ch.queue_declare(q, durable=True)
    for i in range(6):
        ch.basic_publish("", q, f"task{i}".encode(),
                         pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))
    worker = pika.BlockingConnection(params(broker))
    a, b = worker.channel(), worker.channel()
    a.basic_qos(prefetch_count=1)
    b.basic_qos(prefetch_count=1)
    got_a, got_b = [], []
    a.basic_consume(q, lambda c, m, p, body: got_a.append((m.delivery_tag, body, m.redelivered)))
    b.basic_consume(q, lambda c, m, p, body: got_b.append((m.delivery_tag, body, m.redelivered)))
    until(worker, lambda: got_a and got_b, "one task each")
    # prefetch 1: nothing more until an ack
    worker.process_data_events(time_limit=0.3)
    assert len(got_a) == 1 and len(got_b) == 1
    held_by_b = got_b[0][1]
    b.close()  # unacked: back to the queue, redelivered
    seen = [got_a[0][1]]
    a.basic_ack(got_a[0][0])
    while len(seen) < 6:
        n = len(got_a)
        until(worker, lambda: len(got_a) > n, "next task")
        tag, body, redelivered = got_a[-1]
        if body == held_by_b:
            assert redelivered
        seen.append(body)
        a.basic_ack(tag)
    assert sorted(seen) == sorted(f"task{i}".encode() for i in range(6))
    worker.close()
    ok = ch.queue_declare(q, passive=True)
    assert ok.method.message_count == 0


def test_every_exchange_type(conn):
    ch = conn.channel()
    x = unique("x")
    for kind in ("direct", "fanout", "topic", "headers"):
        ch.exchange_declare(f"{x}.{kind}", exchange_type=kind)
    qs = {k: ch.queue_declare("", exclusive=True).method.queue for k in ("d", "f", "t", "h")}
    ch.queue_bind(qs["d"], f"{x}.direct", "red")
    ch.queue_bind(qs["f"], f"{x}.fanout")
    ch.queue_bind(qs["t"], f"{x}.topic", "a.*.c")
    ch.queue_bind(qs["h"], f"{x}.headers", arguments={"x-match": "any", "kind": "pdf", "size": 5})
    ch.basic_publish(f"{x}.direct", "red", b"direct")
    ch.basic_publish(f"{x}.direct", "blue", b"lost")
    ch.basic_publish(f"{x}.fanout", "whatever", b"fanout")
    ch.basic_publish(f"{x}.topic", "a.b.c", b"topic")
    ch.basic_publish(f"{x}.topic", "a.b.c.d", b"lost")
    ch.basic_publish(f"{x}.headers", "", b"headers", pika.BasicProperties(headers={"size": 5}))
    ch.basic_publish(f"{x}.headers", "", b"lost", pika.BasicProperties(headers={"size": 6}))
    for k, want in (("d", b"direct"), ("f", b"fanout"), ("t", b"topic"), ("h", b"headers")):
        method, _, body = ch.basic_get(qs[k], auto_ack=True)
        assert body == want, k
        assert method.message_count == 0, k
    # exchange-to-exchange and alternate exchange
    ch.exchange_declare(f"{x}.alt", "fanout")
    alt_q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(alt_q, f"{x}.alt")
    ch.exchange_declare(f"{x}.main", "direct", arguments={"alternate-exchange": f"{x}.alt"})
    ch.exchange_bind(f"{x}.direct", f"{x}.main", "red")
    ch.basic_publish(f"{x}.main", "red", b"via-e2e")
    ch.basic_publish(f"{x}.main", "green", b"to-alt")
    assert get_body(ch, qs["d"]) == b"via-e2e"
    assert get_body(ch, alt_q) == b"to-alt"


def test_rpc_with_direct_reply_to(conn, broker):
    rpc_q = unique("rpc")
    server = pika.BlockingConnection(params(broker))
    sch = server.channel()
    sch.queue_declare(rpc_q)

    cch = conn.channel()
    replies = []
    cch.basic_consume("amq.rabbitmq.reply-to",
                      lambda c, m, p, body: replies.append((p.correlation_id, body)),
                      auto_ack=True)
    cch.basic_publish("", rpc_q, b"21",
                      pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="r1"))
    deadline = time.monotonic() + WAIT_S
    req = (None, None, None)
    while req[0] is None:
        assert time.monotonic() < deadline, "the request arrives"
        req = sch.basic_get(rpc_q, auto_ack=True)
    method, props, body = req
    assert props.reply_to.startswith("amq.rabbitmq.reply-to.")
    sch.basic_publish("", props.reply_to, str(int(body) * 2).encode(),
                      pika.BasicProperties(correlation_id=props.correlation_id))
    until(conn, lambda: replies, "the reply")
    assert replies == [("r1", b"42")]
    server.close()


def test_rpc_reply_consumer_must_not_ack(conn):
    ch = conn.channel()
    with pytest.raises(pe.ChannelClosedByBroker) as e:
        ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=False)
    assert e.value.reply_code == 406
    assert e.value.reply_text == "PRECONDITION_FAILED - reply consumer cannot acknowledge"


def test_publisher_confirms(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    q = unique("conf")
    ch.queue_declare(q, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.basic_publish("", q, b"fits")
    with pytest.raises(pe.NackError):
        ch.basic_publish("", q, b"refused")
    with pytest.raises(pe.UnroutableError):
        ch.basic_publish("amq.direct", unique("nobody"), b"bounce", mandatory=True)
    # still usable afterwards
    ch.basic_publish("", q + "-absent", b"unroutable but not mandatory: acked")
    assert get_body(ch, q) == b"fits"


def test_transactions(conn):
    ch = conn.channel()
    q = unique("tx")
    ch.queue_declare(q)
    ch.tx_select()
    ch.basic_publish("", q, b"rolled-back")
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.tx_rollback()
    ch.basic_publish("", q, b"committed")
    ch.tx_commit()
    other = conn.channel()
    assert get_body(other, q) == b"committed"
    assert other.basic_get(q)[0] is None
    with pytest.raises(pe.ChannelClosedByBroker) as e:
        other.tx_commit()
    assert (e.value.reply_code, e.value.reply_text) == (
        406, "PRECONDITION_FAILED - channel is not transactional")


def test_passive_declare_of_missing_queue_is_404_and_closes_the_channel(conn):
    ch = conn.channel()
    name = unique("absent")
    with pytest.raises(pe.ChannelClosedByBroker) as e:
        ch.queue_declare(name, passive=True)
    assert e.value.reply_code == 404
    assert e.value.reply_text == f"NOT_FOUND - no queue '{name}' in vhost '/'"
    assert ch.is_closed and conn.is_open
    with pytest.raises(pe.ChannelClosedByBroker) as e:
        conn.channel().exchange_declare(unique("nx"), passive=True)
    assert e.value.reply_code == 404


def test_exclusive_queue_is_405_for_other_connections(conn, broker):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    assert q.startswith("amq.gen-")
    other = pika.BlockingConnection(params(broker))
    with pytest.raises(pe.ChannelClosedByBroker) as e:
        other.channel().queue_declare(q, passive=True)
    assert e.value.reply_code == 405
    assert e.value.reply_text.startswith("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue")
    other.close()


def test_inequivalent_redeclare_is_406(conn):
    ch = conn.channel()
    q = unique("eq")
    ch.queue_declare(q, durable=True)
    with pytest.raises(pe.ChannelClosedByBroker) as e:
        ch.queue_declare(q, durable=False)
    assert e.value.reply_code == 406
    assert e.value.reply_text.startswith(f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}'")


def test_unknown_exchange_type_closes_the_connection_with_503(broker):
    c = pika.BlockingConnection(params(broker))
    with pytest.raises(pe.ConnectionClosedByBroker) as e:
        c.channel().exchange_declare(unique("x"), exchange_type="x-nonsense")
    assert e.value.reply_code == 503


def test_reserved_names_and_default_exchange_are_403(conn):
    with pytest.raises(pe.ChannelClosedByBroker) as e:
        conn.channel().queue_declare("amq.mine")
    assert e.value.reply_code == 403
    with pytest.raises(pe.ChannelClosedByBroker) as e:
        conn.channel().exchange_delete("amq.direct")
    assert e.value.reply_code == 403


def test_dead_lettering_ttl_and_max_length(conn):
    ch = conn.channel()
    dlx, dead = unique("dlx"), unique("dead")
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(dead)
    ch.queue_bind(dead, dlx)
    q = unique("ttl")
    ch.queue_declare(q, arguments={"x-message-ttl": 100, "x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"expires")
    deadline = time.monotonic() + WAIT_S
    body = None
    while body is None:
        assert time.monotonic() < deadline, "the message expires into the dead-letter queue"
        method, props, body = ch.basic_get(dead, auto_ack=True)
        if body is None:
            conn.sleep(0.1)  # TTL expiry is swept by the broker's housekeeping tick
    assert body == b"expires"
    death = props.headers["x-death"][0]
    assert death["reason"] == "expired" and death["queue"] == q and death["count"] == 1
    # max-length drop-head dead-letters the oldest
    m = unique("maxlen")
    ch.queue_declare(m, arguments={"x-max-length": 2, "x-dead-letter-exchange": dlx})
    for b in (b"1", b"2", b"3"):
        ch.basic_publish("", m, b)
    assert get_body(ch, dead) == b"1"
    assert [get_body(ch, m), get_body(ch, m)] == [b"2", b"3"]
    # nack without requeue dead-letters as rejected
    r = unique("rej")
    ch.queue_declare(r, arguments={"x-dead-letter-exchange": dlx})
    ch.basic_publish("", r, b"bad")
    method, _, _ = ch.basic_get(r)
    ch.basic_nack(method.delivery_tag, requeue=False)
    method, props, body = ch.basic_get(dead, auto_ack=True)
    assert body == b"bad" and props.headers["x-first-death-reason"] == "rejected"


def test_priorities_and_redelivery_flags(conn):
    ch = conn.channel()
    q = unique("prio")
    ch.queue_declare(q, arguments={"x-max-priority": 10})
    for body, p in ((b"low", 1), (b"high", 9), (b"mid", 5)):
        ch.basic_publish("", q, body, pika.BasicProperties(priority=p))
    assert [get_body(ch, q) for _ in range(3)] == [b"high", b"mid", b"low"]
    ch.basic_publish("", q, b"again")
    method, _, _ = ch.basic_get(q)
    assert not method.redelivered
    ch.basic_reject(method.delivery_tag, requeue=True)
    method, _, body = ch.basic_get(q)
    assert body == b"again" and method.redelivered
    ch.basic_recover(requeue=True)
    method, _, _ = ch.basic_get(q, auto_ack=True)
    assert method.redelivered


def test_properties_are_carried_exactly(conn):
    ch = conn.channel()
    q = unique("props")
    ch.queue_declare(q)
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8",
        headers={"s": "text", "i": 42, "neg": -7, "b": True,
                 "nested": {"k": "v"}, "list": [1, "two"]},
        delivery_mode=2, priority=3, correlation_id="corr", reply_to="back",
        expiration="60000", message_id="mid", timestamp=1700000000, type="kind",
        user_id="guest", app_id="app")
    body = bytes(range(256)) * 1000  # several frames
    ch.basic_publish("", q, body, props)
    method, got, got_body = ch.basic_get(q, auto_ack=True)
    assert got_body == body
    for attr in ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
                 "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id"):
        assert getattr(got, attr) == getattr(props, attr), attr
    assert got.headers == props.headers
    # user_id must be the authenticated user
    with pytest.raises(pe.ChannelClosedByBroker) as e:
        ch.basic_publish("", q, b"x", pika.BasicProperties(user_id="admin"))
        ch.basic_get(q)  # the error arrives asynchronously; a sync call surfaces it
    assert e.value.reply_code == 406


def test_consumer_cancelled_when_its_queue_is_deleted(conn):
    ch = conn.channel()
    q = unique("gone")
    ch.queue_declare(q)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(q, lambda *a: None)
    conn.channel().queue_delete(q)
    until(conn, lambda: cancelled, "basic.cancel from the broker")
    assert cancelled == [tag]


def test_heartbeats_keep_an_idle_connection_alive(broker):
    c = pika.BlockingConnection(params(broker, heartbeat=1))
    ch = c.channel()
    c.sleep(2.5)  # processes I/O meanwhile: heartbeats flow both ways
    assert c.is_open
    ch.queue_declare("", exclusive=True)
    c.close()


def test_frame_max_is_negotiated(broker):
    c = pika.BlockingConnection(params(broker, frame_max=8192))
    ch = c.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    body = b"x" * 50_000
    ch.basic_publish("", q, body)
    assert get_body(ch, q) == body
    c.close()


def test_cross_protocol_with_stomp(conn, broker):
    ch = conn.channel()
    key = unique("k").replace("-", "")
    # AMQP -> STOMP /topic/
    with RawStomp(broker.host, broker.port) as s:
        s.connect()
        s.send_frame("SUBSCRIBE", {"id": "1", "destination": f"/topic/{key}.*", "receipt": "r"})
        s.expect("RECEIPT")
        ch.basic_publish("amq.topic", f"{key}.a", b"to-stomp",
                         pika.BasicProperties(content_type="text/plain", headers={"app": "pika"}))
        f = s.expect("MESSAGE")
        assert f.body == b"to-stomp"
        assert f.headers["destination"] == f"/topic/{key}.a"
        assert f.headers["content-type"] == "text/plain"
        assert f.headers["app"] == "pika"
    # STOMP -> AMQP queue bound to amq.topic
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.topic", f"{key}.#")
    with RawStomp(broker.host, broker.port) as s:
        s.connect()
        s.send_frame("SEND", {"destination": f"/topic/{key}.b", "content-type": "text/plain",
                              "correlation-id": "c1", "x-extra": "yes", "receipt": "r"}, b"from-stomp")
        s.expect("RECEIPT")
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"from-stomp"
    assert (method.exchange, method.routing_key) == ("amq.topic", f"{key}.b")
    assert props.content_type == "text/plain" and props.correlation_id == "c1"
    assert props.headers["x-extra"] == "yes"


def test_single_active_consumer_and_consumer_priorities(conn):
    ch = conn.channel()
    sac = unique("sac")
    ch.queue_declare(sac, arguments={"x-single-active-consumer": True})
    got = {"first": [], "second": []}
    ch.basic_consume(sac, lambda c, m, p, b: got["first"].append(b), auto_ack=True)
    ch.basic_consume(sac, lambda c, m, p, b: got["second"].append(b), auto_ack=True)
    for i in range(4):
        ch.basic_publish("", sac, str(i).encode())
    until(conn, lambda: len(got["first"]) == 4, "all to the active consumer")
    assert got["second"] == []

    prio = unique("prio-consumers")
    ch2 = conn.channel()
    ch2.queue_declare(prio)
    seen = {"low": [], "high": []}
    ch2.basic_consume(prio, lambda c, m, p, b: seen["low"].append(b), auto_ack=True,
                      arguments={"x-priority": 1})
    ch2.basic_consume(prio, lambda c, m, p, b: seen["high"].append(b), auto_ack=True,
                      arguments={"x-priority": 10})
    for i in range(5):
        ch2.basic_publish("", prio, str(i).encode())
    until(conn, lambda: len(seen["high"]) + len(seen["low"]) == 5, "all five")
    assert len(seen["high"]) == 5, seen


def test_global_qos_limits_the_whole_channel(conn):
    ch = conn.channel()
    q1, q2 = unique("g1"), unique("g2")
    for q in (q1, q2):
        ch.queue_declare(q)
        for i in range(3):
            ch.basic_publish("", q, str(i).encode())
    ch.basic_qos(prefetch_count=2, global_qos=True)
    got = []
    ch.basic_consume(q1, lambda c, m, p, b: got.append(m.delivery_tag))
    ch.basic_consume(q2, lambda c, m, p, b: got.append(m.delivery_tag))
    until(conn, lambda: len(got) == 2, "two deliveries")
    conn.process_data_events(time_limit=0.3)
    assert len(got) == 2, "the channel-wide prefetch of 2 holds across both consumers"
    ch.basic_ack(got[-1], multiple=True)
    until(conn, lambda: len(got) == 4, "two more after the ack")
