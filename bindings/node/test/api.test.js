'use strict';
// The API: creators, lookups, `at`, decisions, entitlements, updates, status, errors and close().

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const { test } = require('node:test');
const { AT, PACKAGE, catalog, snapshots, tmpDir } = require('./helpers.js');
const entitle = require(PACKAGE);

/** Closes `engine` when the test ends (`using` needs a newer Node than the package supports). */
function closing(t, engine) {
  t.after(() => engine.close());
  return engine;
}

const { Engine, EntitleError, CatalogError, FileError, FormatError, DeltaError, ConfigError, ClosedError } = entitle;

test('creators: catalog object, JSON string, bytes, file path and file URL', (t) => {
  const dir = tmpDir(t);
  const snaps = snapshots(dir);
  const json = path.join(dir, 'catalog.json');
  fs.writeFileSync(json, JSON.stringify(catalog()));
  const engines = [
    Engine.fromCatalog(catalog()),
    Engine.fromCatalog(JSON.stringify(catalog())),
    Engine.fromCatalog(Buffer.from(JSON.stringify(catalog()))),
    Engine.fromFile(json),
    Engine.fromFile(pathToFileURL(snaps.v1Path)),
    Engine.fromBytes(snaps.v1),
    Engine.fromBytes(new Uint8Array(snaps.v1)),
    Engine.fromBytes(snaps.v1.buffer.slice(snaps.v1.byteOffset, snaps.v1.byteOffset + snaps.v1.length)),
  ];
  for (const engine of engines) {
    assert.equal(engine.limit('cus_pro', 'projects', { at: AT }), 50);
    assert.equal(engine.enabled('cus_pro', 'sso'), true);
    engine.close();
  }
  assert.equal(engines[5].closed, true);
  assert.throws(() => new Engine(), TypeError);
});

test('lookups: flags, limits, unlimited, unknowns, allows with defaults and bigints', (t) => {
  const engine = closing(t, Engine.fromCatalog(catalog()));
  assert.equal(engine.enabled('cus_pro', 'sso'), true);
  assert.equal(engine.enabled('nobody', 'sso'), false);
  assert.equal(engine.enabled('cus_pro', 'nope'), false);
  assert.equal(engine.limit('cus_pro', 'seats'), 5); // per unit x quantity 5
  assert.equal(engine.limit('cus_ent', 'projects'), Infinity);
  assert.equal(engine.limit('nobody', 'projects'), 3);
  assert.equal(engine.limit('cus_pro', 'sso'), 0); // a flag has no limit
  assert.equal(engine.limit('cus_pro', 'nope'), 0);
  assert.equal(engine.allows('cus_pro', 'projects', 49), true);
  assert.equal(engine.allows('cus_pro', 'projects', 50), false);
  assert.equal(engine.allows('cus_pro', 'projects', 48, { requested: 2 }), true);
  assert.equal(engine.allows('cus_pro', 'projects', 48, { requested: 3 }), false);
  assert.equal(engine.allows('cus_pro', 'projects', 49n, { requested: 1n }), true);
  assert.equal(engine.allows('cus_ent', 'projects', 2n ** 70n), true); // unlimited
  assert.equal(engine.allows('cus_pro', 'projects', 2n ** 70n), false);
  assert.equal(engine.allows('cus_pro', 'projects', 1e300), false);
  assert.equal(engine.allows('cus_pro', 'projects', 2n ** 200n), false); // more words than u64
  assert.equal(engine.allows('cus_pro', 'projects', 0n, { requested: 2n ** 128n }), false);
  assert.throws(() => engine.allows('cus_pro', 'projects', -(2n ** 200n)), RangeError);
  assert.equal(engine.allows('cus_pro', 'sso', 1e9), true); // a flag allows when enabled
  assert.throws(() => engine.allows('cus_pro', 'projects', -1), RangeError);
  assert.throws(() => engine.allows('cus_pro', 'projects', -1n), RangeError);
  assert.throws(() => engine.allows('cus_pro', 'projects', 1.5), RangeError);
  assert.throws(() => engine.allows('cus_pro', 'projects', '1'), TypeError);
  // Unicode ids go through as UTF-8, long ones too.
  const long = 'é'.repeat(300);
  const other = closing(t, Engine.fromCatalog({
    features: [{ key: 'sso', type: 'flag', default: false }],
    customers: [{ id: long, overrides: { sso: true } }, { id: '顧客😀', overrides: { sso: true } }],
  }));
  assert.equal(other.enabled(long, 'sso'), true);
  assert.equal(other.enabled(long.slice(1), 'sso'), false);
  assert.equal(other.enabled('顧客😀', 'sso'), true);
});

test('ids read exactly: one non-ASCII unit anywhere, lookalikes, lengths around the copy buffer', (t) => {
  // An id with one non-ASCII character at every position and of many lengths, next to the id
  // with that character's low byte (Ŵ is U+0174, whose low byte is "t"): only the exact id matches.
  const ids = [];
  for (const len of [1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 253, 254, 255, 256, 300]) {
    for (const at of new Set([0, 1, len >> 1, len - 2, len - 1])) {
      if (at < 0 || at >= len) continue;
      for (const ch of ['\u0174', '\u00e9', '\u0080', '\ud83d\ude00']) {
        ids.push('a'.repeat(at) + ch + 'b'.repeat(len - at - 1));
      }
    }
    ids.push('c'.repeat(len));
  }
  const engine = closing(t, Engine.fromCatalog({
    features: [{ key: 'sso', type: 'flag', default: false }],
    customers: ids.map((id) => ({ id, overrides: { sso: true } })),
  }));
  const lowByte = (id) => Array.from(id, (ch) => String.fromCharCode(ch.charCodeAt(0) & 0x7f)).join('');
  for (const id of ids) {
    assert.equal(engine.enabled(id, 'sso'), true, JSON.stringify(id));
    assert.equal(engine.check(id, 'sso').reason, 'override', JSON.stringify(id));
    if (lowByte(id) !== id && !ids.includes(lowByte(id))) {
      assert.equal(engine.enabled(lowByte(id), 'sso'), false, JSON.stringify(lowByte(id)));
    }
  }
  assert.equal(engine.enabled('c'.repeat(255) + 'x', 'sso'), false);
  assert.equal(engine.feature('sso').enabled('c'.repeat(300)), true);
  // A lone surrogate reads as U+FFFD, on the fast path's neighbours as on the general path.
  const lone = closing(t, Engine.fromCatalog({
    features: [{ key: 'sso', type: 'flag', default: false }],
    customers: [{ id: 'ab\ufffdcdefghij', overrides: { sso: true } }],
  }));
  assert.equal(lone.enabled('ab\ud800cdefghij', 'sso'), true);
  assert.equal(lone.enabled('ab\udc00cdefghij', 'sso'), true);
});

test('`at` as unix seconds or a Date', (t) => {
  const engine = closing(t, Engine.fromCatalog(catalog()));
  // cus_cancelling's subscription ends at AT + 3600.
  assert.equal(engine.limit('cus_cancelling', 'projects', { at: AT }), 50);
  assert.equal(engine.limit('cus_cancelling', 'projects', { at: AT + 3600 }), 3);
  assert.equal(engine.limit('cus_cancelling', 'projects', { at: new Date((AT + 3599) * 1000) }), 50);
  assert.equal(engine.enabled('cus_cancelling', 'sso', { at: new Date((AT + 3600) * 1000) }), false);
  assert.equal(engine.allows('cus_cancelling', 'projects', 10, { at: AT + 7200 }), false);
  assert.equal(engine.check('cus_cancelling', 'projects', { at: AT + 7200 }).reason, 'default');
  assert.equal(engine.entitlements('cus_cancelling', { at: AT }).projects.limit, 50);
  assert.throws(() => engine.enabled('cus_pro', 'sso', { at: '2024-01-01' }), TypeError);
  assert.throws(() => engine.enabled('cus_pro', 'sso', { at: new Date('nope') }), RangeError);
  assert.throws(() => engine.enabled('cus_pro', 'sso', { at: NaN }), RangeError);
  assert.throws(() => engine.enabled('cus_pro', 'sso', 5), TypeError);
});

test('check() gives a frozen Decision; entitlements() every feature', (t) => {
  const engine = closing(t, Engine.fromCatalog(catalog()));
  const d = engine.check('cus_ent', 'projects');
  assert.ok(d instanceof entitle.Decision);
  assert.deepEqual({ ...d }, { featureType: 'limit', enabled: true, limit: Infinity, reason: 'subscription', version: 0 });
  assert.ok(Object.isFrozen(d));
  assert.throws(() => { 'use strict'; d.enabled = false; }, TypeError);
  assert.deepEqual({ ...engine.check('cus_override', 'projects') }, { featureType: 'limit', enabled: true, limit: 7, reason: 'override', version: 0 });
  assert.deepEqual({ ...engine.check('cus_pro', 'sso') }, { featureType: 'flag', enabled: true, limit: null, reason: 'subscription', version: 0 });
  assert.deepEqual({ ...engine.check('nobody', 'projects') }, { featureType: 'limit', enabled: true, limit: 3, reason: 'customer_not_found', version: 0 });
  assert.deepEqual({ ...engine.check('nobody', 'nope') }, { featureType: null, enabled: false, limit: null, reason: 'feature_not_found', version: 0 });
  const all = engine.entitlements('cus_pro');
  assert.deepEqual(Object.keys(all), ['sso', 'projects', 'seats', 'api_calls']);
  assert.equal(all.seats.limit, 5);
  assert.ok(Object.isFrozen(all) && Object.isFrozen(all.sso));
  assert.deepEqual(Object.keys(engine.entitlements('nobody')).length, 4);
  // Equal decisions may be one interned object; different ones never are.
  assert.equal(engine.check('cus_pro', 'projects'), engine.check('cus_pro', 'projects'));
  assert.notEqual(engine.check('cus_pro', 'projects'), engine.check('cus_override', 'projects'));
  for (const [customer, limit] of [['cus_pro', 50], ['cus_override', 7], ['nobody', 3], ['cus_ent', Infinity], ['cus_pro', 50]]) {
    assert.equal(engine.check(customer, 'projects').limit, limit);
  }
  assert.equal(engine.entitlements('nobody').sso.reason, 'customer_not_found');
  // A feature key that is also an Object.prototype name is an own key like any other.
  const odd = closing(t, Engine.fromCatalog({ features: [{ key: '__proto__', type: 'flag', default: true }] }));
  const odds = odd.entitlements('x');
  assert.equal(Object.getPrototypeOf(odds), Object.prototype);
  assert.equal(Object.getOwnPropertyDescriptor(odds, '__proto__').value.enabled, true);
});

test('replace, replaceFile and applyDelta change the answers and the version', (t) => {
  const snaps = snapshots(tmpDir(t));
  const engine = closing(t, Engine.fromBytes(snaps.v1));
  assert.equal(engine.version, 1);
  assert.equal(engine.applyDelta(snaps.delta), 2);
  assert.equal(engine.limit('cus_pro', 'projects'), 60);
  assert.equal(engine.check('cus_pro', 'projects').version, 2);
  // The same delta no longer fits: the content is kept.
  assert.throws(() => engine.applyDelta(snaps.delta), (err) => err instanceof DeltaError && err.code === 'ENTITLE_WRONG_BASE' && err.result === 13);
  assert.equal(engine.version, 2);
  assert.equal(engine.replace(snaps.v1), 1);
  assert.equal(engine.limit('cus_pro', 'projects'), 50);
  assert.equal(engine.replaceFile(snaps.v2Path), 2);
  assert.equal(engine.limit('cus_pro', 'projects'), 60);
  assert.throws(() => engine.replace(Buffer.from('not a snapshot at all')), (err) => err instanceof FormatError && err.code === 'ENTITLE_BAD_MAGIC');
  assert.throws(() => engine.replace(snaps.v1.subarray(0, 40)), FormatError);
  assert.throws(() => engine.replace('v1'), TypeError);
  assert.equal(engine.version, 2);
});

test('status of a local engine', (t) => {
  const engine = closing(t, Engine.fromCatalog(catalog()));
  const status = engine.status;
  assert.ok(Object.isFrozen(status));
  assert.equal(status.state, entitle.SyncState.READY);
  assert.equal(status.syncing, false);
  assert.equal(status.hasData, true);
  assert.equal(status.lastError, null);
  assert.equal(engine.connected, false);
});

test('errors: each kind of failure has the class and code of its C result code', (t) => {
  const dir = tmpDir(t);
  const snaps = snapshots(dir);
  const newer = Buffer.from(snaps.v1);
  newer[8] = 99; // the format version, after the 8-byte magic
  const v2 = closing(t, Engine.fromBytes(snaps.v2));
  const closed = Engine.fromBytes(snaps.v1);
  closed.close();
  const cases = [
    [() => Engine.fromCatalog('{'), CatalogError, 8, 'ENTITLE_INVALID_CATALOG'],
    [() => Engine.fromBytes(Buffer.from('junk')), FormatError, 9, 'ENTITLE_BAD_MAGIC'],
    [() => Engine.fromBytes(newer), FormatError, 10, 'ENTITLE_UNSUPPORTED_VERSION'],
    [() => Engine.fromBytes(snaps.v1.subarray(0, 100)), FormatError, 11, 'ENTITLE_CORRUPT'],
    [() => v2.applyDelta(Buffer.from('junk')), FormatError, 9, 'ENTITLE_BAD_MAGIC'],
    [() => v2.applyDelta(snaps.delta), DeltaError, 13, 'ENTITLE_WRONG_BASE'],
    [() => Engine.fromFile(path.join(dir, 'missing.snap')), FileError, 7, 'ENTITLE_IO'],
    [() => Engine.connect('ftp://example.invalid'), ConfigError, 15, 'ENTITLE_INVALID_CONFIG'],
    [() => Engine.fromCatalog(Buffer.from([0xff])), entitle.ArgumentError, 2, 'ENTITLE_INVALID_UTF8'],
    [() => closed.replace(snaps.v2), ClosedError, 17, 'ENTITLE_CLOSED'],
  ];
  for (const [call, Class, result, code] of cases) {
    assert.throws(call, (err) => {
      assert.ok(err instanceof Class && err instanceof EntitleError, `${code}: ${err}`);
      assert.equal(err.name, Class.name);
      assert.deepEqual([err.result, err.code], [result, code]);
      return true;
    });
  }
});

test('errors: classes and stable codes follow the C result code, with the library detail', (t) => {
  const dir = tmpDir(t);
  const missing = path.join(dir, 'missing.snap');
  assert.throws(() => Engine.fromFile(missing), (err) =>
    err instanceof FileError && err instanceof EntitleError && err instanceof Error &&
    err.code === 'ENTITLE_IO' && err.result === 7 && err.message.includes(missing) && err.name === 'FileError');
  assert.throws(() => Engine.fromCatalog({ features: [{ key: 'seats', type: 'limit', default: 1.5 }] }), (err) =>
    err instanceof CatalogError && err.code === 'ENTITLE_INVALID_CATALOG' && err.message.startsWith('features[0].default:'));
  assert.throws(() => Engine.fromCatalog('{'), CatalogError);
  assert.throws(() => Engine.fromCatalog(Buffer.from([0xff, 0xfe])), (err) => err.code === 'ENTITLE_INVALID_UTF8');
  assert.throws(() => Engine.fromBytes(Buffer.alloc(100)), (err) => err instanceof FormatError && err.code === 'ENTITLE_BAD_MAGIC');
  assert.throws(() => Engine.connect('ftp://example.com'), (err) => err instanceof ConfigError && err.code === 'ENTITLE_INVALID_CONFIG');
  assert.throws(() => Engine.connect('http://127.0.0.1:9', { token: 'bad\ntoken' }), ConfigError);
  assert.throws(() => Engine.connect('http://127.0.0.1:9', { pollInterval: -1 }), RangeError);
  assert.throws(() => Engine.connect('http://127.0.0.1:9', { pollInterval: '1' }), TypeError);
  assert.throws(() => Engine.connect(42), TypeError);
  // Wrong argument types are TypeErrors, never crashes.
  const engine = closing(t, Engine.fromCatalog(catalog()));
  for (const bad of [undefined, null, 1, {}, Buffer.from('x'), Symbol('s')]) {
    assert.throws(() => engine.enabled(bad, 'sso'), TypeError);
    assert.throws(() => engine.limit('cus_pro', bad), TypeError);
    assert.throws(() => engine.check(bad, 'sso'), TypeError);
    assert.throws(() => engine.entitlements(bad), TypeError);
  }
  assert.throws(() => Engine.fromCatalog(5), TypeError);
  assert.throws(() => Engine.fromBytes('x'), TypeError);
  assert.throws(() => Engine.fromFile(5), TypeError);
});

test('close() is idempotent; later calls throw ClosedError; Symbol.dispose closes', async (t) => {
  const engine = Engine.fromCatalog(catalog());
  engine.close();
  engine.close();
  assert.equal(engine.closed, true);
  const closed = (err) => err instanceof ClosedError && err.code === 'ENTITLE_CLOSED' && err.result === 17;
  for (const call of [
    () => engine.enabled('cus_pro', 'sso'),
    () => engine.limit('cus_pro', 'projects', { at: AT }),
    () => engine.allows('cus_pro', 'projects', 1),
    () => engine.check('cus_pro', 'sso'),
    () => engine.entitlements('cus_pro'),
    () => engine.version,
    () => engine.status,
    () => engine.replace(Buffer.alloc(0)),
    () => engine.applyDelta(Buffer.alloc(0)),
  ]) {
    assert.throws(call, closed);
  }
  await assert.rejects(engine.waitReady(10), closed);
  const scoped = Engine.fromCatalog(catalog());
  assert.equal(scoped.closed, false);
  scoped[Symbol.dispose || Symbol.for('nodejs.dispose')]();
  assert.equal(scoped.closed, true);
});

test('waitReady on a local engine resolves true at once; bad timeouts reject', async (t) => {
  const engine = closing(t, Engine.fromCatalog(catalog()));
  assert.equal(await engine.waitReady(0), true);
  assert.equal(await engine.waitReady(1000), true);
  await assert.rejects(engine.waitReady(-1), RangeError);
  await assert.rejects(engine.waitReady('soon'), TypeError);
});

test('the package exports and the library version', (t) => {
  assert.match(entitle.libraryVersion, /^\d+\.\d+\.\d+/);
  assert.equal(entitle.libraryVersion, require(path.join(PACKAGE, 'package.json')).version);
});
