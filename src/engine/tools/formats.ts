/**
 * The tool-call formats chat templates teach, one entry per family: the markers that start a
 * call (used to hold text back while streaming, and as lazy-grammar triggers), how to read the
 * calls after a marker, and how to write one call in GBNF (for forced calls). The format is
 * recognised from the template's text, the way llama.cpp's chat code recognises it.
 *
 * @module
 */

import {
  jsonArrayCalls,
  type JsonCallKeys,
  jsonObjectCall,
  NAME_ARGUMENTS,
  nameArgsCall,
  sectionCalls,
  xmlCall,
  type XmlLayout,
} from "./call_scanners.ts";
import { scanObjectMembers, skipSpace } from "./json_scan.ts";
import { gbnfLiteral } from "../structured/charset.ts";
import { parseFunctionaryV32 } from "./functionary.ts";
import { parseHarmony } from "./harmony.ts";
import type { CallScan, ParsedOutput, ToolSpec } from "./tool_types.ts";

/**
 * How a format's tool-call ids look: OpenAI's `call_…`, Mistral's nine alphanumerics, or Kimi
 * K2's `functions.NAME:N` (N counts the conversation's calls from 0).
 */
export type ToolIdStyle = "openai" | "mistral" | "kimi";

/** The formats Shimmy reads and writes. */
export type ToolFormatId =
  | "hermes"
  | "qwen3_coder"
  | "glm4"
  | "llama3"
  | "mistral_nemo"
  | "mistral"
  | "deepseek_r1"
  | "deepseek_v3_1"
  | "granite"
  | "command_r7b"
  | "functionary_v3_1"
  | "kimi_k2"
  | "gpt_oss"
  | "functionary_v3_2"
  | "generic";

/** What a format's reader gets. */
export interface ScanContext {
  /** The tools offered (XML formats look up parameter types). */
  tools: readonly ToolSpec[];
  /** Whether the text is the whole output (else a streamed prefix). */
  final: boolean;
}

/**
 * One call in GBNF: `lead`, the literal text that opens it and names the function, then `rest`.
 * The leads of a forced call's tools share their beginnings in the grammar (a trie).
 */
export interface CallPieces {
  /** Literal text, matched exactly. */
  lead: string;
  /** The GBNF expression after it: the arguments and what closes the call. */
  rest: string;
}

/** GBNF pieces for one call: `name` is the function name, `args` the rule of its arguments. */
export interface CallGrammar {
  /** One call to `name` whose arguments are the GBNF expression `args`. */
  call(name: string, args: string, tool: ToolSpec): CallPieces;
  /** The whole output, from the rule `call` that matches one call; `parallel` allows several. */
  wrap(call: string, parallel: boolean): string;
  /** Arguments as XML parameters instead of a JSON object. */
  xml?: { open: (key: string) => string; close: string };
}

/** A tool-call format. */
export interface ToolFormat {
  readonly id: ToolFormatId;
  /** Strings that start a call. */
  readonly markers: readonly string[];
  /** Whether a JSON call may also open the output without a marker (Llama 3, generic). */
  readonly leadingJson: boolean;
  /**
   * Id style: OpenAI's `call_…`, the nine alphanumerics Mistral templates insist on, or Kimi K2's
   * `functions.NAME:N`, numbered through the conversation.
   */
  readonly idStyle: ToolIdStyle;
  /**
   * Reads calls.
   *
   * @param text The output.
   * @param at Where the marker's text ends (or where a leading JSON call starts).
   * @param marker The marker found ("" for a leading JSON call).
   * @param ctx Tools and whether the output is whole.
   */
  scan(text: string, at: number, marker: string, ctx: ScanContext): CallScan;
  /** Reads the whole output itself, reasoning included (GPT-OSS channels). */
  readonly readWhole?: (text: string, ctx: ScanContext) => ParsedOutput;
  readonly grammar: CallGrammar;
}

const lit = (text: string) => JSON.stringify(text);
const g = gbnfLiteral;
const ID9 = `[a-zA-Z0-9]{9}`;
const MAX_PARALLEL = 7;

function sep(call: string, separator: string, parallel: boolean): string {
  if (!parallel) return call;
  return `${call} (${separator === "" ? "" : g(separator) + " "}${call}){0,${MAX_PARALLEL}}`;
}

function jsonCall(nameKey: string, argsKey: string, extra = ""): CallGrammar["call"] {
  return (name, args) => ({
    lead: `{"${nameKey}": ${lit(name)}, "${argsKey}": `,
    rest: `${args} ${extra}${g("}")}`,
  });
}

function oneJsonCall(keys: JsonCallKeys = NAME_ARGUMENTS) {
  return (text: string, at: number): CallScan => {
    const one = jsonObjectCall(text, at, keys);
    if (one.state === "invalid") return one;
    if (one.state === "incomplete") {
      return { state: "incomplete", calls: one.call ? [one.call] : [] };
    }
    return { state: "complete", calls: [one.call], end: one.end };
  };
}

/** A JSON call followed by literals (e.g. `</tool_call>`). */
function jsonCallThen(after: string, keys: JsonCallKeys = NAME_ARGUMENTS) {
  return (text: string, at: number): CallScan => {
    const one = oneJsonCall(keys)(text, at);
    if (one.state !== "complete") return one;
    const i = skipSpace(text, one.end);
    if (text.startsWith(after, i)) return { ...one, end: i + after.length };
    if (after.startsWith(text.slice(i))) {
      return { state: "incomplete", calls: one.calls.map((c) => ({ ...c, complete: false })) };
    }
    return { state: "invalid" };
  };
}

const QWEN3_CODER_XML: XmlLayout = {
  nameEnd: ">",
  keyOpen: "<parameter=",
  keyClose: ">",
  valueClose: "</parameter>",
  end: ["</function>", "</tool_call>"],
  trimNewlines: true,
};

const GLM_XML: XmlLayout = {
  nameEnd: "\n",
  keyOpen: "<arg_key>",
  keyClose: "</arg_key>",
  valueOpen: "<arg_value>",
  valueClose: "</arg_value>",
  end: ["</tool_call>"],
  trimNewlines: false,
};

const DS = {
  sectionOpen: "<｜tool▁calls▁begin｜>",
  sectionClose: "<｜tool▁calls▁end｜>",
  callOpen: "<｜tool▁call▁begin｜>",
  callClose: "<｜tool▁call▁end｜>",
  sep: "<｜tool▁sep｜>",
};

const KIMI = {
  sectionOpen: "<|tool_calls_section_begin|>",
  sectionClose: "<|tool_calls_section_end|>",
  callOpen: "<|tool_call_begin|>",
  argsOpen: "<|tool_call_argument_begin|>",
  callClose: "<|tool_call_end|>",
};

const COMMAND_R7B_KEYS: JsonCallKeys = {
  name: ["tool_name"],
  arguments: ["parameters"],
};

/** Every format, by id. */
export const TOOL_FORMATS: Readonly<Record<ToolFormatId, ToolFormat>> = {
  hermes: {
    id: "hermes",
    markers: ["<tool_call>"],
    leadingJson: false,
    idStyle: "openai",
    scan: (text, at) => jsonCallThen("</tool_call>")(text, at),
    grammar: {
      call: (name, args) => ({
        lead: `<tool_call>\n{"name": ${lit(name)}, "arguments": `,
        rest: `${args} ${g("}\n</tool_call>")}`,
      }),
      wrap: (call, parallel) => sep(call, "\n", parallel),
    },
  },
  qwen3_coder: {
    id: "qwen3_coder",
    markers: ["<tool_call>"],
    leadingJson: false,
    idStyle: "openai",
    scan: (text, at, _marker, ctx) => {
      const i = skipSpace(text, at);
      const open = "<function=";
      if (!text.startsWith(open, i)) {
        return open.startsWith(text.slice(i)) ? { state: "incomplete", calls: [] } : {
          state: "invalid",
        };
      }
      return xmlCall(text, i + open.length, QWEN3_CODER_XML, ctx.tools);
    },
    grammar: {
      call: (name, args) => ({
        lead: `<tool_call>\n<function=${name}>\n`,
        rest: `${args} ${g("</function>\n</tool_call>")}`,
      }),
      wrap: (call, parallel) => sep(call, "\n", parallel),
      xml: { open: (key) => `<parameter=${key}>\n`, close: "\n</parameter>\n" },
    },
  },
  glm4: {
    id: "glm4",
    markers: ["<tool_call>"],
    leadingJson: false,
    idStyle: "openai",
    scan: (text, at, _marker, ctx) => xmlCall(text, at, GLM_XML, ctx.tools),
    grammar: {
      call: (name, args) => ({
        lead: `<tool_call>${name}\n`,
        rest: `${args} ${g("</tool_call>")}`,
      }),
      wrap: (call, parallel) => sep(call, "\n", parallel),
      xml: { open: (key) => `<arg_key>${key}</arg_key>\n<arg_value>`, close: "</arg_value>\n" },
    },
  },
  llama3: {
    id: "llama3",
    markers: ["<|python_tag|>"],
    leadingJson: true,
    idStyle: "openai",
    scan: (text, at) => oneJsonCall()(text, at),
    grammar: {
      call: jsonCall("name", "parameters"),
      wrap: (call) => call,
    },
  },
  mistral_nemo: {
    id: "mistral_nemo",
    markers: ["[TOOL_CALLS]"],
    leadingJson: false,
    idStyle: "mistral",
    scan: (text, at) => jsonArrayCalls(text, at),
    grammar: {
      call: jsonCall("name", "arguments", `${g(', "id": "')} ${ID9} ${g('"')} `),
      wrap: (call, parallel) => `${g("[TOOL_CALLS][")} ${sep(call, ", ", parallel)} ${g("]")}`,
    },
  },
  mistral: {
    id: "mistral",
    markers: ["[TOOL_CALLS]"],
    leadingJson: false,
    idStyle: "mistral",
    scan: (text, at) =>
      nameArgsCall(text, at, {
        nameEnd: /(?:\[CALL_ID\]([A-Za-z0-9]*))?\[ARGS\]/,
        after: [],
      }),
    grammar: {
      call: (name, args) => ({ lead: `[TOOL_CALLS]${name}[ARGS]`, rest: args }),
      wrap: (call, parallel) => sep(call, "", parallel),
    },
  },
  deepseek_r1: {
    id: "deepseek_r1",
    markers: [DS.sectionOpen],
    leadingJson: false,
    idStyle: "openai",
    scan: (text, at, _marker, ctx) =>
      sectionCalls(text, at, DS.callOpen, DS.sectionClose, (t, i) => {
        const j = skipSpace(t, i);
        const kind = "function" + DS.sep;
        if (!t.startsWith(kind, j)) {
          return kind.startsWith(t.slice(j)) ? { state: "incomplete", calls: [] } : {
            state: "invalid",
          };
        }
        return nameArgsCall(t, j + kind.length, {
          nameEnd: /\n```(?:json)?\n/,
          after: ["```", DS.callClose],
        });
      }, ctx.final),
    grammar: {
      call: (name, args) => ({
        lead: `${DS.callOpen}function${DS.sep}${name}\n\`\`\`json\n`,
        rest: `${args} ${g(`\n\`\`\`${DS.callClose}`)}`,
      }),
      wrap: (call, parallel) =>
        `${g(DS.sectionOpen)} ${sep(call, "\n", parallel)} ${g(DS.sectionClose)}`,
    },
  },
  deepseek_v3_1: {
    id: "deepseek_v3_1",
    markers: [DS.sectionOpen],
    leadingJson: false,
    idStyle: "openai",
    scan: (text, at, _marker, ctx) =>
      sectionCalls(text, at, DS.callOpen, DS.sectionClose, (t, i) =>
        nameArgsCall(t, i, {
          nameEnd: new RegExp(DS.sep),
          after: [DS.callClose],
        }), ctx.final),
    grammar: {
      call: (name, args) => ({
        lead: `${DS.callOpen}${name}${DS.sep}`,
        rest: `${args} ${g(DS.callClose)}`,
      }),
      wrap: (call, parallel) =>
        `${g(DS.sectionOpen)} ${sep(call, "", parallel)} ${g(DS.sectionClose)}`,
    },
  },
  granite: {
    id: "granite",
    markers: ["<|tool_call|>"],
    leadingJson: false,
    idStyle: "openai",
    scan: (text, at) => jsonArrayCalls(text, at),
    grammar: {
      call: jsonCall("name", "arguments"),
      wrap: (call, parallel) => `${g("<|tool_call|>[")} ${sep(call, ", ", parallel)} ${g("]")}`,
    },
  },
  command_r7b: {
    id: "command_r7b",
    markers: ["<|START_ACTION|>"],
    leadingJson: false,
    idStyle: "openai",
    scan: (text, at) => jsonArrayCalls(text, at, COMMAND_R7B_KEYS, ["<|END_ACTION|>"]),
    grammar: {
      // The call's id comes before its name, so it opens every call outside the names' trie.
      call: (name, args) => ({
        lead: `", "tool_name": ${lit(name)}, "parameters": `,
        rest: `${args} ${g("}")}`,
      }),
      wrap: (call, parallel) => {
        const withId = `${g('{"tool_call_id": "')} [0-9] ${call}`;
        return `${g("<|START_ACTION|>[\n    ")} ${sep(withId, ",\n    ", parallel)} ${
          g("\n]<|END_ACTION|>")
        }`;
      },
    },
  },
  functionary_v3_1: {
    id: "functionary_v3_1",
    markers: ["<function="],
    leadingJson: false,
    idStyle: "openai",
    scan: (text, at) => nameArgsCall(text, at, { nameEnd: />/, after: ["</function>"] }),
    grammar: {
      call: (name, args) => ({ lead: `<function=${name}>`, rest: `${args} ${g("</function>")}` }),
      wrap: (call, parallel) => sep(call, "", parallel),
    },
  },
  kimi_k2: {
    id: "kimi_k2",
    markers: [KIMI.sectionOpen],
    leadingJson: false,
    idStyle: "kimi",
    scan: (text, at, _marker, ctx) =>
      sectionCalls(text, at, KIMI.callOpen, KIMI.sectionClose, (t, i) =>
        nameArgsCall(t, i, {
          nameEnd: new RegExp(KIMI.argsOpen.replace(/[|]/g, "\\|")),
          after: [KIMI.callClose],
          name: (written) => {
            const m = /^(?:functions\.)?([^:]+)(?::\d+)?$/.exec(written);
            return m ? { name: m[1]!, id: written } : undefined;
          },
        }), ctx.final),
    grammar: {
      call: (name, args) => ({
        lead: `${KIMI.callOpen}functions.${name}:`,
        // The model writes the call's number in the conversation; the id sent is Shimmy's count.
        rest: `[0-9]{1,4} ${g(KIMI.argsOpen)} ${args} ${g(KIMI.callClose)}`,
      }),
      wrap: (call, parallel) =>
        `${g(KIMI.sectionOpen)} ${sep(call, "", parallel)} ${g(KIMI.sectionClose)}`,
    },
  },
  gpt_oss: {
    id: "gpt_oss",
    markers: [],
    leadingJson: false,
    idStyle: "openai",
    scan: () => ({ state: "invalid" }),
    readWhole: (text, ctx) => parseHarmony(text, ctx.final, ctx.tools.length > 0),
    grammar: {
      call: (name, args) => ({
        lead: `<|channel|>commentary to=functions.${name} <|constrain|>json<|message|>`,
        rest: `${args} ${g("<|call|>")}`,
      }),
      wrap: (call, parallel) => sep(call, "<|start|>assistant", parallel),
    },
  },
  functionary_v3_2: {
    id: "functionary_v3_2",
    markers: [],
    leadingJson: false,
    idStyle: "openai",
    scan: () => ({ state: "invalid" }),
    readWhole: (text, ctx) => parseFunctionaryV32(text, ctx.final, ctx.tools.length > 0),
    grammar: {
      // The prompt ends with the first `>>>`.
      call: (name, args) => ({ lead: `${name}\n`, rest: args }),
      wrap: (call, parallel) => sep(call, ">>>", parallel),
    },
  },
  generic: {
    id: "generic",
    markers: [],
    leadingJson: true,
    idStyle: "openai",
    scan: (text, at) => {
      const scan = scanObjectMembers(text, at);
      const calls = scan.members.get("tool_calls");
      if (calls) {
        const inner = jsonArrayCalls(text, calls.start);
        if (inner.state !== "complete") return inner;
        if (scan.state === "complete") return { ...inner, end: scan.end! };
        return scan.state === "invalid" ? { state: "invalid" } : {
          state: "incomplete",
          calls: inner.calls.map((c) => ({ ...c, complete: false })),
        };
      }
      if (scan.state === "invalid") return { state: "invalid" };
      if (scan.state === "complete") return { state: "invalid" };
      // Only `{"tool_calls"` may still come: anything else is not a call.
      const head = text.slice(at).replace(/\s+/g, "");
      return scan.members.size === 0 && '{"tool_calls":['.startsWith(head)
        ? { state: "incomplete", calls: [] }
        : { state: "invalid" };
    },
    grammar: {
      call: jsonCall("name", "arguments"),
      wrap: (call, parallel) => `${g('{"tool_calls": [')} ${sep(call, ", ", parallel)} ${g("]}")}`,
    },
  },
};

/**
 * The tool-call format a chat template teaches.
 *
 * @param template The Jinja source, or undefined for a built-in family.
 * @param family The built-in family used when there is no template.
 * @returns The format (the generic JSON one when nothing is recognised).
 * @example
 * ```ts
 * detectToolFormat("… <tool_call>\n{{ tool_call | tojson }}\n</tool_call> …").id; // "hermes"
 * ```
 */
export function detectToolFormat(template: string | undefined, family?: string): ToolFormat {
  const f = TOOL_FORMATS;
  if (template === undefined) return family === "llama3" ? f.llama3 : f.generic;
  const has = (s: string) => template.includes(s);
  if (has("<|channel|>")) return f.gpt_oss;
  if (has(">>>all") && has(">>>")) return f.functionary_v3_2;
  if (has("[TOOL_CALLS]")) return has("[ARGS]") ? f.mistral : f.mistral_nemo;
  if (has("tool▁calls▁begin")) return has("```json") ? f.deepseek_r1 : f.deepseek_v3_1;
  if (has(KIMI.sectionOpen) && has(KIMI.callOpen)) return f.kimi_k2;
  if (has("<|START_ACTION|>")) return f.command_r7b;
  if (has("<|tool_call|>")) return f.granite;
  if (has("<tool_call>") && has("<function=") && has("<parameter=")) return f.qwen3_coder;
  if (has("<tool_call>") && has("<arg_key>")) return f.glm4;
  if (has("<tool_call>") && !has("<invoke name=")) return f.hermes;
  if (has("<function=") && has("</function>") && !has("<parameter=")) return f.functionary_v3_1;
  if (has("<|start_header_id|>") && (has('"parameters"') || has("<|python_tag|>"))) {
    return f.llama3;
  }
  return f.generic;
}
