/**
 * The script of the chat-template worker (started by `template_worker.ts`): renders one
 * {@link RenderChatInput} (sent as JSON) per message with {@link renderChat} and posts back
 * the result, or the error in a form that survives structured cloning (a `TemplateError`
 * keeps its reason and detail). It is the entry point of a Web Worker; other modules import
 * only its types.
 *
 * Deno's `Worker.terminate()` only stops a worker once its JavaScript returns to the event
 * loop; it cannot interrupt a render that loops. So every job carries a stop flag in shared
 * memory, and the Jinja interpreter checks it every {@link STOP_CHECK_EVERY} steps:
 * when the host sets it (abort or time limit), the render throws and the worker is free.
 *
 * @module
 */

import { GenerationError, type GenerationErrorCode } from "./errors.ts";
import { StopRender } from "./jinja/runtime.ts";
import {
  renderChat,
  type RenderChatInput,
  type RenderedPrompt,
  renderHooks,
  TemplateError,
  type TemplateErrorReason,
} from "./templates.ts";

/** A render job sent to the worker. */
export interface RenderRequest {
  /** Matches the reply to the job. */
  id: number;
  /**
   * What to render: a {@link RenderChatInput} as JSON (for 40,000 messages, `JSON.stringify`
   * holds the sending thread ~12 ms, structured cloning the objects ~40 ms).
   */
  input: string;
  /** One Int32 over a `SharedArrayBuffer`; the host sets it to 1 to stop the render. */
  stop: Int32Array;
}

/** An error as it crosses the worker boundary. */
export type SerializedRenderError =
  | { kind: "template"; reason: TemplateErrorReason; message: string; detail: string }
  | { kind: "generation"; code: GenerationErrorCode; message: string }
  | { kind: "other"; name: string; message: string; stack?: string };

/** The worker's answer to one {@link RenderRequest}. */
export type RenderReply =
  | { id: number; ok: true; value: RenderedPrompt }
  | { id: number; ok: false; error: SerializedRenderError };

/** Interpreter steps between two looks at the stop flag (a look costs one atomic load). */
export const STOP_CHECK_EVERY = 64;

/**
 * Turns whatever `renderChat` threw into plain data.
 *
 * @param error The thrown value.
 * @returns Its kind, message and the fields its class adds.
 * @example
 * ```ts
 * serializeRenderError(new TemplateError("render", "Cannot format…", "boom")).kind; // "template"
 * ```
 */
export function serializeRenderError(error: unknown): SerializedRenderError {
  if (error instanceof TemplateError) {
    const { reason, message, detail } = error;
    return { kind: "template", reason, message, detail };
  }
  if (error instanceof GenerationError) {
    return { kind: "generation", code: error.code, message: error.message };
  }
  if (error instanceof Error) {
    return {
      kind: "other",
      name: error.name,
      message: error.message,
      ...(error.stack ? { stack: error.stack } : {}),
    };
  }
  return { kind: "other", name: "Error", message: String(error) };
}

/** The stop flag of the job being rendered. */
let stopFlag: Int32Array | undefined;
let steps = 0;

function checkStop(): void {
  if (++steps < STOP_CHECK_EVERY) return;
  steps = 0;
  if (stopFlag !== undefined && Atomics.load(stopFlag, 0) !== 0) {
    throw new StopRender("Rendering was stopped");
  }
}

/**
 * Makes the Jinja interpreter look at the stop flag as it works: at every statement and
 * expression it runs (so also at every loop iteration, even of an empty body). The hook is
 * confined to this worker's isolate: nothing else renders here.
 */
function watchInterpreter(): void {
  renderHooks.onStep = checkStop;
}

/** The worker's global scope, typed just as far as this script uses it. */
interface WorkerScope {
  onmessage: ((event: MessageEvent<RenderRequest>) => void) | null;
  postMessage(message: RenderReply): void;
}

const scope = globalThis as unknown as WorkerScope;

watchInterpreter();

scope.onmessage = ({ data }) => {
  let reply: RenderReply;
  stopFlag = data.stop;
  try {
    const input = JSON.parse(data.input) as RenderChatInput;
    reply = { id: data.id, ok: true, value: renderChat(input) };
  } catch (error) {
    reply = { id: data.id, ok: false, error: serializeRenderError(error) };
  } finally {
    stopFlag = undefined;
  }
  scope.postMessage(reply);
};
