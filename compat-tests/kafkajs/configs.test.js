// kafkajs admin client: describeConfigs and alterConfigs on topics and the broker.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Kafka, logLevel, ConfigResourceTypes, ConfigSource } = require('kafkajs');
const { withBroker, waitFor, createTopicReady } = require('./broker');

const TEST_TIMEOUT_MS = 240_000;

function client(broker) {
  return new Kafka({ clientId: 'compat-kafkajs', brokers: [broker.bootstrap], logLevel: logLevel.WARN });
}

async function topicConfigs(admin, topic, configNames) {
  const { resources } = await admin.describeConfigs({
    includeSynonyms: true,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames }],
  });
  assert.equal(resources[0].errorCode, 0);
  return Object.fromEntries(resources[0].configEntries.map((e) => [e.configName, e]));
}

test('describeConfigs of a topic and the broker', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: a new topic reports Kafka's defaults with DEFAULT_CONFIG sources and synonyms, and the broker
    // reports its configs with read-only flags as Kafka does.
    const admin = client(broker).admin();
    await admin.connect();
    try {
      const topic = `kafkajs-configs-${Date.now()}`;
      assert.equal(await createTopicReady(admin, topic, 1), true);
      const configs = await topicConfigs(admin, topic);
      assert.ok(Object.keys(configs).length >= 35, Object.keys(configs).length);
      assert.equal(configs['retention.ms'].configValue, '604800000');
      assert.equal(configs['retention.ms'].configSource, ConfigSource.DEFAULT_CONFIG);
      assert.deepEqual(configs['retention.ms'].configSynonyms, []);
      assert.deepEqual(configs['segment.bytes'].configSynonyms, [
        { configName: 'log.segment.bytes', configValue: '1073741824', configSource: ConfigSource.DEFAULT_CONFIG },
      ]);
      const only = await topicConfigs(admin, topic, ['cleanup.policy']);
      assert.deepEqual(Object.keys(only), ['cleanup.policy']);

      const { resources } = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.BROKER, name: '1', configNames: ['log.dirs', 'log.retention.ms'] }],
      });
      const entries = Object.fromEntries(resources[0].configEntries.map((e) => [e.configName, e]));
      assert.equal(entries['log.dirs'].readOnly, true);
      assert.equal(entries['log.dirs'].configSource, ConfigSource.STATIC_BROKER_CONFIG);
      assert.equal(entries['log.retention.ms'].readOnly, false);
      assert.equal(entries['log.retention.ms'].configValue, null);
    } finally {
      await admin.disconnect();
    }
  }));

test('alterConfigs sets topic configs, validates only when asked, and refuses bad values', { timeout: TEST_TIMEOUT_MS }, () =>
  withBroker(async (broker) => {
    // Proves: alterConfigs replaces a topic's configs (validateOnly changes nothing), the change is described as a
    // dynamic topic config, and an invalid value fails with INVALID_CONFIG.
    const admin = client(broker).admin();
    await admin.connect();
    try {
      const topic = `kafkajs-alter-${Date.now()}`;
      assert.equal(await createTopicReady(admin, topic, 1), true);
      const alter = (configEntries, validateOnly = false) =>
        admin.alterConfigs({ validateOnly, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries }] });

      await alter([{ name: 'retention.ms', value: '1000' }], true);
      assert.equal((await topicConfigs(admin, topic))['retention.ms'].configValue, '604800000');

      await alter([{ name: 'retention.ms', value: '86400000' }, { name: 'max.message.bytes', value: '2000' }]);
      const changed = await waitFor(async () => {
        const c = await topicConfigs(admin, topic);
        return c['retention.ms'].configValue === '86400000' ? c : null;
      }, { what: 'retention.ms altered' });
      assert.equal(changed['retention.ms'].configSource, ConfigSource.TOPIC_CONFIG);
      assert.equal(changed['max.message.bytes'].configValue, '2000');

      // AlterConfigs replaces the whole set: max.message.bytes goes back to its default.
      await alter([{ name: 'retention.ms', value: '86400000' }]);
      const replaced = await waitFor(async () => {
        const c = await topicConfigs(admin, topic);
        return c['max.message.bytes'].configValue === '1048588' ? c : null;
      }, { what: 'max.message.bytes back to default' });
      assert.equal(replaced['max.message.bytes'].configSource, ConfigSource.DEFAULT_CONFIG);

      await assert.rejects(alter([{ name: 'retention.ms', value: 'abc' }]), (e) => {
        assert.equal(e.type, 'INVALID_CONFIG');
        return true;
      });
      await assert.rejects(alter([{ name: 'no.such.config', value: '1' }]), (e) => {
        assert.equal(e.type, 'INVALID_CONFIG');
        return true;
      });
    } finally {
      await admin.disconnect();
    }
  }));
