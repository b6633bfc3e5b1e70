'use strict';
// The change event: fired on the JS thread for every new version (a sync round, replace,
// applyDelta), the 'sync' event for failures; the event thread runs only while someone listens,
// never holds the process open, and stops on close().

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { once } = require('node:events');
const { test } = require('node:test');
const { PACKAGE, catalog, runNode, snapshots, startEdge, tmpDir, waitUntil } = require('./helpers.js');
const { Engine } = require(PACKAGE);

const threads = () => fs.readdirSync('/proc/self/task').length;

/**
 * The next `name` event, or a rejection after `ms`. The timer also keeps the event loop alive:
 * the event thread does not (a program that only listens exits, as with an unref'd timer).
 */
async function eventWithin(emitter, name, ms = 20_000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no '${name}' event within ${ms} ms`)), ms);
  });
  try {
    return (await Promise.race([once(emitter, name), timeout]))[0];
  } finally {
    clearTimeout(timer);
  }
}

test('replace and applyDelta fire change on the JS thread, in order', async (t) => {
  const snaps = snapshots(tmpDir(t));
  const engine = Engine.fromBytes(snaps.v1);
  t.after(() => engine.close());
  engine.replace(snaps.v1); // before anyone listens: not replayed
  const seen = [];
  engine.on('change', (e) => seen.push(e));
  engine.applyDelta(snaps.delta);
  engine.replace(snaps.v1);
  assert.ok(await waitUntil(() => seen.length >= 2, 10_000), JSON.stringify(seen));
  assert.deepEqual(seen.map((e) => [e.previousVersion, e.version]), [[1, 2], [2, 1]]);
  assert.ok(seen[0].at instanceof Date && Math.abs(seen[0].at.getTime() - Date.now()) < 60_000);
  assert.ok(seen[1].seq > seen[0].seq && Object.isFrozen(seen[0]));
});

test('a published version fires change; an unreachable edge fires sync', async (t) => {
  const edge = await startEdge(t);
  const engine = Engine.connect(edge.url, { pollInterval: 0.1, maxBackoff: 0.2 });
  t.after(() => engine.close());
  assert.equal(await engine.waitReady(20_000), true);
  const changed = eventWithin(engine, 'change');
  edge.publish(catalog(60));
  const e = await changed;
  assert.deepEqual([e.previousVersion, e.version], [1, 2]);
  assert.equal(engine.limit('cus_pro', 'projects'), 60); // the listener sees the new content
  const failed = eventWithin(engine, 'sync');
  await edge.stop();
  const s = await failed;
  assert.equal(s.kind, 'sync_failed');
  assert.ok(s.message.length > 0);
});

test('the event thread runs only while listened to, and stops on close()', async () => {
  // Threads of earlier tests may still be ending: start from a count that holds still.
  let baseline = threads();
  for (let stable = 0; stable < 10; ) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = threads();
    stable = now === baseline ? stable + 1 : 0;
    baseline = now;
  }
  const count = (n, what) => waitUntil(() => threads() === baseline + n, 5_000).then((ok) => assert.ok(ok, `${what}: ${threads()} threads, ${baseline} before`));
  const engine = Engine.fromCatalog(catalog());
  const listener = () => {};
  engine.on('change', listener);
  engine.on('sync', listener);
  await count(1, 'one thread for both events');
  engine.off('change', listener);
  await count(1, 'still listened to');
  engine.off('sync', listener);
  await count(0, 'the thread did not stop');
  engine.on('change', listener);
  await count(1, 'listening again');
  engine.removeAllListeners();
  await count(0, 'removeAllListeners() did not stop the thread');
  engine.on('change', listener); // and listening again starts it again
  await count(1, 'listening after removeAllListeners()');
  engine.close();
  await count(0, 'close() did not stop the thread');
  engine.on('change', listener); // no thread for a closed engine
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(threads(), baseline);
});

test('a listening engine never holds the process open', () => {
  const result = runNode(`
    const { Engine } = require(process.env.ENTITLE_PACKAGE);
    const a = Engine.fromCatalog('{"features": []}');
    a.on('change', () => {});
    const b = Engine.connect('http://127.0.0.1:9', { pollInterval: 0.05 });
    b.on('sync', () => {});
    process.stdout.write('started\\n');
  `, { timeoutMs: 30_000 });
  assert.equal(result.signal, null, result.stderr);
  assert.deepEqual([result.code, result.stdout, result.stderr], [0, 'started\n', '']);
});

test('a worker with a listening engine ends cleanly', async () => {
  const { Worker } = require('node:worker_threads');
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const { Engine } = require(workerData);
    const engine = Engine.fromCatalog('{"features": []}');
    engine.on('change', () => {});
    parentPort.postMessage('listening');
    setInterval(() => {}, 1000);
  `, { eval: true, workerData: PACKAGE });
  await once(worker, 'message');
  const started = Date.now();
  assert.equal(await worker.terminate(), 1);
  assert.ok(Date.now() - started < 5_000);
});
