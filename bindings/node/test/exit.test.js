'use strict';
// Process exit with live engines: no crash, no hang, exit status kept. Each scenario runs in a
// fresh `node` that leaves without closing anything (engines polling, long-polling, retrying an
// unreachable edge, stuck in a request to an edge that never answers, living in a worker).

const assert = require('node:assert/strict');
const { test } = require('node:test');
const { catalog, runNode, startEdge } = require('./helpers.js');

const EXIT_BOUND_MS = 60_000; // a hang fails the test instead of stalling the suite

const PRELUDE = `
  const { Engine } = require(process.env.ENTITLE_PACKAGE);
  const [url, json] = process.argv.slice(1);
  const catalog = JSON.parse(json);
  (async () => {
    const polling = Engine.connect(url, { pollInterval: 0.05 });
    const longPolling = Engine.connect(url, { longPoll: 20 });
    const retrying = Engine.connect('http://127.0.0.1:9', { pollInterval: 0.05, maxBackoff: 0.1 });
    const local = Engine.fromCatalog(catalog);
    if (!(await polling.waitReady(20000)) || !(await longPolling.waitReady(20000))) throw new Error('not ready');
    if (polling.limit('cus_pro', 'projects') !== 50 || local.limit('cus_pro', 'projects') !== 50) throw new Error('wrong answer');
    // Listening engines: their event threads must not hold the process or crash it at exit.
    for (const engine of [polling, retrying, local]) engine.on('change', () => {}).on('sync', () => {});
    globalThis.engines = [polling, longPolling, retrying, local];
    process.stdout.write('started\\n');
    SCENARIO
  })();
`;

const SCENARIOS = {
  'falls off the end': { code: '', status: 0 },
  'process.exit with a status': { code: 'process.exit(7);', status: 7 },
  'an uncaught exception': { code: "setImmediate(() => { throw new Error('boom'); });", status: 1, stderr: /Error: boom/ },
  'a waitReady still pending': { code: "retrying.waitReady(300).then((r) => { if (r) process.exit(3); });", status: 0 },
  'process.exit during a pending waitReady': { code: "retrying.waitReady(60000); setTimeout(() => process.exit(0), 100);", status: 0 },
  'engines dropped and collected': { code: 'globalThis.engines = null; setTimeout(() => {}, 200);', status: 0 },
  'a worker with a live engine': {
    code: `
      const { Worker } = require('node:worker_threads');
      const w = new Worker("const { Engine } = require(process.env.ENTITLE_PACKAGE); const { workerData, parentPort } = require('node:worker_threads'); const e = Engine.connect(workerData, { pollInterval: 0.05 }); e.waitReady(20000).then((r) => parentPort.postMessage(r));", { eval: true, workerData: url });
      w.once('message', (r) => { if (!r) process.exit(4); setTimeout(() => process.exit(0), 100); });
    `,
    status: 0,
  },
};

for (const [name, scenario] of Object.entries(SCENARIOS)) {
  test(`exit with live engines: ${name}`, async (t) => {
    const edge = await startEdge(t);
    const result = runNode(PRELUDE.replace('SCENARIO', scenario.code), {
      args: [edge.url, JSON.stringify(catalog())],
      timeoutMs: EXIT_BOUND_MS,
    });
    assert.equal(result.error, undefined, String(result.error));
    assert.equal(result.signal, null, `killed by ${result.signal}: ${result.stderr}`);
    assert.equal(result.stdout, 'started\n', result.stderr);
    assert.equal(result.code, scenario.status, result.stderr);
    if (scenario.stderr) assert.match(result.stderr, scenario.stderr);
    else assert.equal(result.stderr, '');
  });
}

test('exit while the edge never answers', () => {
  // A server that accepts connections and never answers: the sync thread sits in a request.
  const result = runNode(`
    const net = require('node:net');
    const { Engine } = require(process.env.ENTITLE_PACKAGE);
    const held = [];
    const server = net.createServer((socket) => held.push(socket)).listen(0, '127.0.0.1', async () => {
      server.unref();
      const engine = Engine.connect('http://127.0.0.1:' + server.address().port, { requestTimeout: 3600, pollInterval: 0.05 });
      if (await engine.waitReady(500)) process.exit(5);
      held.forEach((s) => s.unref());
      process.stdout.write('started\\n');
    });
  `, { timeoutMs: EXIT_BOUND_MS });
  assert.equal(result.signal, null, `killed by ${result.signal}: ${result.stderr}`);
  assert.deepEqual([result.code, result.stdout, result.stderr], [0, 'started\n', '']);
});
