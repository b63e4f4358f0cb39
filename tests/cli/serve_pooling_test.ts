import { equal, ok, throws } from "node:assert/strict";
import { parseServeArgs, SERVE_USAGE } from "../../src/cli/serve.ts";
import { UsageError } from "../../src/cli/usage_error.ts";

Deno.test("serve --pooling picks the embeddings pooling, SHIMMY_POOLING too, and is documented", () => {
  const none = () => undefined;
  equal(parseServeArgs([], none)?.pooling, undefined);
  equal(parseServeArgs(["--pooling", "mean"], none)?.pooling, "mean");
  equal(parseServeArgs([], (n) => (n === "SHIMMY_POOLING" ? "rank" : undefined))?.pooling, "rank");
  equal(
    parseServeArgs(["--pooling", "cls"], (n) => (n === "SHIMMY_POOLING" ? "last" : undefined))
      ?.pooling,
    "cls",
  );
  throws(() => parseServeArgs(["--pooling", "max"], none), UsageError);
  ok(/--pooling P .*none \| mean \| cls \| last \| rank/.test(SERVE_USAGE));
  ok(SERVE_USAGE.includes("/v1/embeddings") && SERVE_USAGE.includes("/v1/rerank"));
});
