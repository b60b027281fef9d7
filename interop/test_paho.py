"""MQTT interop with Eclipse Paho (paho-mqtt 2.x): 3.1, 3.1.1 and 5, QoS 0-2, retained
(with MQTT 5 retain handling), wills (with MQTT 5 will delay), persistent sessions, shared
subscriptions, no local, and MQTT <-> STOMP through amq.topic."""

import queue
import time

import paho.mqtt.client as mqtt
import pytest
import stomp

from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

TIMEOUT = 5.0


class Paho:
    def __init__(self, port, client_id, protocol=mqtt.MQTTv311, clean=True, will=None, props=None):
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        kwargs = {"client_id": client_id, "protocol": protocol}
        if protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_connect = lambda c, u, f, rc, p: self.connacks.put((f, rc, p))
        if will:
            self.c.will_set(*will)
        if protocol == mqtt.MQTTv5:
            self.c.connect("127.0.0.1", port, keepalive=30, clean_start=clean, properties=props)
        else:
            self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        self.flags, self.rc, self.props = self.connacks.get(timeout=TIMEOUT)

    def subscribe(self, topic, qos=1, **kw):
        done = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, codes, p: done.put(codes)
        self.c.subscribe(topic, qos, **kw)
        return done.get(timeout=TIMEOUT)

    def publish(self, topic, payload, qos=1, retain=False, props=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()

    def message(self):
        return self.messages.get(timeout=TIMEOUT)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv31, mqtt.MQTTv311, mqtt.MQTTv5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_round_trip_each_qos(broker, qos, protocol):
    sub = Paho(broker.mqtt_port, f"sub-{qos}-{protocol}", protocol=protocol)
    sub.subscribe("paho/+/x", qos)
    pub = Paho(broker.mqtt_port, f"pub-{qos}-{protocol}", protocol=protocol)
    pub.publish("paho/a.b/x", b"hello", qos=qos)
    m = sub.message()
    assert (m.topic, m.payload, m.qos) == ("paho/a.b/x", b"hello", qos)
    sub.close()
    pub.close()


def test_retained_and_persistent_session(broker):
    pub = Paho(broker.mqtt_port, "paho-ret")
    pub.publish("paho/state", b"on", retain=True)
    sub = Paho(broker.mqtt_port, "paho-persist", clean=False)
    sub.subscribe("paho/#", 1)
    m = sub.message()
    assert m.retain and m.payload == b"on"
    sub.close()
    time.sleep(0.2)
    pub.publish("paho/later", b"queued")
    sub = Paho(broker.mqtt_port, "paho-persist", clean=False)
    assert sub.flags.session_present
    assert sub.message().payload == b"queued"
    sub.close()
    pub.close()


def test_v5_properties(broker):
    sub = Paho(broker.mqtt_port, "v5-sub", protocol=mqtt.MQTTv5)
    sub.subscribe("v5/#", 1)
    pub = Paho(broker.mqtt_port, "v5-pub", protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.ResponseTopic = "v5/replies"
    props.CorrelationData = b"id-1"
    props.UserProperty = [("a", "1")]
    pub.publish("v5/req", b"{}", props=props)
    m = sub.message()
    assert m.properties.ContentType == "application/json"
    assert m.properties.ResponseTopic == "v5/replies"
    assert m.properties.CorrelationData == b"id-1"
    assert ("a", "1") in m.properties.UserProperty
    sub.close()
    pub.close()


def test_will_and_stomp_interop(broker):
    host, port = broker
    conn = stomp.Connection([(host, port)])
    got = queue.Queue()

    class L(stomp.ConnectionListener):
        def on_message(self, frame):
            got.put(frame)

    conn.set_listener("", L())
    conn.connect("guest", "guest", wait=True)
    conn.subscribe("/topic/paho.will", id="1", ack="auto")
    time.sleep(0.2)
    dying = Paho(broker.mqtt_port, "dying", will=("paho/will", b"bye", 1, False))
    dying.c.loop_stop()
    dying.c.socket().close()
    frame = got.get(timeout=TIMEOUT)
    assert frame.body in ("bye", b"bye")
    conn.disconnect()


def session_props(expiry_s):
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = expiry_s
    return p


def test_v5_persistent_session_with_expiry(broker):
    sub = Paho(broker.mqtt_port, "v5-persist", protocol=mqtt.MQTTv5, clean=True,
               props=session_props(300))
    sub.subscribe("v5p/#", 2)
    sub.close()
    time.sleep(0.2)
    pub = Paho(broker.mqtt_port, "v5p-pub", protocol=mqtt.MQTTv5)
    pub.publish("v5p/a", b"one", qos=1)
    pub.publish("v5p/b", b"two", qos=2)
    sub = Paho(broker.mqtt_port, "v5-persist", protocol=mqtt.MQTTv5, clean=False,
               props=session_props(300))
    assert sub.flags.session_present
    got = sorted((m.topic, m.payload, m.qos) for m in (sub.message(), sub.message()))
    assert got == [("v5p/a", b"one", 1), ("v5p/b", b"two", 2)]
    sub.close()
    # Session Expiry 0 on the next connection: the session ends with it.
    sub = Paho(broker.mqtt_port, "v5-persist", protocol=mqtt.MQTTv5, clean=False,
               props=session_props(0))
    assert sub.flags.session_present
    sub.close()
    time.sleep(0.2)
    sub = Paho(broker.mqtt_port, "v5-persist", protocol=mqtt.MQTTv5, clean=False,
               props=session_props(300))
    assert not sub.flags.session_present
    sub.close()
    pub.close()


def test_v5_shared_subscription_spreads(broker):
    members = [Paho(broker.mqtt_port, f"v5-share-{i}", protocol=mqtt.MQTTv5) for i in range(2)]
    for m in members:
        m.subscribe("$share/workers/v5s/jobs", 1)
    pub = Paho(broker.mqtt_port, "v5s-pub", protocol=mqtt.MQTTv5)
    for i in range(10):
        pub.publish("v5s/jobs", f"job-{i}".encode())
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < 10 and time.monotonic() < deadline:
        for i, m in enumerate(members):
            try:
                got.append((i, m.messages.get(timeout=0.05).payload))
            except queue.Empty:
                pass
    assert sorted(p for _, p in got) == sorted(f"job-{i}".encode() for i in range(10))
    assert {i for i, _ in got} == {0, 1}, "both members got work"
    for m in members:
        m.close()
    pub.close()


def test_v5_no_local_and_retain_handling(broker):
    c = Paho(broker.mqtt_port, "v5-opts", protocol=mqtt.MQTTv5)
    c.publish("v5o/state", b"retained", retain=True)
    done = queue.Queue()
    c.c.on_subscribe = lambda cl, u, mid, codes, p: done.put(codes)
    # Retain Handling 2: no retained message at subscribe; No Local: not our own messages.
    c.c.subscribe("v5o/#", options=mqtt.SubscribeOptions(qos=1, noLocal=True, retainHandling=2))
    done.get(timeout=TIMEOUT)
    c.publish("v5o/own", b"mine")
    other = Paho(broker.mqtt_port, "v5-opts-other", protocol=mqtt.MQTTv5)
    other.publish("v5o/theirs", b"theirs")
    m = c.message()
    assert (m.topic, m.payload, m.retain) == ("v5o/theirs", b"theirs", False)
    c.publish("v5o/state", b"", retain=True)
    c.close()
    other.close()


def test_v5_will_delay(broker):
    watcher = Paho(broker.mqtt_port, "v5-will-watch", protocol=mqtt.MQTTv5)
    watcher.subscribe("v5w/#", 1)
    will_props = Properties(PacketTypes.WILLMESSAGE)
    will_props.WillDelayInterval = 1
    dying = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="v5-will",
                        protocol=mqtt.MQTTv5)
    dying.will_set("v5w/gone", b"bye", qos=1, properties=will_props)
    dying.connect("127.0.0.1", broker.mqtt_port, keepalive=30, properties=session_props(60))
    dying.loop(timeout=1.0)
    dropped = time.monotonic()
    dying.socket().close()
    m = watcher.message()
    assert (m.topic, m.payload) == ("v5w/gone", b"bye")
    assert time.monotonic() - dropped >= 0.9, "published after the delay, not at once"
    watcher.close()
