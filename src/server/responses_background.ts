/**
 * Background responses (`background: true` on `POST /v1/responses`): the answer is generated
 * whether or not a client waits for it. `POST` answers at once with the response `in_progress`
 * (or streams its events); `GET /v1/responses/{id}` shows it as it stands, and with `stream=true`
 * replays its events after `starting_after`, then follows them (an event not sent yet is waited
 * for while the client is there; one past the last of a response that has ended is a 400);
 * `POST /v1/responses/{id}/cancel` stops it (status `cancelled`). A client that hangs up stops
 * only its own reading. The events are kept as a stream session keeps bytes
 * (`stream_sessions.ts`), the last 4 MiB of them, and count in the response store's bytes.
 *
 * @module
 */

import { badRequest, type HttpError, toHttpError } from "./http_error.ts";
import { SSE_HEADERS } from "./sse.ts";
import type { SendChunk } from "./stream_body.ts";
import { replay, StreamSession } from "./stream_sessions.ts";

/** One background response while it runs, and its events once it has ended. */
export class BackgroundRun {
  readonly #events: StreamSession;
  /** The byte offset of each event in {@link BackgroundRun.#events}, by sequence number. */
  readonly #offsets: number[] = [];
  readonly #stop: AbortController;
  readonly #live: () => Record<string, unknown>;
  readonly #finished: Promise<void>;
  #ended!: () => void;

  /**
   * @param stop Aborts the response's generation.
   * @param endWork Called once the response has ended (the server's count of work in flight).
   * @param live The response object as it stands while it runs.
   */
  constructor(stop: AbortController, endWork: () => void, live: () => Record<string, unknown>) {
    this.#stop = stop;
    this.#live = live;
    this.#events = new StreamSession("", stop, endWork);
    this.#finished = new Promise((resolve) => (this.#ended = resolve));
  }

  /** Whether the response has ended (completed, incomplete, failed or cancelled). */
  get done(): boolean {
    return this.#events.done;
  }

  /** The response object as it stands now, while it runs. */
  current(): Record<string, unknown> {
    return this.#live();
  }

  /**
   * Runs the response's events into this run, framing a failure with `fail`.
   *
   * @param produce Sends the response's events, one SSE event per call.
   * @param fail Sends the events that report a failure.
   */
  async drive(
    produce: (send: SendChunk) => Promise<void>,
    fail: (error: HttpError, send: SendChunk) => void,
  ): Promise<void> {
    const send = (bytes: Uint8Array) => {
      this.#offsets.push(this.#events.total);
      this.#events.append(bytes);
    };
    try {
      await produce(send);
    } catch (error) {
      fail(toHttpError(error), send);
    } finally {
      this.#events.end();
      this.#ended();
    }
  }

  /**
   * Stops the response and waits until its final state is kept.
   *
   * @returns When it has ended.
   */
  async cancel(): Promise<void> {
    this.#stop.abort();
    await this.#finished;
  }

  /** Bytes of events kept (what a stored background response holds beyond its object). */
  get bytes(): number {
    return this.#events.kept;
  }

  /** Readers waiting for its next event (for tests: a reader that has gone must not stay). */
  get waiting(): number {
    return this.#events.waiting;
  }

  /**
   * The response's events after one sequence number, then the rest as they come.
   *
   * @param startingAfter The last event the client has (-1 for all of them); one not sent yet
   *   is waited for while the response runs and the client is there.
   * @param clientGone Aborts when the client hangs up: the wait ends, and nothing is sent.
   * @returns The SSE answer.
   * @throws {HttpError} 400 when those events are no longer kept, or when the response has ended
   *   before event `startingAfter`.
   */
  async stream(startingAfter: number, clientGone: AbortSignal): Promise<Response> {
    while (this.#offsets.length <= startingAfter && !this.done && !clientGone.aborted) {
      await this.#events.changed(clientGone);
    }
    // The client has gone: no one reads the answer, and nothing is left waiting for it.
    if (clientGone.aborted) return new Response(null, { headers: SSE_HEADERS });
    const last = this.#offsets.length - 1;
    if (startingAfter > last) {
      throw badRequest(
        `The response has ended with event ${last}: "starting_after" must be at most ${last}`,
        "starting_after",
      );
    }
    const from = startingAfter < last
      ? this.#offsets[startingAfter + 1] as number
      : this.#events.total;
    if (from < this.#events.dropped) {
      throw badRequest(
        `The events after ${startingAfter} are no longer kept; a response keeps its last 4 MiB of ` +
          "events",
        "starting_after",
      );
    }
    return replay(this.#events, from, SSE_HEADERS);
  }
}
