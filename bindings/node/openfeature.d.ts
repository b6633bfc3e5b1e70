// Types of entitle/openfeature: an OpenFeature server provider over an entitle Engine.
import type { EvaluationContext, JsonValue, Provider, ResolutionDetails } from '@openfeature/server-sdk';
import type { Engine } from './index.js';

/** Options of the provider. */
export interface OpenFeatureProviderOptions {
  /** How long `initialize` waits for a syncing engine's first content (default 10000 ms). */
  readyTimeoutMs?: number;
}

/**
 * Answers OpenFeature evaluations from an entitle engine: targeting key = customer id, flag key =
 * feature key. Booleans read `enabled`; numbers read a limit (`Infinity` when unlimited).
 */
export declare class OpenFeatureProvider implements Provider {
  constructor(engine: Engine, options?: OpenFeatureProviderOptions);
  readonly engine: Engine;
  readonly metadata: { readonly name: 'entitle' };
  readonly runsOn: 'server';
  initialize(): Promise<void>;
  /** Stops forwarding the engine's change events. */
  onClose(): Promise<void>;
  resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: EvaluationContext): Promise<ResolutionDetails<boolean>>;
  resolveNumberEvaluation(flagKey: string, defaultValue: number, context: EvaluationContext): Promise<ResolutionDetails<number>>;
  resolveStringEvaluation(flagKey: string, defaultValue: string): Promise<ResolutionDetails<string>>;
  resolveObjectEvaluation<T extends JsonValue>(flagKey: string, defaultValue: T): Promise<ResolutionDetails<T>>;
}
