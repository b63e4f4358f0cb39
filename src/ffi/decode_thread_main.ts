/**
 * The worker of a decode thread (`decode_thread.ts`): opens libllama again (the same loaded
 * library, so the host's pointers are valid here), then waits in a blocking loop for the host's
 * commands in the shared control block. A run decodes one sequence's steps one after another,
 * each a blocking `llama_decode` and a pick (`llama_sampler_sample`, or with a grammar
 * `pickWithGrammar`, as the host picks), publishing every sampled token in the control block
 * before it decodes it in turn; a single step decodes a batch of the host's
 * (a step of several streams, a prompt's chunk), waits for a GPU to finish it when asked, and
 * says how it went. The loop ends on the close command, or when the worker is terminated (its
 * waits time out, so it notices).
 *
 * `deno compile` embeds this module only when named: `scripts/compile.ts` includes it.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import {
  Command,
  FAILED,
  type FailedMessage,
  Field,
  loadAddress,
  type OpenMessage,
  RING_STEPS,
  RunState,
  stepIndex,
} from "./decode_thread_control.ts";
import { nativeBuffer } from "./cstring.ts";
import { LLAMA_TOKEN_NULL, LlamaBatch } from "./layouts.ts";
import { BestSearch, type GrammarPick, pickWithGrammar, savedStagesAt } from "./grammar_check.ts";
import { takeSampledInGraph } from "./sampled_in_graph.ts";
import { TokenCandidates } from "./token_candidates.ts";
import { systemCLibrary } from "./symbol_address.ts";

/** `int sched_yield(void)`, `BOOL SwitchToThread(void)`. */
const YIELD_CALL = { parameters: [], result: "i32" } as const;

const SYMBOLS = {
  llama_decode: { parameters: ["pointer", LlamaBatch.ffi], result: "i32" },
  llama_sampler_sample: { parameters: ["pointer", "pointer", "i32"], result: "i32" },
  llama_get_sampled_token_ith: { parameters: ["pointer", "i32"], result: "i32" },
  llama_sampler_accept: { parameters: ["pointer", "i32"], result: "void" },
  llama_synchronize: { parameters: ["pointer"], result: "void" },
  llama_sampler_apply: { parameters: ["pointer", "pointer"], result: "void" },
  llama_sampler_copy: { parameters: ["pointer", "pointer"], result: "void" },
  llama_get_logits_ith: { parameters: ["pointer", "i32"], result: "pointer" },
  llama_token_to_piece: {
    parameters: ["pointer", "i32", "buffer", "i32", "i32", "bool"],
    result: "i32",
  },
} as const;

/** How long a wait for a command lasts before the loop looks again, in ms. */
const COMMAND_WAIT_MS = 100;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const yieldCore = threadYield();

self.onmessage = (event: MessageEvent<OpenMessage>) => {
  const block = new Int32Array(event.data.control);
  let library: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    library = Deno.dlopen(event.data.llamaFile, SYMBOLS);
  } catch (error) {
    reportFailure(error);
    return;
  }
  Atomics.store(block, Field.ready, 1);
  serve(block, library.symbols);
  Atomics.store(block, Field.ready, 0);
  Atomics.notify(block, Field.ready);
  library.close();
  self.close();
};

/** Carries out the host's commands one after another until it says close. */
function serve(block: Int32Array, symbols: Symbols): void {
  const batch = new Uint8Array(LlamaBatch.size);
  const batchBytes = new Uint8Array(block.buffer, Field.batch * 4, LlamaBatch.size);
  for (;;) {
    const command = Atomics.load(block, Field.command);
    if (command === Command.none) {
      Atomics.wait(block, Field.command, Command.none, COMMAND_WAIT_MS);
      continue;
    }
    if (command === Command.close) return;
    Atomics.store(block, Field.command, Command.none);
    batch.set(batchBytes);
    try {
      if (command === Command.run) run(block, symbols, batch);
      else step(block, symbols, batch, command === Command.stepAndSynchronize);
    } catch (error) {
      Atomics.store(block, Field.status, FAILED);
      reportFailure(error);
    }
    Atomics.store(block, Field.state, RunState.halted);
    Atomics.add(block, Field.events, 1);
    Atomics.notify(block, Field.events);
  }
}

/** Tells the host why this thread cannot go on (it warns once and stops using it). */
function reportFailure(error: unknown): void {
  const failed: FailedMessage = { kind: "failed", reason: (error as Error).message };
  self.postMessage(failed);
}

/**
 * Decodes the host's batch once (and waits for the backends to finish it when `synchronize`),
 * and stores its status and how long it took.
 */
function step(
  block: Int32Array,
  symbols: Symbols,
  batch: Uint8Array<ArrayBuffer>,
  synchronize: boolean,
): void {
  const context = Deno.UnsafePointer.create(loadAddress(block, Field.context));
  const start = performance.now();
  const status = symbols.llama_decode(context, batch);
  if (status === 0 && synchronize) symbols.llama_synchronize(context);
  Atomics.store(block, Field.stepMicros, Math.round((performance.now() - start) * 1000));
  Atomics.store(block, Field.status, status);
}

/**
 * Decodes the batch's token, samples, and goes on with the sampled token, publishing each in the
 * ring, until the budget is spent, an end token is sampled, the host stops it, or a decode fails.
 */
function run(block: Int32Array, symbols: Symbols, batch: Uint8Array<ArrayBuffer>): void {
  const context = Deno.UnsafePointer.create(loadAddress(block, Field.context));
  const sampler = Deno.UnsafePointer.create(loadAddress(block, Field.sampler));
  const tokens = int32At(loadAddress(block, Field.tokens));
  const positions = int32At(loadAddress(block, Field.positions));
  const endCount = block[Field.endCount] as number;
  const ends = new Set(block.subarray(Field.ends, Field.ends + endCount));
  const budget = block[Field.budget] as number;
  const firstPosition = block[Field.position] as number;
  const sampledInGraph = block[Field.sampledInGraph] === 1;
  const grammar = grammarOf(block, symbols, context, sampler);
  let token = block[Field.token] as number;
  let published = 0;
  while (published < budget && Atomics.load(block, Field.state) === RunState.running) {
    tokens[0] = token;
    positions[0] = firstPosition + published;
    const start = performance.now();
    const status = symbols.llama_decode(context, batch);
    if (status !== 0) {
      Atomics.store(block, Field.status, status);
      return;
    }
    const decodeMicros = Math.round((performance.now() - start) * 1000);
    token = sampledInGraph ? takeSampledInGraph(symbols, context, sampler, 0) : LLAMA_TOKEN_NULL;
    if (token === LLAMA_TOKEN_NULL) {
      token = grammar
        ? pickWithGrammar(
          symbols,
          grammar.pick,
          grammar.candidates,
          context,
          0,
          grammar.logits,
          grammar.search,
        )
        : symbols.llama_sampler_sample(sampler, context, 0);
    }
    if (grammar) Atomics.store(block, Field.refusals, grammar.pick.refusals);
    waitForRoom(block, published);
    const at = stepIndex(published);
    block[at] = token;
    block[at + 1] = decodeMicros;
    published++;
    Atomics.store(block, Field.published, published);
    Atomics.add(block, Field.events, 1);
    Atomics.notify(block, Field.events);
    // The host's thread was just woken to take the token: on a machine whose cores all compute
    // it waited for one, up to a time slice (p99 4 ms on 2 cores, against 0.1 ms with this).
    yieldCore();
    // No token: the grammar allowed none, and the generation ends.
    if (ends.has(token) || token === LLAMA_TOKEN_NULL) return;
    // The host's UTF-8 guard edits the next step's logits: that step is the host's.
    if (grammar?.haltsAfter(token)) return;
  }
}

/** What a grammar run picks with (see `grammar_check.ts`). */
interface RunGrammar {
  pick: GrammarPick;
  candidates: TokenCandidates;
  /** The step's logits (its one output row). */
  logits: () => Float32Array;
  /** Whether the run halts after the token (see {@link Field.haltAfterLastBytes}). */
  haltsAfter: (token: number) => boolean;
  /** With a chain whose picks need only the best allowed tokens: room for the search. */
  search: BestSearch | undefined;
}

/** A run's grammar, read from the control block; undefined for a run without one. */
function grammarOf(
  block: Int32Array,
  symbols: Symbols,
  context: Deno.PointerValue,
  chain: Deno.PointerValue,
): RunGrammar | undefined {
  const grammar = Deno.UnsafePointer.create(loadAddress(block, Field.grammar));
  if (grammar === null) return undefined;
  const nVocab = block[Field.nVocab] as number;
  const need = block[Field.grammarNeed] as number;
  const count = block[Field.savedStageCount] as number;
  const savedAt = Deno.UnsafePointer.create(loadAddress(block, Field.savedStages));
  const haltAt = Deno.UnsafePointer.create(loadAddress(block, Field.haltAfterLastBytes));
  const vocab = Deno.UnsafePointer.create(loadAddress(block, Field.vocab));
  if (chain === null || haltAt === null || vocab === null || (count > 0 && savedAt === null)) {
    throw new Error("A grammar run's chain, stages, vocabulary or halting bytes are NULL");
  }
  const haltAfterLastBytes = new Uint8Array(nativeBuffer(haltAt, 256));
  const saved = savedAt === null
    ? []
    : savedStagesAt(new BigUint64Array(nativeBuffer(savedAt, count * 16)));
  return {
    pick: { grammar, chain, saved, refusals: 0 },
    candidates: candidatesFor(nVocab),
    logits: () => {
      const row = symbols.llama_get_logits_ith(context, 0);
      if (row === null) throw new Error("No logits for the run's step");
      return new Float32Array(nativeBuffer(row, nVocab * 4));
    },
    haltsAfter: (token) => {
      const last = lastByteOf(symbols, vocab, token);
      return last !== undefined && haltAfterLastBytes[last] === 1;
    },
    search: need === 0 ? undefined : new BestSearch({ count: Math.abs(need), greedy: need < 0 }),
  };
}

/** Room for a token's text; longer pieces are read again into a buffer of their size. */
let piece = new Uint8Array(64);

/** The last byte of a token's text as the host's `Model.tokenBytes` reads it; none when empty. */
function lastByteOf(
  symbols: Symbols,
  vocab: Deno.PointerValue,
  token: number,
): number | undefined {
  let length = symbols.llama_token_to_piece(vocab, token, piece, piece.length, 0, false);
  if (length < 0) {
    piece = new Uint8Array(-length);
    length = symbols.llama_token_to_piece(vocab, token, piece, piece.length, 0, false);
  }
  return length > 0 ? piece[length - 1] : undefined;
}

let candidates: TokenCandidates | undefined;

/** Room for `nVocab` candidates, kept from run to run. */
function candidatesFor(nVocab: number): TokenCandidates {
  if (candidates?.capacity !== nVocab) candidates = new TokenCandidates(nVocab);
  return candidates;
}

/** Waits while the ring is full (the host has not taken the oldest step yet). */
function waitForRoom(block: Int32Array, published: number): void {
  for (;;) {
    const taken = Atomics.load(block, Field.taken);
    if (published - taken < RING_STEPS) return;
    Atomics.wait(block, Field.taken, taken, 100);
  }
}

/**
 * The OS call that lets another thread ready to run on this core take it (`sched_yield`,
 * `SwitchToThread` on Windows); a no-op where it cannot be found.
 */
function threadYield(): () => void {
  try {
    if (Deno.build.os === "windows") {
      const kernel = Deno.dlopen("kernel32.dll", { SwitchToThread: YIELD_CALL } as const);
      return () => void kernel.symbols.SwitchToThread();
    }
    const name = systemCLibrary();
    if (name === undefined) return () => {};
    const libc = Deno.dlopen(name, { sched_yield: YIELD_CALL } as const);
    return () => void libc.symbols.sched_yield();
  } catch {
    return () => {};
  }
}

/** A one-element Int32 view of native memory (a batch's array). */
function int32At(address: bigint): Int32Array {
  const pointer = Deno.UnsafePointer.create(address);
  if (pointer === null) throw new Error("A batch array is NULL");
  return new Int32Array(nativeBuffer(pointer, 4));
}
