/**
 * One stream at a time to several running servers in turn, for A/Bs finer than a machine's drift:
 * serve_bench runs each server for minutes, and on a noisy machine its rate moves as much between
 * those minutes as any change it compares. Here each round streams one completion to every server
 * (the order reversed every other round, the same prompt for all of a round), and the medians of
 * the rounds are printed per server: decode rate (from the first text event to the last), TTFT,
 * and each one's ratio to the first server's, as a ratio of medians and as the median of the
 * round-by-round ratios.
 *
 * Start the servers first (each on its own port, the same model and settings), for instance two
 * checkouts of Shimmy (`git worktree add`) and llama-server, then:
 *
 *   deno run -A bench/interleave.ts before=http://127.0.0.1:18600 after=http://127.0.0.1:18601 \
 *     llama=http://127.0.0.1:18603 [--rounds 12] [--tokens 200] [--prompt-tokens N]
 *
 * `--prompt-tokens N` sends prompts of about N tokens (a new one each round, so that no server
 * finds it cached), to compare first tokens after long prompts; start the servers with room for
 * them.
 *
 * @module
 */

import { streamCompletion } from "./lib/sse_client.ts";
import { median, pairedRatios } from "./lib/stats.ts";
import { benchArgs } from "./lib/args.ts";
import { promptText } from "./lib/prompts.ts";

interface Server {
  name: string;
  url: string;
  rates: number[];
  ttfts: number[];
}

/** Parses `NAME=URL` arguments. */
function serversOf(args: readonly string[]): Server[] {
  return args.map((arg) => {
    const at = arg.indexOf("=");
    if (at <= 0) throw new Error(`Expected NAME=URL, got ${JSON.stringify(arg)}`);
    return { name: arg.slice(0, at), url: arg.slice(at + 1), rates: [], ttfts: [] };
  });
}

async function main(): Promise<void> {
  const { values, positionals } = benchArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      rounds: { type: "string", default: "12" },
      tokens: { type: "string", default: "200" },
      pause: { type: "string", default: "500" },
      "prompt-tokens": { type: "string" },
    },
  }, import.meta.url);
  const servers = serversOf(positionals);
  if (servers.length === 0) throw new Error("Name at least one server: NAME=URL ...");
  const rounds = Number(values.rounds);
  const tokens = Number(values.tokens);
  const pauseMs = Number(values.pause);
  const promptTokens = values["prompt-tokens"] === undefined
    ? undefined
    : Number(values["prompt-tokens"]);
  if (
    !(rounds >= 1) || !(tokens >= 2) || !(pauseMs >= 0) ||
    !(promptTokens === undefined || promptTokens >= 1)
  ) {
    throw new Error(
      "--rounds must be at least 1, --tokens at least 2 (a rate needs two tokens), --pause " +
        "not negative and --prompt-tokens at least 1",
    );
  }
  const promptOf = (round: number) =>
    promptTokens === undefined
      ? `Once upon a time, in round ${round} of the comparison,`
      : promptText(round + 1, promptTokens);
  for (const server of servers) await streamCompletion(server.url, promptOf(-1), tokens);
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? servers : [...servers].reverse();
    const prompt = promptOf(round);
    for (const server of order) {
      // A server's compute threads may spin for a while after its stream (llama-server's do, for
      // up to ~0.1 s): the next server would start on cores they still hold.
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
      const result = await streamCompletion(server.url, prompt, tokens);
      const seconds = (result.lastAt - result.firstAt) / 1000;
      server.rates.push((result.tokens - 1) / seconds);
      server.ttfts.push(result.firstAt - result.sentAt);
    }
    console.log(
      `round ${round + 1}/${rounds}: ` +
        servers.map((s) => `${s.name} ${(s.rates.at(-1) as number).toFixed(1)} tok/s`).join(", "),
    );
  }
  const first = servers[0] as Server;
  const base = median(first.rates);
  for (const server of servers) {
    const rate = median(server.rates);
    const paired = pairedRatios(server.rates, first.rates);
    const pairedTtfts = pairedRatios(server.ttfts, first.ttfts);
    console.log(
      `${server.name}: decode median ${rate.toFixed(1)} tok/s (${(rate / base).toFixed(3)}× ` +
        `${first.name}; round by round ${median(paired).toFixed(3)}× median, ` +
        `${Math.min(...paired).toFixed(3)}–${Math.max(...paired).toFixed(3)}), ` +
        `TTFT median ${median(server.ttfts).toFixed(1)} ms (round by round ` +
        `${median(pairedTtfts).toFixed(3)}× ${first.name}'s)`,
    );
  }
}

if (import.meta.main) await main();
