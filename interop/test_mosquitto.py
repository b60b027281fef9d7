"""MQTT interop with Mosquitto's command-line clients (Debian `mosquitto-clients`, installed
by scripts/test.sh): 3.1, 3.1.1 and 5 at each QoS, retained messages and their clearing,
persistent sessions, MQTT 5 properties."""

import shutil
import subprocess

import pytest

TIMEOUT_S = 10
FORMAT = "MSG %t|%q|%r|%p"


def binary(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's mosquitto-clients (scripts/test.sh does)",
                    pytrace=False)
    return path


def pub(port, *args):
    subprocess.run([binary("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), *args],
                   check=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)


def sub_once(port, *args):
    """Runs mosquitto_sub until it has printed one message (or timed out); returns the
    message lines."""
    out = subprocess.run(
        [binary("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(port), "-C", "1",
         "-W", str(TIMEOUT_S), "-F", FORMAT, *args],
        capture_output=True, text=True, timeout=TIMEOUT_S + 5, stdin=subprocess.DEVNULL)
    return [line for line in out.stdout.splitlines() if line.startswith("MSG ")]


class Subscriber:
    """mosquitto_sub in debug mode, so that the test knows when the SUBACK came (its output
    is unbuffered with stdbuf: a pipe would hold the line until it exits)."""

    def __init__(self, port, *args, count=1, fmt=FORMAT):
        self.proc = subprocess.Popen(
            [binary("stdbuf"), "-oL", binary("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(port),
             "-d", "-C", str(count), "-W", str(TIMEOUT_S), "-F", fmt, *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL)
        self.seen = []
        for line in self.proc.stdout:
            self.seen.append(line)
            if "received SUBACK" in line:
                return
        self.proc.wait(5)
        pytest.fail(f"mosquitto_sub got no SUBACK: {''.join(self.seen)}", pytrace=False)

    def messages(self):
        """Waits for the exit (after `count` messages or the -W timeout)."""
        rest, _ = self.proc.communicate(timeout=TIMEOUT_S + 5)
        lines = "".join(self.seen).splitlines() + rest.splitlines()
        return [line for line in lines if line.startswith("MSG ")]


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("version", ["mqttv31", "mqttv311", "mqttv5"])
def test_round_trip(broker, version, qos):
    port = broker.mqtt_port
    s = Subscriber(port, "-V", version, "-q", str(qos), "-t", "mos/+/x")
    pub(port, "-V", version, "-q", str(qos), "-t", "mos/a.b/x", "-m", "hello")
    assert s.messages() == [f"MSG mos/a.b/x|{qos}|0|hello"]


def test_retained_and_cleared(broker):
    port = broker.mqtt_port
    pub(port, "-q", "1", "-r", "-t", "mos/ret/door", "-m", "open")
    assert sub_once(port, "-q", "1", "-t", "mos/ret/#") == ["MSG mos/ret/door|1|1|open"]
    pub(port, "-q", "1", "-r", "-t", "mos/ret/door", "-n")
    s = Subscriber(port, "-q", "1", "-t", "mos/ret/#")
    pub(port, "-q", "1", "-t", "mos/ret/marker", "-m", "live")
    assert s.messages() == ["MSG mos/ret/marker|1|0|live"], "no retained message is left"


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_persistent_session(broker, version):
    port = broker.mqtt_port
    cid = f"mos-persist-{version}"
    session = ["-V", version, "-c", "-i", cid, "-q", "1", "-t", f"mos/p/{version}/#"]
    if version == "mqttv5":
        session += ["-x", "300"]
    subprocess.run([binary("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(port), "-E", *session],
                   check=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    pub(port, "-q", "1", "-t", f"mos/p/{version}/1", "-m", "queued")
    assert sub_once(port, *session) == [f"MSG mos/p/{version}/1|1|0|queued"]


def test_v5_properties(broker):
    port = broker.mqtt_port
    s = Subscriber(port, "-V", "mqttv5", "-q", "1", "-t", "mos/v5/#",
                   fmt="MSG %t|%C|%P|%R|%D|%p")
    pub(port, "-V", "mqttv5", "-q", "1", "-t", "mos/v5/req", "-m", "{}",
        "-D", "publish", "content-type", "application/json",
        "-D", "publish", "user-property", "k", "v",
        "-D", "publish", "response-topic", "mos/v5/reply",
        "-D", "publish", "correlation-data", "c-1")
    assert s.messages() == ["MSG mos/v5/req|application/json|k:v|mos/v5/reply|c-1|{}"]
