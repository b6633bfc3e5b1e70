#!/usr/bin/env node
'use strict';
// Nanoseconds per lookup from Node, next to a JavaScript Map holding the same answers (the floor:
// what a program pays to read a value from memory without leaving JavaScript).
//
//   node bindings/node/bench/enabled.js [--customers N] [--rounds R]
//
// Builds (once) a synthetic catalog of N customers (default 1,000,000) with `entitle synth` and
// its snapshot with `entitle build` under target/node-bench/, then times each row in rounds: every
// round runs every row once, so a change of the machine's load touches every row alike. Reports
// the median and the best round, per call. The "random" rows cycle through 200,000 customer ids
// drawn from the whole catalog (each call misses the CPU caches, as in production); their loop
// reads each id from an array, which "loop alone" shows. "one N-API call" is the addon's smallest
// function (one external argument, a boolean back): the price of crossing into C and back.
// Besides wall time, each row reports the CPU time the process used per call
// (`process.cpuUsage()`, user + system), which leaves out the time it waited for a core on a
// loaded machine (the loop runs on one thread; the others are idle).
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const PACKAGE = process.env.ENTITLE_PACKAGE || path.resolve(__dirname, '..');
const { Engine } = require(PACKAGE);
// A copy with fast properties, as index.js holds it (the addon's own exports object is a
// dictionary, whose every read would add a hash lookup to the bare call).
const native = { ...require(path.join(PACKAGE, 'binding.js')).load() };

const REPO = path.resolve(__dirname, '..', '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, 'target');
const ENTITLE = path.join(TARGET, 'release', 'entitle');

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

function snapshot(customers) {
  const dir = path.join(TARGET, 'node-bench');
  fs.mkdirSync(dir, { recursive: true });
  const catalog = path.join(dir, `synth-${customers}.json`);
  const snap = path.join(dir, `synth-${customers}.snap`);
  if (!fs.existsSync(snap)) {
    console.error(`generating ${customers} customers into ${dir} ...`);
    execFileSync(ENTITLE, ['synth', '--customers', String(customers), '-o', catalog], { stdio: 'inherit' });
    execFileSync(ENTITLE, ['build', catalog, '-o', snap], { stdio: 'inherit' });
  }
  return { catalog, snap };
}

async function customerIds(catalog) {
  const ids = [];
  const pattern = /\{"id": "(cus_[^"]*)"/;
  const lines = readline.createInterface({ input: fs.createReadStream(catalog, { encoding: 'utf8' }), crlfDelay: Infinity });
  for await (const line of lines) {
    const m = pattern.exec(line);
    if (m) ids.push(m[1]);
  }
  return ids;
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main() {
  const customers = arg('--customers', 1_000_000);
  const rounds = arg('--rounds', 9);
  const { catalog, snap } = snapshot(customers);
  const ids = await customerIds(catalog);
  if (ids.length !== customers) throw new Error(`found ${ids.length} ids in ${catalog}, expected ${customers}`);
  const engine = Engine.fromFile(snap);
  const handle = native.fromFile(snap);
  const hot = ids[ids.length >> 1];
  const sso = engine.feature('sso');
  let seed = 42;
  const rand = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32; };
  const sample = Array.from({ length: 200_000 }, () => ids[Math.floor(rand() * ids.length)]);
  const table = new Map(ids.map((c) => [c, engine.enabled(c, 'sso')]));
  for (const c of sample.slice(0, 1000)) if (table.get(c) !== engine.enabled(c, 'sso')) throw new Error('table disagrees');

  const N = 1_000_000;
  const S = sample.length;
  // Each row: [name, calls per run, run() -> a value that keeps the work alive].
  const rows = [
    ['Map floor, hot: `table.get(c)`', N, () => { let x = 0; for (let i = 0; i < N; i++) if (table.get(hot)) x++; return x; }],
    ['`engine.enabled(c, f)`, hot', N, () => { let x = 0; for (let i = 0; i < N; i++) if (engine.enabled(hot, 'sso')) x++; return x; }],
    ['`engine.enabled(c, f)`, hot, two keys in turn', N, () => { let x = 0; for (let i = 0; i < N; i++) if (engine.enabled(hot, (i & 1) === 0 ? 'sso' : 'projects')) x++; return x; }],
    ['feature handle: `sso.enabled(c)`, hot', N, () => { let x = 0; for (let i = 0; i < N; i++) if (sso.enabled(hot)) x++; return x; }],
    ['one N-API call (no lookup)', N, () => { let x = 0; for (let i = 0; i < N; i++) if (native.isClosed(handle)) x++; return x; }],
    ['`engine.limit(c, f)`, hot', N, () => { let x = 0; for (let i = 0; i < N; i++) x += engine.limit(hot, 'projects'); return x; }],
    ['`engine.allows(c, f, usage)`, hot', N, () => { let x = 0; for (let i = 0; i < N; i++) if (engine.allows(hot, 'projects', 2)) x++; return x; }],
    ['`engine.check(c, f)` (a frozen Decision), hot', N, () => { let x = 0; for (let i = 0; i < N; i++) if (engine.check(hot, 'sso').enabled) x++; return x; }],
    ['loop alone, random (no lookup)', S, () => { let x = 0; for (let i = 0; i < S; i++) x += sample[i].length; return x; }],
    ['Map floor, random: `table.get(c)`', S, () => { let x = 0; for (let i = 0; i < S; i++) if (table.get(sample[i])) x++; return x; }],
    ['`engine.enabled(c, f)`, random', S, () => { let x = 0; for (let i = 0; i < S; i++) if (engine.enabled(sample[i], 'sso')) x++; return x; }],
    ['feature handle: `sso.enabled(c)`, random', S, () => { let x = 0; for (let i = 0; i < S; i++) if (sso.enabled(sample[i])) x++; return x; }],
    ['batch: `sso.enabledMany(sample)`, random (per customer)', S, () => { let x = 0; const r = sso.enabledMany(sample); for (let i = 0; i < S; i++) if (r[i]) x++; return x; }],
    ['`engine.check(c, f)`, random', S, () => { let x = 0; for (let i = 0; i < S; i++) if (engine.check(sample[i], 'sso').enabled) x++; return x; }],
  ];
  const times = rows.map(() => []);
  const cpu = rows.map(() => []);
  let sink = 0;
  for (const [, , run] of rows) sink += run(); // warm up: let the JIT compile every loop
  for (let r = 0; r < rounds; r++) {
    rows.forEach(([, calls, run], i) => {
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      sink += run();
      times[i].push(Number(process.hrtime.bigint() - t0) / calls);
      const c = process.cpuUsage(c0);
      cpu[i].push(((c.user + c.system) * 1000) / calls);
    });
  }
  const model = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`machine: ${model}, ${os.cpus().length} cores; ${os.type()} ${os.release()}; Node ${process.version}`);
  console.log(`snapshot: ${customers} customers, ${(fs.statSync(snap).size / 1e6).toFixed(1)} MB; ${rounds} rounds; ` +
    `load average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (sink ${sink > 0})`);
  console.log('| call | wall ns/call, median | best round | CPU ns/call, median | best round |');
  console.log('|---|---:|---:|---:|---:|');
  rows.forEach(([name], i) => console.log(`| ${name} | ${median(times[i]).toFixed(0)} | ${Math.min(...times[i]).toFixed(0)} | ` +
    `${median(cpu[i]).toFixed(0)} | ${Math.min(...cpu[i]).toFixed(0)} |`));
  engine.close();
  native.close(handle);
}

main().catch((err) => { console.error(err); process.exit(1); });
