"""MQTT interop with Eclipse Paho (paho-mqtt 2.x): 3.1.1 and 5, QoS 0-2, retained, wills,
persistent sessions, and MQTT <-> STOMP through amq.topic."""

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


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_round_trip_each_qos(broker, qos):
    sub = Paho(broker.mqtt_port, f"sub-{qos}")
    sub.subscribe("paho/+/x", qos)
    pub = Paho(broker.mqtt_port, f"pub-{qos}")
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
