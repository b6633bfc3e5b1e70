'use strict';
// Express: a middleware that lets a request through only when its customer is entitled to a
// feature, and answers 403 with the decision's reason otherwise.
//
//   node examples/express.js [catalog-or-snapshot]   (then: curl -H 'x-customer-id: cus_pro' localhost:3000/reports)

const express = require('express');
const { Engine } = require('entitle');

/**
 * Middleware factory: `entitled(engine, 'sso')` for a flag, `entitled(engine, 'projects',
 * { usage: (req) => countProjects(req) })` to ask whether one more fits in a limit. The customer
 * id comes from `customerOf(req)` (default: the `x-customer-id` header).
 */
function entitled(engine, feature, { usage, customerOf = (req) => req.get('x-customer-id') } = {}) {
  return (req, res, next) => {
    const customer = customerOf(req);
    if (!customer) return res.status(401).json({ error: 'no customer' });
    const decision = engine.check(customer, feature);
    const allowed = usage ? engine.allows(customer, feature, usage(req)) : decision.enabled;
    if (!allowed) {
      return res.status(403).json({ error: 'not entitled', feature, reason: decision.reason, limit: decision.limit });
    }
    req.entitlement = decision;
    return next();
  };
}

/** The example application: two guarded routes. */
function createApp(engine) {
  const app = express();
  app.get('/reports', entitled(engine, 'sso'), (req, res) => res.json({ ok: true, version: req.entitlement.version }));
  app.post('/projects', entitled(engine, 'projects', { usage: (req) => Number(req.query.current ?? 0) }),
    (req, res) => res.status(201).json({ created: true }));
  return app;
}

module.exports = { entitled, createApp };

if (require.main === module) {
  const engine = Engine.fromFile(process.argv[2] || `${__dirname}/../../../examples/catalog.json`);
  createApp(engine).listen(Number(process.env.PORT || 3000), () => console.log('listening'));
}
