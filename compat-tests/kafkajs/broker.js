// Start/stop a broker for one kafkajs test through the shared Python launcher (harness/broker.py),
// so node tests run against the same runnel-or-Kafka target, chosen by COMPAT_TARGET.
'use strict';

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { promisify } = require('node:util');

const execFileAsync = promisify(execFile);

const COMPAT_DIR = path.resolve(__dirname, '..');
const LAUNCHER = path.join(COMPAT_DIR, 'harness', 'broker.py');
// run.sh exports COMPAT_PYTHON; the venv is where setup.sh installs confluent-kafka (the readiness probe).
const PYTHON = process.env.COMPAT_PYTHON || path.join(COMPAT_DIR, '.cache', 'venv', 'bin', 'python');
const START_TIMEOUT_MS = 180_000;
const STOP_TIMEOUT_MS = 90_000;
const LOG_TAIL_BYTES = 16 * 1024;

// `sslListener: true` adds an SSL listener (its ssl.* keys among `configs`), reachable at `ssl_bootstrap`.
async function startBroker(configs = {}, { sslListener = false } = {}) {
  const args = [LAUNCHER, 'start'];
  for (const [key, value] of Object.entries(configs)) args.push('--config', `${key}=${value}`);
  if (sslListener) args.push('--ssl-listener');
  const { stdout } = await execFileAsync(PYTHON, args, { timeout: START_TIMEOUT_MS });
  const info = JSON.parse(stdout.trim().split('\n').pop());
  return {
    ...info,
    async stop() {
      await execFileAsync(PYTHON, [LAUNCHER, 'stop', '--pid', String(info.pid), '--data-dir', info.data_dir], {
        timeout: STOP_TIMEOUT_MS,
      });
    },
    logTail() {
      try {
        const text = fs.readFileSync(info.log, 'utf8');
        return text.slice(-LOG_TAIL_BYTES);
      } catch (err) {
        return `(no broker log: ${err.message})`;
      }
    },
  };
}

// Runs `body(broker)` against a fresh broker; on failure prints the broker's log tail, always stops it.
async function withBroker(body, configs = {}, options = {}) {
  const broker = await startBroker(configs, options);
  try {
    return await body(broker);
  } catch (err) {
    console.error(`--- broker log tail (${broker.target}, ${broker.log}) ---\n${broker.logTail()}\n---`);
    throw err;
  } finally {
    await broker.stop();
  }
}

// Polls `predicate` until it returns a truthy value: Kafka applies topic creation/deletion to its
// Metadata a moment after the admin call returns, and real clients retry the same way. A retriable
// Kafka error thrown by the predicate (UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER in that
// window) counts as "not yet"; any other error fails at once.
async function waitFor(predicate, { timeoutMs = 30_000, intervalMs = 200, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    let value;
    try {
      value = await predicate();
      last = value;
    } catch (err) {
      if (!err.retriable) throw err;
      last = `${err.type || err.name}: ${err.message}`;
    }
    if (value) return value;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

// Reads one partition from the beginning to its end with kcat (kafkajs only consumes through groups).
async function kcatReadPartition(bootstrap, topic, partition) {
  const { stdout } = await execFileAsync(
    'kcat',
    ['-C', '-b', bootstrap, '-t', topic, '-p', String(partition), '-o', 'beginning', '-e', '-q', '-J'],
    { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 },
  );
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line));
}

// Creates `topic` and waits until Metadata lists all its partitions with a leader and every partition
// answers ListOffsets; returns what createTopics returned (true: created). kafkajs's own
// `waitForLeaders` (on by default) retries only LEADER_NOT_AVAILABLE and gives up on the UNKNOWN_TOPIC_OR_PARTITION a
// KRaft broker answers until it has applied the new topic, and ListOffsets answers
// NOT_LEADER_OR_FOLLOWER until the broker leads the partition: both seen against Kafka 4.1 and 4.4 on a
// loaded 2-core machine, so the waiting is done here, with waitFor's retries.
async function createTopicReady(admin, topic, numPartitions) {
  const created = await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: false });
  await waitFor(
    async () => {
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
      const partitions = topics[0].partitions;
      return partitions.length === numPartitions && partitions.every((p) => p.leader >= 0);
    },
    { what: `${topic} with leaders for ${numPartitions} partitions` },
  );
  await waitFor(async () => (await admin.fetchTopicOffsets(topic)).length === numPartitions, {
    what: `${topic} offsets for ${numPartitions} partitions`,
  });
  return created;
}

module.exports = { startBroker, withBroker, waitFor, createTopicReady, kcatReadPartition };
