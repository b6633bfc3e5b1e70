'use strict';
// Engines that sync from a real edge (`entitle serve` on 127.0.0.1): waiting, updates, status,
// the edge going down, a warm start from the cache directory, and close() while waitReady is
// pending. waitReady must never block the event loop.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');
const { PACKAGE, catalog, startEdge, tmpDir, waitUntil } = require('./helpers.js');
const { Engine, ClosedError } = require(PACKAGE);

const POLL = 0.1; // seconds between manifest checks in these tests

test('connect: wait, serve, follow a published change, report status', async (t) => {
  const edge = await startEdge(t);
  const engine = Engine.connect(edge.url, { pollInterval: POLL });
  t.after(() => engine.close());
  assert.equal(engine.connected, true);
  assert.equal(await engine.waitReady(20_000), true);
  assert.equal(engine.limit('cus_pro', 'projects'), 50);
  let status = engine.status;
  assert.equal(status.state, 'ready');
  assert.equal(status.syncing, true);
  assert.equal(status.hasData, true);
  assert.equal(status.version, 1);
  assert.equal(status.edgeVersion, 1);
  assert.equal(status.lastError, null);
  assert.ok(status.syncs >= 1 && status.snapshotsFetched === 1, JSON.stringify(status));
  assert.ok(status.lastSuccess > 1_600_000_000 && typeof status.lineage === 'string');

  edge.publish(catalog(60));
  assert.ok(await waitUntil(() => engine.limit('cus_pro', 'projects') === 60));
  assert.equal(engine.version, 2);
  assert.equal(engine.check('cus_pro', 'projects').version, 2);
  assert.ok(await waitUntil(() => engine.status.deltasApplied === 1));
  engine.close();
  assert.throws(() => engine.status, ClosedError);
});

test('long-polling delivers a change sooner than the poll interval', async (t) => {
  const edge = await startEdge(t);
  const engine = Engine.connect(edge.url, { longPoll: 10, pollInterval: 30 });
  t.after(() => engine.close());
  assert.equal(await engine.waitReady(20_000), true);
  assert.ok(await waitUntil(() => engine.status.longPoll));
  edge.publish(catalog(61));
  assert.ok(await waitUntil(() => engine.limit('cus_pro', 'projects') === 61, 15_000));
});

test('the edge goes down: good data is kept and the failure reported; a warm start from the cache', async (t) => {
  const edge = await startEdge(t);
  const cacheDir = path.join(tmpDir(t), 'cache');
  const first = Engine.connect(edge.url, { cacheDir, pollInterval: POLL, maxBackoff: 0.2 });
  assert.equal(await first.waitReady(20_000), true);
  assert.equal(first.status.warmStart, false);
  await edge.stop();
  assert.ok(await waitUntil(() => first.status.failures >= 1));
  assert.equal(first.limit('cus_pro', 'projects'), 50); // still serving good data
  assert.ok(first.status.lastError, 'the failure is reported');
  first.close();
  assert.ok(fs.readdirSync(cacheDir).length > 0, 'nothing was written to the cache directory');

  const warm = Engine.connect(edge.url, { cacheDir, pollInterval: POLL, maxBackoff: 0.2 });
  t.after(() => warm.close());
  assert.equal(await warm.waitReady(0), true); // served from the cache at once
  assert.equal(warm.status.warmStart, true);
  assert.equal(warm.limit('cus_pro', 'projects'), 50);
  assert.ok(await waitUntil(() => warm.status.failures >= 1));
  assert.equal(warm.limit('cus_pro', 'projects'), 50);
});

test('maxArtifactBytes refuses a snapshot larger than allowed', async (t) => {
  const edge = await startEdge(t);
  const small = Engine.connect(edge.url, { pollInterval: POLL, maxBackoff: 0.2, maxArtifactBytes: 64 });
  t.after(() => small.close());
  assert.equal(await small.waitReady(1500), false);
  assert.ok(await waitUntil(() => small.status.failures >= 1));
  assert.ok(small.status.lastError, 'the refusal is reported');
  const roomy = Engine.connect(edge.url, { pollInterval: POLL, maxArtifactBytes: 1n << 30n });
  t.after(() => roomy.close());
  assert.equal(await roomy.waitReady(20_000), true);
  assert.throws(() => Engine.connect(edge.url, { maxArtifactBytes: 0 }), RangeError);
  assert.throws(() => Engine.connect(edge.url, { maxArtifactBytes: 1.5 }), RangeError);
  assert.throws(() => Engine.connect(edge.url, { maxArtifactBytes: '1' }), TypeError);
});

test('an unreachable edge is reported, not thrown; answers are unknown until data arrives', async (t) => {
  const engine = Engine.connect('http://127.0.0.1:9', { pollInterval: POLL, maxBackoff: 0.2 });
  t.after(() => engine.close());
  assert.equal(await engine.waitReady(300), false);
  assert.ok(await waitUntil(() => engine.status.failures >= 1));
  const status = engine.status;
  assert.ok(['starting', 'failed'].includes(status.state));
  assert.equal(status.hasData, false);
  assert.match(status.lastError, /127\.0\.0\.1:9/);
  assert.equal(engine.check('cus_pro', 'sso').reason, 'feature_not_found');
});

test('waitReady does not block the event loop', async (t) => {
  const engine = Engine.connect('http://127.0.0.1:9', { pollInterval: POLL, maxBackoff: 0.2 });
  t.after(() => engine.close());
  let ticks = 0;
  const timer = setInterval(() => { ticks += 1; }, 10);
  const started = Date.now();
  const ready = await engine.waitReady(500);
  clearInterval(timer);
  assert.equal(ready, false);
  assert.ok(Date.now() - started >= 450);
  assert.ok(ticks >= 10, `only ${ticks} timer ticks during a 500 ms wait`);
});

test('close() while waitReady is pending resolves it false at once', async () => {
  const engine = Engine.connect('http://127.0.0.1:9', { pollInterval: POLL });
  const waits = [engine.waitReady(60_000), engine.waitReady(60_000)];
  await new Promise((resolve) => setTimeout(resolve, 200));
  const started = Date.now();
  engine.close();
  assert.deepEqual(await Promise.all(waits), [false, false]);
  assert.ok(Date.now() - started < 10_000, 'waitReady did not return soon after close()');
  await assert.rejects(engine.waitReady(0), ClosedError);
});

test('many engines connect and close without leaving threads behind', async (t) => {
  const edge = await startEdge(t);
  const threads = () => fs.readdirSync('/proc/self/task').length;
  const baseline = threads();
  for (let i = 0; i < 10; i++) {
    const engine = Engine.connect(edge.url, i % 2 ? { pollInterval: POLL, longPoll: 5 } : { pollInterval: POLL });
    assert.equal(await engine.waitReady(20_000), true);
    assert.ok(threads() > baseline);
    engine.close();
  }
  assert.ok(await waitUntil(() => threads() <= baseline, 10_000), `${threads()} threads, ${baseline} before`);
});

test('a worker ends while its waitReady is pending: no crash, no hang', async () => {
  const { Worker } = require('node:worker_threads');
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const { Engine } = require(workerData);
    const engine = Engine.connect('http://127.0.0.1:9', { pollInterval: 0.1 });
    engine.waitReady(60000).then((r) => parentPort.postMessage('resolved ' + r));
    parentPort.postMessage('waiting');
  `, { eval: true, workerData: PACKAGE });
  const messages = [];
  worker.on('message', (m) => messages.push(m));
  await new Promise((resolve) => worker.once('message', resolve));
  await new Promise((resolve) => setTimeout(resolve, 200));
  const started = Date.now();
  assert.equal(await worker.terminate(), 1);
  assert.ok(Date.now() - started < 10_000, 'terminate() waited for the wait');
  assert.deepEqual(messages, ['waiting']);
  // The main thread's engines are unaffected.
  const engine = Engine.fromCatalog(catalog());
  assert.equal(engine.enabled('cus_pro', 'sso'), true);
  engine.close();
});
