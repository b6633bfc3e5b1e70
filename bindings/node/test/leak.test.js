'use strict';
// Native memory does not leak across the boundary: RSS stays flat over a million lookups (every
// kind, with strings that fit the stack buffer and ones that do not) and over a thousand engines
// created and closed (or dropped and collected). Runs in a fresh `node --expose-gc`.

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { test } = require('node:test');
const { PACKAGE, catalog } = require('./helpers.js');

const SCRIPT = `
  const { Engine } = require(process.env.ENTITLE_PACKAGE);
  const catalog = JSON.parse(process.argv[1]);
  const rss = () => { for (let i = 0; i < 3; i++) global.gc(); return process.memoryUsage().rss; };
  const long = 'x'.repeat(1000);
  const engine = Engine.fromCatalog(catalog);
  function lookups(n) {
    let sink = 0;
    for (let i = 0; i < n; i++) {
      switch (i % 8) {
        case 0: sink += engine.enabled('cus_pro', 'sso') ? 1 : 0; break;
        case 1: sink += engine.limit('cus_ent', 'projects', { at: 1700000000 }) === Infinity ? 1 : 0; break;
        case 2: sink += engine.allows('cus_pro', 'projects', 10n, { requested: 2 }) ? 1 : 0; break;
        case 3: sink += engine.check('nobody', 'nope').enabled ? 0 : 1; break;
        case 4: sink += engine.enabled(long, long) ? 0 : 1; break;
        case 5: sink += Object.keys(engine.entitlements('cus_pro')).length === 4 ? 1 : 0; break;
        case 6: try { engine.enabled(i, 'sso'); } catch { sink += 1; } break;
        default: try { Engine.fromCatalog('{"features": 1}'); } catch { sink += 1; } break;
      }
    }
    if (sink !== n) throw new Error('wrong answers: ' + sink);
  }
  function engines(n) {
    for (let i = 0; i < n; i++) {
      const e = Engine.fromCatalog(catalog);
      e.enabled('cus_pro', 'sso');
      if (i % 2 === 0) e.close(); // the others are released by the garbage collector
    }
  }
  lookups(200000);
  engines(200);
  const before = rss();
  lookups(1000000);
  const afterLookups = rss();
  engines(1000);
  const afterEngines = rss();
  process.stdout.write(JSON.stringify({ before, afterLookups, afterEngines }));
`;

test('RSS stays flat over a million lookups and a thousand engines', () => {
  const result = spawnSync(process.execPath, ['--expose-gc', '-e', SCRIPT, JSON.stringify(catalog())], {
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, ENTITLE_PACKAGE: PACKAGE },
  });
  assert.equal(result.status, 0, result.stderr);
  const { before, afterLookups, afterEngines } = JSON.parse(result.stdout);
  const MB = 1024 * 1024;
  assert.ok(afterLookups - before < 4 * MB, `RSS grew by ${(afterLookups - before) / MB} MB over 1M lookups`);
  assert.ok(afterEngines - afterLookups < 8 * MB, `RSS grew by ${(afterEngines - afterLookups) / MB} MB over 1000 engines`);
});
