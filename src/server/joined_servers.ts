/**
 * Several guarded listeners that serve one application, handled as one server: `shimmy serve`
 * with `--ollama-bind` stops accepting, drains and closes both listeners together.
 *
 * @module
 */

import type { GuardedServer } from "./connection_guard.ts";

/**
 * Joins listeners into one {@link GuardedServer}; its `addr` is the first one's.
 *
 * @param servers The listeners, the main one first.
 * @returns One server whose methods act on every listener.
 * @example
 * ```ts
 * const server = joinServers([main, ollama]);
 * await server.close(); // closes both
 * ```
 */
export function joinServers(servers: readonly [GuardedServer, ...GuardedServer[]]): GuardedServer {
  const close = async () => {
    await Promise.all(servers.map((s) => s.close()));
  };
  return {
    addr: servers[0].addr,
    finished: Promise.all(servers.map((s) => s.finished)).then(() => {}),
    connections: () => servers.reduce((sum, s) => sum + s.connections(), 0),
    forwardedConnections: () => servers.reduce((sum, s) => sum + s.forwardedConnections(), 0),
    requestsArriving: (withinMs) =>
      servers.reduce((sum, s) => sum + s.requestsArriving(withinMs), 0),
    stopAccepting: () => servers.forEach((s) => s.stopAccepting()),
    closeIdle: () => servers.forEach((s) => s.closeIdle()),
    close,
    [Symbol.asyncDispose]: close,
  };
}
