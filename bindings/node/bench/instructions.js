#!/usr/bin/env node
'use strict';
// One loop body run N times, for instruction counts under callgrind (see instructions.sh):
//
//   node bindings/node/bench/instructions.js ROW N
//
// Every run does the same set-up and warm-up (200,000 iterations of the row, so the optimizing
// compiler has done its work), then N timed iterations; the difference between N and 0 divided by
// N is what one iteration costs, free of the start-up. The catalog has one customer, so the lookup
// itself is as cheap as it gets and the rows show the cost of crossing into the addon.
const path = require('node:path');

const PACKAGE = process.env.ENTITLE_PACKAGE || path.resolve(__dirname, '..');
const { Engine } = require(PACKAGE);
// A copy with fast properties, as index.js holds it (the addon's own exports object is a
// dictionary, whose every read would add a hash lookup to the bare call).
const native = { ...require(path.join(PACKAGE, 'binding.js')).load() };

const catalog = {
  features: [
    { key: 'sso', type: 'flag', default: false },
    { key: 'projects', type: 'limit', default: 3 },
  ],
  products: [{ id: 'prod_pro', features: { sso: true, projects: 10 } }],
  customers: [
    { id: 'cus_0000000042', subscriptions: [{ id: 'sub_1', status: 'active', items: [{ product: 'prod_pro' }] }] },
  ],
};
const engine = Engine.fromCatalog(catalog);
const sso = engine.feature('sso');
// The addon's own handle, for the bare N-API call (`isClosed`: one external in, a boolean out).
const handle = native.fromCatalog(JSON.stringify(catalog));
const map = new Map([['cus_0000000042', true]]);
// A string built at run time (not a literal), as ids read from a request are.
const c = ['cus', '0000000042'].join('_');
const f = ['s', 'so'].join('');
let turn = 0;

const ROWS = {
  loop: () => true,
  map: () => map.get(c),
  napi: () => native.isClosed(handle),
  native_enabled: () => native.enabled(handle, c, f),
  enabled: () => engine.enabled(c, f),
  // Two keys in turn: each call finds its key in the engine's map of resolved keys.
  enabled_two: () => engine.enabled(c, (turn ^= 1) === 1 ? f : 'projects'),
  limit: () => engine.limit(c, 'projects'),
  allows: () => engine.allows(c, 'projects', 3),
  check: () => engine.check(c, f),
  handle_enabled: () => sso.enabled(c),
  handle_check: () => sso.check(c),
};

const [row, nArg] = process.argv.slice(2);
const body = ROWS[row];
if (body === undefined) {
  console.error(`usage: instructions.js ROW N (ROW one of ${Object.keys(ROWS).join(', ')})`);
  process.exit(2);
}
let sink = 0;
function run(n) {
  for (let i = 0; i < n; i++) if (body()) sink++;
}
run(200000);
run(Number(nArg));
process.stdout.write(`${sink > 0 ? '' : ' '}`);
