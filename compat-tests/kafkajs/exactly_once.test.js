// kafkajs transactions: producer({ transactionalId }) then transaction().send / sendOffsets / commit / abort,
// read back by read_committed and read_uncommitted consumers; a second producer with the same id fences the first.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Kafka, Partitioners, logLevel } = require('kafkajs');
const { withBroker, waitFor, createTopicReady } = require('./broker');

const TEST_TIMEOUT_MS = 300_000;
// Kafka's target already runs with these (harness/broker.py); runnel gets the same so a group or a
// transaction coordinator answers without its default start-up delays.
const BROKER_CONFIG = { 'group.initial.rebalance.delay.ms': 0 };
const CONSUMER_OPTS = { sessionTimeout: 10_000, heartbeatInterval: 500, maxWaitTimeInMs: 500 };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// What kafkajs logs as errors during ordinary coordinator lookups and rebalances, and while a fenced
// producer's transaction is being aborted by the coordinator; anything else is printed.
const EXPECTED_LOG = [
  /group is rebalancing/i,
  /coordinator is not available/i,
  /coordinator is loading/i,
  /not the leader for that topic-partition/i,
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

function txnProducer(kafka, transactionalId) {
  return kafka.producer({
    transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  });
}

// `count` records to each of `partitions`, values `${tag}-p${partition}-${i}`.
function messages(tag, partitions, count) {
  return partitions.flatMap((partition) =>
    Array.from({ length: count }, (_, i) => ({ partition, value: `${tag}-p${partition}-${i}` })),
  );
}

// Reads `topic` from the beginning in a fresh group (read_committed unless `readUncommitted`), until
// `done(seen)` holds, then a little longer so anything extra shows up; returns [{ partition, offset, value }].
async function readAll(kafka, topic, { readUncommitted, done, what }) {
  const consumer = kafka.consumer({ groupId: `read-${readUncommitted ? 'ru' : 'rc'}-${Date.now()}`, readUncommitted, ...CONSUMER_OPTS });
  const seen = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        seen.push({ partition, offset: Number(message.offset), value: message.value.toString() });
      },
    });
    await waitFor(() => done(seen), { timeoutMs: 90_000, what });
    await sleep(1500);
  } finally {
    await consumer.disconnect();
  }
  return seen.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

const valuesOf = (records) => records.map((r) => r.value);
const sortedValues = (records) => valuesOf(records).slice().sort();
const hasAll = (wanted) => (seen) => {
  const got = new Set(valuesOf(seen));
  return wanted.every((m) => got.has(m.value));
};

// The committed offset of `topic` partition 0 for `groupId` ('-1': none), as the admin client fetches it.
async function committedOffset(admin, groupId, topic) {
  const [entry] = await admin.fetchOffsets({ groupId, topics: [topic] });
  return entry.partitions.find((p) => p.partition === 0).offset;
}

// The Kafka error type of `err` or of any error it wraps (kafkajs wraps retried errors in `cause`/`originalError`).
function errorTypes(err) {
  const types = [];
  for (let e = err, depth = 0; e && depth < 10; e = e.cause || e.originalError, depth++) {
    if (e.type) types.push(e.type);
  }
  return types;
}

test('a committed transaction is seen by read_committed and read_uncommitted, an aborted one only by read_uncommitted', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: records of a committed transaction reach both isolation levels, once each and in order; records of an aborted transaction reach read_uncommitted only; an open transaction holds read_committed back.
    const kafka = client(broker);
    const admin = kafka.admin();
    const producer = txnProducer(kafka, `txn-visibility-${Date.now()}`);
    const topic = `txn-visibility-${Date.now()}`;
    await admin.connect();
    await producer.connect();
    try {
      assert.equal(await createTopicReady(admin, topic, 2), true);
      const committed1 = messages('commit1', [0, 1], 5);
      const aborted = messages('abort', [0, 1], 4);
      const committed2 = messages('commit2', [0, 1], 3);

      let txn = await producer.transaction();
      await txn.send({ topic, acks: -1, messages: committed1 });
      await txn.commit();

      txn = await producer.transaction();
      await txn.send({ topic, acks: -1, messages: aborted });
      await txn.abort();

      // An open transaction: read_committed must stop before it, so it is committed only after a
      // read_committed consumer already reads past everything else.
      txn = await producer.transaction();
      await txn.send({ topic, acks: -1, messages: committed2 });
      const before = await readAll(kafka, topic, {
        readUncommitted: false,
        done: hasAll(committed1),
        what: 'the first committed transaction, read_committed, while the third is open',
      });
      assert.deepEqual(sortedValues(before), valuesOf(committed1).slice().sort(), 'read_committed while a transaction is open');
      await txn.commit();

      const rc = await readAll(kafka, topic, { readUncommitted: false, done: hasAll(committed2), what: 'both committed transactions, read_committed' });
      assert.deepEqual(sortedValues(rc), valuesOf([...committed1, ...committed2]).slice().sort(), 'read_committed');
      // Per partition in produce order: commit1 then commit2.
      for (const partition of [0, 1]) {
        const got = valuesOf(rc.filter((r) => r.partition === partition));
        const want = valuesOf([...committed1, ...committed2].filter((m) => m.partition === partition));
        assert.deepEqual(got, want, `read_committed order on partition ${partition}`);
      }

      const ru = await readAll(kafka, topic, { readUncommitted: true, done: hasAll(committed2), what: 'everything, read_uncommitted' });
      for (const partition of [0, 1]) {
        const got = valuesOf(ru.filter((r) => r.partition === partition));
        const want = valuesOf([...committed1, ...aborted, ...committed2].filter((m) => m.partition === partition));
        assert.deepEqual(got, want, `read_uncommitted on partition ${partition}: committed, aborted and committed records in produce order`);
      }
      // The control records (markers) take offsets: read_uncommitted offsets are not dense.
      const p0 = ru.filter((r) => r.partition === 0).map((r) => r.offset);
      assert.ok(p0[p0.length - 1] - p0[0] + 1 > p0.length, `markers between the transactions take offsets: ${p0}`);
    } finally {
      await producer.disconnect();
      await admin.disconnect();
    }
  }, BROKER_CONFIG));

test('consume-transform-produce: sendOffsets take effect for the group only when the transaction commits', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: offsets sent with transaction.sendOffsets are invisible to the group while the transaction is open, visible once it commits, never after it aborts; a group consumer resumes at the committed offset; outputs follow the same rule for read_committed.
    const kafka = client(broker);
    const admin = kafka.admin();
    const stamp = Date.now();
    const input = `ctp-in-${stamp}`;
    const output = `ctp-out-${stamp}`;
    const group = `ctp-group-${stamp}`;
    const plain = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
    const producer = txnProducer(kafka, `ctp-${stamp}`);
    await admin.connect();
    await plain.connect();
    await producer.connect();
    try {
      assert.equal(await createTopicReady(admin, input, 1), true);
      assert.equal(await createTopicReady(admin, output, 1), true);
      const inputs = Array.from({ length: 12 }, (_, i) => ({ partition: 0, value: `in-${i}` }));
      const [sent] = await plain.send({ topic: input, acks: -1, messages: inputs });
      const base = Number(sent.baseOffset);
      const transform = (from, to) => inputs.slice(from, to).map((m) => ({ partition: 0, value: m.value.toUpperCase() }));
      const sendOffsets = (txn, next) =>
        txn.sendOffsets({ consumerGroupId: group, topics: [{ topic: input, partitions: [{ partition: 0, offset: String(base + next) }] }] });

      // Inputs 0..4: outputs and the offset in one transaction, committed.
      let txn = await producer.transaction();
      await txn.send({ topic: output, acks: -1, messages: transform(0, 5) });
      await sendOffsets(txn, 5);
      assert.equal(await committedOffset(admin, group, input), '-1', 'offsets visible before the commit');
      await txn.commit();
      await waitFor(async () => (await committedOffset(admin, group, input)) === String(base + 5), {
        what: `group offset ${base + 5} after the commit`,
      });

      // Inputs 5..9: processed, then aborted; the group stays at 5.
      txn = await producer.transaction();
      await txn.send({ topic: output, acks: -1, messages: transform(5, 10) });
      await sendOffsets(txn, 10);
      await txn.abort();
      await sleep(2000); // markers are written after EndTxn answers: give a wrong offset time to appear
      assert.equal(await committedOffset(admin, group, input), String(base + 5), 'offset after the abort');

      // A member of the group resumes where the committed transaction left it: at input 5.
      const consumer = kafka.consumer({ groupId: group, ...CONSUMER_OPTS });
      const resumed = [];
      await consumer.connect();
      await consumer.subscribe({ topics: [input], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ message }) => {
          resumed.push({ offset: Number(message.offset), value: message.value.toString() });
        },
      });
      await waitFor(() => resumed.length >= inputs.length - 5, { timeoutMs: 90_000, what: 'the inputs after the committed offset' });
      await consumer.disconnect();
      assert.deepEqual(resumed.map((r) => r.value), valuesOf(inputs.slice(5)), 'the group resumed at its transactional offset');
      assert.equal(resumed[0].offset, base + 5);

      // Reprocess 5..11 and commit: the group reaches the end, read_committed output has no aborted record.
      txn = await producer.transaction();
      await txn.send({ topic: output, acks: -1, messages: transform(5, 12) });
      await sendOffsets(txn, 12);
      await txn.commit();
      await waitFor(async () => (await committedOffset(admin, group, input)) === String(base + 12), {
        what: `group offset ${base + 12} after the second commit`,
      });
      const wanted = transform(0, 12);
      const rc = await readAll(kafka, output, { readUncommitted: false, done: hasAll(wanted), what: 'every output once, read_committed' });
      assert.deepEqual(valuesOf(rc), valuesOf(wanted), 'read_committed output: each input transformed exactly once');
      const ru = await readAll(kafka, output, { readUncommitted: true, done: hasAll(wanted), what: 'every output, read_uncommitted' });
      assert.deepEqual(valuesOf(ru), valuesOf([...transform(0, 5), ...transform(5, 10), ...transform(5, 12)]), 'read_uncommitted output');
    } finally {
      await producer.disconnect();
      await plain.disconnect();
      await admin.disconnect();
    }
  }, BROKER_CONFIG));

test('a second producer with the same transactional id fences the first', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: initialising a second producer with the same transactionalId aborts the first one's open transaction and fences it: the first gets a fencing error on its next send and on commit; the second's transaction commits; read_committed sees only the second's records.
    const kafka = client(broker);
    const admin = kafka.admin();
    const stamp = Date.now();
    const topic = `fence-${stamp}`;
    const id = `fence-${stamp}`;
    const first = txnProducer(kafka, id);
    const second = txnProducer(kafka, id);
    await admin.connect();
    await first.connect();
    await second.connect();
    try {
      assert.equal(await createTopicReady(admin, topic, 1), true);
      const zombie = await first.transaction();
      await zombie.send({ topic, acks: -1, messages: messages('zombie', [0], 3) });

      const txn = await second.transaction(); // InitProducerId: aborts the zombie's transaction, bumps the epoch
      await txn.send({ topic, acks: -1, messages: messages('second', [0], 3) });

      // kafkajs speaks Produce v7 and EndTxn v1: Kafka answers both with INVALID_PRODUCER_EPOCH (EndTxn
      // below v2 gets PRODUCER_FENCED mapped to it).
      const sendErr = await zombie.send({ topic, acks: -1, messages: messages('zombie-late', [0], 1) }).then(() => null, (e) => e);
      assert.ok(sendErr, 'the fenced producer could still send');
      const sendTypes = errorTypes(sendErr);
      assert.ok(
        sendTypes.includes('INVALID_PRODUCER_EPOCH'),
        `send by the fenced producer failed with ${sendTypes.join(' <- ') || sendErr}`,
      );
      const commitErr = await zombie.commit().then(() => null, (e) => e);
      assert.ok(commitErr, 'the fenced producer could still commit');
      const commitTypes = errorTypes(commitErr);
      assert.ok(
        commitTypes.includes('INVALID_PRODUCER_EPOCH'),
        `commit by the fenced producer failed with ${commitTypes.join(' <- ') || commitErr}`,
      );
      console.log(`fenced producer errors: send ${sendTypes.join(' <- ')}, commit ${commitTypes.join(' <- ')}`);

      await txn.commit();
      const want = messages('second', [0], 3);
      const rc = await readAll(kafka, topic, { readUncommitted: false, done: hasAll(want), what: "the second producer's records" });
      assert.deepEqual(valuesOf(rc), valuesOf(want), 'read_committed sees only the live producer');
      const ru = await readAll(kafka, topic, { readUncommitted: true, done: hasAll(want), what: 'everything, read_uncommitted' });
      assert.deepEqual(valuesOf(ru), valuesOf([...messages('zombie', [0], 3), ...want]), "read_uncommitted: the zombie's aborted records, then the second's; the late send never stored");
    } finally {
      await first.disconnect();
      await second.disconnect();
      await admin.disconnect();
    }
  }, BROKER_CONFIG));
