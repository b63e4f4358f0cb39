const url = Deno.args[0];
const n = Number(Deno.args[1] ?? 8);
const rounds = Number(Deno.args[2] ?? 10);
async function one(i: number) {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: Deno.env.get("M") ?? "tiny-f32", prompt: `The quick brown fox number ${i} jumps over the lazy dog and keeps running`, max_tokens: 3, stream: true, temperature: 0 }) });
  const reader = r.body!.getReader();
  let ttft = 0;
  while (true) { const { done } = await reader.read(); if (done) break; if (!ttft) ttft = performance.now() - t0; }
  return ttft;
}
for (let k = 0; k < rounds; k++) {
  const t = await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
  console.log("ttft", t.map((x) => x.toFixed(1)).join(" "));
  await new Promise((r) => setTimeout(r, 50));
}
