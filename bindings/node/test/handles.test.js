'use strict';
// Feature handles and batches: the conformance suite through engine.feature(key), checkMany and
// checkFeatures, handles that outlive a change of the feature list, and their errors.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');
const { CONFORMANCE, PACKAGE, catalog, parseJson } = require('./helpers.js');
const { Engine, Feature, ClosedError } = require(PACKAGE);

const MARKER = '\n  "catalog": ';

function load(file) {
  const text = fs.readFileSync(file, 'utf8');
  const from = text.indexOf(MARKER) + MARKER.length;
  return { doc: parseJson(text).value, raw: text.slice(from, parseJson(text, from).end) };
}

const expectedLimit = (v) => (v === 'unlimited' ? Infinity : v === null ? null : Number(v));

function same(d, expected) {
  return d.featureType === expected.feature_type && d.enabled === expected.enabled &&
    Object.is(d.limit, expectedLimit(expected.limit)) && d.reason === expected.reason;
}

test('the conformance suite through feature handles and batches', () => {
  const files = fs.readdirSync(CONFORMANCE).filter((f) => f.endsWith('.json')).sort();
  assert.ok(files.length >= 17);
  const failures = [];
  let checked = 0;
  for (const name of files) {
    const { doc, raw } = load(path.join(CONFORMANCE, name));
    const engine = Engine.fromCatalog(raw);
    const handles = new Map();
    const handle = (key) => {
      if (!handles.has(key)) handles.set(key, engine.feature(key));
      return handles.get(key);
    };
    for (const c of doc.cases) {
      const at = Number(c.at);
      const f = handle(c.feature);
      const want = c.expected;
      if (!same(f.check(c.customer, { at }), want)) failures.push(`${name} ${c.name}: check`);
      if (f.enabled(c.customer, { at }) !== want.enabled) failures.push(`${name} ${c.name}: enabled`);
      const limit = expectedLimit(want.limit);
      if (!Object.is(f.limit(c.customer, { at: new Date(at * 1000) }), limit === null ? 0 : limit)) failures.push(`${name} ${c.name}: limit`);
      if ('usage' in c) {
        const options = 'requested' in c ? { at, requested: c.requested } : { at };
        if (f.allows(c.customer, c.usage, options) !== want.allowed) failures.push(`${name} ${c.name}: allows`);
      }
      // Batches: this case among others of the same feature and time, and of the same customer.
      const peers = doc.cases.filter((o) => o.feature === c.feature && o.at === c.at);
      const many = f.checkMany(peers.map((o) => o.customer), { at });
      const enabledMany = f.enabledMany(peers.map((o) => o.customer), { at });
      peers.forEach((o, i) => {
        if (!same(many[i], o.expected)) failures.push(`${name} ${o.name}: checkMany`);
        if (enabledMany[i] !== o.expected.enabled) failures.push(`${name} ${o.name}: enabledMany`);
      });
      const mine = doc.cases.filter((o) => o.customer === c.customer && o.at === c.at);
      const byFeature = engine.checkFeatures(c.customer, mine.map((o) => handle(o.feature)), { at });
      mine.forEach((o, i) => {
        if (!same(byFeature[i], o.expected)) failures.push(`${name} ${o.name}: checkFeatures`);
      });
      checked++;
    }
    engine.close();
  }
  assert.deepEqual(failures, []);
  assert.ok(checked > 400, `${checked} cases`);
});

test('handles stay correct when the feature list changes; errors', (t) => {
  const engine = Engine.fromCatalog(catalog());
  t.after(() => engine.close());
  const projects = engine.feature('projects');
  const nope = engine.feature('nope');
  assert.ok(projects instanceof Feature && Object.isFrozen(projects));
  assert.equal(projects.key, 'projects');
  assert.equal(projects.limit('cus_pro'), 50);
  assert.equal(projects.allows('cus_pro', 49), true);
  assert.equal(projects.allows('cus_pro', 48, { requested: 3 }), false);
  assert.equal(nope.check('cus_pro').reason, 'feature_not_found');
  assert.deepEqual(projects.checkMany([]), []);
  assert.deepEqual(projects.enabledMany(['cus_pro', 'nobody', 'x'.repeat(1000)]), [true, true, true]);
  // Many ids of every length (the packed buffer grows, long and non-ASCII ids are copied whole).
  const ids = Array.from({ length: 3000 }, (_, i) =>
    i % 7 === 0 ? 'cus_pro' : i % 11 === 0 ? 'é😀'.repeat(i % 300) : i % 13 === 0 ? 'cus_ent' : `cus_${'y'.repeat(i % 200)}`);
  const batch = projects.checkMany(ids);
  assert.equal(batch.length, ids.length);
  ids.forEach((id, i) => assert.equal(batch[i].limit, projects.limit(id), id));
  // Lone surrogates read as U+FFFD, as in single lookups; a pair split across two ids is refused.
  assert.deepEqual(projects.checkMany(['\uD83D', 'cus_pro', 'x\uDE00']).map((d) => d.limit), [3, 50, 3]);
  assert.throws(() => projects.checkMany(['a\uD83D', '\uDE00b']), RangeError);
  // A new content without `projects`, then one with it at another position.
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'entitle-node-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const without = catalog();
  without.features = without.features.filter((f) => f.key !== 'projects');
  for (const p of without.products) delete p.features.projects;
  delete without.customers[3].overrides.projects;
  fs.writeFileSync(path.join(dir, 'a.json'), JSON.stringify(without));
  engine.replaceFile(path.join(dir, 'a.json'));
  assert.equal(projects.check('cus_pro').reason, 'feature_not_found');
  assert.equal(projects.limit('cus_pro'), 0);
  const moved = catalog(77);
  moved.features.reverse();
  fs.writeFileSync(path.join(dir, 'b.json'), JSON.stringify(moved));
  engine.replaceFile(path.join(dir, 'b.json'));
  assert.equal(projects.limit('cus_pro'), 77);
  assert.equal(engine.checkFeatures('cus_pro', [projects, engine.feature('sso')])[1].enabled, true);

  assert.throws(() => engine.feature(5), TypeError);
  assert.throws(() => projects.enabled(5), TypeError);
  assert.throws(() => projects.checkMany('cus_pro'), TypeError);
  assert.throws(() => projects.checkMany(['cus_pro', 5]), TypeError);
  assert.throws(() => engine.checkFeatures('cus_pro', ['projects']), TypeError);
  assert.throws(() => new Feature(), TypeError);
  engine.close();
  assert.throws(() => projects.enabled('cus_pro'), ClosedError);
  assert.throws(() => engine.feature('sso'), ClosedError);
});

test('lookups by key stay right while the feature list changes under them', (t) => {
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'entitle-node-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = (name, features) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, JSON.stringify({
      features,
      customers: [{ id: 'cus_1', overrides: Object.fromEntries(features.map((f) => [f.key, f.key === 'sso' ? true : 9])) }],
    }));
    return p;
  };
  const both = [{ key: 'sso', type: 'flag', default: false }, { key: 'projects', type: 'limit', default: 3 }];
  const engine = Engine.fromFile(file('a.json', both));
  t.after(() => engine.close());
  for (let i = 0; i < 3; i++) { // the first call by key, then the calls through the kept handle
    assert.equal(engine.enabled('cus_1', 'sso'), true);
    assert.equal(engine.limit('cus_1', 'projects'), 9);
    assert.equal(engine.allows('cus_1', 'projects', 8, { requested: 2 }), false);
    assert.equal(engine.check('cus_1', 'projects').reason, 'override');
    assert.equal(engine.enabled('cus_1', 'nope'), false);
    assert.equal(engine.check('cus_1', 'nope').reason, 'feature_not_found');
  }
  // Reordered, then one removed, then back: every answer follows the content.
  engine.replaceFile(file('b.json', [both[1], both[0]]));
  assert.equal(engine.enabled('cus_1', 'sso'), true);
  assert.equal(engine.limit('cus_1', 'projects'), 9);
  engine.replaceFile(file('c.json', [both[1]]));
  for (let i = 0; i < 2; i++) {
    assert.equal(engine.enabled('cus_1', 'sso'), false);
    assert.equal(engine.check('cus_1', 'sso').reason, 'feature_not_found');
    assert.equal(engine.limit('cus_1', 'projects'), 9);
  }
  engine.replaceFile(file('d.json', both));
  assert.equal(engine.enabled('cus_1', 'sso'), true);
  assert.equal(engine.check('cus_1', 'sso').featureType, 'flag');
  // Wrong types still throw as they did, on either path.
  assert.throws(() => engine.enabled(42, 'sso'), TypeError);
  assert.throws(() => engine.enabled('cus_1', 42), TypeError);
  engine.close();
  assert.throws(() => engine.enabled('cus_1', 'sso'), ClosedError);
});

test('kept handles: two engines, every option, wrong types, handles collected and replaced', async (t) => {
  const { AT } = require('./helpers.js');
  const a = Engine.fromCatalog(catalog());
  const b = Engine.fromCatalog(catalog(77));
  t.after(() => { a.close(); b.close(); });
  // Alternating engines and keys, with and without options: each call answers for its own engine
  // and key, on the first call (by key) and the later ones (through the kept handle).
  for (let i = 0; i < 3; i++) {
    assert.equal(a.limit('cus_pro', 'projects'), 50);
    assert.equal(b.limit('cus_pro', 'projects'), 77);
    assert.equal(a.enabled('cus_pro', 'sso'), true);
    assert.equal(b.enabled('nobody', 'sso'), false);
    assert.equal(a.limit('cus_pro', 'projects', { at: AT }), 50);
    assert.equal(b.limit('cus_pro', 'projects', { at: new Date(AT * 1000) }), 77);
    assert.equal(a.allows('cus_pro', 'projects', 49), true);
    assert.equal(b.allows('cus_pro', 'projects', 75, { requested: 3 }), false);
    assert.equal(b.allows('cus_pro', 'projects', 74, { requested: 3, at: AT }), true);
    assert.equal(a.enabled('cus_pro', 'sso', { at: AT }), true);
    assert.equal(a.enabled('cus_pro', 'sso', {}), true);
    assert.equal(a.check('cus_pro', 'projects', { at: AT }).limit, 50);
    assert.equal(b.check('cus_pro', 'projects').limit, 77);
    // Wrong types throw as on the first call.
    assert.throws(() => a.enabled(5, 'sso'), TypeError);
    assert.throws(() => a.enabled('cus_pro', 'sso', 5), TypeError);
    assert.throws(() => a.enabled('cus_pro', 'sso', { at: 'now' }), TypeError);
    assert.throws(() => a.limit(null, 'projects'), TypeError);
    assert.throws(() => a.allows('cus_pro', 'projects', 'x'), TypeError);
    assert.throws(() => a.check(Symbol('c'), 'projects'), TypeError);
  }
  // Handles made and dropped by the thousand: once collected their numbers are reused, and every
  // live handle keeps answering for its own engine and feature.
  const projects = a.feature('projects');
  for (let i = 0; i < 3000; i++) (i % 2 ? a : b).feature(i % 3 ? 'sso' : 'projects').enabled('cus_pro');
  const { setFlagsFromString } = require('node:v8');
  setFlagsFromString('--expose-gc');
  const gc = require('node:vm').runInNewContext('gc');
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const fresh = Array.from({ length: 100 }, (_, i) => (i % 2 ? b : a).feature(i % 3 ? 'sso' : 'projects'));
  fresh.forEach((f, i) => {
    if (i % 3) assert.equal(f.enabled(i % 2 ? 'nobody' : 'cus_pro'), i % 2 === 0, `sso ${i}`);
    else assert.equal(f.limit('cus_pro'), i % 2 ? 77 : 50, `projects ${i}`);
  });
  assert.equal(projects.limit('cus_pro'), 50);
  assert.equal(a.limit('cus_pro', 'projects'), 50);
  assert.equal(b.enabled('cus_pro', 'sso'), true);
  b.close();
  assert.throws(() => fresh[1].enabled('cus_pro'), ClosedError);
  assert.equal(fresh[0].limit('cus_pro'), 50);
});

test('two copies of the package over one addon: lookups through handles stay right', (t) => {
  // A module registry that loads index.js again (and not the addon) gives two copies that call
  // the same native functions; they share the addon's scratch array, so the handle one copy
  // selects is the one the addon reads.
  const key = require.resolve(PACKAGE);
  const first = require.cache[key];
  delete require.cache[key];
  const other = require(PACKAGE);
  require.cache[key] = first;
  assert.notEqual(other.Engine, Engine);
  const a = Engine.fromCatalog(catalog());
  const b = other.Engine.fromCatalog(catalog(77));
  t.after(() => { a.close(); b.close(); });
  const fa = a.feature('projects');
  const fb = b.feature('projects');
  for (let i = 0; i < 3; i++) {
    assert.equal(fa.limit('cus_pro'), 50);
    assert.equal(fb.limit('cus_pro'), 77);
    assert.equal(a.limit('cus_pro', 'projects'), 50);
    assert.equal(b.limit('cus_pro', 'projects'), 77);
    assert.equal(b.check('cus_pro', 'projects').limit, 77);
    assert.equal(a.check('cus_pro', 'projects').limit, 50);
  }
});
