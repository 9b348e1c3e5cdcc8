// kafkajs producer: acks and offsets, key-to-partition stickiness, gzip batches; read back with kcat.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Kafka, CompressionTypes, Partitioners, logLevel } = require('kafkajs');
const { withBroker, waitFor, createTopicReady, kcatReadPartition } = require('./broker');

const TEST_TIMEOUT_MS = 240_000;

function client(broker) {
  return new Kafka({ clientId: 'compat-kafkajs', brokers: [broker.bootstrap], logLevel: logLevel.WARN });
}

async function withClients(broker, topic, numPartitions, body) {
  const kafka = client(broker);
  const admin = kafka.admin();
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  await admin.connect();
  await producer.connect();
  try {
    assert.equal(await createTopicReady(admin, topic, numPartitions), true);
    return await body({ admin, producer });
  } finally {
    await producer.disconnect();
    await admin.disconnect();
  }
}

// Highest offset+1 per partition implied by a series of send() results, each acked batch covering `count` records.
function endOffsetsFromAcks(acks) {
  const ends = new Map();
  for (const { partition, baseOffset, count } of acks) {
    const end = BigInt(baseOffset) + BigInt(count);
    if (!ends.has(partition) || ends.get(partition) < end) ends.set(partition, end);
  }
  return ends;
}

test('fetchTopicOffsets reports the end offsets implied by producer acks', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: after acked sends to explicit partitions, fetchTopicOffsets' high watermark = last acked offset + 1 and low = first.
    const topic = `kafkajs-offsets-${Date.now()}`;
    await withClients(broker, topic, 3, async ({ admin, producer }) => {
      const acks = [];
      const counts = [5, 1, 12]; // uneven, so a partition mix-up shows
      for (let round = 0; round < 3; round++) {
        for (let partition = 0; partition < 3; partition++) {
          const messages = Array.from({ length: counts[partition] }, (_, i) => ({
            partition,
            value: `round ${round} partition ${partition} #${i}`,
          }));
          const [result] = await producer.send({ topic, acks: -1, messages });
          assert.equal(result.errorCode, 0);
          assert.equal(result.partition, partition);
          acks.push({ partition, baseOffset: result.baseOffset, count: messages.length });
        }
      }
      const expectedEnd = endOffsetsFromAcks(acks);
      const offsets = await admin.fetchTopicOffsets(topic);
      assert.equal(offsets.length, 3);
      for (const o of offsets) {
        assert.equal(BigInt(o.high), expectedEnd.get(o.partition), `partition ${o.partition} high`);
        assert.equal(o.offset, o.high);
        const firstAck = acks.find((a) => a.partition === o.partition);
        assert.equal(BigInt(o.low), BigInt(firstAck.baseOffset), `partition ${o.partition} low`);
      }
      // And the earliest offsets agree with fetchTopicOffsetsByTimestamp's "from the beginning" view.
      const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, 0);
      for (const o of byTime) {
        const firstAck = acks.find((a) => a.partition === o.partition);
        assert.equal(BigInt(o.offset), BigInt(firstAck.baseOffset));
      }
    });
  }));

test('keyed JSON messages: the same key always lands on the same partition', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: the partition kafkajs reports per key never changes across sends, and kcat reads each record back there.
    const topic = `kafkajs-keyed-${Date.now()}`;
    await withClients(broker, topic, 4, async ({ producer }) => {
      const keys = Array.from({ length: 12 }, (_, i) => `customer-${i}`);
      const partitionOfKey = new Map();
      const sent = []; // { key, value, partition, offset } as the producer was told
      for (let round = 0; round < 5; round++) {
        for (const key of keys) {
          const value = JSON.stringify({ key, round, amount: round * 10 + key.length, note: 'Grüße ✓' });
          const [result] = await producer.send({ topic, acks: -1, messages: [{ key, value }] });
          assert.equal(result.errorCode, 0);
          if (partitionOfKey.has(key)) {
            assert.equal(result.partition, partitionOfKey.get(key), `${key} moved partitions`);
          } else {
            partitionOfKey.set(key, result.partition);
          }
          sent.push({ key, value, partition: result.partition, offset: BigInt(result.baseOffset) });
        }
      }
      assert.ok(new Set(partitionOfKey.values()).size > 1, '12 keys over 4 partitions should use more than one');

      for (let partition = 0; partition < 4; partition++) {
        const expected = sent.filter((s) => s.partition === partition);
        const read = await kcatReadPartition(broker.bootstrap, topic, partition);
        assert.deepEqual(
          read.map((r) => ({ key: r.key, value: r.payload, partition: r.partition, offset: BigInt(r.offset) })),
          expected,
          `partition ${partition}`,
        );
        for (const r of read) assert.equal(JSON.parse(r.payload).key, r.key);
      }
    });
  }));

test('gzip-compressed batches are acked with offsets and read back intact', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: GZIP batches get consecutive acked offsets per partition and decompress to the same records (via kcat).
    const topic = `kafkajs-gzip-${Date.now()}`;
    await withClients(broker, topic, 2, async ({ admin, producer }) => {
      const batchSize = 500;
      const acks = [];
      const sentByPartition = new Map([[0, []], [1, []]]);
      for (let batch = 0; batch < 6; batch++) {
        const partition = batch % 2;
        const messages = Array.from({ length: batchSize }, (_, i) => ({
          partition,
          key: `b${batch}`,
          value: `batch ${batch} record ${i} ` + 'compressible '.repeat(10),
        }));
        const [result] = await producer.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages });
        assert.equal(result.errorCode, 0);
        assert.equal(result.partition, partition);
        const base = BigInt(result.baseOffset);
        const previous = acks.filter((a) => a.partition === partition).pop();
        if (previous) assert.equal(base, BigInt(previous.baseOffset) + BigInt(previous.count), 'batches are contiguous');
        acks.push({ partition, baseOffset: result.baseOffset, count: messages.length });
        messages.forEach((m, i) => sentByPartition.get(partition).push({ ...m, offset: base + BigInt(i) }));
      }

      const expectedEnd = endOffsetsFromAcks(acks);
      for (const o of await admin.fetchTopicOffsets(topic)) {
        assert.equal(BigInt(o.high), expectedEnd.get(o.partition));
      }
      for (const [partition, sent] of sentByPartition) {
        const read = await kcatReadPartition(broker.bootstrap, topic, partition);
        assert.equal(read.length, sent.length, `partition ${partition} count`);
        assert.deepEqual(
          read.map((r) => ({ partition: r.partition, key: r.key, value: r.payload, offset: BigInt(r.offset) })),
          sent,
        );
      }
    });
  }));
