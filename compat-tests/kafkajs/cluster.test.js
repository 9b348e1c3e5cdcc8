// kafkajs against a three-node cluster: it sees every broker, topics spread over them, a group consumes
// records produced to partitions led by all three. Runs only in 3-node mode (`run.sh --nodes 3`,
// COMPAT_NODES=3): it uses the run's shared cluster (COMPAT_CLUSTER_FILE) or starts its own.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { Kafka, logLevel } = require('kafkajs');
const { createTopicReady, waitFor } = require('./broker');

const execFileAsync = promisify(execFile);
const COMPAT_DIR = path.resolve(__dirname, '..');
const LAUNCHER = path.join(COMPAT_DIR, 'harness', 'cluster.py');
const PYTHON = process.env.COMPAT_PYTHON || path.join(COMPAT_DIR, '.cache', 'venv', 'bin', 'python');
const THREE_NODES = process.env.COMPAT_NODES === '3';
const SKIP = THREE_NODES ? false : '3-node test: run with compat-tests/run.sh --nodes 3';
const TEST_TIMEOUT_MS = 300_000;

let cluster = null;
let ownCluster = null;

test.before(async () => {
  if (!THREE_NODES) return;
  if (process.env.COMPAT_CLUSTER_FILE) {
    cluster = JSON.parse(fs.readFileSync(process.env.COMPAT_CLUSTER_FILE, 'utf8'));
    return;
  }
  const { stdout } = await execFileAsync(PYTHON, [LAUNCHER, 'start'], { timeout: 300_000 });
  cluster = JSON.parse(stdout.trim().split('\n').pop());
  ownCluster = cluster;
});

test.after(async () => {
  if (!ownCluster) return;
  const pids = ownCluster.nodes.map((n) => n.pid).join(',');
  await execFileAsync(PYTHON, [LAUNCHER, 'stop', '--pids', pids, '--root', ownCluster.root_dir], { timeout: 120_000 });
});

function kafkaFrom(bootstrap) {
  return new Kafka({ clientId: 'compat-kafkajs-cluster', brokers: [bootstrap], logLevel: logLevel.WARN });
}

function expectedBrokers() {
  return cluster.nodes
    .map((n) => {
      const [host, port] = n.bootstrap.split(':');
      return { nodeId: n.node_id, host, port: Number(port) };
    })
    .sort((a, b) => a.nodeId - b.nodeId);
}

test('describeCluster from each node lists all three brokers', { skip: SKIP, timeout: TEST_TIMEOUT_MS }, async () => {
  // Proves: bootstrapped from any one node, kafkajs learns every broker's id, host and port, one cluster id,
  // and a controller id that is one of the three brokers.
  const clusterIds = new Set();
  for (const node of cluster.nodes) {
    const admin = kafkaFrom(node.bootstrap).admin();
    await admin.connect();
    try {
      const described = await admin.describeCluster();
      const brokers = described.brokers
        .map(({ nodeId, host, port }) => ({ nodeId, host, port }))
        .sort((a, b) => a.nodeId - b.nodeId);
      assert.deepEqual(brokers, expectedBrokers());
      assert.ok(brokers.some((b) => b.nodeId === described.controller), `controller ${described.controller}`);
      assert.ok(described.clusterId);
      clusterIds.add(described.clusterId);
    } finally {
      await admin.disconnect();
    }
  }
  assert.equal(clusterIds.size, 1);
});

test('a topic spreads over every broker and a group reads what was produced', { skip: SKIP, timeout: TEST_TIMEOUT_MS }, async () => {
  // Proves: a 9-partition topic created through kafkajs has leaders on all three brokers (each leading
  // three, replicas = [leader]); records sent to every partition through one node are all consumed, once,
  // by a group bootstrapped from another node, and the group's committed offsets are the end offsets.
  const topic = `kafkajs-cluster-${Date.now()}`;
  const kafka = kafkaFrom(cluster.nodes[0].bootstrap);
  const admin = kafka.admin();
  await admin.connect();
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const groupId = `group-${topic}`;
  const consumer = kafkaFrom(cluster.nodes[2].bootstrap).consumer({ groupId });
  try {
    await createTopicReady(admin, topic, 9);
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    const perBroker = new Map();
    for (const p of topics[0].partitions) {
      assert.deepEqual(p.replicas, [p.leader]);
      perBroker.set(p.leader, (perBroker.get(p.leader) || 0) + 1);
    }
    assert.deepEqual([...perBroker.entries()].sort(), cluster.nodes.map((n) => [n.node_id, 3]));

    const sent = [];
    for (let partition = 0; partition < 9; partition++) {
      const messages = Array.from({ length: 20 }, (_, i) => ({ partition, key: `k${i}`, value: `p${partition}-${i}` }));
      const [result] = await producer.send({ topic, acks: -1, messages });
      assert.equal(result.errorCode, 0);
      sent.push(...messages.map((m) => m.value));
    }

    const received = [];
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => { received.push(message.value.toString()); } });
    await waitFor(async () => received.length >= sent.length, { timeoutMs: 120_000, what: 'every record consumed' });
    await consumer.stop();
    assert.deepEqual([...received].sort(), [...sent].sort());
    await waitFor(
      async () => {
        const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
        return offsets.partitions.every((p) => p.offset === '20');
      },
      { timeoutMs: 30_000, what: 'committed offsets at 20 on every partition' },
    );
  } finally {
    await consumer.disconnect();
    await producer.disconnect();
    await admin.disconnect();
  }
});
