// Node's mqtt client against ferromq: one scenario per run, its result as JSON on stdout.
// Usage: node client.js <scenario> <port> <protocolVersion 3|4|5> [qos]
'use strict';
const mqtt = require('mqtt');

const [scenario, port, version, qosArg] = process.argv.slice(2);
const protocolVersion = Number(version);
const url = `mqtt://127.0.0.1:${port}`;
const deadline = setTimeout(() => {
  console.error(`timeout in scenario ${scenario}`);
  process.exit(2);
}, 10000);

// MQTT 3.1 is protocol name MQIsdp at level 3 (the broker refuses MQTT at level 3).
const base = {
  protocolVersion,
  reconnectPeriod: 0,
  ...(protocolVersion === 3 ? { protocolId: 'MQIsdp' } : {}),
};

function connect(clientId, extra = {}) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { clientId, ...base, ...extra });
    c.once('connect', (ack) => resolve([c, ack]));
    c.once('error', reject);
  });
}

function nextMessage(c) {
  return new Promise((resolve) => {
    c.once('message', (topic, payload, packet) =>
      resolve({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain }));
  });
}

const suffix = `${protocolVersion}`;
const persistent = (id) => protocolVersion === 5
  ? { clientId: id, clean: false, properties: { sessionExpiryInterval: 300 } }
  : { clientId: id, clean: false };

const scenarios = {
  async roundtrip() {
    const qos = Number(qosArg);
    const [sub] = await connect(`node-sub-${suffix}-${qos}`);
    await sub.subscribeAsync('node/+/x', { qos });
    const got = nextMessage(sub);
    const [pub] = await connect(`node-pub-${suffix}-${qos}`);
    await pub.publishAsync('node/a.b/x', 'hello', { qos });
    const m = await got;
    await Promise.all([sub.endAsync(), pub.endAsync()]);
    return m;
  },
  async retained() {
    const [pub] = await connect(`node-ret-pub-${suffix}`);
    await pub.publishAsync(`node/ret${suffix}/state`, 'on', { qos: 1, retain: true });
    const [sub] = await connect(`node-ret-sub-${suffix}`);
    const got = nextMessage(sub);
    await sub.subscribeAsync(`node/ret${suffix}/#`, { qos: 1 });
    const m = await got;
    await pub.publishAsync(`node/ret${suffix}/state`, '', { qos: 1, retain: true });
    await Promise.all([sub.endAsync(), pub.endAsync()]);
    return m;
  },
  async persistent() {
    const id = `node-persist-${suffix}`;
    const opts = persistent(id);
    const [first] = await connect(id, opts);
    await first.subscribeAsync(`node/p${suffix}/#`, { qos: 1 });
    await first.endAsync();
    const [pub] = await connect(`node-persist-pub-${suffix}`);
    await pub.publishAsync(`node/p${suffix}/1`, 'queued', { qos: 1 });
    await pub.endAsync();
    const c = mqtt.connect(url, { ...base, ...opts });
    const got = nextMessage(c);
    const ack = await new Promise((resolve) => c.once('connect', resolve));
    const m = await got;
    await c.endAsync();
    return { sessionPresent: ack.sessionPresent, ...m };
  },
};

scenarios[scenario]()
  .then((result) => {
    clearTimeout(deadline);
    console.log(JSON.stringify(result));
  })
  .catch((e) => {
    console.error(e);
    process.exit(1);
  });
