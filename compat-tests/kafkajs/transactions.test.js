// kafkajs transactional producer (transaction version 1: EndTxn below v5): committed records reach
// read_committed consumers, aborted ones only read_uncommitted consumers; a second producer with the
// same transactional id fences the first.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Kafka, logLevel } = require('kafkajs');
const { withBroker, waitFor, createTopicReady } = require('./broker');

const TEST_TIMEOUT_MS = 240_000;
const BROKER_CONFIG = { 'group.initial.rebalance.delay.ms': 0 };
const CONSUMER_OPTS = { sessionTimeout: 10_000, heartbeatInterval: 500, maxWaitTimeInMs: 500 };

// What kafkajs logs as errors while a coordinator is first looked up or loads; anything else is printed.
const EXPECTED_LOG = [
  /group is rebalancing/i,
  /coordinator is not available/i,
  /coordinator is loading/i,
  /not the correct coordinator/i,
  /concurrent transactions/i,
  /another concurrent operation on the same transaction/i,
  /operation with an old epoch/i,
];

function logCreator() {
  return ({ level, log }) => {
    const text = `${log.message} ${log.error || ''}`;
    if (EXPECTED_LOG.some((re) => re.test(text))) return;
    const { message, ...rest } = log;
    const name = Object.keys(logLevel).find((k) => logLevel[k] === level) || level;
    console.error(`[kafkajs ${name}] ${message} ${JSON.stringify(rest)}`);
  };
}

function client(broker) {
  return new Kafka({ clientId: 'compat-kafkajs-txn', brokers: [broker.bootstrap], logLevel: logLevel.WARN, logCreator });
}

// Consumes `topic` from the beginning in a fresh group until `expected` values arrived (and a little
// longer, so an extra record would show); returns the values in arrival order per partition.
async function consumeAll(kafka, topic, { readUncommitted, expected }) {
  const consumer = kafka.consumer({ groupId: `g-${readUncommitted}-${Date.now()}`, readUncommitted, ...CONSUMER_OPTS });
  const values = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        values.push(message.value.toString());
      },
    });
    await waitFor(() => values.length >= expected, { timeoutMs: 60_000, what: `${expected} records from ${topic}` });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
  } finally {
    await consumer.disconnect();
  }
  return values;
}

test('committed transactions are read, aborted ones only uncommitted', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: transaction.send + commit is visible to read_committed, send + abort is not (but is to
    // read_uncommitted), across two partitions and three transactions of one producer.
    const topic = `kafkajs-txn-${Date.now()}`;
    const kafka = client(broker);
    const admin = kafka.admin();
    await admin.connect();
    const producer = kafka.producer({ transactionalId: `txn-${Date.now()}`, idempotent: true, maxInFlightRequests: 1 });
    try {
      assert.equal(await createTopicReady(admin, topic, 2), true);
      await producer.connect();
      const send = async (tag, commit) => {
        const txn = await producer.transaction();
        await txn.send({
          topic,
          messages: [0, 1].flatMap((partition) => [0, 1].map((i) => ({ partition, value: `${tag}-p${partition}-${i}` }))),
        });
        if (commit) await txn.commit();
        else await txn.abort();
      };
      await send('first', true);
      await send('dropped', false);
      await send('second', true);

      const committed = await consumeAll(kafka, topic, { readUncommitted: false, expected: 8 });
      assert.deepEqual(
        [...committed].sort(),
        ['first', 'second'].flatMap((tag) => [0, 1].flatMap((p) => [0, 1].map((i) => `${tag}-p${p}-${i}`))).sort(),
      );
      for (const p of [0, 1]) {
        const inPartition = committed.filter((v) => v.includes(`-p${p}-`));
        assert.deepEqual(inPartition, [`first-p${p}-0`, `first-p${p}-1`, `second-p${p}-0`, `second-p${p}-1`]);
      }
      const everything = await consumeAll(kafka, topic, { readUncommitted: true, expected: 12 });
      assert.equal(everything.length, 12);
      assert.equal(everything.filter((v) => v.startsWith('dropped-')).length, 4);
    } finally {
      await producer.disconnect();
      await admin.disconnect();
    }
  }, BROKER_CONFIG));

test('a second producer with the same transactional id fences the first', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: after another producer initialises the transactional id, the first one's commit fails
    // (fenced) and its records never reach read_committed consumers.
    const topic = `kafkajs-fence-${Date.now()}`;
    const transactionalId = `fence-${Date.now()}`;
    const kafka = client(broker);
    const admin = kafka.admin();
    await admin.connect();
    const zombie = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 });
    const fresh = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 });
    try {
      assert.equal(await createTopicReady(admin, topic, 1), true);
      await zombie.connect();
      const old = await zombie.transaction();
      await old.send({ topic, messages: [{ partition: 0, value: 'zombie' }] });
      await fresh.connect();
      const txn = await fresh.transaction();
      await txn.send({ topic, messages: [{ partition: 0, value: 'fresh' }] });
      await txn.commit();
      await assert.rejects(old.commit(), (err) => /fenced|epoch/i.test(`${err.type} ${err.message}`));
      const committed = await consumeAll(kafka, topic, { readUncommitted: false, expected: 1 });
      assert.deepEqual(committed, ['fresh']);
    } finally {
      await zombie.disconnect().catch(() => {});
      await fresh.disconnect();
      await admin.disconnect();
    }
  }, BROKER_CONFIG));
