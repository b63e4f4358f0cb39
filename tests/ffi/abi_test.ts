/**
 * ABI test: compiles a C program against the pinned `llama.h` that prints `sizeof` and
 * `offsetof` of every field Shimmy's layouts use, and the default params as C sees them, then
 * compares both with the TypeScript side field by field.
 */

import { equal as assertEquals } from "node:assert/strict";
import { join } from "node:path";
import {
  ALL_LAYOUTS,
  GGML_MAX_N_THREADS,
  GgmlThreadpoolParamsTail,
} from "../../src/ffi/layouts.ts";
import { LlamaContextParams, LlamaModelParams } from "../../src/ffi/layouts.ts";
import { findLibraryFile } from "../../src/ffi/library.ts";
import { Llama } from "../../src/ffi/llama.ts";
import { llamaSourceDir } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";

const source = llamaSourceDir();
const compiler = ["cc", "gcc", "clang"].find((cc) => {
  try {
    return new Deno.Command(cc, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
});

const MODEL_DEFAULT_FIELDS = ["n_gpu_layers", "split_mode", "load_mode", "main_gpu"] as const;
const CONTEXT_DEFAULT_FIELDS = ["n_ctx", "n_batch", "n_ubatch", "n_seq_max", "n_threads"] as const;

function cProgram(): string {
  const lines = [
    "#include <stdio.h>",
    "#include <stddef.h>",
    '#include "llama.h"',
    '#include "ggml-cpu.h"',
    "int main(void) {",
  ];
  for (const layout of ALL_LAYOUTS) {
    lines.push(`  printf("%s size %zu\\n", "${layout.name}", sizeof(struct ${layout.name}));`);
    for (const field of Object.keys(layout.offsets)) {
      const member = `((struct ${layout.name} *) 0)->${field}`;
      lines.push(
        `  printf("${layout.name}.${field} %zu\\n", offsetof(struct ${layout.name}, ${field}));`,
        `  printf("${layout.name}.${field}.sizeof %zu\\n", sizeof(${member}));`,
      );
    }
  }
  const tp = "ggml_threadpool_params";
  lines.push(`  printf("${tp} size %zu\\n", sizeof(struct ${tp}));`);
  for (const field of Object.keys(GgmlThreadpoolParamsTail.offsets)) {
    lines.push(`  printf("${tp}.${field} %zu\\n", offsetof(struct ${tp}, ${field}));`);
  }
  lines.push("  struct llama_model_params mp = llama_model_default_params();");
  for (const f of MODEL_DEFAULT_FIELDS) lines.push(`  printf("model.${f} %d\\n", (int) mp.${f});`);
  lines.push("  struct llama_context_params cp = llama_context_default_params();");
  for (const f of CONTEXT_DEFAULT_FIELDS) {
    lines.push(`  printf("context.${f} %d\\n", (int) cp.${f});`);
  }
  lines.push("  return 0;", "}");
  return lines.join("\n");
}

function parseReport(text: string): Map<string, number> {
  return new Map(
    text.trim().split("\n").map((line) => {
      const at = line.lastIndexOf(" ");
      return [line.slice(0, at).replace(/ size$/, ".sizeof"), Number(line.slice(at + 1))] as const;
    }),
  );
}

Deno.test({
  name: "struct layouts match llama.h field by field, and default params read back as in C",
  ignore: !source
    ? skipBecause("ABI", "llama.cpp source missing: run scripts/build-libllama.sh --source-only")
    : !compiler
    ? skipBecause("ABI", "no C compiler (cc/gcc/clang) on PATH")
    : false,
  async fn() {
    const llama = Llama.open();
    const libllama = findLibraryFile(llama.libDir, "llama") as string;
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(join(dir, "abi.c"), cProgram());
      const build = await new Deno.Command(compiler as string, {
        args: [
          "-o",
          join(dir, "abi"),
          join(dir, "abi.c"),
          `-I${join(source as string, "include")}`,
          `-I${join(source as string, "ggml", "include")}`,
          libllama,
          `-Wl,-rpath,${llama.libDir}`,
        ],
      }).output();
      assertEquals(build.success, true, new TextDecoder().decode(build.stderr));
      const run = await new Deno.Command(join(dir, "abi")).output();
      assertEquals(run.success, true);
      const c = parseReport(new TextDecoder().decode(run.stdout));

      for (const layout of ALL_LAYOUTS) {
        assertEquals(layout.size, c.get(`${layout.name}.sizeof`), `sizeof ${layout.name}`);
        for (const [field, offset] of Object.entries(layout.offsets)) {
          assertEquals(offset, c.get(`${layout.name}.${field}`), `${layout.name}.${field}`);
          assertEquals(
            layout.fieldSize(field),
            c.get(`${layout.name}.${field}.sizeof`),
            `sizeof ${layout.name}.${field}`,
          );
        }
      }
      const tp = "ggml_threadpool_params";
      assertEquals(GGML_MAX_N_THREADS + GgmlThreadpoolParamsTail.size, c.get(`${tp}.sizeof`));
      for (const [field, offset] of Object.entries(GgmlThreadpoolParamsTail.offsets)) {
        assertEquals(GGML_MAX_N_THREADS + offset, c.get(`${tp}.${field}`), `${tp}.${field}`);
      }

      const mp = LlamaModelParams.on(new Uint8Array(llama.symbols.llama_model_default_params()));
      for (const f of MODEL_DEFAULT_FIELDS) assertEquals(mp.get(f), c.get(`model.${f}`), f);
      const cp = LlamaContextParams.on(
        new Uint8Array(llama.symbols.llama_context_default_params()),
      );
      for (const f of CONTEXT_DEFAULT_FIELDS) assertEquals(cp.get(f), c.get(`context.${f}`), f);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
