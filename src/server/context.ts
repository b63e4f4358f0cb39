/**
 * The state every handler shares.
 *
 * @module
 */

import type { ModelRegistry } from "../models/registry.ts";
import type { TemplateOverride } from "../engine/templates.ts";
import type { Metrics } from "./metrics.ts";

/** Server-wide settings shown by `/diag`. */
export interface ServerSettings {
  /** Bearer token required on every route but `/health`. */
  apiKey?: string;
  /** Allowed CORS origin (`*` for any); CORS is off when unset. */
  cors?: string;
  /** Slots per model. */
  parallel: number;
  /** Context tokens per request. */
  ctxSize?: number;
  /** GPU backend asked for. */
  gpuBackend: string;
  /** `--chat-template` override for every model. */
  chatTemplate?: TemplateOverride;
}

/** Shared server state. */
export interface ServerContext {
  registry: ModelRegistry;
  metrics: Metrics;
  settings: ServerSettings;
  /** `performance.now()` at start. */
  startedAt: number;
}
