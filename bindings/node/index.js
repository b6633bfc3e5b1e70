'use strict';
// entitle for Node: the JavaScript layer over the native addon (src/entitle_node.c).
//
// Each lookup is one call into the addon, which crosses into libentitle once. The engine's
// native state is a `napi_external` held in a private field; everything here is argument
// handling, value shaping and the change event.

const { EventEmitter } = require('node:events');
const { fileURLToPath } = require('node:url');
// A copy of the addon's exports: the object the addon fills has too many properties added one by
// one and V8 keeps it as a dictionary, so every `native.enabled` read would be a hash lookup; a
// copy made by spreading has fast properties, which the optimizing compiler reads as constants.
const native = { ...require('./binding.js').load() };

// ---------------------------------------------------------------------------------------------
// Errors

/** The C ABI's result codes (`entitle_result`) by number; the `code` of an error is `ENTITLE_` + name. */
const RESULT_NAMES = Object.freeze({
  1: 'NULL_PARAMETER',
  2: 'INVALID_UTF8',
  3: 'INVALID_PARAMETER',
  4: 'PANIC',
  5: 'BUFFER_TOO_SMALL',
  6: 'OUT_OF_RANGE',
  7: 'IO',
  8: 'INVALID_CATALOG',
  9: 'BAD_MAGIC',
  10: 'UNSUPPORTED_VERSION',
  11: 'CORRUPT',
  12: 'TOO_LARGE',
  13: 'WRONG_BASE',
  14: 'FEATURE_MISMATCH',
  15: 'INVALID_CONFIG',
  16: 'TIMEOUT',
  17: 'CLOSED',
});

/** The stable `code` string of a C result code. */
function codeOf(result) {
  const name = RESULT_NAMES[result];
  return name === undefined ? `ENTITLE_RESULT_${result}` : `ENTITLE_${name}`;
}

/**
 * Base class of every error the library reports. `message` is the library's detail (for a
 * catalog, the path of the offending value first); `code` is stable (`ENTITLE_INVALID_CATALOG`)
 * and follows from `result`, the C ABI's result code.
 */
class EntitleError extends Error {
  constructor(message, result) {
    super(message);
    this.name = new.target.name;
    this.result = result;
    this.code = codeOf(result);
  }
}
/** An argument the library rejected (NULL_PARAMETER, INVALID_UTF8, INVALID_PARAMETER). */
class ArgumentError extends EntitleError {}
/** A file could not be read (IO); the message names the file and the system error. */
class FileError extends EntitleError {}
/** The catalog JSON is invalid (INVALID_CATALOG); the message starts with the offending path. */
class CatalogError extends EntitleError {}
/** Bytes that are not a snapshot or delta this library reads (BAD_MAGIC, UNSUPPORTED_VERSION, CORRUPT, TOO_LARGE). */
class FormatError extends EntitleError {}
/** A delta made for another base or other features (WRONG_BASE, FEATURE_MISMATCH). */
class DeltaError extends EntitleError {}
/** An invalid sync configuration (INVALID_CONFIG): a URL that is not http(s), a bad token. */
class ConfigError extends EntitleError {}
/** A call on an engine after `close()` (CLOSED). */
class ClosedError extends EntitleError {}
/** A failure inside the library (PANIC and other codes that signal a bug); please report it. */
class InternalError extends EntitleError {}

const CLASS_BY_RESULT = {
  1: ArgumentError,
  2: ArgumentError,
  3: ArgumentError,
  4: InternalError,
  5: InternalError,
  6: InternalError,
  7: FileError,
  8: CatalogError,
  9: FormatError,
  10: FormatError,
  11: FormatError,
  12: FormatError,
  13: DeltaError,
  14: DeltaError,
  15: ConfigError,
  17: ClosedError,
};

function makeError(result, detail) {
  const Class = CLASS_BY_RESULT[result] || EntitleError;
  return new Class(detail, result);
}

// The addon fills `scratch` (a Float64Array it owns) with a decision's numbers (check()); see
// decision_store() in C. Its slot SELECT holds the number of the feature handle the next feature
// lookup uses: written just before each native.feature* call (no other code runs in between), it
// passes the handle in a few instructions instead of an argument the addon would have to unpack.
const scratch = native.scratch;
const SELECT = native.selectSlot;
native.setup(makeError);

// ---------------------------------------------------------------------------------------------
// Values

const FEATURE_TYPES = [null, 'flag', 'limit'];
const REASONS = ['default', 'subscription', 'override', 'customer_not_found', 'feature_not_found'];

/**
 * One evaluated answer (frozen): `featureType` is "flag", "limit" or null (unknown feature);
 * `limit` is a number, `Infinity` (unlimited) or null (flags, unknown features).
 */
class Decision {
  constructor(featureType, enabled, limit, reason, version) {
    this.featureType = featureType;
    this.enabled = enabled;
    this.limit = limit;
    this.reason = reason;
    this.version = version;
    Object.freeze(this);
  }
}

// Decisions are immutable values, and freezing a new object costs more than the lookup itself.
// So equal decisions are interned: a small direct-mapped table keyed by feature type, enabled,
// reason and the low bits of the limit keeps the last Decision of each key, and a lookup whose
// five fields all match it gets that same frozen object back.
const INTERNED = new Array(256).fill(null);

function decisionAt(values, i) {
  const featureType = values[i];
  const enabled = values[i + 1] === 1;
  const raw = values[i + 2];
  const limit = raw === raw ? raw : null; // NaN: no limit
  const reason = values[i + 3];
  const version = values[i + 4];
  const bucket = limit === null || limit === Infinity ? 0 : limit & 7;
  const slot = (((featureType * 2 + (enabled ? 1 : 0)) * 5 + reason) * 8 + bucket) & 255;
  const cached = INTERNED[slot];
  if (cached !== null && cached.limit === limit && cached.version === version &&
      cached.reason === REASONS[reason] && cached.enabled === enabled && cached.featureType === FEATURE_TYPES[featureType]) {
    return cached;
  }
  const decision = new Decision(FEATURE_TYPES[featureType], enabled, limit, REASONS[reason], version);
  INTERNED[slot] = decision;
  return decision;
}

function optionsAt(options) {
  if (options === undefined || options === null) return undefined;
  if (typeof options !== 'object') {
    throw new TypeError('options must be an object');
  }
  const at = options.at;
  if (at === undefined || at === null) return undefined;
  if (at instanceof Date) {
    const ms = at.getTime();
    if (Number.isNaN(ms)) throw new RangeError('at is an invalid Date');
    return Math.floor(ms / 1000);
  }
  if (typeof at !== 'number') {
    throw new TypeError('at must be a Date or a number of unix seconds');
  }
  return at;
}

/** Seconds (a number) to whole milliseconds for the addon; undefined/null keep the default. */
function secondsToMs(value, name) {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`${name} must be a number of seconds`);
  }
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`${name} must be a finite number of seconds > 0`);
  }
  return Math.max(1, Math.round(value * 1000));
}

/** A size in bytes (a whole number > 0); undefined/null keep the default. */
function bytesOption(value, name) {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' && typeof value !== 'bigint') throw new TypeError(`${name} must be a number of bytes`);
  if (!(value > 0) || (typeof value === 'number' && !Number.isInteger(value))) {
    throw new RangeError(`${name} must be a whole number of bytes > 0`);
  }
  return value;
}

function pathOf(value, name) {
  if (value instanceof URL) return fileURLToPath(value);
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string or a file: URL`);
  return value;
}

const SYNC_STATES = Object.freeze({
  STARTING: 'starting',
  READY: 'ready',
  STALE: 'stale',
  FAILED: 'failed',
});

/** The Decisions in a Float64Array the addon filled (DECISION_SLOTS numbers each). */
function decisionsOf(values) {
  const out = new Array(values.length / 5);
  for (let i = 0; i < out.length; i++) out[i] = decisionAt(values, i * 5);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Feature handles

const FEATURE = Symbol('entitle.feature');
// How many feature keys an engine keeps resolved for its lookups by key.
const KNOWN_FEATURES = 256;

// Lookups through a resolved feature, by its number (`id`, see SELECT); shared by Feature and
// Engine's lookups by key. The addon answers a boolean lookup with its customer argument for
// true and undefined for false (cheaper for it than making a boolean), hence `!== undefined`.
function featureEnabled(id, customer, options) {
  if (options === undefined) {
    scratch[SELECT] = id;
    return native.featureEnabled(customer) !== undefined;
  }
  const at = optionsAt(options);
  scratch[SELECT] = id;
  return (at === undefined ? native.featureEnabled(customer) : native.featureEnabledAt(customer, at)) !== undefined;
}

function featureLimit(id, customer, options) {
  if (options === undefined) {
    scratch[SELECT] = id;
    return native.featureLimit(customer);
  }
  const at = optionsAt(options);
  scratch[SELECT] = id;
  return at === undefined ? native.featureLimit(customer) : native.featureLimitAt(customer, at);
}

function featureAllows(id, customer, usage, options) {
  if (options === undefined) {
    scratch[SELECT] = id;
    return native.featureAllows(customer, usage, 1) !== undefined;
  }
  const requested = options.requested === undefined ? 1 : options.requested;
  const at = optionsAt(options);
  scratch[SELECT] = id;
  return (at === undefined
    ? native.featureAllows(customer, usage, requested)
    : native.featureAllowsAt(customer, usage, requested, at)) !== undefined;
}

function featureCheck(id, customer, options) {
  const at = options === undefined ? undefined : optionsAt(options);
  scratch[SELECT] = id;
  if (at === undefined) native.featureCheck(customer);
  else native.featureCheckAt(customer, at);
  return decisionAt(scratch, 0);
}

/**
 * A feature key resolved once (`engine.feature(key)`): its lookups skip converting and finding the
 * key. It stays correct when the engine's content changes (a feature that disappears answers
 * feature_not_found); resolve again after the feature list changed to get the fast path back.
 */
class Feature {
  // The addon's external that owns the handle (for batches, and to keep the handle alive) and
  // the handle's number (for lookups).
  #f;
  #id;

  /** @private use engine.feature(key) */
  constructor(token, resolved, key) {
    if (token !== CREATE) throw new TypeError('use engine.feature(key)');
    this.#f = resolved[0];
    this.#id = resolved[1];
    this.key = key;
    Object.freeze(this);
  }

  static [FEATURE](feature) {
    return feature.#f;
  }

  /** Whether `customer` may use this feature. */
  enabled(customer, options) {
    return featureEnabled(this.#id, customer, options);
  }

  /** This feature's limit for `customer`: a number, `Infinity` when unlimited, 0 for a flag. */
  limit(customer, options) {
    return featureLimit(this.#id, customer, options);
  }

  /** Whether `customer` may use `requested` (default 1) more on top of `usage`. */
  allows(customer, usage, options) {
    return featureAllows(this.#id, customer, usage, options);
  }

  /** The whole decision for `customer`. */
  check(customer, options) {
    return featureCheck(this.#id, customer, options);
  }

  /** Decisions for many customers in one call (their memory loads overlap), all from one version. */
  checkMany(customers, options) {
    return decisionsOf(this.#many(customers, options));
  }

  /** `enabled` for many customers in one call. */
  enabledMany(customers, options) {
    const values = this.#many(customers, options);
    const out = new Array(values.length / 5);
    for (let i = 0; i < out.length; i++) out[i] = values[i * 5 + 1] === 1;
    return out;
  }

  // The ids cross as one joined string and their lengths: one conversion for the whole batch.
  #many(customers, options) {
    if (!Array.isArray(customers)) throw new TypeError('customers must be an array of strings');
    const lengths = new Uint32Array(customers.length);
    for (let i = 0; i < customers.length; i++) {
      const c = customers[i];
      if (typeof c !== 'string') throw new TypeError('customers must be an array of strings');
      lengths[i] = c.length;
    }
    return native.checkMany(this.#f, customers.join(''), lengths, optionsAt(options));
  }
}

// ---------------------------------------------------------------------------------------------
// Engine

const CREATE = Symbol('entitle.create');

// entitle_event_kind numbers; the 'sync' event's `kind` for every kind but version changes.
const EVENT_VERSION_CHANGED = 1;
const SYNC_EVENT_KINDS = Object.freeze({ 2: 'sync_failed', 3: 'sync_recovered', 4: 'stale', 5: 'cache_error' });
const EVENTS = ['change', 'sync'];
const dispose = Symbol.dispose || Symbol.for('nodejs.dispose');

/**
 * An in-process entitlement engine. Create one with `Engine.fromFile`, `Engine.fromBytes`,
 * `Engine.fromCatalog` or `Engine.connect`; release it with `close()` (or `using`).
 *
 * Lookups never wait: they read the current content, which `replace`, `applyDelta` and the sync
 * thread swap whole. An engine belongs to the thread that made it; each worker thread makes its own.
 */
class Engine extends EventEmitter {
  #h;
  #connected;
  // Lookups by key go through a feature handle once the key is known to be a feature: the native
  // side then converts one string instead of two and skips finding the key. Handles stay correct
  // across every change of content (see Feature); the map is emptied when this engine's content
  // is replaced, so that keys are resolved again against the new feature list. Only keys of
  // existing features are kept, at most KNOWN_FEATURES of them. The map holds each handle's
  // number (see SELECT); #keep holds the externals that own them.
  #known = new Map();
  #keep = [];
  // The last key found in #known and its number: a program that asks about one feature many
  // times in a row skips the map (a string comparison instead of a hash lookup).
  #lastKey = undefined;
  #lastId = -1;

  /** @private use the static creators */
  constructor(token, handle, connected) {
    if (token !== CREATE) {
      throw new TypeError('use Engine.fromFile, Engine.fromBytes, Engine.fromCatalog or Engine.connect');
    }
    super();
    this.#h = handle;
    this.#connected = connected;
    this.#hook();
  }

  // The event thread runs only while someone listens ('change' or 'sync').
  #hook() {
    this.on('newListener', (event) => {
      if (EVENTS.includes(event) && !native.isClosed(this.#h)) {
        native.watch(this.#h, (kind, seq, previousVersion, version, atMs, message) =>
          this.#deliver(kind, seq, previousVersion, version, atMs, message));
      }
    });
    this.on('removeListener', (event) => {
      if (EVENTS.includes(event) && EVENTS.every((e) => this.listenerCount(e) === 0)) {
        native.unwatch(this.#h);
      }
    });
  }

  /** As EventEmitter's; the engine keeps watching for events only while 'change' or 'sync' has listeners. */
  removeAllListeners(...args) {
    super.removeAllListeners(...args);
    if (this.listenerCount('newListener') === 0 || this.listenerCount('removeListener') === 0) {
      super.removeAllListeners('newListener');
      super.removeAllListeners('removeListener');
      this.#hook();
    }
    if (EVENTS.every((e) => this.listenerCount(e) === 0)) native.unwatch(this.#h);
    return this;
  }

  #deliver(kind, seq, previousVersion, version, atMs, message) {
    const at = new Date(atMs);
    if (kind === EVENT_VERSION_CHANGED) {
      this.#forget();
      this.emit('change', Object.freeze({ version, previousVersion, at, seq }));
    } else {
      this.emit('sync', Object.freeze({ kind: SYNC_EVENT_KINDS[kind] || `event_${kind}`, message, version, at, seq }));
    }
  }

  /** An engine from a file holding a snapshot or a catalog JSON (told apart by content). */
  static fromFile(path) {
    return new Engine(CREATE, native.fromFile(pathOf(path, 'path')), false);
  }

  /** An engine from snapshot bytes (as written by `entitle build`); the bytes are copied. */
  static fromBytes(bytes) {
    return new Engine(CREATE, native.fromBytes(bytes), false);
  }

  /**
   * An engine from a catalog: a JSON string, its UTF-8 bytes, or an object (serialized with
   * JSON.stringify). Meant for tests and small applications; production loads snapshots.
   */
  static fromCatalog(catalog) {
    let json = catalog;
    if (typeof catalog === 'object' && catalog !== null && !ArrayBuffer.isView(catalog) &&
        !(catalog instanceof ArrayBuffer)) {
      json = JSON.stringify(catalog);
    } else if (typeof catalog !== 'string' && !ArrayBuffer.isView(catalog) &&
               !(catalog instanceof ArrayBuffer)) {
      throw new TypeError('catalog must be an object, a JSON string or a Buffer');
    }
    return new Engine(CREATE, native.fromCatalog(json), false);
  }

  /**
   * An engine that keeps itself up to date from an edge, in a background thread. Returns at
   * once; `await engine.waitReady(ms)` before serving traffic. Durations are in seconds.
   */
  static connect(url, options = {}) {
    if (typeof url !== 'string' && !(url instanceof URL)) {
      throw new TypeError('url must be a string or a URL');
    }
    if (typeof options !== 'object' || options === null) {
      throw new TypeError('options must be an object');
    }
    const { token, cacheDir } = options;
    if (token !== undefined && token !== null && typeof token !== 'string') {
      throw new TypeError('token must be a string');
    }
    const handle = native.connect(
      String(url),
      token,
      cacheDir === undefined || cacheDir === null ? cacheDir : pathOf(cacheDir, 'cacheDir'),
      secondsToMs(options.pollInterval, 'pollInterval'),
      secondsToMs(options.connectTimeout, 'connectTimeout'),
      secondsToMs(options.requestTimeout, 'requestTimeout'),
      secondsToMs(options.maxStaleness, 'maxStaleness'),
      secondsToMs(options.longPoll, 'longPoll'),
      secondsToMs(options.maxBackoff, 'maxBackoff'),
      secondsToMs(options.persistInterval, 'persistInterval'),
      bytesOption(options.maxArtifactBytes, 'maxArtifactBytes'),
    );
    return new Engine(CREATE, handle, true);
  }

  // The lookups by key: a key already resolved goes through its handle (featureEnabled() and the
  // others); otherwise the addon finds the key, and #learn() resolves it for the next time.

  /** Whether `customer` may use `feature`: a flag's value; a limit that is unlimited or > 0. */
  enabled(customer, feature, options) {
    const id = feature === this.#lastKey ? this.#lastId : this.#find(feature);
    if (id >= 0) return featureEnabled(id, customer, options);
    const at = options === undefined ? undefined : optionsAt(options);
    const b = at === undefined
      ? native.enabled(this.#h, customer, feature)
      : native.enabledAt(this.#h, customer, feature, at);
    this.#learn(feature);
    return b;
  }

  /** The limit of `feature` for `customer`: a number, `Infinity` for unlimited, 0 for flags and unknown features. */
  limit(customer, feature, options) {
    const id = feature === this.#lastKey ? this.#lastId : this.#find(feature);
    if (id >= 0) return featureLimit(id, customer, options);
    const at = options === undefined ? undefined : optionsAt(options);
    const n = at === undefined
      ? native.limit(this.#h, customer, feature)
      : native.limitAt(this.#h, customer, feature, at);
    this.#learn(feature);
    return n;
  }

  /** Whether `customer` may use `requested` (default 1) more of `feature` on top of `usage`. */
  allows(customer, feature, usage, options) {
    const id = feature === this.#lastKey ? this.#lastId : this.#find(feature);
    if (id >= 0) return featureAllows(id, customer, usage, options);
    let requested = 1;
    let at;
    if (options !== undefined) {
      requested = options.requested === undefined ? 1 : options.requested;
      at = optionsAt(options);
    }
    const b = at === undefined
      ? native.allows(this.#h, customer, feature, usage, requested)
      : native.allowsAt(this.#h, customer, feature, usage, requested, at);
    this.#learn(feature);
    return b;
  }

  /** The whole decision (frozen): feature type, enabled, limit, reason and content version. */
  check(customer, feature, options) {
    const id = feature === this.#lastKey ? this.#lastId : this.#find(feature);
    if (id >= 0) return featureCheck(id, customer, options);
    native.check(this.#h, customer, feature, options === undefined ? undefined : optionsAt(options));
    const decision = decisionAt(scratch, 0);
    if (decision.featureType !== null) this.#remember(feature);
    return decision;
  }

  // After a successful lookup by `feature`: keeps a handle for it when it is a feature of the
  // current content (a lookup for an empty customer id says whether it is).
  #learn(feature) {
    if (this.#known.size >= KNOWN_FEATURES || typeof feature !== 'string') return;
    native.check(this.#h, '', feature, undefined);
    if (scratch[0] !== 0) this.#remember(feature);
  }

  #remember(feature) {
    if (this.#known.size < KNOWN_FEATURES) {
      const [f, id] = native.featureResolve(this.#h, feature);
      this.#keep.push(f);
      this.#known.set(feature, id);
    }
  }

  // The number of the handle resolved for `feature`, or -1.
  #find(feature) {
    const id = this.#known.get(feature);
    if (id === undefined) return -1;
    this.#lastKey = feature;
    this.#lastId = id;
    return id;
  }

  #forget() {
    this.#lastKey = undefined;
    this.#lastId = -1;
    this.#known.clear();
    this.#keep = [];
  }

  /** Resolves a feature key once, for lookups that skip finding the key (see `Feature`). */
  feature(key) {
    return new Feature(CREATE, native.featureResolve(this.#h, key), key);
  }

  /** Decisions of several features (from `engine.feature`) for one customer, in one call. */
  checkFeatures(customer, features, options) {
    if (!Array.isArray(features)) throw new TypeError('features must be an array of Feature');
    const handles = features.map((f) => {
      if (!(f instanceof Feature)) throw new TypeError('features must be an array of Feature');
      return Feature[FEATURE](f);
    });
    return decisionsOf(native.checkFeatures(this.#h, customer, handles, optionsAt(options)));
  }

  /** Every feature's decision for `customer`, keyed by feature (a frozen object). */
  entitlements(customer, options) {
    const [keys, values] = native.entitlements(this.#h, customer, optionsAt(options));
    const out = {};
    for (let i = 0; i < keys.length; i++) {
      Object.defineProperty(out, keys[i], {
        value: decisionAt(values, i * 5),
        enumerable: true,
      });
    }
    return Object.freeze(out);
  }

  /**
   * Resolves true once the engine has content (from its cache or a first sync), false when
   * `timeoutMs` passes first or the engine is closed meanwhile. The wait runs off the event loop.
   */
  waitReady(timeoutMs = 0) {
    try {
      if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs)) {
        throw new TypeError('timeoutMs must be a number of milliseconds');
      }
      if (timeoutMs < 0) throw new RangeError('timeoutMs must be >= 0');
      const ms = Number.isFinite(timeoutMs) ? Math.ceil(timeoutMs) : Number.MAX_SAFE_INTEGER;
      return native.waitReady(this.#h, ms);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Replaces the whole content with snapshot bytes; returns the new content version. */
  replace(bytes) {
    const version = native.replace(this.#h, bytes);
    this.#forget();
    return version;
  }

  /** Replaces the whole content with the snapshot or catalog in a file; returns the new version. */
  replaceFile(path) {
    const version = native.replaceFile(this.#h, pathOf(path, 'path'));
    this.#forget();
    return version;
  }

  /** Applies delta bytes (as written by `entitle diff`); returns the new content version. */
  applyDelta(bytes) {
    const version = native.applyDelta(this.#h, bytes);
    this.#forget();
    return version;
  }

  /** The content version being served (0 for a catalog-built engine). */
  get version() {
    return native.version(this.#h);
  }

  /** What the sync has done (a frozen object; engines that do not sync are always ready). */
  get status() {
    const status = native.status(this.#h);
    status.hasData = status.state === 'ready' || status.state === 'stale';
    return Object.freeze(status);
  }

  /** Whether the engine syncs from an edge (made by `Engine.connect`). */
  get connected() {
    return this.#connected;
  }

  /** Whether `close()` was called. */
  get closed() {
    return native.isClosed(this.#h);
  }

  /**
   * Stops the sync thread and releases the engine; later calls throw `ClosedError`. A pending
   * `waitReady` resolves false. Idempotent.
   */
  close() {
    native.close(this.#h);
    this.#forget();
  }

  [dispose]() {
    this.close();
  }
}

/** The version of the native library, e.g. "0.1.0". */
const libraryVersion = native.libraryVersion();

module.exports = {
  Engine,
  Feature,
  Decision,
  SyncState: SYNC_STATES,
  EntitleError,
  ArgumentError,
  FileError,
  CatalogError,
  FormatError,
  DeltaError,
  ConfigError,
  ClosedError,
  InternalError,
  libraryVersion,
};
