/**
 * Reading a chat generation the same way for every API family: its text becomes OpenAI-style
 * chat deltas (content, reasoning, tool-call fragments) through the request's output plan, and
 * ends in the final assistant output. Each adapter turns the deltas into its own wire format.
 *
 * @module
 */

import type { GenerationChunk, GenerationResult } from "../engine/scheduler.ts";
import {
  type ChatDelta,
  type ChatOutput,
  ChatOutputStream,
} from "../engine/tools/output_stream.ts";
import type { StartedGeneration } from "./generation_bridge.ts";

/** Options of {@link readChatGeneration}. */
export interface ChatReadOptions {
  /** Read each piece as it is generated (else the whole text once it ends). */
  streaming: boolean;
  /** Sees each generated chunk before its deltas (log-probabilities ride on chunks). */
  onChunk?: (chunk: GenerationChunk) => void;
}

/**
 * Runs a started chat generation to its end, reading its text into deltas. Without tools or
 * reasoning to read, each piece of text is one content delta.
 *
 * @param started The generation.
 * @param onDelta Receives the deltas in order; together they make the final output.
 * @param options Streaming or not, and a chunk observer.
 * @returns The generation's result and the final assistant output.
 * @example
 * ```ts
 * const { result, output } = await readChatGeneration(started, send, { streaming: true });
 * ```
 */
export async function readChatGeneration(
  started: StartedGeneration,
  onDelta: (delta: ChatDelta) => void,
  options: ChatReadOptions,
): Promise<{ result: GenerationResult; output: ChatOutput }> {
  const plan = started.output;
  const reader = plan && (plan.read.format || plan.read.reasoning)
    ? new ChatOutputStream(plan.read)
    : undefined;
  const read = (text: string) => {
    if (!reader) return onDelta({ content: text });
    // One argument each: forEach's index would land in a second parameter of onDelta.
    for (const delta of reader.push(text)) onDelta(delta);
  };
  for await (const chunk of started.generation) {
    options.onChunk?.(chunk);
    if (options.streaming) read(chunk.text);
  }
  const result = await started.result;
  if (!options.streaming) read(result.text);
  if (!reader) return { result, output: { content: result.text, toolCalls: [] } };
  const end = reader.finish(result.finishReason === "length");
  for (const delta of end.deltas) onDelta(delta);
  return { result, output: end.output };
}
