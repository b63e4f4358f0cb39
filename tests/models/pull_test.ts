import { deepEqual, equal, match, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { parseModelRef, pickGgufFiles, PullError } from "../../src/models/hf_hub.ts";
import { findPulled, pullModel, repoCacheDir } from "../../src/models/pull.ts";
import { discoverModels, findModel } from "../../src/models/discovery.ts";
import { fixtureModel } from "../fixtures/models.ts";
import { formatBytes, pullProgressPrinter } from "../../src/cli/pull.ts";
import { runShimmy } from "../helpers.ts";
import { toHttpError } from "../../src/server/http_error.ts";
import { type FakeRepo, sha256Hex, startFakeHub } from "./fake_hub.ts";

const gguf = await Deno.readFile(await fixtureModel("tiny-f32"));
const REPO = "tiny-org/Tiny-Instruct-GGUF";
const COMMIT = "c0ffee".padEnd(40, "0");

function tinyRepo(extra: Partial<FakeRepo> = {}): FakeRepo {
  return {
    commit: COMMIT,
    files: [
      { path: "README.md", bytes: new TextEncoder().encode("# tiny") },
      { path: "tiny-instruct-Q8_0.gguf", bytes: gguf.slice(0, 1000) },
      { path: "tiny-instruct-Q4_K_M.gguf", bytes: gguf },
    ],
    ...extra,
  };
}

async function withCache(fn: (cache: string) => Promise<void>) {
  const cache = await Deno.makeTempDir({ prefix: "shimmy-hub-" });
  try {
    await fn(cache);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
}

Deno.test("parseModelRef() reads hf.co, ORG/REPO:QUANT, file and URL references", () => {
  const hub = parseModelRef("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF:q8_0");
  equal(hub.kind === "hub" && `${hub.repo} ${hub.quant}`, "Qwen/Qwen2.5-0.5B-Instruct-GGUF q8_0");
  const plain = parseModelRef("Qwen/Qwen2.5-0.5B-Instruct-GGUF");
  equal(plain.kind === "hub" && plain.quant, undefined);
  const file = parseModelRef("org/repo/sub/model-Q4_K_M.gguf");
  equal(file.kind === "hub" && file.file, "sub/model-Q4_K_M.gguf");
  const resolved = parseModelRef("https://huggingface.co/org/repo/resolve/main/m.gguf");
  equal(resolved.kind === "hub" && `${resolved.repo} ${resolved.file}`, "org/repo m.gguf");
  equal(parseModelRef("https://example.com/m.gguf").kind, "url");
  throws(() => parseModelRef("./models/x.gguf"), PullError);
  throws(() => parseModelRef("models/x.gguf"), PullError);
  throws(() => parseModelRef("phi3"), PullError);
});

Deno.test("pickGgufFiles() picks Q4_K_M by default, every shard, and lists the tags it has", () => {
  const files = [
    { path: "m-Q8_0.gguf", size: 1 },
    { path: "m-Q4_K_M-00002-of-00002.gguf", size: 1 },
    { path: "m-Q4_K_M-00001-of-00002.gguf", size: 1 },
    { path: "mmproj-F16.gguf", size: 1 },
  ];
  equal(
    pickGgufFiles("o/r", files).map((f) => f.path).join(" "),
    "m-Q4_K_M-00001-of-00002.gguf m-Q4_K_M-00002-of-00002.gguf",
  );
  equal(pickGgufFiles("o/r", files, "q8_0")[0]!.path, "m-Q8_0.gguf");
  throws(() => pickGgufFiles("o/r", files, "Q2_K"), /no Q2_K GGUF file; it has Q8_0, Q4_K_M/);
});

Deno.test("pullModel() stores the Q4_K_M file in the Hugging Face cache layout, and discovery finds it by its hf.co name", async () => {
  await using hub = startFakeHub({ [REPO]: tinyRepo() });
  await withCache(async (cache) => {
    const statuses: string[] = [];
    const pulled = await pullModel(`hf.co/${REPO}`, {
      hubCache: cache,
      endpoint: hub.url,
      onProgress: (p) => statuses.push(p.status),
    });
    equal(pulled.name, `hf.co/${REPO}:Q4_K_M`);
    equal(pulled.commit, COMMIT);
    const repoDir = repoCacheDir(cache, REPO);
    equal(repoDir, join(cache, "models--tiny-org--Tiny-Instruct-GGUF"));
    const blob = join(repoDir, "blobs", sha256Hex(gguf));
    equal((await Deno.stat(blob)).size, gguf.length);
    const link = join(repoDir, "snapshots", COMMIT, "tiny-instruct-Q4_K_M.gguf");
    equal(pulled.path, link);
    match(await Deno.readLink(link), /^\.\.\/\.\.\/blobs\/[0-9a-f]{64}$/);
    equal(await Deno.realPath(link), await Deno.realPath(blob));
    equal((await Deno.readTextFile(join(repoDir, "refs", "main"))).trim(), COMMIT);
    ok(statuses.includes("downloading") && statuses.at(-1) === "done");

    const report = await discoverModels({ env: { HF_HUB_CACHE: cache }, home: cache, cwd: cache });
    const found = findModel(report, `hf.co/${REPO}:Q4_K_M`);
    equal(found?.path, link);
    equal(findModel(report, `${REPO}:q4_k_m`)?.path, link);
    equal(findPulled(`hf.co/${REPO}`, cache)?.path, link);
    equal(findPulled(`hf.co/${REPO}:Q8_0`, cache), undefined);

    const before = hub.requests.length;
    const again = await pullModel(`${REPO}:Q4_K_M`, { hubCache: cache, endpoint: hub.url });
    ok(again.files[0]!.present);
    equal(hub.requests.slice(before).filter((r) => r.path.startsWith("/cdn/")).length, 0);
  });
});

Deno.test("pullModel() resumes with a Range request after the connection drops mid-file", async () => {
  await using hub = startFakeHub({ [REPO]: tinyRepo() });
  hub.dropNext.add("tiny-instruct-Q4_K_M.gguf");
  await withCache(async (cache) => {
    const pulled = await pullModel(REPO, { hubCache: cache, endpoint: hub.url, retryDelayMs: 0 });
    const cdn = hub.requests.filter((r) => r.path.startsWith("/cdn/"));
    equal(cdn.length, 2);
    equal(cdn[0]!.range, null);
    match(cdn[1]!.range ?? "", /^bytes=[1-9]\d*-$/);
    equal(sha256Hex(await Deno.readFile(pulled.path)), sha256Hex(gguf));
  });
});

Deno.test("pullModel() gives up on a connection that keeps dropping, keeping the partial file to resume", async () => {
  await using hub = startFakeHub({ [REPO]: tinyRepo() });
  hub.dropAlways.add("tiny-instruct-Q4_K_M.gguf");
  await withCache(async (cache) => {
    await rejects(
      pullModel(REPO, { hubCache: cache, endpoint: hub.url, retryDelayMs: 0 }),
      /Cannot download .*Q4_K_M\.gguf: .*after 5 attempts\); run the pull again to resume/,
    );
    const partial = join(repoCacheDir(cache, REPO), "blobs", `${sha256Hex(gguf)}.incomplete`);
    const size = (await Deno.stat(partial)).size;
    ok(size > gguf.length * 0.9 && size < gguf.length, String(size));
    hub.dropAlways.clear();
    const pulled = await pullModel(REPO, { hubCache: cache, endpoint: hub.url });
    equal(sha256Hex(await Deno.readFile(pulled.path)), sha256Hex(gguf));
  });
});

Deno.test("pullModel() continues an interrupted pull from the partial file it left", async () => {
  await using hub = startFakeHub({ [REPO]: tinyRepo() });
  await withCache(async (cache) => {
    const blobs = join(repoCacheDir(cache, REPO), "blobs");
    await Deno.mkdir(blobs, { recursive: true });
    await Deno.writeFile(join(blobs, `${sha256Hex(gguf)}.incomplete`), gguf.slice(0, 4096));
    const pulled = await pullModel(REPO, { hubCache: cache, endpoint: hub.url });
    const cdn = hub.requests.filter((r) => r.path.startsWith("/cdn/"));
    equal(cdn.map((r) => r.range).join(), "bytes=4096-");
    equal(sha256Hex(await Deno.readFile(pulled.path)), sha256Hex(gguf));
  });
});

Deno.test("pullModel() deletes a download whose SHA-256 differs from the hub's and says so", async () => {
  const repo = tinyRepo();
  repo.files[2]!.claimedSha256 = "0".repeat(64);
  await using hub = startFakeHub({ [REPO]: repo });
  await withCache(async (cache) => {
    await rejects(
      pullModel(REPO, { hubCache: cache, endpoint: hub.url }),
      /Checksum mismatch for .*Q4_K_M\.gguf.*partial download was deleted/,
    );
    const blobs = [...Deno.readDirSync(join(repoCacheDir(cache, REPO), "blobs"))];
    equal(blobs.length, 0);
    equal(findPulled(REPO, cache), undefined);
  });
});

Deno.test("pullModel() of a gated repository says how to get access on a 401, and works with HF_TOKEN", async () => {
  await using hub = startFakeHub({ [REPO]: tinyRepo({ token: "hf_secret" }) });
  await withCache(async (cache) => {
    await rejects(
      pullModel(REPO, { hubCache: cache, endpoint: hub.url }),
      (error: Error) =>
        error instanceof PullError && error.status === 401 && /HF_TOKEN/.test(error.message) &&
        /huggingface\.co\/settings\/tokens/.test(error.message),
    );
    const pulled = await pullModel(REPO, {
      hubCache: cache,
      endpoint: hub.url,
      token: "hf_secret",
    });
    equal(sha256Hex(await Deno.readFile(pulled.path)), sha256Hex(gguf));
    ok(hub.requests.filter((r) => r.path.startsWith("/tiny-org")).every((r) => r.authorization));
  });
});

Deno.test("pullModel() fetches every shard of a split GGUF and returns the first", async () => {
  const half = Math.floor(gguf.length / 2);
  await using hub = startFakeHub({
    [REPO]: {
      commit: COMMIT,
      files: [
        { path: "Q4_K_M/tiny-Q4_K_M-00002-of-00002.gguf", bytes: gguf.slice(half) },
        { path: "Q4_K_M/tiny-Q4_K_M-00001-of-00002.gguf", bytes: gguf.slice(0, half) },
      ],
    },
  });
  await withCache(async (cache) => {
    const pulled = await pullModel(REPO, { hubCache: cache, endpoint: hub.url });
    equal(pulled.files.length, 2);
    match(pulled.path, /Q4_K_M\/tiny-Q4_K_M-00001-of-00002\.gguf$/);
    equal(pulled.bytes, gguf.length);
    for (const f of pulled.files) ok((await Deno.stat(f.localPath)).isFile);
  });
});

Deno.test("pullModel({dryRun}) lists the files without downloading them", async () => {
  await using hub = startFakeHub({ [REPO]: tinyRepo() });
  await withCache(async (cache) => {
    const pulled = await pullModel(`${REPO}:Q8_0`, {
      hubCache: cache,
      endpoint: hub.url,
      dryRun: true,
    });
    equal(pulled.files[0]!.path, "tiny-instruct-Q8_0.gguf");
    equal(hub.requests.filter((r) => !r.path.startsWith("/api/")).length, 0);
  });
});

Deno.test("pullModel() of a URL keeps its file inside the models folder: an encoded path is refused", async () => {
  const modelsDir = await Deno.makeTempDir({ prefix: "shimmy-pull-url-" });
  try {
    for (
      const name of ["..%2F..%2Fescape.gguf", "a%5Cb.gguf", "%ZZ.gguf", "c%3Ax.gguf", "d%00.gguf"]
    ) {
      const url = `http://127.0.0.1:9/models/${name}`;
      await rejects(
        pullModel(url, { modelsDir, dryRun: true }),
        (error) => error instanceof PullError && error.status === 400,
        name,
      );
    }
    await using hub = startFakeHub({
      [REPO]: tinyRepo({ files: [{ path: "model one.gguf", bytes: gguf }] }),
    });
    const pulled = await pullModel(`${hub.url}/cdn/${REPO}/model%20one.gguf`, {
      modelsDir,
      dryRun: true,
    });
    equal(pulled.path, join(modelsDir, "model one.gguf"));
  } finally {
    await Deno.remove(modelsDir, { recursive: true });
  }
});

Deno.test("a dry run of a URL asks the server for the size and downloads nothing; a URL that fails is an error", async () => {
  const modelsDir = await Deno.makeTempDir({ prefix: "shimmy-pull-url-" });
  try {
    await using hub = startFakeHub({ [REPO]: tinyRepo() });
    const url = `${hub.url}/cdn/${REPO}/tiny-instruct-Q4_K_M.gguf`;
    const dry = await pullModel(url, { modelsDir, dryRun: true });
    equal(dry.files[0]!.size, gguf.length);
    deepEqual(await Array.fromAsync(Deno.readDir(modelsDir)), [], "nothing downloaded");
    await rejects(
      pullModel(`${hub.url}/cdn/${REPO}/missing.gguf`, { modelsDir, dryRun: true }),
      (error) => error instanceof PullError && error.status === 404,
    );
    await rejects(
      pullModel("http://127.0.0.1:9/models/m.gguf", { modelsDir, dryRun: true }),
      (error) =>
        error instanceof PullError && error.status === 502 && /Cannot reach/.test(error.message),
    );
  } finally {
    await Deno.remove(modelsDir, { recursive: true });
  }
});

/** A disk with 1 GiB kept free (5 % would be 5 GiB) and `room` bytes free past that. */
function diskWithRoom(room: number) {
  const space = { free: 2 ** 30 + room, total: 100 * 2 ** 30 };
  return () => Promise.resolve(space);
}

/** Checks a refusal for want of disk space, as the server would send it. */
function isDiskSpaceLow(error: unknown): boolean {
  ok(error instanceof PullError);
  match(
    error.message,
    /it needs 944\.7 KiB, .* free; the pull would leave less than the 1\.0 GiB kept free/,
  );
  const http = toHttpError(error);
  equal(http.status, 507);
  equal(http.code, "disk_space_low");
  return true;
}

Deno.test("pullModel() refuses a 507 before fetching a byte when the files would leave the disk less than its reserve", async () => {
  await using hub = startFakeHub({ [REPO]: tinyRepo() });
  await withCache(async (cache) => {
    const options = { hubCache: cache, endpoint: hub.url };
    await rejects(
      pullModel(`hf.co/${REPO}`, { ...options, diskSpace: diskWithRoom(gguf.length - 1) }),
      isDiskSpaceLow,
    );
    equal(hub.requests.filter((r) => r.path.startsWith("/cdn/")).length, 0);
    const pulled = await pullModel(`hf.co/${REPO}`, {
      ...options,
      diskSpace: diskWithRoom(gguf.length),
    });
    equal((await Deno.stat(pulled.path)).size, gguf.length, "it fits to the byte");
  });
});

Deno.test("pullModel() of a URL refuses a 507 once the server tells the size, and writes nothing", async () => {
  await using hub = startFakeHub({ [REPO]: tinyRepo() });
  const modelsDir = await Deno.makeTempDir({ prefix: "shimmy-pull-url-" });
  try {
    const url = `${hub.url}/cdn/${REPO}/tiny-instruct-Q4_K_M.gguf`;
    await rejects(
      pullModel(url, { modelsDir, diskSpace: diskWithRoom(gguf.length - 1) }),
      isDiskSpaceLow,
    );
    deepEqual([...Deno.readDirSync(modelsDir)], [], "not even a partial file");
    const pulled = await pullModel(url, { modelsDir, diskSpace: diskWithRoom(gguf.length) });
    equal(pulled.bytes, gguf.length);
  } finally {
    await Deno.remove(modelsDir, { recursive: true });
  }
});

Deno.test("shimmy pull of a URL tells how to run the file by its path, which works from any folder", async () => {
  const home = await Deno.makeTempDir({ prefix: "shimmy-pull-home-" });
  try {
    await using hub = startFakeHub({ [REPO]: tinyRepo() });
    const env = { HOME: home, USERPROFILE: home, LOCALAPPDATA: join(home, "local") };
    const run = await runShimmy(["pull", `${hub.url}/cdn/${REPO}/tiny-instruct-Q4_K_M.gguf`], env);
    equal(run.code, 0, run.stderr);
    const command = /Chat with it: {2}shimmy run (.+)\n/.exec(run.stdout)?.[1];
    ok(command && command.endsWith("tiny-instruct-Q4_K_M.gguf"), run.stdout);
    const chat = await runShimmy(["run", command, "hi", "--max-tokens", "2"], env);
    equal(chat.code, 0, chat.stderr);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("pullModel() refuses a hub listing whose file path climbs out of the snapshot", async () => {
  const escaping = { path: "../../escape-Q4_K_M.gguf", bytes: gguf };
  await using hub = startFakeHub({ [REPO]: tinyRepo({ files: [escaping] }) });
  await withCache(async (cache) => {
    await rejects(
      pullModel(`${REPO}:Q4_K_M`, { hubCache: cache, endpoint: hub.url, dryRun: true }),
      (error) => error instanceof PullError && /not a relative path/.test(error.message),
    );
  });
});

Deno.test("pullModel() refuses a hub listing whose commit or checksum is not hex, and a revision that is no name", async () => {
  const evil = (commit: string, sha256?: string): FakeRepo => ({
    commit,
    files: [{
      path: "tiny-instruct-Q4_K_M.gguf",
      bytes: gguf,
      ...(sha256 ? { claimedSha256: sha256 } : {}),
    }],
  });
  for (const repo of [evil("../../../../escaped"), evil("a".repeat(40), "../../escaped_blob")]) {
    await using hub = startFakeHub({ [REPO]: repo });
    await withCache(async (cache) => {
      await rejects(
        pullModel(`${REPO}:Q4_K_M`, { hubCache: cache, endpoint: hub.url }),
        (error) => error instanceof PullError && error.status === 502,
      );
      const around = await Array.fromAsync(Deno.readDir(join(cache, "..")));
      deepEqual(around.filter((entry) => entry.name.startsWith("escaped")), []);
    });
  }
  throws(
    () => parseModelRef("https://hf.co/org/repo/resolve/../m.gguf"),
    (error) => error instanceof PullError && error.status === 400,
  );
});

Deno.test("shimmy pull prints plain progress lines off a terminal, and a 401 as one line", async () => {
  await using hub = startFakeHub({
    [REPO]: tinyRepo(),
    "gated/Model-GGUF": tinyRepo({ token: "t" }),
  });
  await withCache(async (cache) => {
    const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_TOKEN: "" };
    const run = await runShimmy(["pull", `hf.co/${REPO}`], env);
    equal(run.code, 0, run.stderr);
    match(run.stderr, /Downloading tiny-instruct-Q4_K_M\.gguf \(\d/);
    match(run.stderr, /tiny-instruct-Q4_K_M\.gguf: 100%/);
    match(run.stdout, new RegExp(`Pulled hf\\.co/${REPO}:Q4_K_M`));
    match(run.stdout, /shimmy run hf\.co\//);
    const dry = await runShimmy(["pull", `${REPO}:Q8_0`, "--dry-run"], env);
    match(dry.stdout, /Would pull .*\n {2}tiny-instruct-Q8_0\.gguf {2}1\.0 KB/);
    const gated = await runShimmy(["pull", "gated/Model-GGUF"], env);
    equal(gated.code, 1);
    equal(gated.stderr.trim().split("\n").length, 1, gated.stderr);
    match(gated.stderr, /^shimmy: Cannot pull gated\/Model-GGUF: access denied \(HTTP 401\)/);
  });
});

Deno.test("the pull progress bar redraws one line with bytes, speed and ETA on a terminal", () => {
  let out = "";
  const bar = pullProgressPrinter(false, true, (t) => out += t);
  bar.update({ status: "downloading", file: "m.gguf", completed: 0, total: 2_000_000 });
  bar.update({ status: "downloading", file: "m.gguf", completed: 2_000_000, total: 2_000_000 });
  bar.done();
  match(out, /\rm\.gguf █+ 100% {2}2\.0 MB\/2\.0 MB {2}[\d.]+ [KMG]?B\/s {2}ETA 0:00/);
  ok(out.endsWith("\n"));
  equal(formatBytes(491_400_000), "491.4 MB");
});

Deno.test("shimmy run hf.co/… pulls a model that is not on disk, then answers", async () => {
  await using hub = startFakeHub({ [REPO]: tinyRepo() });
  await withCache(async (cache) => {
    const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache };
    const run = await runShimmy(["run", `hf.co/${REPO}`, "Say hi", "--max-tokens", "4"], env);
    equal(run.code, 0, run.stderr);
    match(run.stderr, /is not on this machine: pulling it/);
    ok(run.stdout.trim().length > 0);
    equal(findPulled(`hf.co/${REPO}:Q4_K_M`, cache)?.name, `hf.co/${REPO}:Q4_K_M`);
  });
});
