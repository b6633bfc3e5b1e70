'use strict';
// Shared test helpers: the repository, the `entitle` command, a small catalog, a local edge
// (`entitle serve` on 127.0.0.1, a free port) and a lossless JSON reader for the conformance files.

const assert = require('node:assert/strict');
const { spawn, execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const REPO = path.resolve(__dirname, '..', '..', '..');
const CONFORMANCE = path.join(REPO, 'tests', 'conformance');
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, 'target');
const ENTITLE_BIN = process.env.ENTITLE_BIN || path.join(TARGET, 'release', 'entitle');
/** The package under test: the installed one when ENTITLE_PACKAGE names it, else the source tree. */
const PACKAGE = process.env.ENTITLE_PACKAGE || path.resolve(__dirname, '..');

// A fixed evaluation time, before every cancel_at in catalog().
const AT = 1_700_000_000;

/** A small catalog; `projectsForPro` lets tests publish a changed version. */
function catalog(projectsForPro = 50) {
  return {
    features: [
      { key: 'sso', type: 'flag', default: false },
      { key: 'projects', type: 'limit', default: 3 },
      { key: 'seats', type: 'limit', default: 1, per_unit: true },
      { key: 'api_calls', type: 'limit', default: 1000 },
    ],
    products: [
      { id: 'prod_pro', features: { sso: true, projects: projectsForPro, seats: 1, api_calls: 100000 } },
      { id: 'prod_enterprise', features: { sso: true, projects: 'unlimited', api_calls: 'unlimited' } },
    ],
    customers: [
      { id: 'cus_pro', subscriptions: [{ id: 'sub_1', status: 'active', items: [{ product: 'prod_pro', quantity: 5 }] }] },
      { id: 'cus_ent', subscriptions: [{ id: 'sub_2', status: 'active', items: [{ product: 'prod_enterprise' }] }] },
      { id: 'cus_cancelling', subscriptions: [{ id: 'sub_3', status: 'active', cancel_at: AT + 3600, items: [{ product: 'prod_pro' }] }] },
      { id: 'cus_override', overrides: { projects: 7, sso: true } },
    ],
  };
}

function tmpDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'entitle-node-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function runCli(...args) {
  assert.ok(fs.existsSync(ENTITLE_BIN), `${ENTITLE_BIN} not found: build it with cargo build --release`);
  return execFileSync(ENTITLE_BIN, args, { encoding: 'utf8', timeout: 120_000 });
}

/** v1.snap and v2.snap (pro plan: 50 then 60 projects) and the delta between them, as Buffers. */
function snapshots(dir) {
  const out = {};
  for (const [version, projects] of [[1, 50], [2, 60]]) {
    const src = path.join(dir, `v${version}.json`);
    fs.writeFileSync(src, JSON.stringify(catalog(projects)));
    out[`v${version}Path`] = path.join(dir, `v${version}.snap`);
    runCli('build', src, '-o', out[`v${version}Path`], '--version', String(version));
    out[`v${version}`] = fs.readFileSync(out[`v${version}Path`]);
  }
  const delta = path.join(dir, 'v1-v2.delta');
  runCli('diff', out.v1Path, out.v2Path, '-o', delta);
  out.delta = fs.readFileSync(delta);
  return out;
}

/** An edge directory served by `entitle serve` on 127.0.0.1 (a free port). */
class Edge {
  constructor(root) {
    this.dir = path.join(root, 'edge');
    this.work = root;
    this.process = null;
    this.url = '';
    this.published = 0;
  }

  publish(data) {
    this.published += 1;
    const file = path.join(this.work, `publish-${this.published}.json`);
    fs.writeFileSync(file, JSON.stringify(data));
    runCli('publish', file, '--edge', this.dir);
  }

  async start() {
    this.process = spawn(ENTITLE_BIN, ['serve', this.dir, '--addr', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.process.stderr.resume();
    const lines = readline.createInterface({ input: this.process.stdout });
    const first = await Promise.race([
      new Promise((resolve) => lines.once('line', resolve)),
      new Promise((resolve) => setTimeout(() => resolve(''), 30_000).unref()),
    ]);
    lines.on('line', () => {});
    const found = /https?:\/\/[0-9.]+:[0-9]+/.exec(first);
    if (!found) {
      await this.stop();
      throw new Error(`entitle serve did not name its address; first line: ${JSON.stringify(first)}`);
    }
    this.url = found[0];
  }

  async stop() {
    const child = this.process;
    if (!child) return;
    this.process = null;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** An edge at version 1 of catalog(), stopped when the test ends. */
async function startEdge(t) {
  const edge = new Edge(tmpDir(t));
  edge.publish(catalog());
  await edge.start();
  t.after(() => edge.stop());
  return edge;
}

/** Polls `predicate` until it is true or `timeoutMs` passes; returns whether it became true. */
async function waitUntil(predicate, timeoutMs = 20_000, intervalMs = 25) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (predicate()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Runs a script in a fresh `node` with a bound on its time; resolves { code, signal, stdout, stderr }. */
function runNode(code, { args = [], timeoutMs = 60_000, env = {} } = {}) {
  const result = spawnSync(process.execPath, ['-e', code, ...args], {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, ENTITLE_PACKAGE: PACKAGE, ...env },
  });
  return { code: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr, error: result.error };
}

// ---------------------------------------------------------------------------------------------
// A JSON reader that keeps integers exact (as BigInt) and tells where a value ends.

function parseJson(text, start = 0) {
  let i = start;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj = {};
      ws();
      if (text[i] === '}') { i++; return obj; }
      for (;;) {
        ws();
        const key = value();
        ws();
        assert.equal(text[i], ':', `expected ':' at ${i}`);
        i++;
        Object.defineProperty(obj, key, { value: value(), enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ',') { i++; continue; }
        assert.equal(text[i], '}', `expected '}' at ${i}`);
        i++;
        return obj;
      }
    }
    if (c === '[') {
      i++;
      const arr = [];
      ws();
      if (text[i] === ']') { i++; return arr; }
      for (;;) {
        arr.push(value());
        ws();
        if (text[i] === ',') { i++; continue; }
        assert.equal(text[i], ']', `expected ']' at ${i}`);
        i++;
        return arr;
      }
    }
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const s = JSON.parse(text.slice(i, j + 1));
      i = j + 1;
      return s;
    }
    const m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?|^true|^false|^null/.exec(text.slice(i, i + 400));
    assert.ok(m, `unexpected JSON at ${i}`);
    i += m[0].length;
    if (m[0] === 'true') return true;
    if (m[0] === 'false') return false;
    if (m[0] === 'null') return null;
    return m[1] || m[2] ? Number(m[0]) : BigInt(m[0]);
  };
  const v = value();
  return { value: v, end: i };
}

module.exports = {
  AT, CONFORMANCE, ENTITLE_BIN, Edge, PACKAGE, REPO, TARGET,
  catalog, parseJson, runCli, runNode, snapshots, startEdge, tmpDir, waitUntil,
};
