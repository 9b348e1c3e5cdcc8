// runnel's built-in web console (admin listener) in headless Chromium (Debian's `chromium`),
// driven by playwright-core: each page shows what the broker holds (topic, partitions,
// group, lag, records with keys, headers and timestamps), and a screenshot of each page is
// saved to .cache/results/console-*.png and checked not to be blank.
//
// runnel-only: Apache Kafka has no web console, so against COMPAT_TARGET=kafka this test is
// skipped (and says why).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { Kafka, Partitioners, logLevel } = require('../kafkajs/node_modules/kafkajs');
const { withBroker, createTopicReady, waitFor } = require('../kafkajs/broker');

const TARGET = process.env.COMPAT_TARGET || 'runnel';
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const RESULTS = path.resolve(__dirname, '..', '.cache', 'results');

// A free loopback port for the admin listener (the broker binds it a moment later).
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Decodes an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium's screenshots are) into
// { width, height, channels, pixels }; anything else throws.
function decodePng(buffer) {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.ok(buffer.subarray(0, 8).equals(signature), 'not a PNG');
  let at = 8;
  let header;
  const data = [];
  while (at < buffer.length) {
    const length = buffer.readUInt32BE(at);
    const type = buffer.toString('latin1', at + 4, at + 8);
    const body = buffer.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') {
      header = {
        width: body.readUInt32BE(0), height: body.readUInt32BE(4),
        depth: body[8], colour: body[9], interlace: body[12],
      };
    } else if (type === 'IDAT') {
      data.push(body);
    } else if (type === 'IEND') {
      break;
    }
    at += 12 + length;
  }
  assert.ok(header, 'no IHDR');
  assert.equal(header.depth, 8, 'bit depth');
  assert.equal(header.interlace, 0, 'interlaced');
  const channels = { 2: 3, 6: 4 }[header.colour];
  assert.ok(channels, `colour type ${header.colour}`);
  const raw = zlib.inflateSync(Buffer.concat(data));
  const stride = header.width * channels;
  const pixels = Buffer.alloc(stride * header.height);
  for (let y = 0; y < header.height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? pixels[y * stride + x - channels] : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels] : 0;
      let value;
      switch (filter) {
        case 0: value = line[x]; break;
        case 1: value = line[x] + a; break;
        case 2: value = line[x] + b; break;
        case 3: value = line[x] + ((a + b) >> 1); break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          value = line[x] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default: throw new Error(`PNG filter ${filter}`);
      }
      pixels[y * stride + x] = value & 0xff;
    }
  }
  return { width: header.width, height: header.height, channels, pixels };
}

// A screenshot that shows a page, not a blank: several distinct colours, and no single colour
// covering (nearly) everything.
function assertNotBlank(file) {
  const { width, height, channels, pixels } = decodePng(fs.readFileSync(file));
  const counts = new Map();
  for (let i = 0; i < width * height; i++) {
    const o = i * channels;
    const key = (pixels[o] << 16) | (pixels[o + 1] << 8) | pixels[o + 2];
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const dominant = Math.max(...counts.values()) / (width * height);
  assert.ok(counts.size >= 16, `${file}: only ${counts.size} distinct colours`);
  assert.ok(dominant < 0.97, `${file}: one colour covers ${(dominant * 100).toFixed(1)}% of it`);
  return { colours: counts.size, dominant };
}

// Chromium with a fresh profile (playwright's persistent context is its --user-data-dir).
async function launch() {
  const { chromium } = require('playwright-core');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'console-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

if (TARGET === 'kafka') {
  test('web console (runnel only)', { skip: 'Apache Kafka has no built-in web console: this test is runnel-only' }, () => {});
} else {
  test('web console pages show topics, groups with lag, and records', { timeout: 240_000 }, async () => {
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} missing: compat-tests/setup.sh installs Debian's chromium`);
    fs.mkdirSync(RESULTS, { recursive: true });
    const adminPort = await freePort();
    await withBroker(async (broker) => {
      const base = `http://127.0.0.1:${adminPort}`;
      const kafka = new Kafka({ clientId: 'console-test', brokers: [broker.bootstrap], logLevel: logLevel.NOTHING });
      const admin = kafka.admin();
      await admin.connect();
      const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
      const consumer = kafka.consumer({ groupId: 'console-live', sessionTimeout: 30_000 });
      const chrome = await launch();
      try {
        await createTopicReady(admin, 'payments', 3);
        await producer.connect();
        // Partition 1: five records with keys and headers, fixed timestamps.
        const base_ts = 1_700_000_000_000;
        await producer.send({
          topic: 'payments',
          acks: -1,
          messages: [0, 1, 2, 3, 4].map((i) => ({
            partition: 1,
            key: `order-${i}`,
            value: i === 3 ? Buffer.from([0xde, 0xad, 0xbe, 0xef]) : `{"amount":${i * 10},"note":"<script>x</script>"}`,
            headers: { trace: `t-${i}`, source: 'console-test' },
            timestamp: String(base_ts + i * 1000),
          })),
        });
        await producer.send({ topic: 'payments', acks: -1, messages: [{ partition: 0, key: 'k', value: 'v' }] });
        // Group `billing` committed 2 of partition 1's 5 records: lag 3.
        await admin.setOffsets({ groupId: 'billing', topic: 'payments', partitions: [{ partition: 1, offset: '2' }] });
        // A live member in another group.
        let joined = false;
        consumer.on(consumer.events.GROUP_JOIN, () => { joined = true; });
        await consumer.connect();
        await consumer.subscribe({ topic: 'payments', fromBeginning: false });
        await consumer.run({ eachMessage: async () => {} });
        await waitFor(() => joined, { what: 'console-live to join', timeoutMs: 60_000 });

        const page = await chrome.context.newPage();
        const errors = [];
        page.on('pageerror', (e) => errors.push(e.message));
        page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
        const open = async (hash) => {
          await page.goto(`${base}/${hash}`);
          await page.waitForSelector('main[data-ready="true"]', { timeout: 30_000 });
          const shown = await page.locator('main').innerText();
          assert.equal(await page.locator('p.error').count(), 0, shown);
          // Nothing absent rendered as the word "null" or "undefined".
          assert.doesNotMatch(shown, /^(null|undefined)$/m, shown);
        };
        const shoot = async (name) => {
          const file = path.join(RESULTS, `console-${name}.png`);
          await page.screenshot({ path: file, fullPage: true });
          const seen = assertNotBlank(file);
          console.log(`# screenshot ${file}: ${seen.colours} colours, dominant ${(seen.dominant * 100).toFixed(1)}%`);
        };
        const text = async (selector) => (await page.locator(selector).first().innerText()).trim();

        // The blank check can fail: an empty page does not pass it.
        const blank = path.join(RESULTS, 'console-blank-check.png');
        await page.goto('about:blank');
        await page.screenshot({ path: blank });
        assert.throws(() => assertNotBlank(blank), /distinct colours|covers/);
        fs.rmSync(blank);

        await open('#/cluster');
        assert.equal(await text('[data-card="brokers"] .value'), '1');
        assert.match(await text('#brokers'), new RegExp(String(broker.bootstrap.split(':')[1])));
        await shoot('cluster');

        await open('#/topics');
        assert.equal(await text('tr[data-topic="payments"] [data-field="partitions"]'), '3');
        assert.equal(await text('tr[data-topic="payments"] [data-field="records"]'), '6');
        await shoot('topics');

        await open('#/topics/payments');
        assert.equal(await page.locator('#partitions tbody tr').count(), 3);
        assert.equal(await text('tr[data-partition="1"] [data-field="high-watermark"]'), '5');
        assert.equal(await text('tr[data-partition="0"] [data-field="high-watermark"]'), '1');
        assert.equal(await text('tr[data-config="cleanup.policy"] td:nth-child(2)'), 'delete');
        await shoot('topic');

        await open('#/groups');
        assert.equal(await text('tr[data-group="billing"] [data-field="lag"]'), '3');
        assert.equal(await text('tr[data-group="console-live"] [data-field="members"]'), '1');
        await shoot('groups');

        await open('#/groups/billing');
        assert.equal(await text('tr[data-offset="payments-1"] [data-field="committed"]'), '2');
        assert.equal(await text('tr[data-offset="payments-1"] [data-field="high-watermark"]'), '5');
        assert.equal(await text('tr[data-offset="payments-1"] [data-field="lag"]'), '3');
        await open('#/groups/console-live');
        assert.equal(await text('[data-card="members"] .value'), '1');
        assert.match(await text('#members'), /console-test/);
        await shoot('group');

        await open('#/browse/payments/1?offset=1&limit=3');
        const offsets = await page.locator('#records tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.recordOffset));
        assert.deepEqual(offsets, ['1', '2', '3']);
        assert.equal(await text('tr[data-record-offset="1"] [data-field="key"]'), 'order-1');
        const value1 = await text('tr[data-record-offset="1"] [data-field="value"]');
        assert.equal(value1, '{"amount":10,"note":"<script>x</script>"}');
        // Shown as text, not parsed as markup.
        assert.equal(await page.locator('#records script').count(), 0);
        assert.match(await text('tr[data-record-offset="1"] [data-field="headers"]'), /trace = t-1/);
        assert.match(await text('tr[data-record-offset="1"] [data-field="headers"]'), /source = console-test/);
        assert.match(await text('tr[data-record-offset="1"] [data-field="timestamp"]'), /2023-11-14T22:13:21\.000Z/);
        assert.equal(await page.locator('tr[data-record-offset="3"] [data-field="value"] [data-encoding="hex"]').count(), 1);
        assert.match(await text('tr[data-record-offset="3"] [data-field="value"]'), /deadbeef/);
        await shoot('messages');

        // Tail: the last two records of partition 1.
        await open('#/browse/payments/1?from=end&limit=2');
        const tail = await page.locator('#records tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.recordOffset));
        assert.deepEqual(tail, ['3', '4']);

        // Following the tail shows a record produced after the page was opened.
        await open('#/browse/payments/1?from=end&limit=2&follow=1');
        assert.equal(await page.locator('input[name=follow]').isChecked(), true);
        await producer.send({ topic: 'payments', acks: -1, messages: [{ partition: 1, key: 'late', value: 'arrived' }] });
        await page.waitForSelector('tr[data-record-offset="5"]', { timeout: 20_000 });
        assert.equal(await text('tr[data-record-offset="5"] [data-field="value"]'), 'arrived');
        assert.deepEqual(errors, [], 'browser console errors');
      } finally {
        await chrome.close().catch(() => {});
        await consumer.disconnect().catch(() => {});
        await producer.disconnect().catch(() => {});
        await admin.disconnect().catch(() => {});
      }
    }, { 'runnel.admin.listener': `127.0.0.1:${adminPort}`, 'group.initial.rebalance.delay.ms': 0 });
  });
}
