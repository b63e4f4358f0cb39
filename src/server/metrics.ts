/**
 * Prometheus metrics: request counts by endpoint and status, token counters, generation
 * speed, a time-to-first-token histogram, and live gauges read at scrape time; and the
 * `llamacpp:` families llama-server exposes, under its names, so dashboards made for it work.
 *
 * @module
 */

import type { GenerationResult } from "../engine/scheduler.ts";

const TTFT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Live values read when `/metrics` is scraped. */
export interface LiveGauges {
  /** Per model: queued requests, busy slots, total slots, load seconds. */
  models: {
    name: string;
    queued: number;
    busySlots: number;
    slots: number;
    /** Decode steps since the model loaded. */
    steps: number;
    loadSeconds: number;
    /** Each copy of the model (`--replicas`); one entry when there is one copy. */
    replicas?: { index: number; devices: string[]; queued: number; busySlots: number }[];
  }[];
}

type Replica = NonNullable<LiveGauges["models"][number]["replicas"]>[number];

/** The server's metric registry. */
export class Metrics {
  readonly #requests = new Map<string, number>();
  #promptTokens = 0;
  #generatedTokens = 0;
  #lastTokensPerSecond = 0;
  readonly #ttftCounts = new Array<number>(TTFT_BUCKETS.length).fill(0);
  #ttftSum = 0;
  #ttftCount = 0;
  #evaluatedPromptTokens = 0;
  #cachedPromptTokens = 0;
  #promptSeconds = 0;
  #generateSeconds = 0;
  #longestSequence = 0;

  /** Counts one finished request. */
  request(endpoint: string, status: number): void {
    const key = `endpoint="${endpoint}",status="${status}"`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
  }

  /**
   * Records one finished generation.
   *
   * @param result Its token counts and timings.
   */
  generation(
    result: Pick<
      GenerationResult,
      "promptTokens" | "cachedTokens" | "completionTokens" | "timings"
    >,
  ): void {
    const { promptTokens, cachedTokens, completionTokens: generatedTokens, timings } = result;
    this.#promptTokens += promptTokens;
    this.#generatedTokens += generatedTokens;
    this.#evaluatedPromptTokens += promptTokens - cachedTokens;
    this.#cachedPromptTokens += cachedTokens;
    this.#promptSeconds += timings.promptMs / 1000;
    this.#generateSeconds += timings.generateMs / 1000;
    this.#longestSequence = Math.max(this.#longestSequence, promptTokens + generatedTokens);
    if (timings.generatePerSecond > 0) this.#lastTokensPerSecond = timings.generatePerSecond;
    if (generatedTokens > 0) {
      const seconds = timings.ttftMs / 1000;
      TTFT_BUCKETS.forEach((bound, i) => {
        if (seconds <= bound) this.#ttftCounts[i] = (this.#ttftCounts[i] ?? 0) + 1;
      });
      this.#ttftSum += seconds;
      this.#ttftCount++;
    }
  }

  /**
   * Renders the Prometheus text format.
   *
   * @param live Gauges read now.
   * @returns The exposition text.
   */
  render(live: LiveGauges): string {
    const out: string[] = [];
    const family = (name: string, type: string, help: string) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    family("shimmy_requests_total", "counter", "HTTP requests by endpoint and status");
    for (const [labels, n] of this.#requests) out.push(`shimmy_requests_total{${labels}} ${n}`);
    family("shimmy_prompt_tokens_total", "counter", "Prompt tokens processed");
    out.push(`shimmy_prompt_tokens_total ${this.#promptTokens}`);
    family("shimmy_generated_tokens_total", "counter", "Tokens generated");
    out.push(`shimmy_generated_tokens_total ${this.#generatedTokens}`);
    family("shimmy_tokens_per_second", "gauge", "Decode speed of the last finished request");
    out.push(`shimmy_tokens_per_second ${round(this.#lastTokensPerSecond)}`);
    family("shimmy_ttft_seconds", "histogram", "Time to first token");
    TTFT_BUCKETS.forEach((bound, i) =>
      out.push(`shimmy_ttft_seconds_bucket{le="${bound}"} ${this.#ttftCounts[i]}`)
    );
    out.push(`shimmy_ttft_seconds_bucket{le="+Inf"} ${this.#ttftCount}`);
    out.push(`shimmy_ttft_seconds_sum ${round(this.#ttftSum)}`);
    out.push(`shimmy_ttft_seconds_count ${this.#ttftCount}`);
    const perModel: [string, string, (m: LiveGauges["models"][number]) => number][] = [
      ["shimmy_queue_depth", "Requests waiting for a slot", (m) => m.queued],
      ["shimmy_busy_slots", "Slots generating or reading a prompt", (m) => m.busySlots],
      ["shimmy_slots", "Slots per loaded model", (m) => m.slots],
      [
        "shimmy_model_load_seconds",
        "How long each loaded model took to load",
        (m) => round(m.loadSeconds),
      ],
    ];
    for (const [name, help, value] of perModel) {
      family(name, "gauge", help);
      for (const m of live.models) out.push(`${name}{model="${m.name}"} ${value(m)}`);
    }
    const perCopy: [string, string, (r: Replica) => number][] = [
      ["shimmy_replica_busy_slots", "Busy slots of each copy of a model", (r) => r.busySlots],
      ["shimmy_replica_queue_depth", "Requests waiting for each copy of a model", (r) => r.queued],
    ];
    for (const [name, help, value] of perCopy) {
      family(name, "gauge", help);
      for (const m of live.models) {
        for (const r of m.replicas ?? []) {
          out.push(
            `${name}{model="${m.name}",replica="${r.index}",devices="${r.devices.join("+")}"} ` +
              value(r),
          );
        }
      }
    }
    out.push(...this.#llamaServerFamilies(live));
    return out.join("\n") + "\n";
  }

  /**
   * llama-server's families: `llamacpp:` counters of prompt and generated tokens and their
   * seconds, decode steps and the longest sequence, and gauges of the average rates (since the
   * server started, where llama-server's cover the time since the last scrape) and of the
   * requests in slots and waiting.
   */
  #llamaServerFamilies(live: LiveGauges): string[] {
    const sum = (value: (m: LiveGauges["models"][number]) => number) =>
      live.models.reduce((total, m) => total + value(m), 0);
    const rate = (tokens: number, seconds: number) => seconds > 0 ? round(tokens / seconds) : 0;
    const families: [string, "counter" | "gauge", string, number][] = [
      [
        "prompt_tokens_total",
        "counter",
        "Prompt tokens evaluated, not counting those reused from the cache",
        this.#evaluatedPromptTokens,
      ],
      [
        "prompt_tokens_cached_total",
        "counter",
        "Prompt tokens reused from the cache",
        this.#cachedPromptTokens,
      ],
      [
        "prompt_seconds_total",
        "counter",
        "Time spent evaluating prompts",
        round(this.#promptSeconds),
      ],
      ["tokens_predicted_total", "counter", "Tokens generated", this.#generatedTokens],
      [
        "tokens_predicted_seconds_total",
        "counter",
        "Time spent generating",
        round(this.#generateSeconds),
      ],
      ["n_decode_total", "counter", "Decode steps", sum((m) => m.steps)],
      [
        "n_tokens_max",
        "counter",
        "Longest sequence seen (prompt and generation)",
        this.#longestSequence,
      ],
      [
        "prompt_tokens_seconds",
        "gauge",
        "Average prompt throughput in tokens/s",
        rate(this.#evaluatedPromptTokens, this.#promptSeconds),
      ],
      [
        "predicted_tokens_seconds",
        "gauge",
        "Average generation throughput in tokens/s",
        rate(this.#generatedTokens, this.#generateSeconds),
      ],
      ["requests_processing", "gauge", "Requests in slots", sum((m) => m.busySlots)],
      ["requests_deferred", "gauge", "Requests waiting for a slot", sum((m) => m.queued)],
    ];
    return families.flatMap(([name, type, help, value]) => [
      `# HELP llamacpp:${name} ${help}`,
      `# TYPE llamacpp:${name} ${type}`,
      `llamacpp:${name} ${value}`,
    ]);
  }
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
