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
  type ChatOutputOptions,
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
  // A continued message's text is read first, so that the output parses as one; unless it is
  // echoed, what it makes of the content and reasoning is neither sent nor in the final output.
  const continued = plan?.continued;
  const hidden = continued && !continued.echo
    ? textsOf(continued.text, reader && plan.read)
    : undefined;
  const send = hidden ? skipping(onDelta, hidden) : onDelta;
  // The continued text goes out with the first generated piece, as llama-server sends it.
  let lead = continued?.text ?? "";
  const read = (text: string) => {
    const piece = lead + text;
    lead = "";
    if (!reader) return send({ content: piece });
    // One argument each: forEach's index would land in a second parameter of send.
    for (const delta of reader.push(piece)) send(delta);
  };
  for await (const chunk of started.generation) {
    options.onChunk?.(chunk);
    if (options.streaming) read(chunk.text);
  }
  const result = await started.result;
  if (!options.streaming || lead !== "") read(options.streaming ? "" : result.text);
  let output: ChatOutput;
  if (reader) {
    const end = reader.finish(result.finishReason === "length");
    for (const delta of end.deltas) send(delta);
    output = end.output;
  } else {
    output = { content: (continued?.text ?? "") + result.text, toolCalls: [] };
  }
  return { result, output: hidden ? withoutStart(output, hidden) : output };
}

/** The content and reasoning that a text makes on its own. */
interface Texts {
  content: string;
  reasoning: string;
}

/** What `text` alone makes of the content and reasoning, read as `read` says (plain: content). */
function textsOf(text: string, read?: ChatOutputOptions): Texts {
  if (!read) return { content: text, reasoning: "" };
  const alone = new ChatOutputStream(read);
  alone.push(text);
  const { output } = alone.finish();
  return { content: output.content ?? "", reasoning: output.reasoning ?? "" };
}

/** Passes deltas on less the first characters of content and reasoning that `hidden` holds. */
function skipping(onDelta: (delta: ChatDelta) => void, hidden: Texts) {
  const left = { content: hidden.content.length, reasoning_content: hidden.reasoning.length };
  return (delta: ChatDelta) => {
    const out = { ...delta };
    for (const key of ["content", "reasoning_content"] as const) {
      const text = out[key];
      if (text === undefined || left[key] === 0) continue;
      const cut = Math.min(left[key], text.length);
      left[key] -= cut;
      if (cut === text.length) delete out[key];
      else out[key] = text.slice(cut);
    }
    if (Object.keys(out).length > 0) onDelta(out);
  };
}

/** The output less the content and reasoning it starts with from `hidden`. */
function withoutStart(output: ChatOutput, hidden: Texts): ChatOutput {
  const rest = (text: string, start: string) =>
    text.startsWith(start) ? text.slice(start.length) : text;
  const trimmed: ChatOutput = {
    ...output,
    content: output.content === null ? null : rest(output.content, hidden.content),
  };
  if (output.reasoning !== undefined) {
    const left = rest(output.reasoning, hidden.reasoning);
    if (left === "") delete trimmed.reasoning;
    else trimmed.reasoning = left;
  }
  return trimmed;
}
