/**
 * The state every handler shares.
 *
 * @module
 */

import type { StreamSessions } from "./stream_sessions.ts";
import type { ReasoningControls } from "./chat_control.ts";
import type { ModelEntry, ModelRegistry } from "../models/registry.ts";
import type { ModelPulls } from "../models/pull_tracker.ts";
import type { TemplateOverride } from "../engine/templates.ts";
import type { Activity } from "./activity.ts";
import type { Arrivals } from "./arrivals.ts";
import type { Metrics } from "./metrics.ts";
import type { OriginPolicy } from "./origin_policy.ts";
import type { ResponseStore } from "./response_store.ts";
import type { SlotFolder } from "./slot_folder.ts";

/** Server-wide settings shown by `/diag`. */
export interface ServerSettings {
  /** Bearer token required on every route but `/health`. */
  apiKey?: string;
  /** Which `Host` names and browser origins are served (see origin_policy.ts). */
  policy: OriginPolicy;
  /** Most milliseconds a request body may take to arrive (408 after). Default 30 s. */
  bodyTimeoutMs?: number;
  /** Slots per model. */
  parallel: number;
  /** Context tokens per request. */
  ctxSize?: number;
  /** GPU backend asked for. */
  gpuBackend: string;
  /** `--chat-template` override for every model. */
  chatTemplate?: TemplateOverride;
  /** `--chat-template-kwargs`: template variables for every request (requests add their own). */
  chatTemplateKwargs?: Record<string, unknown>;
  /** Where slot files go (`--slot-save-path`); slot save and restore are a 501 without it. */
  slotSavePath?: string;
  /**
   * Most bytes the slot files may take together (`--slot-save-max-size`); a save past it is a
   * 507. `Infinity` for no bound. Default 10 GiB.
   */
  slotSaveMaxBytes?: number;
  /** Folders whose adapter files `POST /api/lora` may name by path. */
  adapterDirs?: readonly string[];
  /** Serve the chat page at `/` (`shimmy serve` does unless `--no-webui`). Default false. */
  webui?: boolean;
  /**
   * Continue a last message from the assistant instead of answering it with a new turn
   * (`--no-prefill-assistant` turns it off). Default true.
   */
  prefillAssistant?: boolean;
}

/** Shared server state. */
export interface ServerContext {
  registry: ModelRegistry;
  metrics: Metrics;
  settings: ServerSettings;
  /** `performance.now()` at start. */
  startedAt: number;
  /** Work in flight, for graceful shutdown. */
  activity: Activity;
  /** Requests on their way to a model's scheduler (see `arrivals.ts`). */
  arrivals: Arrivals;
  /** Set once shutdown starts: new requests get 503. */
  draining: boolean;
  /** Stored Responses API responses; created on first use when not given. */
  responses?: ResponseStore;
  /** Chat completions whose thinking a client may end (`chat_control.ts`); made on first use. */
  reasoningControls?: ReasoningControls;
  /** Streamed answers kept by conversation id (`stream_sessions.ts`); made on first use. */
  streamSessions?: StreamSessions;
  /** The bounded `slotSavePath` folder, whose saves take turns (`slot_folder.ts`); first use. */
  slotFolder?: SlotFolder;
  /** Pulls of `hf.co/…` models (`serve --allow-pull`), shown by `/health`. */
  pulls?: ModelPulls;
  /** Searches the model folders again (`POST /api/models/discover`); set by `serve`. */
  discover?: () => Promise<ModelEntry[]>;
}
