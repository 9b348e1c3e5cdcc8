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
