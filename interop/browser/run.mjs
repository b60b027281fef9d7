// Drives headless Chromium against a running ferromq: the page (index.html, served here
// on localhost) uses MQTT.js and stomp.js over WSS; a TCP MQTT client publishes into the
// page, and TCP consumers (MQTT and raw STOMP) receive what the page sends.
//
// Environment: FERROMQ_WSS_PORT, FERROMQ_MQTT_PORT, FERROMQ_STOMP_PORT (the broker's),
// CHROMIUM (default /usr/bin/chromium). Exits 0 when every message arrived.
import http from "node:http";
import net from "node:net";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import mqtt from "mqtt";

const here = path.dirname(fileURLToPath(import.meta.url));
const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const wssPort = env("FERROMQ_WSS_PORT");
const mqttPort = env("FERROMQ_MQTT_PORT");
const stompPort = env("FERROMQ_STOMP_PORT");
const WAIT_MS = 20000;
// Whatever happens, the driver ends (the broker's and the browser's processes with it).
setTimeout(() => { console.error("FAILED: the driver took too long"); process.exit(2); }, 6 * WAIT_MS).unref();

const files = {
  "/": [path.join(here, "index.html"), "text/html"],
  "/mqtt.min.js": [path.join(here, "node_modules/mqtt/dist/mqtt.min.js"), "text/javascript"],
  "/stomp.umd.min.js": [path.join(here, "node_modules/@stomp/stompjs/bundles/stomp.umd.min.js"), "text/javascript"],
};
const server = http.createServer((req, res) => {
  const f = files[new URL(req.url, "http://x").pathname];
  if (!f) { res.writeHead(404).end(); return; }
  res.writeHead(200, { "content-type": f[1] });
  fs.createReadStream(f[0]).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const pagePort = server.address().port;

/// A raw STOMP consumer over TCP; resolves with the first MESSAGE body.
function stompConsumer(destination) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(stompPort), "127.0.0.1");
    let buf = "";
    let subscribed;
    const ready = new Promise((r) => (subscribed = r));
    sock.on("error", reject);
    sock.on("data", (d) => {
      buf += d.toString("utf8");
      let nul;
      while ((nul = buf.indexOf("\0")) >= 0) {
        const frame = buf.slice(0, nul).replace(/^\n+/, "");
        buf = buf.slice(nul + 1);
        const [head, body] = [frame.slice(0, frame.indexOf("\n\n")), frame.slice(frame.indexOf("\n\n") + 2)];
        const command = head.split("\n")[0];
        if (command === "CONNECTED") {
          sock.write(`SUBSCRIBE\nid:1\ndestination:${destination}\nreceipt:r1\n\n\0`);
        } else if (command === "RECEIPT") {
          subscribed();
        } else if (command === "MESSAGE") {
          sock.end();
          resolve(body);
        } else if (command === "ERROR") {
          reject(new Error("STOMP ERROR: " + frame));
        }
      }
    });
    sock.write("CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0");
    stompConsumer.ready = ready;
  });
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "ferromq-chromium-"));
const browser = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    // The broker's certificate is the self-signed one it generated.
    "--ignore-certificate-errors",
  ],
});
let failed = false;
const tcp = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, {
  username: "guest", password: "guest", clientId: "tcp-driver", protocolVersion: 4,
});
try {
  const page = browser.pages()[0] ?? (await browser.newPage());
  page.on("console", (m) => console.log("page:", m.text()));
  await page.goto(`http://localhost:${pagePort}/?wss=${wssPort}`);
  await page.waitForFunction(() => window.status_.mqtt && window.status_.stomp, null, { timeout: WAIT_MS })
    .catch(async (e) => { throw new Error(`page did not connect: ${JSON.stringify(await page.evaluate(() => window.status_))}`); });
  console.log("page connected over WSS with MQTT.js and stomp.js");

  // TCP -> page: an MQTT publish reaches MQTT.js (browser/in) and stomp.js (/topic/browser.in).
  if (!tcp.connected) await new Promise((r, j) => tcp.once("connect", r).once("error", j));
  await tcp.publishAsync("browser/in", "hello from tcp", { qos: 1 });
  for (const kind of ["mqtt", "stomp"]) {
    await page.waitForSelector(`#log li[data-kind=${kind}]`, { timeout: WAIT_MS });
    const text = await page.textContent(`#log li[data-kind=${kind}]`);
    if (text !== "hello from tcp") throw new Error(`page (${kind}) got ${JSON.stringify(text)}`);
    console.log(`page received the TCP message via ${kind}`);
  }

  // page -> TCP: MQTT.js publishes to browser/out, stomp.js sends to /queue/browser-out.
  const fromMqtt = new Promise((resolve) => tcp.on("message", (t, p) => resolve(p.toString())));
  await tcp.subscribeAsync("browser/out", { qos: 1 });
  const fromStomp = stompConsumer("/queue/browser-out");
  await stompConsumer.ready;
  await page.evaluate(() => window.sendFromPage("hello from the page"));
  const timeout = (p, what) => Promise.race([p, new Promise((_, j) => setTimeout(() => j(new Error(`${what} timed out`)), WAIT_MS))]);
  const [a, b] = await Promise.all([timeout(fromMqtt, "MQTT consumer"), timeout(fromStomp, "STOMP consumer")]);
  if (a !== "hello from the page via mqtt") throw new Error(`TCP MQTT consumer got ${JSON.stringify(a)}`);
  if (b !== "hello from the page via stomp") throw new Error(`TCP STOMP consumer got ${JSON.stringify(b)}`);
  console.log("TCP consumers received the page's messages (MQTT and STOMP)");
  const errors = await page.evaluate(() => window.status_.errors);
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
} catch (e) {
  console.error("FAILED:", e.message);
  failed = true;
} finally {
  tcp.end(true);
  await browser.close();
  server.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
