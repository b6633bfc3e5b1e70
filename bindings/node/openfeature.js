'use strict';
// An OpenFeature provider (for @openfeature/server-sdk) answering from an entitle engine.
//
// The targeting key is the customer id; flag keys are feature keys. Boolean evaluations read
// `enabled` (a flag's value; a limit that is unlimited or > 0); number evaluations read a limit,
// `Infinity` when unlimited. Reasons: override and subscription are TARGETING_MATCH; default and
// customer_not_found are DEFAULT; an unknown feature is a FLAG_NOT_FOUND error (the caller's
// default is returned). The provider needs no SDK at run time: it returns plain resolution details.

const { Engine } = require('./index.js');

const TARGETING = { override: 'TARGETING_MATCH', subscription: 'TARGETING_MATCH', default: 'DEFAULT', customer_not_found: 'DEFAULT' };

function optionalSdk() {
  try {
    return require('@openfeature/server-sdk');
  } catch {
    return null;
  }
}

function failure(defaultValue, errorCode, errorMessage) {
  return { value: defaultValue, reason: 'ERROR', errorCode, errorMessage };
}

function atOf(context) {
  const at = context && context.at;
  return at instanceof Date || typeof at === 'number' ? { at } : undefined;
}

/** An OpenFeature server provider over an `Engine` (the engine stays the caller's to close). */
class OpenFeatureProvider {
  /**
   * @param {Engine} engine the engine to answer from
   * @param {{ readyTimeoutMs?: number }} [options] how long `initialize` waits for a syncing
   *   engine's first content (default 10000)
   */
  constructor(engine, options = {}) {
    if (!(engine instanceof Engine)) throw new TypeError('engine must be an entitle Engine');
    this.engine = engine;
    this.readyTimeoutMs = options.readyTimeoutMs === undefined ? 10_000 : options.readyTimeoutMs;
    this.metadata = Object.freeze({ name: 'entitle' });
    this.runsOn = 'server';
    // New content versions reach the SDK as PROVIDER_CONFIGURATION_CHANGED (its handlers and
    // hooks re-evaluate), when the SDK is there to receive them.
    const sdk = optionalSdk();
    if (sdk !== null) {
      this.events = new sdk.OpenFeatureEventEmitter();
      this.onChange = () => this.events.emit(sdk.ProviderEvents.ConfigurationChanged, { message: `entitle version ${engine.version}` });
      engine.on('change', this.onChange);
    }
  }

  /** Called by the SDK when the provider is replaced or shut down: stops listening to the engine. */
  async onClose() {
    if (this.onChange) this.engine.off('change', this.onChange);
  }

  /** Called by the SDK when the provider is set: waits for a syncing engine's first content. */
  async initialize() {
    if (!(await this.engine.waitReady(this.readyTimeoutMs))) {
      throw new Error(`entitle: no content after ${this.readyTimeoutMs} ms (${this.engine.status.lastError || 'no error reported yet'})`);
    }
  }

  #decide(flagKey, defaultValue, context) {
    const customer = context && context.targetingKey;
    if (typeof customer !== 'string' || customer === '') {
      return { error: failure(defaultValue, 'TARGETING_KEY_MISSING', 'the targeting key (the customer id) is missing') };
    }
    const decision = this.engine.check(customer, flagKey, atOf(context));
    if (decision.featureType === null) {
      return { error: failure(defaultValue, 'FLAG_NOT_FOUND', `feature ${JSON.stringify(flagKey)} is not in the catalog`) };
    }
    return { decision };
  }

  #details(value, decision) {
    return {
      value,
      reason: TARGETING[decision.reason],
      variant: decision.featureType === 'limit' && decision.limit === Infinity ? 'unlimited' : String(value),
      flagMetadata: { entitleReason: decision.reason, version: decision.version },
    };
  }

  async resolveBooleanEvaluation(flagKey, defaultValue, context) {
    const { error, decision } = this.#decide(flagKey, defaultValue, context);
    return error || this.#details(decision.enabled, decision);
  }

  async resolveNumberEvaluation(flagKey, defaultValue, context) {
    const { error, decision } = this.#decide(flagKey, defaultValue, context);
    if (error) return error;
    if (decision.featureType !== 'limit') {
      return failure(defaultValue, 'TYPE_MISMATCH', `feature ${JSON.stringify(flagKey)} is a flag, not a limit`);
    }
    return this.#details(decision.limit, decision);
  }

  async resolveStringEvaluation(flagKey, defaultValue) {
    return failure(defaultValue, 'TYPE_MISMATCH', 'entitle features are flags (boolean) or limits (number)');
  }

  async resolveObjectEvaluation(flagKey, defaultValue) {
    return failure(defaultValue, 'TYPE_MISMATCH', 'entitle features are flags (boolean) or limits (number)');
  }
}

module.exports = { OpenFeatureProvider };
