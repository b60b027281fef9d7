"""TLS and WebSocket interop: paho-mqtt over MQTT/TLS, WS and WSS; stomp.py over TLS and
over WebSocket (websocket-client); pika over TLS. Every client trusts the self-signed
certificate the broker generated into its data directory."""

import queue
import ssl
import time

import paho.mqtt.client as mqtt
import pika
import pytest
import stomp
from stomp.adapter.ws import WSStompConnection

from conftest import free_port

TIMEOUT = 5.0


@pytest.fixture
def secure_broker(start_broker):
    ports = {name: free_port() for name in ("ws", "wss", "stomp_tls", "mqtt_tls", "amqp_tls")}
    b = start_broker(**{f"FERROMQ_LISTENERS__{k.upper()}": f"127.0.0.1:{p}" for k, p in ports.items()})
    cert = b.process.tmp / "data" / "tls" / "cert.pem"
    assert cert.exists()
    return b, ports, str(cert)


class Collector(stomp.ConnectionListener):
    def __init__(self):
        self.messages = queue.Queue()

    def on_message(self, frame):
        self.messages.put(frame.body)


def stomp_tcp(b):
    c = stomp.Connection([(b.host, b.port)])
    listener = Collector()
    c.set_listener("", listener)
    c.connect("guest", "guest", wait=True)
    return c, listener


def paho(port, transport="tcp", cert=None, path="/mqtt"):
    got = queue.Queue()
    connected = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"paho-{transport}-{port}",
                    transport=transport)
    if transport == "websockets":
        c.ws_set_options(path=path)
    if cert:
        c.tls_set(ca_certs=cert)
    c.username_pw_set("guest", "guest")
    c.on_message = lambda cl, u, m: got.put(m.payload)
    c.on_connect = lambda cl, u, f, rc, p: connected.put(rc)
    c.connect("localhost", port, keepalive=30)
    c.loop_start()
    assert not connected.get(timeout=TIMEOUT).is_failure
    return c, got


def subscribe(c, topic):
    done = queue.Queue()
    c.on_subscribe = lambda cl, u, mid, codes, p: done.put(codes)
    c.subscribe(topic, 1)
    done.get(timeout=TIMEOUT)


@pytest.mark.parametrize("mode", ["ws", "wss", "mqtt_tls"])
def test_paho_meets_stomp(secure_broker, mode):
    b, ports, cert = secure_broker
    if mode == "mqtt_tls":
        c, got = paho(ports["mqtt_tls"], cert=cert)
    else:
        c, got = paho(ports[mode], transport="websockets", cert=cert if mode == "wss" else None)
    subscribe(c, f"interop/{mode}")
    s, listener = stomp_tcp(b)
    s.send(f"/topic/interop.{mode}", f"to paho over {mode}")
    assert got.get(timeout=TIMEOUT) == f"to paho over {mode}".encode()
    s.subscribe(f"/topic/interop.{mode}.back", id="1")
    time.sleep(0.2)  # let SUBSCRIBE land; stomp.py sends it without a receipt
    c.publish(f"interop/{mode}/back", b"from paho", qos=1).wait_for_publish(TIMEOUT)
    assert listener.messages.get(timeout=TIMEOUT) == "from paho"
    c.loop_stop()
    c.disconnect()
    s.disconnect()


def test_stomp_py_over_tls(secure_broker):
    b, ports, cert = secure_broker
    c = stomp.Connection([("localhost", ports["stomp_tls"])])
    c.set_ssl(for_hosts=[("localhost", ports["stomp_tls"])], ca_certs=cert)
    listener = Collector()
    c.set_listener("", listener)
    c.connect("guest", "guest", wait=True)
    c.subscribe("/queue/stomp-tls", id="1", receipt="r1")
    c.send("/queue/stomp-tls", "secret")
    assert listener.messages.get(timeout=TIMEOUT) == "secret"
    c.disconnect()


@pytest.mark.parametrize("secure", [False, True])
def test_stomp_py_over_websocket(secure_broker, secure):
    b, ports, cert = secure_broker
    port = ports["wss" if secure else "ws"]
    c = WSStompConnection([("localhost", port)], ws_path="/ws",
                          header={"Sec-WebSocket-Protocol": "v12.stomp"})
    if secure:
        c.set_ssl(for_hosts=[("localhost", port)], ca_certs=cert)
    listener = Collector()
    c.set_listener("", listener)
    c.connect("guest", "guest", wait=True)
    c.subscribe("/queue/stomp-ws", id="1", receipt="r1")
    s, _ = stomp_tcp(b)
    s.send("/queue/stomp-ws", "via websocket")
    assert listener.messages.get(timeout=TIMEOUT) == "via websocket"
    c.disconnect()
    s.disconnect()


def test_pika_over_tls(secure_broker):
    b, ports, cert = secure_broker
    context = ssl.create_default_context(cafile=cert)
    params = pika.ConnectionParameters(
        host="localhost", port=ports["amqp_tls"],
        credentials=pika.PlainCredentials("guest", "guest"),
        ssl_options=pika.SSLOptions(context, "localhost"))
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.queue_declare("pika-tls")
    ch.basic_publish("", "pika-tls", b"amqps")
    deadline = time.monotonic() + TIMEOUT
    body = None
    while body is None and time.monotonic() < deadline:
        _, _, body = ch.basic_get("pika-tls", auto_ack=True)
    assert body == b"amqps"
    conn.close()
