'use strict';
// Fastify: a plugin that checks entitlements in a preHandler hook. A route names its feature in
// `config.feature` (and optionally `config.usage`); requests whose customer is not entitled get
// 403 with the decision's reason.
//
//   node examples/fastify.js [catalog-or-snapshot]

const Fastify = require('fastify');
const { Engine } = require('entitle');

/** The plugin: `app.register(entitlePlugin, { engine })`; `request.entitlement` holds the decision. */
function entitlePlugin(fastify, { engine, customerOf = (request) => request.headers['x-customer-id'] }, done) {
  fastify.decorateRequest('entitlement', null);
  fastify.addHook('preHandler', async (request, reply) => {
    const { feature, usage } = request.routeOptions.config;
    if (!feature) return;
    const customer = customerOf(request);
    if (!customer) return reply.code(401).send({ error: 'no customer' });
    const decision = engine.check(customer, feature);
    const allowed = usage ? engine.allows(customer, feature, usage(request)) : decision.enabled;
    if (!allowed) {
      return reply.code(403).send({ error: 'not entitled', feature, reason: decision.reason, limit: decision.limit });
    }
    request.entitlement = decision;
  });
  done();
}
// Apply the hook to the routes of the registering scope (what `fastify-plugin` does).
entitlePlugin[Symbol.for('skip-override')] = true;

/** The example application: two guarded routes and an open one. */
function createApp(engine) {
  const app = Fastify();
  app.register(entitlePlugin, { engine });
  app.get('/reports', { config: { feature: 'sso' } }, async (request) => ({ ok: true, version: request.entitlement.version }));
  app.post('/projects', { config: { feature: 'projects', usage: (request) => Number(request.query.current ?? 0) } },
    async (request, reply) => reply.code(201).send({ created: true }));
  app.get('/health', async () => ({ ok: true }));
  return app;
}

module.exports = { entitlePlugin, createApp };

if (require.main === module) {
  const engine = Engine.fromFile(process.argv[2] || `${__dirname}/../../../examples/catalog.json`);
  createApp(engine).listen({ port: Number(process.env.PORT || 3000) }).then(() => console.log('listening'));
}
