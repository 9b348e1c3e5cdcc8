// kafkajs against a compacted topic: the log cleaner keeps only the latest value per key and removes tombstones
// once delete.retention.ms has passed; a keyless record is refused.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Kafka, logLevel, CompressionTypes } = require('kafkajs');
const { withBroker, waitFor } = require('./broker');

const TEST_TIMEOUT_MS = 240_000;
// The cleaner looks for work every 100 ms on both targets.
const BROKER_CONFIGS = { 'log.cleaner.backoff.ms': 100 };
// Segments roll at the first append 200 ms after a segment's first record; every segment but the active one is
// cleanable at once, and a tombstone lives 200 ms after the clean that first kept it.
const TOPIC_CONFIGS = [
  { name: 'cleanup.policy', value: 'compact' },
  { name: 'segment.ms', value: '200' },
  { name: 'min.cleanable.dirty.ratio', value: '0.01' },
  { name: 'delete.retention.ms', value: '200' },
];
const ROLL_WAIT_MS = 250;

function client(broker) {
  return new Kafka({ clientId: 'compat-kafkajs-compaction', brokers: [broker.bootstrap], logLevel: logLevel.NOTHING });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// As createTopicReady (see broker.js for why the waiting is done here), with the compaction configs.
async function createCompacted(admin, topic) {
  const created = await admin.createTopics({
    waitForLeaders: false,
    topics: [{ topic, numPartitions: 1, configEntries: TOPIC_CONFIGS }],
  });
  assert.equal(created, true);
  await waitFor(async () => {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    return topics[0].partitions.length === 1 && topics[0].partitions[0].leader >= 0;
  }, { what: `${topic} with a leader` });
  await waitFor(async () => (await admin.fetchTopicOffsets(topic)).length === 1, { what: `${topic} offsets` });
}

// Every record of partition 0 from the start up to the high watermark, read by one consumer that seeks back to the
// beginning for each call.
async function readerOf(kafka, admin, topic) {
  const consumer = kafka.consumer({ groupId: `compaction-reader-${Date.now()}`, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = [];
  await consumer.run({
    eachMessage: async ({ message }) => {
      seen.push({ offset: Number(message.offset), key: message.key && message.key.toString(), value: message.value });
    },
  });
  const readAll = async () => {
    const [{ high }] = await admin.fetchTopicOffsets(topic);
    seen = [];
    consumer.seek({ topic, partition: 0, offset: '0' });
    await waitFor(async () => seen.length > 0 && seen[seen.length - 1].offset >= Number(high) - 1, {
      timeoutMs: 20_000,
      what: `records up to ${high}`,
    });
    return seen.filter((r) => r.offset < Number(high));
  };
  return { readAll, stop: () => consumer.disconnect() };
}

for (const [label, compression] of [['uncompressed', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]]) {
test(`a compacted topic keeps the latest value per key and drops tombstones (${label} batches)`, { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: after the cleaner ran, a consumer reading from the beginning sees exactly one record for each live
    // key, with its latest value, and none for a key deleted by a tombstone (once delete.retention.ms passed).
    const kafka = client(broker);
    const admin = kafka.admin();
    const producer = kafka.producer();
    await admin.connect();
    await producer.connect();
    const topic = `kafkajs-compacted-${label}-${Date.now()}`;
    let reader;
    try {
      await createCompacted(admin, topic);
      const keys = ['k0', 'k1', 'k2', 'k3'];
      for (let round = 0; round < 4; round += 1) {
        await producer.send({ topic, compression, messages: keys.map((key) => ({ key, value: `${key}-v${round}`, partition: 0 })) });
        await sleep(ROLL_WAIT_MS);
      }
      await producer.send({ topic, compression, messages: [{ key: 'k0', value: null, partition: 0 }] });
      reader = await readerOf(kafka, admin, topic);
      let filler = 0;
      const compacted = await waitFor(async () => {
        // New segments keep the log dirty, so the cleaner runs again after the tombstone's horizon.
        await sleep(ROLL_WAIT_MS);
        await producer.send({ topic, messages: [{ key: 'filler', value: `f${filler}`, partition: 0 }] });
        filler += 1;
        const records = (await reader.readAll()).filter((r) => r.key !== 'filler');
        const k0 = records.filter((r) => r.key === 'k0');
        const once = ['k1', 'k2', 'k3'].every((key) => records.filter((r) => r.key === key).length === 1);
        return k0.length === 0 && once ? records : null;
      }, { timeoutMs: 90_000, intervalMs: 10, what: 'compaction and tombstone removal' });
      assert.deepEqual(
        compacted.map((r) => [r.key, r.value.toString()]),
        [['k1', 'k1-v3'], ['k2', 'k2-v3'], ['k3', 'k3-v3']],
      );
      // Offsets were kept: the survivors are the last round's records, not renumbered.
      assert.ok(compacted[0].offset >= 13, `offsets preserved: ${compacted.map((r) => r.offset)}`);
    } finally {
      if (reader) await reader.stop();
      await producer.disconnect();
      await admin.disconnect();
    }
  }, BROKER_CONFIGS));
}

test('a keyless record to a compacted topic is refused with INVALID_RECORD', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: a compacted topic refuses a record without a key (Kafka's LogValidator), also inside a gzip batch, and
    // one with a key goes in.
    const kafka = client(broker);
    const admin = kafka.admin();
    const producer = kafka.producer({ retry: { retries: 0 } });
    await admin.connect();
    await producer.connect();
    try {
      const topic = `kafkajs-compacted-keyless-${Date.now()}`;
      await createCompacted(admin, topic);
      await assert.rejects(
        producer.send({ topic, messages: [{ value: 'no key', partition: 0 }] }),
        (e) => e.type === 'INVALID_RECORD' || (e.originalError && e.originalError.type === 'INVALID_RECORD') || /INVALID_RECORD|without key/i.test(String(e)),
      );
      await assert.rejects(
        producer.send({ topic, compression: CompressionTypes.GZIP, messages: [{ key: 'k', value: 'v', partition: 0 }, { value: 'no key', partition: 0 }] }),
        (e) => e.type === 'INVALID_RECORD' || (e.originalError && e.originalError.type === 'INVALID_RECORD') || /INVALID_RECORD|without key/i.test(String(e)),
      );
      const [ok] = await producer.send({ topic, messages: [{ key: 'k', value: 'v', partition: 0 }] });
      assert.equal(ok.errorCode, 0);
    } finally {
      await producer.disconnect();
      await admin.disconnect();
    }
  }, BROKER_CONFIGS));
