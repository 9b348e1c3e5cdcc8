// The kafkajs application patterns users bring, on the broker:
//  - dead-letter topic: records the handler cannot process are parked, with headers saying why, and the group moves on;
//  - retry topics: transient failures go to a retry topic with an attempt count and a not-before time, a retry
//    consumer re-runs them after the delay, and records that keep failing end on the dead-letter topic;
//  - saga (orchestrated): an order's steps run as commands and replies over topics keyed by saga id, and a failed
//    step triggers the compensation of the steps before it.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Kafka, logLevel } = require('kafkajs');
const { withBroker, waitFor, createTopicReady } = require('./broker');

const TEST_TIMEOUT_MS = 240_000;
// The Kafka target already runs with this (harness/broker.py); runnel's default would add 3 s per new group.
const BROKER_CONFIG = { 'group.initial.rebalance.delay.ms': 0 };
const CONSUMER_OPTS = { sessionTimeout: 10_000, heartbeatInterval: 500, maxWaitTimeInMs: 100 };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function client(broker, clientId) {
  return new Kafka({ clientId, brokers: [broker.bootstrap], logLevel: logLevel.NOTHING });
}

// Runs `body(kafka, admin, track)` with `topics` created; disconnects every consumer/producer passed to `track`.
async function withApp(broker, clientId, topics, body) {
  const kafka = client(broker, clientId);
  const admin = kafka.admin();
  await admin.connect();
  const tracked = [];
  try {
    for (const [topic, partitions] of topics) await createTopicReady(admin, topic, partitions);
    await body(kafka, admin, (c) => { tracked.push(c); return c; });
  } finally {
    for (const c of tracked.reverse()) await c.disconnect().catch(() => {});
    await admin.disconnect();
  }
}

// Every record of `topic` from the start, read by a throwaway group until `done(records)` holds.
async function readAll(kafka, topic, done, what) {
  const consumer = kafka.consumer({ groupId: `reader-${topic}-${Date.now()}`, ...CONSUMER_OPTS });
  await consumer.connect();
  const records = [];
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ partition, message }) => { records.push({ partition, message }); } });
    await waitFor(async () => done(records), { timeoutMs: 60_000, what });
    return records;
  } finally {
    await consumer.disconnect();
  }
}

const header = (message, name) => (message.headers[name] === undefined ? undefined : message.headers[name].toString());

test('dead-letter topic: unprocessable records parked with their cause, the group moves on', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withBroker(async (broker) => {
    await withApp(broker, 'compat-kafkajs-dlt', [['orders', 3], ['orders.DLT', 1]], async (kafka, admin, track) => {
      const producer = track(kafka.producer({ idempotent: true }));
      await producer.connect();
      const sent = [];
      for (let i = 0; i < 60; i++) {
        const value = i % 7 === 3 ? `poison ${i}` : `order ${i}`;
        sent.push({ key: `customer-${i % 5}`, value });
      }
      await producer.send({ topic: 'orders', acks: -1, messages: sent });

      const processed = [];
      const consumer = track(kafka.consumer({ groupId: 'billing', ...CONSUMER_OPTS }));
      await consumer.connect();
      await consumer.subscribe({ topic: 'orders', fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ topic, partition, message }) => {
          try {
            if (message.value.toString().startsWith('poison')) throw new Error('cannot parse order');
            processed.push({ key: message.key.toString(), value: message.value.toString() });
          } catch (err) {
            await producer.send({
              topic: 'orders.DLT',
              acks: -1,
              messages: [{
                key: message.key,
                value: message.value,
                headers: {
                  'dlt.original.topic': topic,
                  'dlt.original.partition': String(partition),
                  'dlt.original.offset': message.offset,
                  'dlt.exception.message': err.message,
                },
              }],
            });
          }
        },
      });

      const poison = sent.filter((m) => m.value.startsWith('poison'));
      const good = sent.filter((m) => !m.value.startsWith('poison'));
      await waitFor(async () => processed.length === good.length, { what: 'every good order processed' });
      // Each customer's orders in the order they were sent, each once.
      for (let c = 0; c < 5; c++) {
        const key = `customer-${c}`;
        assert.deepEqual(processed.filter((m) => m.key === key), good.filter((m) => m.key === key));
      }

      const parked = await readAll(kafka, 'orders.DLT', (r) => r.length >= poison.length, 'the dead letters');
      assert.deepEqual(parked.map(({ message }) => message.value.toString()).sort(), poison.map((m) => m.value).sort());
      for (const { message } of parked) {
        assert.equal(header(message, 'dlt.original.topic'), 'orders');
        assert.equal(header(message, 'dlt.exception.message'), 'cannot parse order');
        // The header points at the very record that failed.
        const partition = Number(header(message, 'dlt.original.partition'));
        const offset = header(message, 'dlt.original.offset');
        const original = await readAll(kafka, 'orders', (r) => r.some((x) => x.partition === partition && x.message.offset === offset), `orders ${partition}@${offset}`);
        const found = original.find((x) => x.partition === partition && x.message.offset === offset);
        assert.equal(found.message.value.toString(), message.value.toString());
        assert.equal(found.message.key.toString(), message.key.toString());
      }

      // The group committed past every record, parked ones included.
      await consumer.stop();
      const ends = await admin.fetchTopicOffsets('orders');
      const [committed] = await admin.fetchOffsets({ groupId: 'billing', topics: ['orders'] });
      for (const { partition, high } of ends) {
        assert.equal(committed.partitions.find((p) => p.partition === partition).offset, high, `partition ${partition}`);
      }
    });
  }, BROKER_CONFIG);
});

test('retry topic: transient failures retried after a delay, persistent ones dead-lettered', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withBroker(async (broker) => {
    const MAX_ATTEMPTS = 3;
    const DELAY_MS = 300;
    const topics = [['payments', 2], ['payments.retry', 1], ['payments.DLT', 1]];
    await withApp(broker, 'compat-kafkajs-retry', topics, async (kafka, admin, track) => {
      const producer = track(kafka.producer({ idempotent: true }));
      await producer.connect();
      // flaky-N fails N times then succeeds; broken always fails.
      const payments = [];
      for (let i = 0; i < 30; i++) {
        const kind = i % 10 === 9 ? 'broken' : `flaky-${i % 3}`;
        payments.push({ key: `payment-${i}`, value: kind });
      }
      const failuresLeft = new Map(payments.map((p) => [p.key, p.value === 'broken' ? Infinity : Number(p.value.split('-')[1])]));
      const succeeded = new Map();
      const attemptsSeen = new Map();
      const attemptTimes = new Map();
      const handle = (key, attempt) => {
        attemptsSeen.set(key, [...(attemptsSeen.get(key) || []), attempt]);
        attemptTimes.set(key, [...(attemptTimes.get(key) || []), Date.now()]);
        const left = failuresLeft.get(key);
        if (left > 0) {
          failuresLeft.set(key, left - 1);
          throw new Error(`payment gateway busy (${key})`);
        }
        succeeded.set(key, (succeeded.get(key) || 0) + 1);
      };
      const onFailure = async (message, attempt, err) => {
        const next = attempt + 1;
        const target = next > MAX_ATTEMPTS ? 'payments.DLT' : 'payments.retry';
        await producer.send({
          topic: target,
          acks: -1,
          messages: [{
            key: message.key,
            value: message.value,
            headers: { attempt: String(next), 'not-before': String(Date.now() + DELAY_MS), error: err.message },
          }],
        });
      };

      const main = track(kafka.consumer({ groupId: 'payments-main', ...CONSUMER_OPTS }));
      await main.connect();
      await main.subscribe({ topic: 'payments', fromBeginning: true });
      await main.run({
        eachMessage: async ({ message }) => {
          try { handle(message.key.toString(), 1); } catch (err) { await onFailure(message, 1, err); }
        },
      });
      const retry = track(kafka.consumer({ groupId: 'payments-retry', ...CONSUMER_OPTS }));
      await retry.connect();
      await retry.subscribe({ topic: 'payments.retry', fromBeginning: true });
      await retry.run({
        eachMessage: async ({ message }) => {
          const wait = Number(header(message, 'not-before')) - Date.now();
          if (wait > 0) await sleep(wait);
          const attempt = Number(header(message, 'attempt'));
          try { handle(message.key.toString(), attempt); } catch (err) { await onFailure(message, attempt, err); }
        },
      });

      await producer.send({ topic: 'payments', acks: -1, messages: payments });
      const recoverable = payments.filter((p) => p.value !== 'broken');
      const broken = payments.filter((p) => p.value === 'broken');
      await waitFor(async () => succeeded.size === recoverable.length, { what: 'every recoverable payment done' });
      for (const p of recoverable) {
        assert.equal(succeeded.get(p.key), 1, `${p.key} succeeded once`);
        const failures = Number(p.value.split('-')[1]);
        assert.deepEqual(attemptsSeen.get(p.key), Array.from({ length: failures + 1 }, (_, i) => i + 1), p.key);
      }
      const dead = await readAll(kafka, 'payments.DLT', (r) => r.length >= broken.length, 'the dead-lettered payments');
      assert.deepEqual(dead.map(({ message }) => message.key.toString()).sort(), broken.map((p) => p.key).sort());
      for (const { message } of dead) {
        assert.equal(header(message, 'attempt'), String(MAX_ATTEMPTS + 1));
        assert.match(header(message, 'error'), /payment gateway busy/);
      }
      for (const p of broken) assert.deepEqual(attemptsSeen.get(p.key), [1, 2, 3]);
      // Every retry ran at least the back-off after the attempt before it.
      for (const [key, times] of attemptTimes) {
        for (let i = 1; i < times.length; i++) {
          assert.ok(times[i] - times[i - 1] >= DELAY_MS - 5, `${key} attempt ${i + 1} came ${times[i] - times[i - 1]} ms after the last`);
        }
      }
    });
  }, BROKER_CONFIG);
});

test('saga: steps as commands and replies keyed by saga id; a failed step compensates the ones before', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withBroker(async (broker) => {
    const topics = [['saga.payment.commands', 2], ['saga.inventory.commands', 2], ['saga.replies', 3], ['saga.outcomes', 1]];
    await withApp(broker, 'compat-kafkajs-saga', topics, async (kafka, admin, track) => {
      const producer = track(kafka.producer({ idempotent: true }));
      await producer.connect();
      const send = (topic, sagaId, body) => producer.send({
        topic, acks: -1, messages: [{ key: sagaId, value: JSON.stringify(body) }],
      });

      // Participants: payment charges and refunds; inventory reserves, failing for out-of-stock items.
      const PAST = { charge: 'charged', refund: 'refunded' };
      const ledger = new Map(); // sagaId -> charged amount (net)
      const payment = track(kafka.consumer({ groupId: 'payment-service', ...CONSUMER_OPTS }));
      await payment.connect();
      await payment.subscribe({ topic: 'saga.payment.commands', fromBeginning: true });
      await payment.run({
        eachMessage: async ({ message }) => {
          const sagaId = message.key.toString();
          const command = JSON.parse(message.value.toString());
          if (command.type === 'charge') ledger.set(sagaId, (ledger.get(sagaId) || 0) + command.amount);
          if (command.type === 'refund') ledger.set(sagaId, (ledger.get(sagaId) || 0) - command.amount);
          await send('saga.replies', sagaId, { step: 'payment', type: PAST[command.type], ok: true });
        },
      });
      const reserved = new Set();
      const inventory = track(kafka.consumer({ groupId: 'inventory-service', ...CONSUMER_OPTS }));
      await inventory.connect();
      await inventory.subscribe({ topic: 'saga.inventory.commands', fromBeginning: true });
      await inventory.run({
        eachMessage: async ({ message }) => {
          const sagaId = message.key.toString();
          const command = JSON.parse(message.value.toString());
          const ok = command.item !== 'out-of-stock';
          if (ok) reserved.add(sagaId);
          await send('saga.replies', sagaId, { step: 'inventory', type: 'reserve', ok });
        },
      });

      // The orchestrator: replies in order per saga (same key, same partition) drive each saga's state.
      const sagas = new Map();
      const history = new Map();
      const orchestrator = track(kafka.consumer({ groupId: 'order-orchestrator', ...CONSUMER_OPTS }));
      await orchestrator.connect();
      await orchestrator.subscribe({ topic: 'saga.replies', fromBeginning: true });
      await orchestrator.run({
        eachMessage: async ({ message }) => {
          const sagaId = message.key.toString();
          const reply = JSON.parse(message.value.toString());
          const saga = sagas.get(sagaId);
          history.set(sagaId, [...(history.get(sagaId) || []), `${reply.step}:${reply.type}:${reply.ok}`]);
          if (reply.step === 'payment' && reply.type === 'charged') {
            saga.state = 'charged';
            await send('saga.inventory.commands', sagaId, { item: saga.item });
          } else if (reply.step === 'inventory' && reply.ok) {
            saga.state = 'completed';
            await send('saga.outcomes', sagaId, { outcome: 'completed' });
          } else if (reply.step === 'inventory') {
            saga.state = 'compensating';
            await send('saga.payment.commands', sagaId, { type: 'refund', amount: saga.amount });
          } else if (reply.step === 'payment' && reply.type === 'refunded') {
            saga.state = 'aborted';
            await send('saga.outcomes', sagaId, { outcome: 'aborted' });
          }
        },
      });

      const orders = [];
      for (let i = 0; i < 24; i++) {
        orders.push({ sagaId: `order-${i}`, amount: 10 + i, item: i % 4 === 1 ? 'out-of-stock' : `item-${i}` });
      }
      for (const o of orders) {
        sagas.set(o.sagaId, { state: 'started', amount: o.amount, item: o.item });
        await send('saga.payment.commands', o.sagaId, { type: 'charge', amount: o.amount });
      }

      const outcomes = await readAll(kafka, 'saga.outcomes', (r) => r.length >= orders.length, 'every saga finished');
      assert.equal(outcomes.length, orders.length, 'one outcome per saga');
      for (const o of orders) {
        const failed = o.item === 'out-of-stock';
        const outcome = outcomes.find(({ message }) => message.key.toString() === o.sagaId);
        assert.equal(JSON.parse(outcome.message.value.toString()).outcome, failed ? 'aborted' : 'completed', o.sagaId);
        assert.equal(sagas.get(o.sagaId).state, failed ? 'aborted' : 'completed', o.sagaId);
        // Money: charged and kept on success; charged then refunded on failure.
        assert.equal(ledger.get(o.sagaId), failed ? 0 : o.amount, o.sagaId);
        assert.equal(reserved.has(o.sagaId), !failed, o.sagaId);
        assert.deepEqual(history.get(o.sagaId), failed
          ? ['payment:charged:true', 'inventory:reserve:false', 'payment:refunded:true']
          : ['payment:charged:true', 'inventory:reserve:true'], o.sagaId);
      }
    });
  }, BROKER_CONFIG);
});
