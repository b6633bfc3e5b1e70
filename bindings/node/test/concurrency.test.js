'use strict';
// Lookups from many async tasks while the snapshot is replaced and deltas are applied: every
// answer comes whole from one version (the limit always matches the decision's version), and
// worker threads each load the addon and their own engine, side by side.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { Worker } = require('node:worker_threads');
const { PACKAGE, snapshots, tmpDir } = require('./helpers.js');
const { Engine } = require(PACKAGE);

const PROJECTS = { 1: 50, 2: 60 }; // cus_pro's projects limit in each version

test('no torn answer while replace and applyDelta run between lookups on many async tasks', async (t) => {
  const snaps = snapshots(tmpDir(t));
  const engine = Engine.fromBytes(snaps.v1);
  t.after(() => engine.close());
  let running = true;
  let updates = 0;
  const updater = (async () => {
    while (running) {
      engine.applyDelta(snaps.delta);
      await new Promise(setImmediate);
      engine.replace(snaps.v1);
      updates += 2;
      await new Promise(setImmediate);
    }
  })();
  const seen = new Set();
  const task = async () => {
    for (let i = 0; i < 2000; i++) {
      const d = engine.check('cus_pro', 'projects');
      assert.equal(d.limit, PROJECTS[d.version], `version ${d.version} answered ${d.limit}`);
      seen.add(d.version);
      const limit = engine.limit('cus_pro', 'projects');
      assert.ok(limit === 50 || limit === 60, String(limit));
      const all = engine.entitlements('cus_pro');
      assert.equal(all.projects.limit, PROJECTS[all.projects.version]);
      assert.equal(all.sso.version, all.projects.version, 'one list, one version');
      if (i % 7 === 0) await new Promise(setImmediate);
    }
  };
  await Promise.all(Array.from({ length: 16 }, task));
  running = false;
  await updater;
  assert.ok(updates >= 20, `${updates} updates`);
  assert.deepEqual([...seen].sort(), [1, 2], 'both versions were observed');
});

test('worker threads load the addon and run engines of their own', async (t) => {
  const snaps = snapshots(tmpDir(t));
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { Engine } = require(workerData.pkg);
    const engine = Engine.fromBytes(workerData.v1);
    let ok = 0;
    for (let i = 0; i < 20000; i++) {
      if (i === 10000) engine.applyDelta(workerData.delta);
      const want = i < 10000 ? 50 : 60;
      if (engine.limit('cus_pro', 'projects') === want && engine.enabled('cus_pro', 'sso')) ok++;
    }
    const version = engine.version;
    if (!workerData.leaveOpen) engine.close();
    parentPort.postMessage({ ok, version });
  `;
  const run = (leaveOpen) => new Promise((resolve, reject) => {
    const worker = new Worker(code, { eval: true, workerData: { pkg: PACKAGE, v1: snaps.v1, delta: snaps.delta, leaveOpen } });
    let message;
    worker.on('message', (m) => { message = m; });
    worker.on('error', reject);
    worker.on('exit', (exitCode) => (exitCode === 0 ? resolve(message) : reject(new Error(`worker exited with ${exitCode}`))));
  });
  // Some workers leave their engine open: it is released when the worker's environment ends.
  const results = await Promise.all([false, true, false, true].map(run));
  for (const r of results) assert.deepEqual(r, { ok: 20000, version: 2 });

  // The main thread's engine is unaffected, and a worker can be terminated mid-loop.
  const engine = Engine.fromBytes(snaps.v1);
  t.after(() => engine.close());
  const busy = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const { Engine } = require(workerData.pkg);
    const engine = Engine.fromBytes(workerData.v1);
    parentPort.postMessage('started');
    for (;;) engine.check('cus_pro', 'projects');
  `, { eval: true, workerData: { pkg: PACKAGE, v1: snaps.v1 } });
  await new Promise((resolve) => busy.once('message', resolve));
  assert.equal(await busy.terminate(), 1);
  assert.equal(engine.limit('cus_pro', 'projects'), 50);
});
