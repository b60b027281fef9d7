"""The browser test: headless Chromium (Debian's `chromium`) loads a page that uses MQTT.js
and stomp.js over WSS; a TCP client's message appears in the page and the page's messages
reach TCP consumers. The driver is interop/browser/run.mjs (Node, playwright-core); its
packages come from `npm ci` in interop/browser (scripts/test.sh does both installs)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import free_port

HERE = Path(__file__).resolve().parent / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def test_mqtt_js_and_stomp_js_over_wss_in_chromium(start_broker):
    missing = [what for what, ok in [
        ("node", shutil.which("node")),
        (CHROMIUM, Path(CHROMIUM).exists()),
        ("interop/browser/node_modules (npm ci)", (HERE / "node_modules").is_dir()),
    ] if not ok]
    assert not missing, f"the browser test needs {', '.join(missing)}; scripts/test.sh installs them"
    wss = free_port()
    b = start_broker(FERROMQ_LISTENERS__WSS=f"127.0.0.1:{wss}")
    env = dict(os.environ,
               FERROMQ_WSS_PORT=str(wss),
               FERROMQ_MQTT_PORT=str(b.mqtt_port),
               FERROMQ_STOMP_PORT=str(b.port),
               CHROMIUM=CHROMIUM)
    run = subprocess.run(["node", str(HERE / "run.mjs")], env=env, cwd=HERE,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert "TCP consumers received the page's messages" in run.stdout, run.stdout
