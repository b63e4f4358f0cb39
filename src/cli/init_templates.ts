/**
 * The files `shimmy init` writes: a container image of Shimmy and what runs it on Docker
 * Compose, Kubernetes, Railway or Fly.io, and two small apps (FastAPI, Express) that call a
 * Shimmy server through its OpenAI API. The original Shimmy's `init` had the same six
 * templates; these are Shimmy's own, and carry what this server needs in a container: its
 * address, model folder and cache from `SHIMMY_*` variables, the names clients use in `Host`
 * (`SHIMMY_ALLOWED_HOSTS`, else a 403), and `/health` for the platforms' checks.
 *
 * @module
 */

/** One file of a template. */
export interface TemplateFile {
  /** Path under the output folder. */
  path: string;
  text: string;
}

/** A template: its files and what to do next. */
export interface Template {
  files: TemplateFile[];
  /** Whether its image needs a Linux shimmy executable beside the Dockerfile. */
  needsExecutable: boolean;
  /** Lines printed after the files are written. */
  next: string[];
}

/** The templates by name, with `k8s` for `kubernetes`. */
export const TEMPLATE_NAMES = [
  "docker",
  "kubernetes",
  "k8s",
  "railway",
  "fly",
  "fastapi",
  "express",
] as const;

/** A template's name. */
export type TemplateName = typeof TEMPLATE_NAMES[number];

/** The port Shimmy serves on, kept from the original. */
const PORT = 11435;
/** The image's user (and the group that owns a Kubernetes volume). */
const UID = 10001;

function dockerfile(command: string): string {
  return `# Shimmy's image: the shimmy executable for Linux x64 (beside this file) serving the GGUF
# models mounted at /models on port ${PORT}.
FROM debian:bookworm-slim
RUN useradd --system --uid ${UID} --create-home --home-dir /var/lib/shimmy shimmy \\
    && mkdir /models && chown shimmy /models
COPY --chmod=755 shimmy /usr/local/bin/shimmy
USER shimmy
# The embedded llama.cpp libraries are unpacked into the cache on the first start.
ENV SHIMMY_MODEL_PATHS=/models \\
    SHIMMY_CACHE_DIR=/var/lib/shimmy/cache \\
    SHIMMY_BIND_ADDRESS=0.0.0.0:${PORT}
EXPOSE ${PORT}
${command}
`;
}

const DOCKERFILE = dockerfile(`CMD ["shimmy", "serve"]`);

const DOCKERIGNORE = `*
!shimmy
`;

function compose(name: string): string {
  return `# docker compose up --build: Shimmy on http://localhost:${PORT} with the models in ./models.
services:
  ${name}:
    build: .
    image: ${name}:latest
    ports:
      - "${PORT}:${PORT}"
    volumes:
      - ./models:/models:ro
    environment:
      # Other containers reach it as http://${name}:${PORT}; Host names not listed get a 403.
      SHIMMY_ALLOWED_HOSTS: ${name}
      # Set SHIMMY_API_KEY in the shell or an .env file to require a key.
      SHIMMY_API_KEY: \${SHIMMY_API_KEY:-}
    restart: unless-stopped
`;
}

function kubernetes(name: string): string {
  return `# kubectl apply -f ${name}.yaml, after building the image of the docker template as
# ${name}:latest and pushing it where the cluster pulls from. Copy GGUF files into the volume
# (kubectl cp FILE POD:/models/).
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: ${name}-models
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 20Gi
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
  labels: { app: ${name} }
spec:
  replicas: 1
  selector:
    matchLabels: { app: ${name} }
  template:
    metadata:
      labels: { app: ${name} }
    spec:
      securityContext:
        runAsUser: ${UID}
        fsGroup: ${UID}
      containers:
        - name: shimmy
          image: ${name}:latest
          ports:
            - containerPort: ${PORT}
          env:
            # Clients in the cluster use the Service's names in Host.
            - name: SHIMMY_ALLOWED_HOSTS
              value: "${name},${name}.default,${name}.default.svc,${name}.default.svc.cluster.local"
          volumeMounts:
            - name: models
              mountPath: /models
          readinessProbe:
            httpGet: { path: /health, port: ${PORT} }
            periodSeconds: 10
          livenessProbe:
            httpGet: { path: /health, port: ${PORT} }
            initialDelaySeconds: 30
            periodSeconds: 30
          resources:
            requests: { cpu: "2", memory: 4Gi }
      volumes:
        - name: models
          persistentVolumeClaim:
            claimName: ${name}-models
---
apiVersion: v1
kind: Service
metadata:
  name: ${name}
spec:
  selector: { app: ${name} }
  ports:
    - port: ${PORT}
      targetPort: ${PORT}
`;
}

/** The image's command where the platform picks the port (`$PORT`) and the public name. */
const PLATFORM_DOCKERFILE = dockerfile(
  `# The platform's proxy sends its public name in Host: any is allowed, so set SHIMMY_API_KEY.
ENV SHIMMY_ALLOWED_HOSTS=*
CMD ["sh", "-c", "exec shimmy serve --bind 0.0.0.0:\${PORT:-${PORT}}"]`,
);

const RAILWAY = JSON.stringify(
  {
    $schema: "https://railway.com/railway.schema.json",
    build: { builder: "DOCKERFILE", dockerfilePath: "Dockerfile" },
    deploy: {
      healthcheckPath: "/health",
      healthcheckTimeout: 300,
      restartPolicyType: "ON_FAILURE",
    },
  },
  null,
  2,
) + "\n";

function fly(name: string): string {
  return `# fly launch --no-deploy --copy-config, fly volumes create models, fly secrets set
# SHIMMY_API_KEY=..., then fly deploy. Copy GGUF files into the volume with fly ssh sftp.
app = "${name}"

[build]
  dockerfile = "Dockerfile"

[env]
  PORT = "${PORT}"

[http_service]
  internal_port = ${PORT}
  force_https = true
  auto_stop_machines = "stop"
  auto_start_machines = true

  [[http_service.checks]]
    method = "GET"
    path = "/health"
    interval = "30s"
    timeout = "5s"
    grace_period = "60s"

[mounts]
  source = "models"
  destination = "/models"

[[vm]]
  size = "shared-cpu-4x"
  memory = "8gb"
`;
}

function fastapi(name: string): string {
  return `"""${name}: a FastAPI app that answers through a Shimmy server's OpenAI API.

Run: pip install -r requirements.txt && uvicorn main:app --port 8000
Set SHIMMY_URL (default http://localhost:${PORT}), SHIMMY_MODEL and SHIMMY_API_KEY as needed.
"""

import os

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from openai import APIError, OpenAI
from pydantic import BaseModel

SHIMMY_URL = os.environ.get("SHIMMY_URL", "http://localhost:${PORT}")
MODEL = os.environ.get("SHIMMY_MODEL", "")  # empty: the server's only or default model

client = OpenAI(base_url=f"{SHIMMY_URL}/v1", api_key=os.environ.get("SHIMMY_API_KEY", "none"))
app = FastAPI(title="${name}")


class Chat(BaseModel):
    message: str
    system: str | None = None
    max_tokens: int = 256


def messages_of(chat: Chat) -> list[dict]:
    system = [{"role": "system", "content": chat.system}] if chat.system else []
    return [*system, {"role": "user", "content": chat.message}]


@app.post("/chat")
def chat(chat: Chat) -> dict:
    try:
        answer = client.chat.completions.create(
            model=MODEL, messages=messages_of(chat), max_tokens=chat.max_tokens
        )
    except APIError as error:
        raise HTTPException(status_code=502, detail=str(error)) from error
    return {"reply": answer.choices[0].message.content, "usage": answer.usage.model_dump()}


@app.post("/chat/stream")
def chat_stream(chat: Chat) -> StreamingResponse:
    def pieces():
        stream = client.chat.completions.create(
            model=MODEL, messages=messages_of(chat), max_tokens=chat.max_tokens, stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    return StreamingResponse(pieces(), media_type="text/plain; charset=utf-8")


@app.get("/health")
def health() -> dict:
    return {"shimmy": SHIMMY_URL, "models": [m.id for m in client.models.list().data]}
`;
}

const FASTAPI_REQUIREMENTS = `fastapi>=0.110
uvicorn>=0.29
openai>=1.30
`;

function express(name: string): string {
  return `// ${name}: an Express app that answers through a Shimmy server's OpenAI API.
// Run: npm install && npm start (Node 18 or later). Set SHIMMY_URL (default
// http://localhost:${PORT}), SHIMMY_MODEL and SHIMMY_API_KEY as needed, and PORT for this app.
import express from "express";

const SHIMMY_URL = process.env.SHIMMY_URL ?? "http://localhost:${PORT}";
const MODEL = process.env.SHIMMY_MODEL ?? ""; // empty: the server's only or default model
const headers = {
  "content-type": "application/json",
  ...(process.env.SHIMMY_API_KEY ? { authorization: \`Bearer \${process.env.SHIMMY_API_KEY}\` } : {}),
};

const app = express();
app.use(express.json());

app.post("/chat", async (req, res) => {
  const { message, system, max_tokens = 256 } = req.body ?? {};
  if (typeof message !== "string") {
    return res.status(400).json({ error: 'Send {"message": "..."}' });
  }
  const messages = [
    ...(system ? [{ role: "system", content: system }] : []),
    { role: "user", content: message },
  ];
  try {
    const answer = await fetch(\`\${SHIMMY_URL}/v1/chat/completions\`, {
      method: "POST",
      headers,
      body: JSON.stringify({ model: MODEL, messages, max_tokens }),
    });
    const body = await answer.json();
    if (!answer.ok) return res.status(502).json({ error: body.error?.message ?? answer.statusText });
    res.json({ reply: body.choices[0].message.content, usage: body.usage });
  } catch (error) {
    res.status(502).json({ error: \`Shimmy at \${SHIMMY_URL} did not answer: \${error.message}\` });
  }
});

app.get("/health", async (_req, res) => {
  try {
    const answer = await fetch(\`\${SHIMMY_URL}/health\`);
    res.status(answer.ok ? 200 : 502).json({ shimmy: SHIMMY_URL, ok: answer.ok });
  } catch (error) {
    res.status(502).json({ shimmy: SHIMMY_URL, ok: false, error: error.message });
  }
});

const port = Number(process.env.PORT ?? 3000);
app.listen(port, () => console.log(\`${name} on http://localhost:\${port}, asking \${SHIMMY_URL}\`));
`;
}

function expressPackage(name: string): string {
  return JSON.stringify(
    {
      name,
      version: "0.1.0",
      private: true,
      type: "module",
      main: "app.js",
      scripts: { start: "node app.js" },
      engines: { node: ">=18" },
      dependencies: { express: "^4.21.0" },
    },
    null,
    2,
  ) + "\n";
}

/** A template that builds Shimmy's image: its Dockerfile, the ignore file, and `files`. */
function imageTemplate(dockerfile: string, files: TemplateFile[], next: string): Template {
  return {
    files: [
      { path: "Dockerfile", text: dockerfile },
      { path: ".dockerignore", text: DOCKERIGNORE },
      ...files,
    ],
    needsExecutable: true,
    next: [next],
  };
}

/**
 * A template's files for a project name.
 *
 * @param template Which template.
 * @param name The project's name (a DNS label: it names services and apps).
 * @returns Its files and what to do next.
 */
export function templateFiles(template: TemplateName, name: string): Template {
  switch (template) {
    case "docker":
      return imageTemplate(
        DOCKERFILE,
        [
          { path: "docker-compose.yml", text: compose(name) },
          { path: "models/.gitkeep", text: "" },
        ],
        "Put GGUF files in models/, then: docker compose up --build",
      );
    case "kubernetes":
    case "k8s":
      return imageTemplate(
        DOCKERFILE,
        [{ path: `${name}.yaml`, text: kubernetes(name) }],
        `docker build -t ${name}:latest . (push it), then kubectl apply -f ${name}.yaml`,
      );
    case "railway":
      return imageTemplate(
        PLATFORM_DOCKERFILE,
        [{ path: "railway.json", text: RAILWAY }],
        "railway up, with a volume mounted at /models and SHIMMY_API_KEY set",
      );
    case "fly":
      return imageTemplate(
        PLATFORM_DOCKERFILE,
        [{ path: "fly.toml", text: fly(name) }],
        "fly volumes create models, fly secrets set SHIMMY_API_KEY=..., then fly deploy",
      );
    case "fastapi":
      return {
        files: [
          { path: "main.py", text: fastapi(name) },
          { path: "requirements.txt", text: FASTAPI_REQUIREMENTS },
        ],
        needsExecutable: false,
        next: [
          "pip install -r requirements.txt && uvicorn main:app --port 8000",
          `(with shimmy serve running, or SHIMMY_URL pointing at a Shimmy server)`,
        ],
      };
    case "express":
      return {
        files: [
          { path: "app.js", text: express(name) },
          { path: "package.json", text: expressPackage(name) },
        ],
        needsExecutable: false,
        next: [
          "npm install && npm start",
          "(with shimmy serve running, or SHIMMY_URL pointing at a Shimmy server)",
        ],
      };
  }
}
