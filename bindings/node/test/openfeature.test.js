'use strict';
// The OpenFeature provider through the real @openfeature/server-sdk client: booleans, numbers,
// unlimited, reasons, unknown features, a missing targeting key, wrong types, and readiness.

const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');
const { OpenFeature } = require('@openfeature/server-sdk');
const { PACKAGE, catalog } = require('./helpers.js');
const { Engine } = require(PACKAGE);
const { OpenFeatureProvider } = require(path.join(PACKAGE, 'openfeature.js'));

test('evaluations through the OpenFeature client', async (t) => {
  const engine = Engine.fromCatalog(catalog());
  t.after(() => engine.close());
  await OpenFeature.setProviderAndWait('entitle-test', new OpenFeatureProvider(engine));
  t.after(() => OpenFeature.close());
  const client = OpenFeature.getClient('entitle-test');

  let d = await client.getBooleanDetails('sso', false, { targetingKey: 'cus_pro' });
  assert.equal(d.value, true);
  assert.equal(d.reason, 'TARGETING_MATCH');
  assert.deepEqual(d.flagMetadata, { entitleReason: 'subscription', version: 0 });
  d = await client.getBooleanDetails('sso', true, { targetingKey: 'nobody' });
  assert.deepEqual([d.value, d.reason, d.errorCode], [false, 'DEFAULT', undefined]);
  assert.equal(d.flagMetadata.entitleReason, 'customer_not_found');
  d = await client.getBooleanDetails('projects', false, { targetingKey: 'cus_override' });
  assert.deepEqual([d.value, d.reason, d.flagMetadata.entitleReason], [true, 'TARGETING_MATCH', 'override']);

  let n = await client.getNumberDetails('projects', -1, { targetingKey: 'cus_pro' });
  assert.deepEqual([n.value, n.reason, n.variant], [50, 'TARGETING_MATCH', '50']);
  n = await client.getNumberDetails('projects', -1, { targetingKey: 'cus_ent' });
  assert.deepEqual([n.value, n.reason, n.variant], [Infinity, 'TARGETING_MATCH', 'unlimited']);
  n = await client.getNumberDetails('projects', -1, { targetingKey: 'nobody' });
  assert.deepEqual([n.value, n.reason], [3, 'DEFAULT']);
  n = await client.getNumberDetails('projects', -1, { targetingKey: 'cus_cancelling', at: 1_700_000_000 + 7200 });
  assert.deepEqual([n.value, n.reason], [3, 'DEFAULT']);
  assert.equal(await client.getNumberValue('seats', 0, { targetingKey: 'cus_pro' }), 5);

  // Errors return the caller's default with an error code.
  d = await client.getBooleanDetails('nope', true, { targetingKey: 'cus_pro' });
  assert.deepEqual([d.value, d.reason, d.errorCode], [true, 'ERROR', 'FLAG_NOT_FOUND']);
  n = await client.getNumberDetails('sso', 7, { targetingKey: 'cus_pro' });
  assert.deepEqual([n.value, n.reason, n.errorCode], [7, 'ERROR', 'TYPE_MISMATCH']);
  d = await client.getBooleanDetails('sso', false, {});
  assert.deepEqual([d.value, d.errorCode], [false, 'TARGETING_KEY_MISSING']);
  const s = await client.getStringDetails('sso', 'x', { targetingKey: 'cus_pro' });
  assert.deepEqual([s.value, s.errorCode], ['x', 'TYPE_MISMATCH']);
  const o = await client.getObjectDetails('sso', { a: 1 }, { targetingKey: 'cus_pro' });
  assert.deepEqual([o.value, o.errorCode], [{ a: 1 }, 'TYPE_MISMATCH']);
});

test('a new version reaches the SDK as a configuration change', async (t) => {
  const { ProviderEvents } = require('@openfeature/server-sdk');
  const snaps = require('./helpers.js').snapshots(require('./helpers.js').tmpDir(t));
  const engine = Engine.fromBytes(snaps.v1);
  t.after(() => engine.close());
  await OpenFeature.setProviderAndWait('entitle-events', new OpenFeatureProvider(engine));
  const client = OpenFeature.getClient('entitle-events');
  const changed = new Promise((resolve) => client.addHandler(ProviderEvents.ConfigurationChanged, resolve));
  const keepAlive = setTimeout(() => {}, 20_000);
  engine.applyDelta(snaps.delta);
  const details = await changed;
  clearTimeout(keepAlive);
  assert.match(details.message, /version 2/);
  assert.equal(await client.getNumberValue('projects', 0, { targetingKey: 'cus_pro' }), 60);
  await OpenFeature.close();
});

test('initialize waits for a syncing engine and fails when it gets no content', async (t) => {
  const engine = Engine.connect('http://127.0.0.1:9', { pollInterval: 0.1, maxBackoff: 0.2 });
  t.after(() => engine.close());
  const provider = new OpenFeatureProvider(engine, { readyTimeoutMs: 300 });
  await assert.rejects(provider.initialize(), /no content after 300 ms/);
  await new OpenFeatureProvider(Engine.fromCatalog(catalog())).initialize();
  assert.throws(() => new OpenFeatureProvider({}), TypeError);
});
