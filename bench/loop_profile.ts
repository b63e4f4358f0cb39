/**
 * Where a running Deno process's main thread spends its time: connects to the process's
 * inspector, records V8's sampling profile for `--seconds` while whatever load you choose runs
 * (`ttft_probe.ts`, `serve_bench.ts` against servers already up, curl), and prints the functions
 * that took the most of its busy time, including what they called and on their own.
 *
 *   deno run -A --inspect=127.0.0.1:9229 main.ts serve --model M.gguf --bind 127.0.0.1:18600
 *   deno run -A bench/loop_profile.ts [--inspector 127.0.0.1:9229] [--seconds 10] [--top 40]
 *     [--interval-us 100] [--out profile.cpuprofile]
 *
 * Time spent in a synchronous FFI call (a blocking libllama call, a mutex inside one) counts as
 * busy, as it holds the event loop; `(idle)` is the loop waiting for events. `--out` keeps the
 * profile, which Chrome's DevTools opens.
 *
 * @module
 */

import { benchArgs } from "./lib/args.ts";

/** One node of a V8 CPU profile (the inspector's `Profiler.Profile`). */
export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** A V8 CPU profile as `Profiler.stop` returns it. */
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  /** Microseconds from each sample to the one before (the first from the start). */
  timeDeltas: number[];
}

/** Time per function, in microseconds. */
export interface ProfileSummary {
  busyUs: number;
  idleUs: number;
  /** Time in the function and everything it called, largest first. */
  inclusive: [name: string, us: number][];
  /** Time in the function's own code, largest first. */
  self: [name: string, us: number][];
}

/** A profile node's function as `name file:line`. */
function functionOf(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url.slice(url.lastIndexOf("/") + 1);
  return `${functionName || "(anonymous)"}${file ? ` ${file}:${lineNumber + 1}` : ""}`;
}

/**
 * Sums a profile's samples per function: each sample lasts until the next one, and counts once
 * for every distinct function on its stack (recursion is not counted twice).
 *
 * @param profile The profile.
 * @returns Busy and idle time, and the functions by inclusive and by self time.
 * @example
 * ```ts
 * const summary = summarizeProfile(profile);
 * console.log(summary.inclusive.slice(0, 10));
 * ```
 */
export function summarizeProfile(profile: CpuProfile): ProfileSummary {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parents.set(child, node.id);
  }
  const timeOf = new Map<number, number>();
  profile.samples.forEach((id, index) => {
    const lasted = profile.timeDeltas[index + 1] ?? 0;
    timeOf.set(id, (timeOf.get(id) ?? 0) + lasted);
  });
  const inclusive = new Map<string, number>();
  const self = new Map<string, number>();
  let idleUs = 0;
  let busyUs = 0;
  for (const [id, us] of timeOf) {
    const node = nodes.get(id);
    if (!node) continue;
    if (node.callFrame.functionName === "(idle)") {
      idleUs += us;
      continue;
    }
    busyUs += us;
    const own = functionOf(node);
    self.set(own, (self.get(own) ?? 0) + us);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parents.get(at)) {
      const frame = nodes.get(at) as ProfileNode;
      const name = functionOf(frame);
      if (frame.callFrame.functionName === "(root)" || seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + us);
    }
  }
  const byTime = (map: Map<string, number>) => [...map].sort((a, b) => b[1] - a[1]);
  return { busyUs, idleUs, inclusive: byTime(inclusive), self: byTime(self) };
}

/** Sends inspector commands over one WebSocket. */
class Inspector {
  readonly #socket: WebSocket;
  readonly #pending = new Map<number, (result: unknown) => void>();
  #nextId = 1;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      this.#pending.get(message.id)?.(message.result);
      this.#pending.delete(message.id);
    };
  }

  /** Connects to the first target of the inspector at `hostPort`. */
  static async connect(hostPort: string): Promise<Inspector> {
    const targets = await (await fetch(`http://${hostPort}/json/list`)).json();
    const url = targets[0]?.webSocketDebuggerUrl;
    if (typeof url !== "string") throw new Error(`No inspector target at ${hostPort}`);
    const socket = new WebSocket(url);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error(`Cannot connect to ${url}`));
    });
    return new Inspector(socket);
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.#socket.send(JSON.stringify({ id, method, params }));
    });
  }

  close(): void {
    this.#socket.close();
  }
}

async function main(): Promise<void> {
  const { values } = benchArgs({
    args: Deno.args,
    options: {
      inspector: { type: "string", default: "127.0.0.1:9229" },
      seconds: { type: "string", default: "10" },
      top: { type: "string", default: "40" },
      "interval-us": { type: "string", default: "100" },
      out: { type: "string" },
    },
  }, import.meta.url);
  const inspector = await Inspector.connect(values.inspector);
  await inspector.call("Profiler.enable");
  await inspector.call("Profiler.setSamplingInterval", { interval: Number(values["interval-us"]) });
  await inspector.call("Profiler.start");
  console.log(`Profiling ${values.inspector} for ${values.seconds} s`);
  await new Promise((resolve) => setTimeout(resolve, Number(values.seconds) * 1000));
  const { profile } = await inspector.call("Profiler.stop") as { profile: CpuProfile };
  inspector.close();
  if (values.out) await Deno.writeTextFile(values.out, JSON.stringify(profile));
  const summary = summarizeProfile(profile);
  const ms = (us: number) => (us / 1000).toFixed(1).padStart(9);
  const share = (us: number) => `${(100 * us / summary.busyUs).toFixed(1).padStart(5)}%`;
  console.log(`busy ${ms(summary.busyUs)} ms, idle ${ms(summary.idleUs)} ms`);
  const top = Number(values.top);
  for (const [title, rows] of [["inclusive", summary.inclusive], ["self", summary.self]] as const) {
    console.log(`\n${title} (ms, share of busy time)`);
    for (const [name, us] of rows.slice(0, top)) console.log(`${ms(us)} ${share(us)}  ${name}`);
  }
}

if (import.meta.main) await main();
