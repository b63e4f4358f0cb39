/**
 * Asking llama-server's completion-shaped routes (`/completion`, `/infill`) of both servers in an
 * oracle test, and the part of their answers that must agree.
 *
 * @module
 */

import { equal } from "node:assert/strict";
import { postJson } from "../server/harness.ts";

/** An answer, or a request body. */
export type Answer = Record<string, unknown>;

/** Fields that differ by design: the model's name (a path there), its slot, the timings. */
const OWN_FIELDS = ["model", "id_slot", "timings", "generation_settings"];

/**
 * Posts a body and reads the JSON answer, which must be a 200.
 *
 * @param url The server's base URL.
 * @param route `/completion` or `/infill`.
 * @param body The request.
 * @returns The answer.
 */
export async function answerOf(url: string, route: string, body: Answer): Promise<Answer> {
  const response = await postJson(`${url}${route}`, body);
  equal(response.status, 200, `${url}${route}: ${JSON.stringify(body)}`);
  return await response.json();
}

/**
 * Posts a body with `stream: true` and reads the `data:` events.
 *
 * @param url The server's base URL.
 * @param route `/completion` or `/infill`.
 * @param body The request.
 * @returns The events, parsed.
 */
export async function eventsOf(url: string, route: string, body: Answer): Promise<Answer[]> {
  const response = await postJson(`${url}${route}`, { ...body, stream: true });
  equal(response.status, 200);
  const text = await response.text();
  return text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) =>
    JSON.parse(e.slice(6))
  );
}

/**
 * An answer without the fields that differ by design.
 *
 * @param answer An answer or event.
 * @returns The rest of it.
 */
export function comparable(answer: Answer): Answer {
  return Object.fromEntries(Object.entries(answer).filter(([key]) => !OWN_FIELDS.includes(key)));
}
