import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { parse as parseToml } from "smol-toml";
import { TEMPLATE_NAMES, templateFiles } from "../../src/cli/init_templates.ts";
import { GENERATED_DIR, REPO_ROOT } from "../fixtures/models.ts";
import { runShimmy, spawnServe, stopServe } from "../helpers.ts";
import { buildRequest, rawExchange } from "../reliability/wire.ts";

/** The files one template writes, read back. */
async function initInto(template: string, name = "demo") {
  const dir = await Deno.makeTempDir({ prefix: `shimmy-init-${template}-` });
  const run = await runShimmy(["init", "-t", template, "-o", dir, "-n", name]);
  equal(run.code, 0, run.stderr);
  const read = (path: string) => Deno.readTextFile(join(dir, path));
  return { dir, run, read };
}

/** `ENV` assignments of a Dockerfile (`KEY=VALUE`, continued lines included). */
function dockerEnv(dockerfile: string): Record<string, string> {
  const env: Record<string, string> = {};
  const joined = dockerfile.replace(/\\\n\s*/g, " ");
  for (const line of joined.split("\n")) {
    if (!line.startsWith("ENV ")) continue;
    for (const [, key, value] of line.matchAll(/(\w+)=(\S*)/g)) {
      env[key as string] = value as string;
    }
  }
  return env;
}

/** Variables `shimmy serve` reads, from its source: a template must not name any other. */
async function knownVariables(): Promise<Set<string>> {
  const known = new Set<string>();
  for await (const entry of Deno.readDir(join(REPO_ROOT, "src", "cli"))) {
    const text = await Deno.readTextFile(join(REPO_ROOT, "src", "cli", entry.name));
    for (const [variable] of text.matchAll(/SHIMMY_[A-Z_]+/g)) known.add(variable);
  }
  return known;
}

/**
 * Starts the server as the image would (no arguments, the Dockerfile's and the platform's
 * variables), with the models folder and port of this machine.
 */
function serveAsImage(env: Record<string, string>) {
  return spawnServe([], {
    ...env,
    SHIMMY_MODEL_PATHS: GENERATED_DIR,
    SHIMMY_BIND_ADDRESS: (env.SHIMMY_BIND_ADDRESS ?? "0.0.0.0:11435").replace(/:\d+$/, ":0"),
    SHIMMY_CACHE_DIR: Deno.env.get("SHIMMY_CACHE_DIR") ?? join(REPO_ROOT, ".cache"),
  });
}

/** The status of GET /v1/models sent with this `Host`. */
async function statusWithHost(url: string, host: string): Promise<number> {
  const port = Number(new URL(url).port);
  const result = await rawExchange(
    port,
    buildRequest(port, { method: "GET", path: "/v1/models", headers: [["Host", host]] }),
  );
  return result.response?.status ?? 0;
}

Deno.test("init: every template writes files that parse, and names only variables Shimmy reads", async () => {
  const known = await knownVariables();
  for (const template of TEMPLATE_NAMES) {
    const { dir, read, run } = await initInto(template);
    try {
      for (const file of templateFiles(template, "demo").files) {
        const text = await read(file.path);
        match(run.stdout, new RegExp(`wrote .*${file.path.replace(".", "\\.")}`));
        for (const [variable] of text.matchAll(/SHIMMY_[A-Z_]+/g)) {
          ok(
            known.has(variable),
            `${template}/${file.path} names ${variable}, which serve ignores`,
          );
        }
        if (/\.ya?ml$/.test(file.path)) {
          for (const doc of parseAllDocuments(text)) equal(doc.errors.length, 0, file.path);
        }
        if (file.path.endsWith(".json")) JSON.parse(text);
        if (file.path.endsWith(".toml")) parseToml(text);
        if (file.path.endsWith(".py")) {
          const compiled = await new Deno.Command("python3", {
            args: ["-m", "py_compile", join(dir, file.path)],
          }).output();
          equal(compiled.code, 0, new TextDecoder().decode(compiled.stderr));
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("init: the Kubernetes and Fly files point their checks at /health on 11435", async () => {
  const k8s = await initInto("kubernetes", "llm");
  const fly = await initInto("fly", "llm");
  try {
    const docs = parseAllDocuments(await k8s.read("llm.yaml")).map((doc) => doc.toJS());
    deepEqual(docs.map((doc) => doc.kind), ["PersistentVolumeClaim", "Deployment", "Service"]);
    const container = docs[1].spec.template.spec.containers[0];
    equal(container.image, "llm:latest");
    equal(container.readinessProbe.httpGet.path, "/health");
    equal(container.readinessProbe.httpGet.port, 11435);
    equal(docs[2].spec.ports[0].targetPort, 11435);
    const flyConfig = parseToml(await fly.read("fly.toml")) as {
      app: string;
      http_service: { internal_port: number; checks: { path: string }[] };
    };
    equal(flyConfig.app, "llm");
    equal(flyConfig.http_service.internal_port, 11435);
    equal(flyConfig.http_service.checks[0]?.path, "/health");
  } finally {
    await Deno.remove(k8s.dir, { recursive: true });
    await Deno.remove(fly.dir, { recursive: true });
  }
});

Deno.test("init: the docker template's image settings serve, and its service name passes the Host check", async () => {
  const { dir, read } = await initInto("docker");
  try {
    const env = dockerEnv(await read("Dockerfile"));
    equal(env.SHIMMY_BIND_ADDRESS, "0.0.0.0:11435");
    const compose = parseAllDocuments(await read("docker-compose.yml"))[0]?.toJS();
    const service = compose.services.demo;
    deepEqual(service.ports, ["11435:11435"]);
    // Without the Compose file's SHIMMY_ALLOWED_HOSTS, a container asking for http://demo:11435
    // is refused: the variable is what makes the service reachable by its name.
    const bare = await serveAsImage(env);
    try {
      equal(await statusWithHost(bare.url, "demo:11435"), 403);
    } finally {
      await stopServe(bare);
    }
    const served = await serveAsImage({
      ...env,
      SHIMMY_ALLOWED_HOSTS: service.environment.SHIMMY_ALLOWED_HOSTS,
    });
    try {
      equal(await statusWithHost(served.url, "demo:11435"), 200);
      equal(await statusWithHost(served.url, "elsewhere.example"), 403);
    } finally {
      await stopServe(served);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("init: the platform image's command binds $PORT and takes the platform's public name", async () => {
  const { dir, read } = await initInto("railway");
  try {
    const dockerfile = await read("Dockerfile");
    const env = dockerEnv(dockerfile);
    const command = /CMD \["sh", "-c", "(.*)"\]/.exec(dockerfile)?.[1] as string;
    match(command, /--bind 0\.0\.0\.0:\$\{PORT:-11435\}/);
    const port = /--bind (\S+)/.exec(command.replace("${PORT:-11435}", "0"))?.[1] as string;
    const served = await serveAsImage({ ...env, SHIMMY_BIND_ADDRESS: port });
    try {
      equal(await statusWithHost(served.url, "demo-production.up.railway.app"), 200);
    } finally {
      await stopServe(served);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("init: the Express app answers a chat through a running Shimmy", async () => {
  const { dir } = await initInto("express");
  const served = await spawnServe([
    "--model-dirs",
    GENERATED_DIR,
    "--default-model",
    "tiny-f32",
    "--bind",
    "127.0.0.1:0",
  ]);
  let app: Deno.ChildProcess | undefined;
  try {
    const install = await new Deno.Command(Deno.execPath(), { args: ["install"], cwd: dir })
      .output();
    equal(install.code, 0, new TextDecoder().decode(install.stderr));
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    app = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "app.js"],
      cwd: dir,
      env: { SHIMMY_URL: served.url, PORT: String(port) },
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = app.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes("asking")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the app exited: ${seen}`);
      seen += value;
    }
    reader.releaseLock();
    const answer = await fetch(`http://127.0.0.1:${port}/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ message: "hi", max_tokens: 4 }),
    });
    const body = await answer.json();
    equal(answer.status, 200, JSON.stringify(body));
    equal(typeof body.reply, "string");
    equal(body.usage.completion_tokens, 4);
    const bad = await fetch(`http://127.0.0.1:${port}/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    equal(bad.status, 400);
    await bad.body?.cancel();
  } finally {
    app?.kill("SIGTERM");
    await app?.status;
    await app?.stdout.cancel().catch(() => {});
    await stopServe(served);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("init: files in the way, an unknown template and a bad name are refused before writing", async () => {
  const { dir } = await initInto("docker");
  try {
    const again = await runShimmy(["init", "-t", "docker", "-o", dir]);
    equal(again.code, 1);
    match(again.stderr, /Dockerfile, .*already exist.*--force/);
    const forced = await runShimmy(["init", "-t", "docker", "-o", dir, "--force"]);
    equal(forced.code, 0, forced.stderr);
    const typo = await runShimmy(["init", "-t", "dockr", "-o", join(dir, "typo")]);
    equal(typo.code, 1);
    match(typo.stderr, /Unknown template "dockr" \(did you mean docker\?\)/);
    const badName = await runShimmy(["init", "-t", "fly", "-n", "My_App", "-o", join(dir, "bad")]);
    equal(badName.code, 1);
    match(badName.stderr, /--name "My_App" is not a valid name/);
    const missing = await runShimmy(["init"]);
    equal(missing.code, 1);
    match(missing.stderr, /needs --template/);
    for (const path of ["typo", "bad"]) {
      equal(await Deno.stat(join(dir, path)).then(() => true, () => false), false);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
