'use strict';
// The shared conformance suite (tests/conformance), read as its README says, through the public
// API: every valid file's catalog is handed to Engine.fromCatalog as its exact text, and every
// case is checked field by field through check(), enabled(), limit() and allows() at the case's
// time. Every invalid file must throw a CatalogError whose message starts with `expect_error:`.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');
const { CONFORMANCE, PACKAGE, parseJson } = require('./helpers.js');
const { Engine, CatalogError } = require(PACKAGE);

const MARKER = '\n  "catalog": ';

/** The exact text of the top-level `catalog` value (never a re-serialized parse). */
function rawCatalog(text) {
  const start = text.indexOf(MARKER);
  assert.ok(start >= 0 && text.indexOf(MARKER, start + 1) < 0, 'the catalog marker must occur exactly once');
  const from = start + MARKER.length;
  return text.slice(from, parseJson(text, from).end);
}

function load(file) {
  const text = fs.readFileSync(file, 'utf8');
  return { doc: parseJson(text).value, raw: rawCatalog(text) };
}

const VALID = fs.readdirSync(CONFORMANCE).filter((f) => f.endsWith('.json')).sort();
const INVALID = fs.readdirSync(path.join(CONFORMANCE, 'invalid')).filter((f) => f.endsWith('.json')).sort();

test('the suite is there', () => {
  // A runner that finds no files would pass vacuously.
  assert.ok(VALID.length >= 17, `${VALID.length} valid files`);
  assert.ok(INVALID.length >= 90, `${INVALID.length} invalid files`);
});

test('the raw catalog keeps the exact text', () => {
  const text = '{\n  "description": "x",\n  "catalog": {"a": 1.0e3, "a": "\\u00f8", "n": 9223372036854775807},\n  "cases": []\n}\n';
  assert.equal(rawCatalog(text), '{"a": 1.0e3, "a": "\\u00f8", "n": 9223372036854775807}');
  assert.equal(parseJson(text).value.catalog.n, 9223372036854775807n);
});

/**
 * Limits are JavaScript numbers: `Infinity` for unlimited, and values above 2^53 read as the
 * nearest double, so the expected integer is compared after the same rounding.
 */
function expectedLimit(value) {
  if (value === 'unlimited') return Infinity;
  if (value === null) return null;
  return Number(value);
}

function runCase(engine, c) {
  const { customer, feature, expected } = c;
  const at = Number(c.at);
  const problems = [];
  const want = {
    featureType: expected.feature_type,
    enabled: expected.enabled,
    limit: expectedLimit(expected.limit),
    reason: expected.reason,
  };
  const d = engine.check(customer, feature, { at });
  for (const key of Object.keys(want)) {
    if (!Object.is(d[key], want[key])) problems.push(`check().${key}: got ${d[key]}, expected ${want[key]}`);
  }
  if (!Object.isFrozen(d)) problems.push('the Decision is not frozen');
  const enabled = engine.enabled(customer, feature, { at });
  if (enabled !== want.enabled) problems.push(`enabled(): got ${enabled}`);
  // SEMANTICS 2.1: an API that must return a number returns 0 for flags and unknown features.
  const limit = engine.limit(customer, feature, { at: new Date(at * 1000) });
  const wantLimit = want.limit === null ? 0 : want.limit;
  if (!Object.is(limit, wantLimit)) problems.push(`limit(): got ${limit}, expected ${wantLimit}`);
  if ('usage' in c) {
    const options = 'requested' in c ? { at, requested: c.requested } : { at };
    const allowed = engine.allows(customer, feature, c.usage, options);
    if (allowed !== expected.allowed) problems.push(`allows(): got ${allowed}, expected ${expected.allowed}`);
  } else if ('allowed' in expected) {
    problems.push('`allowed` without `usage`');
  }
  return problems;
}

for (const name of VALID) {
  test(`conformance ${name}`, () => {
    const { doc, raw } = load(path.join(CONFORMANCE, name));
    assert.ok(doc.cases.length > 0, 'a file without cases');
    const engine = Engine.fromCatalog(raw);
    try {
      const failures = [];
      for (const c of doc.cases) {
        const problems = runCase(engine, c);
        if (problems.length > 0) failures.push(`${c.name}: ${problems.join('; ')}`);
      }
      assert.deepEqual(failures, []);
    } finally {
      engine.close();
    }
  });
}

test('conformance invalid/*', () => {
  const failures = [];
  for (const name of INVALID) {
    const { doc, raw } = load(path.join(CONFORMANCE, 'invalid', name));
    try {
      Engine.fromCatalog(raw).close();
      failures.push(`${name}: loaded`);
    } catch (err) {
      if (!(err instanceof CatalogError)) {
        failures.push(`${name}: ${err && err.name}: ${err && err.message}`);
      } else if (err.code !== 'ENTITLE_INVALID_CATALOG' || !err.message.startsWith(`${doc.expect_error}:`)) {
        failures.push(`${name}: ${err.code} ${JSON.stringify(err.message)} does not start with ${doc.expect_error}:`);
      }
    }
  }
  assert.deepEqual(failures, []);
});
