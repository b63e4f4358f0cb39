/**
 * Prometheus metrics: request counts by endpoint and status, token counters, generation
 * speed, a time-to-first-token histogram, and live gauges read at scrape time.
 *
 * @module
 */

const TTFT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Live values read when `/metrics` is scraped. */
export interface LiveGauges {
  /** Per model: queued requests, busy slots, total slots, load seconds. */
  models: {
    name: string;
    queued: number;
    busySlots: number;
    slots: number;
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

  /** Counts one finished request. */
  request(endpoint: string, status: number): void {
    const key = `endpoint="${endpoint}",status="${status}"`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
  }

  /** Records one finished generation. */
  generation(promptTokens: number, generatedTokens: number, ttftMs: number, tps: number): void {
    this.#promptTokens += promptTokens;
    this.#generatedTokens += generatedTokens;
    if (tps > 0) this.#lastTokensPerSecond = tps;
    if (generatedTokens > 0) {
      const seconds = ttftMs / 1000;
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
    return out.join("\n") + "\n";
  }
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
