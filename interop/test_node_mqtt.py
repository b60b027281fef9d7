"""MQTT interop with Node's `mqtt` package (pinned in interop/node-mqtt/package.json,
installed by scripts/test.sh with `npm ci`): 3.1, 3.1.1 and 5 at each QoS, retained
messages, persistent sessions."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "node-mqtt"


def run(scenario, port, version, *args):
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "mqtt").is_dir():
        pytest.fail("Node or interop/node-mqtt/node_modules missing: scripts/test.sh installs them",
                    pytrace=False)
    out = subprocess.run([node, str(HERE / "client.js"), scenario, str(port), str(version), *args],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("version", [3, 4, 5])
def test_node_round_trip(broker, version, qos):
    m = run("roundtrip", broker.mqtt_port, version, str(qos))
    assert m == {"topic": "node/a.b/x", "payload": "hello", "qos": qos, "retain": False}


@pytest.mark.parametrize("version", [4, 5])
def test_node_retained(broker, version):
    m = run("retained", broker.mqtt_port, version)
    assert m == {"topic": f"node/ret{version}/state", "payload": "on", "qos": 1, "retain": True}


@pytest.mark.parametrize("version", [4, 5])
def test_node_persistent_session(broker, version):
    m = run("persistent", broker.mqtt_port, version)
    assert m == {"sessionPresent": True, "topic": f"node/p{version}/1", "payload": "queued",
                 "qos": 1, "retain": False}
