// kafkajs over an SSL listener: `ssl: { ca }` round trip through a consumer group, and client certificates with
// ssl.client.auth=required. Certificates come from harness/certs.py (openssl), the same for both targets.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');
const { Kafka, Partitioners, logLevel } = require('kafkajs');
const { withBroker, waitFor } = require('./broker');

const execFileAsync = promisify(execFile);
const TEST_TIMEOUT_MS = 240_000;
const RECORD_COUNT = 500;
const PYTHON = process.env.COMPAT_PYTHON || path.join(__dirname, '..', '.cache', 'venv', 'bin', 'python');

async function makePki() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'compat-pki-'));
  const { stdout } = await execFileAsync(PYTHON, [path.join(__dirname, '..', 'harness', 'certs.py'), dir]);
  return { dir, ...JSON.parse(stdout.trim().split('\n').pop()) };
}

// The SSL listener as a Kafka user configures it (harness keys are Kafka names for both targets).
function sslConfigs(pki, extra = {}) {
  return {
    'ssl.keystore.type': 'PEM',
    'ssl.keystore.location': pki.server_keystore,
    'ssl.truststore.type': 'PEM',
    'ssl.truststore.location': pki.ca,
    'group.initial.rebalance.delay.ms': 0,
    ...extra,
  };
}

function sslClient(broker, pki, withCertificate) {
  const ssl = { ca: [fs.readFileSync(pki.ca, 'utf8')] };
  if (withCertificate) {
    ssl.cert = fs.readFileSync(pki.client_cert, 'utf8');
    ssl.key = fs.readFileSync(pki.client_key, 'utf8');
  }
  return new Kafka({ clientId: 'compat-kafkajs-tls', brokers: [broker.ssl_bootstrap], ssl, logLevel: logLevel.NOTHING });
}

// Creates a topic, produces RECORD_COUNT records and reads them back through a consumer group, all over SSL.
async function roundTrip(broker, pki, withCertificate) {
  const kafka = sslClient(broker, pki, withCertificate);
  const topic = `kafkajs-tls-${Date.now()}`;
  const admin = kafka.admin();
  // Idempotent, so a retried send cannot put a record in the log twice.
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
    idempotent: true,
    maxInFlightRequests: 1,
  });
  const consumer = kafka.consumer({ groupId: `${topic}-group`, maxWaitTimeInMs: 500 });
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
    // Metadata over SSL names the SSL port, so every later connection stays on TLS.
    const { brokers } = await admin.describeCluster();
    assert.deepEqual(brokers.map((b) => `${b.host}:${b.port}`), [broker.ssl_bootstrap]);
    await producer.connect();
    const values = Array.from({ length: RECORD_COUNT }, (_, i) => `tls record ${i}`);
    for (let i = 0; i < RECORD_COUNT; i += 100) {
      const messages = values.slice(i, i + 100).map((value, j) => ({ partition: (i + j) % 2, value }));
      const results = await producer.send({ topic, acks: -1, messages });
      for (const r of results) assert.equal(r.errorCode, 0);
    }
    // A set: a rebalance while the group forms may deliver uncommitted records again (at least once).
    const seen = new Set();
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void seen.add(message.value.toString()) });
    await waitFor(() => seen.size >= RECORD_COUNT, { timeoutMs: 60_000, what: `${RECORD_COUNT} records over SSL` });
    assert.deepEqual([...seen].sort(), values.slice().sort());
  } finally {
    await consumer.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
    await admin.disconnect();
  }
}

test('kafkajs with ssl: { ca } produces and consumes through a group over the SSL listener', { timeout: TEST_TIMEOUT_MS }, async () => {
  // Proves: a TLS client trusting the test CA creates a topic, produces and group-consumes every record, and is
  // only ever told the SSL port.
  const pki = await makePki();
  try {
    await withBroker((broker) => roundTrip(broker, pki, false), sslConfigs(pki), { sslListener: true });
  } finally {
    fs.rmSync(pki.dir, { recursive: true, force: true });
  }
});

test('kafkajs with a client certificate passes ssl.client.auth=required; without one it is refused', { timeout: TEST_TIMEOUT_MS }, async () => {
  // Proves: mutual TLS round-trips records for a client whose certificate the truststore's CA signed, and a client
  // presenting none cannot even connect an admin.
  const pki = await makePki();
  try {
    await withBroker(
      async (broker) => {
        await roundTrip(broker, pki, true);
        const anonymous = new Kafka({
          clientId: 'compat-kafkajs-tls-anonymous',
          brokers: [broker.ssl_bootstrap],
          ssl: { ca: [fs.readFileSync(pki.ca, 'utf8')] },
          retry: { retries: 0 },
          connectionTimeout: 5_000,
          logLevel: logLevel.NOTHING,
        }).admin();
        await assert.rejects(async () => {
          await anonymous.connect();
          await anonymous.listTopics();
        });
        await anonymous.disconnect().catch(() => {});
      },
      sslConfigs(pki, { 'ssl.client.auth': 'required' }),
      { sslListener: true },
    );
  } finally {
    fs.rmSync(pki.dir, { recursive: true, force: true });
  }
});
