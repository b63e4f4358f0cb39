/**
 * Types shared by the tool-call formats, parsers, grammars and the streaming differ.
 *
 * @module
 */

/** A tool the request offers: its name and its parameters' JSON schema. */
export interface ToolSpec {
  /** `function.name`. */
  name: string;
  /** `function.parameters` (an empty object schema when the tool has none). */
  parameters: Record<string, unknown>;
  /**
   * `function.strict`: the arguments must follow the schema exactly, so a schema the grammar
   * cannot hold them to is refused. Otherwise such a schema loosens the grammar (see
   * `forcedToolGrammar`).
   */
  strict?: boolean;
}

/** A tool call found in model output. */
export interface ParsedCall {
  /** Id the model wrote (Mistral Nemo, Kimi K2), if any. */
  id?: string;
  /** The function's name. */
  name: string;
  /** The arguments as JSON text (a prefix of it while `complete` is false). */
  arguments: string;
  /** Whether the whole call has been read. */
  complete: boolean;
}

/** Model output split into its parts. */
export interface ParsedOutput {
  /** Text for `message.content`. */
  content: string;
  /** Text for `message.reasoning_content`. */
  reasoning: string;
  /** Tool calls, in order. */
  calls: ParsedCall[];
}

/** What a parser makes of the text at a call marker. */
export type CallScan =
  /** One or more complete calls that end at `end`. */
  | { state: "complete"; calls: ParsedCall[]; end: number }
  /** The text ends inside the call(s); `calls` holds those named so far (the last unfinished). */
  | { state: "incomplete"; calls: ParsedCall[] }
  /** Not a call after all: the marker is ordinary text. */
  | { state: "invalid" };
