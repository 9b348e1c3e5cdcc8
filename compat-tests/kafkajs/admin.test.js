// kafkajs admin client: create, list, delete and re-create topics.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Kafka, logLevel } = require('kafkajs');
const { withBroker, waitFor, createTopicReady } = require('./broker');

const TEST_TIMEOUT_MS = 240_000;

function client(broker) {
  return new Kafka({ clientId: 'compat-kafkajs', brokers: [broker.bootstrap], logLevel: logLevel.WARN });
}

test('createTopics/listTopics/deleteTopics, then re-create the same name', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: a created topic is listed with its partitions, is gone after delete, and its name can be reused.
    const admin = client(broker).admin();
    await admin.connect();
    try {
      const topic = `kafkajs-admin-${Date.now()}`;
      assert.equal(await createTopicReady(admin, topic, 3), true);
      assert.ok((await admin.listTopics()).includes(topic));
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
      assert.equal(topics[0].partitions.length, 3);
      assert.deepEqual(topics[0].partitions.map((p) => p.partitionId).sort(), [0, 1, 2]);

      // Creating it again is not an error for kafkajs: it reports `false` (TOPIC_ALREADY_EXISTS underneath).
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] }), false);

      await admin.deleteTopics({ topics: [topic], timeout: 30_000 });
      await waitFor(async () => !(await admin.listTopics()).includes(topic), { what: `${topic} gone from listTopics` });

      // Re-create with a different partition count: the new topic must not inherit the old one.
      assert.equal(await createTopicReady(admin, topic, 2), true);
      const recreated = await waitFor(
        async () => {
          const md = await admin.fetchTopicMetadata({ topics: [topic] });
          return md.topics[0].partitions.length === 2 ? md : null;
        },
        { what: `${topic} re-created with 2 partitions` },
      );
      assert.equal(recreated.topics[0].name, topic);
      const offsets = await admin.fetchTopicOffsets(topic);
      assert.deepEqual(offsets.map((o) => o.high), ['0', '0'], 'a re-created topic starts empty');
    } finally {
      await admin.disconnect();
    }
  }));

test('createPartitions: the new partitions take writes and a consumer group reads them', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: a topic grown with admin.createPartitions shows the new count in metadata, a producer writes
    // to a new partition, a consumer group reads every partition's records, and a count that is not an
    // increase is refused with INVALID_PARTITIONS (validate_only included).
    const kafka = client(broker);
    const admin = kafka.admin();
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    const consumer = kafka.consumer({ groupId: `kafkajs-grow-${Date.now()}`, maxWaitTimeInMs: 500 });
    await admin.connect();
    await producer.connect();
    try {
      const topic = `kafkajs-grow-${Date.now()}`;
      assert.equal(await createTopicReady(admin, topic, 1), true);
      await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }], timeout: 30_000 });
      await waitFor(
        async () => {
          const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
          return topics[0].partitions.length === 3 && topics[0].partitions.every((p) => p.leader >= 0);
        },
        { what: `${topic} with 3 partitions` },
      );
      await waitFor(async () => (await admin.fetchTopicOffsets(topic)).length === 3, { what: `${topic} offsets for 3 partitions` });

      for (const [count, validateOnly] of [[3, false], [2, false], [2, true]]) {
        await assert.rejects(
          admin.createPartitions({ topicPartitions: [{ topic, count }], validateOnly, timeout: 30_000 }),
          (err) => err.type === 'INVALID_PARTITIONS',
          `count ${count} validateOnly ${validateOnly}`,
        );
      }
      await admin.createPartitions({ topicPartitions: [{ topic, count: 5 }], validateOnly: true, timeout: 30_000 });
      assert.equal((await admin.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions.length, 3, 'validateOnly changed nothing');

      const sent = [];
      for (const partition of [0, 1, 2]) {
        const [result] = await producer.send({ topic, acks: -1, messages: [{ partition, value: `v-${partition}` }] });
        assert.equal(result.errorCode, 0);
        assert.equal(result.partition, partition);
        sent.push(`${partition}:v-${partition}`);
      }

      const seen = new Set();
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          seen.add(`${partition}:${message.value.toString()}`);
        },
      });
      await waitFor(async () => seen.size >= sent.length, { timeoutMs: 60_000, what: 'every partition read by the group' });
      assert.deepEqual([...seen].sort(), sent.sort());
    } finally {
      await consumer.disconnect();
      await producer.disconnect();
      await admin.disconnect();
    }
  }));

test('deleteTopicRecords moves the low watermark; a group from the beginning starts there', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: kafkajs deleteTopicRecords (DeleteRecords) moves fetchTopicOffsets' low offset, offset -1 deletes up
    // to the high watermark, and a new group reading fromBeginning starts at the log start.
    const kafka = client(broker);
    const admin = kafka.admin();
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    const consumer = kafka.consumer({ groupId: `kafkajs-delete-records-${Date.now()}`, maxWaitTimeInMs: 500 });
    await admin.connect();
    await producer.connect();
    try {
      const topic = `kafkajs-delete-records-${Date.now()}`;
      assert.equal(await createTopicReady(admin, topic, 1), true);
      await producer.send({ topic, acks: -1, messages: Array.from({ length: 10 }, (_, i) => ({ value: `v${i}`, partition: 0 })) });

      await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '6' }] });
      const [after] = await admin.fetchTopicOffsets(topic);
      assert.equal(after.low, '6');
      assert.equal(after.high, '10');

      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      const seen = [];
      await consumer.run({ eachMessage: async ({ message }) => { seen.push(Number(message.offset)); } });
      await waitFor(async () => seen.length >= 4, { what: 'the four records after the log start' });
      assert.deepEqual(seen.slice(0, 4), [6, 7, 8, 9]);

      await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '-1' }] });
      assert.equal((await admin.fetchTopicOffsets(topic))[0].low, '10');
    } finally {
      await consumer.disconnect();
      await producer.disconnect();
      await admin.disconnect();
    }
  }));
