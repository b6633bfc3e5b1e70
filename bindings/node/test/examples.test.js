'use strict';
// The Express middleware and the Fastify plugin, started for real on 127.0.0.1 (a free port) and
// called over HTTP: 200 when entitled, 403 with the reason when not, 401 without a customer.

const assert = require('node:assert/strict');
const { once } = require('node:events');
const { test } = require('node:test');
const { catalog } = require('./helpers.js');
const { Engine } = require('entitle');

async function expectations(base) {
  const get = (path, customer) => fetch(base + path, { headers: customer ? { 'x-customer-id': customer } : {} });
  const post = (path, customer) => fetch(base + path, { method: 'POST', headers: { 'x-customer-id': customer } });

  let res = await get('/reports', 'cus_pro');
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { ok: true, version: 0 });
  res = await get('/reports', 'nobody');
  assert.equal(res.status, 403);
  assert.deepEqual(await res.json(), { error: 'not entitled', feature: 'sso', reason: 'customer_not_found', limit: null });
  res = await get('/reports');
  assert.equal(res.status, 401);
  res = await post('/projects?current=49', 'cus_pro');
  assert.equal(res.status, 201);
  res = await post('/projects?current=50', 'cus_pro');
  assert.equal(res.status, 403);
  assert.deepEqual(await res.json(), { error: 'not entitled', feature: 'projects', reason: 'subscription', limit: 50 });
  res = await post('/projects?current=1000000', 'cus_ent');
  assert.equal(res.status, 201); // unlimited
  res = await post('/projects?current=3', 'cus_override_gone');
  assert.equal(res.status, 403);
  assert.equal((await res.json()).reason, 'customer_not_found');
}

test('Express middleware over HTTP', async (t) => {
  const { createApp } = require('../examples/express.js');
  const engine = Engine.fromCatalog(catalog());
  t.after(() => engine.close());
  const server = createApp(engine).listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise((resolve) => server.close(resolve)));
  await expectations(`http://127.0.0.1:${server.address().port}`);
});

test('Fastify plugin over HTTP', async (t) => {
  const { createApp } = require('../examples/fastify.js');
  const engine = Engine.fromCatalog(catalog());
  t.after(() => engine.close());
  const app = createApp(engine);
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  t.after(() => app.close());
  await expectations(address);
  const res = await fetch(`${address}/health`);
  assert.equal(res.status, 200);
});
