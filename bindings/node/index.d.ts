// Type definitions for entitle (the Node package). Checked with `tsc --strict` on
// examples/typescript/example.ts by the test command.

/// <reference types="node" />

import { EventEmitter } from 'node:events';

/** Feature types: `null` is a feature that is not in the snapshot. */
export type FeatureType = 'flag' | 'limit';

/** Why a decision came out as it did (the conformance suite's spelling). */
export type Reason = 'default' | 'subscription' | 'override' | 'customer_not_found' | 'feature_not_found';

/** A time to evaluate at: a Date or unix seconds. */
export type At = Date | number;

/** Options of every lookup. */
export interface LookupOptions {
  /** Evaluate at this time instead of now. */
  at?: At;
}

/** Options of `allows`. */
export interface AllowsOptions extends LookupOptions {
  /** How much more is asked for on top of `usage` (default 1). */
  requested?: number | bigint;
}

/** One evaluated answer; instances are frozen. */
export declare class Decision {
  private constructor();
  /** "flag", "limit", or null when the feature is not in the snapshot. */
  readonly featureType: FeatureType | null;
  /** A flag's value; for a limit, unlimited or > 0; false for an unknown feature. */
  readonly enabled: boolean;
  /** A limit's value, `Infinity` when unlimited; null for flags and unknown features. */
  readonly limit: number | null;
  /** Why the value is what it is. */
  readonly reason: Reason;
  /** The content version of the snapshot that answered. */
  readonly version: number;
}

/** Where an engine's sync stands. */
export type SyncStateName = 'starting' | 'ready' | 'stale' | 'failed';

/** The sync states by name. */
export declare const SyncState: {
  readonly STARTING: 'starting';
  readonly READY: 'ready';
  readonly STALE: 'stale';
  readonly FAILED: 'failed';
};

/** What an engine's sync has done (frozen). Times are unix seconds; `dataAge` is in seconds. */
export interface Status {
  readonly state: SyncStateName;
  /** Whether the engine syncs from an edge. */
  readonly syncing: boolean;
  /** Whether the engine serves real content (state "ready" or "stale"). */
  readonly hasData: boolean;
  /** The content version being served. */
  readonly version: number;
  /** When a sync round last succeeded; null before the first. */
  readonly lastSuccess: number | null;
  /** How old the content is (now minus its creation time); null without content. */
  readonly dataAge: number | null;
  /** The most recent sync error, kept after recovery (compare `lastErrorAt` with `lastSuccess`). */
  readonly lastError: string | null;
  /** When `lastError` happened. */
  readonly lastErrorAt: number | null;
  /** The latest version the edge announced. */
  readonly edgeVersion: number | null;
  /** Successful sync rounds (including those that found nothing new). */
  readonly syncs: number;
  /** Failed sync rounds. */
  readonly failures: number;
  /** Failed rounds since the last success. */
  readonly consecutiveFailures: number;
  /** Rounds that changed the content. */
  readonly updates: number;
  /** Deltas applied. */
  readonly deltasApplied: number;
  /** Full snapshots fetched from the edge. */
  readonly snapshotsFetched: number;
  /** Whether the content came from the cache directory at start. */
  readonly warmStart: boolean;
  /** Whether the edge honors long-polling. */
  readonly longPoll: boolean;
  /** The last problem with the cache file; syncing goes on regardless. */
  readonly cacheError: string | null;
  /** The lineage of the content being served, when known. */
  readonly lineage: string | null;
}

/** Options of `Engine.connect`. Durations are in seconds; unset ones take the library's default. */
export interface ConnectOptions {
  /** A bearer token sent with every request (printable ASCII). */
  token?: string;
  /** A directory for the last good snapshot, so the next process starts warm. */
  cacheDir?: string | URL;
  /** Seconds between manifest checks (default 5, varied by 20 %). */
  pollInterval?: number;
  /** Seconds allowed to connect (default 2). */
  connectTimeout?: number;
  /** Seconds allowed for a whole request (default 60). */
  requestTimeout?: number;
  /** Seconds without a successful sync before the state is "stale" (default 120). */
  maxStaleness?: number;
  /** Ask the edge to hold manifest requests up to this many seconds (at most 25); default: poll. */
  longPoll?: number;
  /** The longest pause in seconds between retries after failures (default 60). */
  maxBackoff?: number;
  /** The shortest time in seconds between two cache writes after deltas (default 30). */
  persistInterval?: number;
  /**
   * The largest snapshot or delta the engine downloads, in bytes after decompression (default
   * 256 MiB). A larger one is refused; the status reports it and the engine keeps its content.
   */
  maxArtifactBytes?: number | bigint;
}

/** The 'change' event: the engine serves a new content version (sync round, replace, applyDelta). */
export interface ChangeEvent {
  readonly version: number;
  readonly previousVersion: number;
  /** When the change happened. */
  readonly at: Date;
  /** The event's sequence number in the engine (a gap means events were missed). */
  readonly seq: number;
}

/** The 'sync' event: a sync round failed, recovered, the content went stale, or the cache failed. */
export interface SyncEvent {
  readonly kind: 'sync_failed' | 'sync_recovered' | 'stale' | 'cache_error' | `event_${number}`;
  /** What happened, from the library (e.g. the error). */
  readonly message: string;
  /** The content version being served. */
  readonly version: number;
  readonly at: Date;
  readonly seq: number;
}

/** Bytes accepted for snapshots, deltas and catalogs. */
export type Bytes = ArrayBufferView | ArrayBuffer;

/**
 * A feature key resolved once (`engine.feature(key)`): lookups through it skip converting and
 * finding the key. Correct across content changes (a feature that disappears answers
 * "feature_not_found"); resolve again after the feature list changed to get the fast path back.
 */
export declare class Feature {
  private constructor();
  readonly key: string;
  enabled(customer: string, options?: LookupOptions): boolean;
  limit(customer: string, options?: LookupOptions): number;
  allows(customer: string, usage: number | bigint, options?: AllowsOptions): boolean;
  check(customer: string, options?: LookupOptions): Decision;
  /** Decisions for many customers in one call, all from one content version. */
  checkMany(customers: readonly string[], options?: LookupOptions): Decision[];
  /** `enabled` for many customers in one call. */
  enabledMany(customers: readonly string[], options?: LookupOptions): boolean[];
}

/**
 * An in-process entitlement engine. Lookups are synchronous and never wait; `waitReady` is the
 * only call that waits, off the event loop.
 */
export declare class Engine extends EventEmitter {
  private constructor();
  /** An engine from a file holding a snapshot or a catalog JSON (told apart by content). */
  static fromFile(path: string | URL): Engine;
  /** An engine from snapshot bytes (copied). */
  static fromBytes(bytes: Bytes): Engine;
  /** An engine from a catalog: an object, a JSON string or its UTF-8 bytes. */
  static fromCatalog(catalog: object | string | Bytes): Engine;
  /** An engine that keeps itself up to date from an edge, in a background thread. */
  static connect(url: string | URL, options?: ConnectOptions): Engine;

  /** Whether `customer` may use `feature`. */
  enabled(customer: string, feature: string, options?: LookupOptions): boolean;
  /** The limit: a number, `Infinity` when unlimited, 0 for flags and unknown features. */
  limit(customer: string, feature: string, options?: LookupOptions): number;
  /** Whether `customer` may use `requested` (default 1) more of `feature` on top of `usage`. */
  allows(customer: string, feature: string, usage: number | bigint, options?: AllowsOptions): boolean;
  /** The whole decision. */
  check(customer: string, feature: string, options?: LookupOptions): Decision;
  /** Resolves a feature key once, for faster lookups (see `Feature`). */
  feature(key: string): Feature;
  /** Decisions of several features for one customer, in one call. */
  checkFeatures(customer: string, features: readonly Feature[], options?: LookupOptions): Decision[];
  /** Every feature's decision for `customer`, keyed by feature. */
  entitlements(customer: string, options?: LookupOptions): Readonly<Record<string, Decision>>;

  /** Resolves true once the engine has content, false when `timeoutMs` passes first or it is closed. */
  waitReady(timeoutMs?: number): Promise<boolean>;
  /** Replaces the whole content with snapshot bytes; returns the new version. */
  replace(bytes: Bytes): number;
  /** Replaces the whole content with the snapshot or catalog in a file; returns the new version. */
  replaceFile(path: string | URL): number;
  /** Applies delta bytes (as written by `entitle diff`); returns the new version. */
  applyDelta(bytes: Bytes): number;

  /** The content version being served (0 for a catalog-built engine). */
  readonly version: number;
  /** What the sync has done. */
  readonly status: Status;
  /** Whether the engine syncs from an edge. */
  readonly connected: boolean;
  /** Whether `close()` was called. */
  readonly closed: boolean;

  /**
   * Listens for new content versions ('change') or sync problems ('sync'), delivered on the JS
   * thread. A thread waits for events only while someone listens; it never holds the process open.
   */
  on(event: 'change', listener: (event: ChangeEvent) => void): this;
  on(event: 'sync', listener: (event: SyncEvent) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once(event: 'change', listener: (event: ChangeEvent) => void): this;
  once(event: 'sync', listener: (event: SyncEvent) => void): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;

  /** Stops the sync thread and releases the engine; later calls throw `ClosedError`. Idempotent. */
  close(): void;
  [Symbol.dispose](): void;
}

/** The stable error codes, one per C result code. */
export type ErrorCode =
  | 'ENTITLE_NULL_PARAMETER'
  | 'ENTITLE_INVALID_UTF8'
  | 'ENTITLE_INVALID_PARAMETER'
  | 'ENTITLE_PANIC'
  | 'ENTITLE_BUFFER_TOO_SMALL'
  | 'ENTITLE_OUT_OF_RANGE'
  | 'ENTITLE_IO'
  | 'ENTITLE_INVALID_CATALOG'
  | 'ENTITLE_BAD_MAGIC'
  | 'ENTITLE_UNSUPPORTED_VERSION'
  | 'ENTITLE_CORRUPT'
  | 'ENTITLE_TOO_LARGE'
  | 'ENTITLE_WRONG_BASE'
  | 'ENTITLE_FEATURE_MISMATCH'
  | 'ENTITLE_INVALID_CONFIG'
  | 'ENTITLE_TIMEOUT'
  | 'ENTITLE_CLOSED'
  | `ENTITLE_RESULT_${number}`;

/** Base class of every error the library reports; `message` is the library's detail. */
export declare class EntitleError extends Error {
  /** Stable: follows from `result`. */
  readonly code: ErrorCode;
  /** The C ABI's result code (`entitle_result`). */
  readonly result: number;
}
/** An argument the library rejected (NULL_PARAMETER, INVALID_UTF8, INVALID_PARAMETER). */
export declare class ArgumentError extends EntitleError {}
/** A file could not be read (IO). */
export declare class FileError extends EntitleError {}
/** The catalog JSON is invalid (INVALID_CATALOG); the message starts with the offending path. */
export declare class CatalogError extends EntitleError {}
/** Bytes that are not a snapshot or delta this library reads. */
export declare class FormatError extends EntitleError {}
/** A delta made for another base or other features. */
export declare class DeltaError extends EntitleError {}
/** An invalid sync configuration. */
export declare class ConfigError extends EntitleError {}
/** A call on an engine after `close()`. */
export declare class ClosedError extends EntitleError {}
/** A failure inside the library (a bug: please report it). */
export declare class InternalError extends EntitleError {}

/** The version of the native library. */
export declare const libraryVersion: string;
