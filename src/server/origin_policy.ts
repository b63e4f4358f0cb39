/**
 * Which browsers and names may talk to the server. A keyless server on loopback is still
 * reachable from any web page the user opens: through DNS rebinding (a name the attacker
 * controls, resolved to 127.0.0.1, arrives with that name in `Host`) and through cross-site
 * requests (which carry the page's `Origin`). So by default:
 * - `Host` must be a loopback name or address, the address the server is bound to, an IP
 *   address when bound to every interface (an address cannot be rebound), or a name added
 *   with `--allowed-hosts` / `SHIMMY_ALLOWED_HOSTS`;
 * - a request with an `Origin` must come from the same origin, a loopback origin, or an
 *   origin added with `--cors` / `SHIMMY_ORIGINS` (`*` allows every origin).
 * Requests without `Origin` (curl, SDKs) pass the origin check; the API key, when set, is
 * checked after both.
 *
 * @module
 */

/** The policy's settings. */
export interface OriginPolicy {
  /** The host the server listens on (e.g. `127.0.0.1`, `0.0.0.0`, `::`). */
  boundHost: string;
  /** Extra `Host` names allowed; `*` allows any. Default none. */
  allowedHosts?: readonly string[];
  /** Extra browser origins allowed (`https://app.example`); `*` allows any. Default none. */
  origins?: readonly string[];
}

/**
 * An allowed origin as browsers send it in `Origin`, from how a user wrote it: `*`, or a scheme
 * and host with an optional port and trailing slash. http(s) origins are normalized as browsers
 * write them (lowercase host, no default port), as the check compares them exactly.
 *
 * @param value E.g. `https://App.example:443/`, `chrome-extension://abcdef`, `*`.
 * @returns The origin (`https://app.example`), or undefined when it is not one (a path, a query,
 *   no scheme).
 * @example
 * ```ts
 * allowedOrigin("http://localhost:3000/"); // "http://localhost:3000"
 * allowedOrigin("not an origin"); // undefined
 * ```
 */
export function allowedOrigin(value: string): string | undefined {
  if (value === "*") return value;
  const match = /^([a-z][a-z0-9+.-]*):\/\/([^/?#\s]+)\/?$/i.exec(value);
  if (!match) return undefined;
  const scheme = match[1]!.toLowerCase();
  if (scheme !== "http" && scheme !== "https") return `${scheme}://${match[2]}`;
  try {
    return new URL(value).origin;
  } catch {
    return undefined;
  }
}

/**
 * Splits a `Host` header (or URL host) into a lowercase hostname without brackets, and port.
 *
 * @param host E.g. `localhost:11435`, `[::1]:80`, `example.com`.
 * @returns The hostname and the port text ("" when absent).
 * @example
 * ```ts
 * splitHost("[::1]:11435"); // { hostname: "::1", port: "11435" }
 * ```
 */
export function splitHost(host: string): { hostname: string; port: string } {
  const value = host.trim().toLowerCase();
  const bracketed = /^\[([^\]]*)\](?::(\d*))?$/.exec(value);
  if (bracketed) return { hostname: bracketed[1] as string, port: bracketed[2] ?? "" };
  const colon = value.lastIndexOf(":");
  if (colon >= 0 && value.indexOf(":") === colon) {
    return { hostname: value.slice(0, colon), port: value.slice(colon + 1) };
  }
  return { hostname: value, port: "" };
}

/**
 * Whether a `Host` header is a host name and an optional port of digits, and nothing else: a
 * bracketed IPv6 address, or letters, digits, dots, hyphens, underscores and tildes. A request's
 * URL is its `Host` and its target put together, so a `Host` holding `/`, `?` or `#` would move
 * part of it into the path (`Host: a:1/api/models/unload?` turning `GET /health` into an unload).
 *
 * @param host The header's value; an empty one passes (it names no host for the policy to allow).
 * @returns True when well formed.
 * @example
 * ```ts
 * isWellFormedHost("localhost:11435"); // true
 * isWellFormedHost("a:1/api/models/unload?"); // false
 * ```
 */
export function isWellFormedHost(host: string): boolean {
  return /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]*)(?::\d*)?$/.test(host.trim());
}

/** Whether a hostname is an IP address literal (v4 dotted quad or v6). */
function isIpLiteral(hostname: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(hostname) || hostname.includes(":");
}

/**
 * Whether a hostname names this machine's loopback interface.
 *
 * @param hostname Lowercase, without brackets or port.
 * @returns True for `localhost`, `*.localhost`, 127.0.0.0/8 and `::1`.
 */
export function isLoopbackHost(hostname: string): boolean {
  const name = hostname.replace(/\.$/, "");
  return name === "localhost" || name.endsWith(".localhost") ||
    /^127(\.\d{1,3}){3}$/.test(name) || name === "::1" || name === "0:0:0:0:0:0:0:1";
}

const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]", ""]);

/**
 * Whether a request's `Host` header is acceptable.
 *
 * @param host The header (null when absent: HTTP/1.0 clients, which browsers are not).
 * @param policy The policy.
 * @returns True when allowed.
 */
export function hostAllowed(host: string | null, policy: OriginPolicy): boolean {
  if (host === null) return true;
  const { hostname } = splitHost(host);
  if (hostname === "") return false;
  const extra = policy.allowedHosts ?? [];
  if (extra.includes("*") || extra.some((h) => h.toLowerCase() === hostname)) return true;
  if (isLoopbackHost(hostname)) return true;
  const bound = splitHost(policy.boundHost).hostname;
  if (hostname === bound) return true;
  return WILDCARD_HOSTS.has(bound) && isIpLiteral(hostname);
}

/**
 * Whether a browser origin may use the server.
 *
 * @param origin The `Origin` header (null when absent).
 * @param host The request's `Host` header.
 * @param policy The policy.
 * @returns True when allowed (always for requests without `Origin`).
 */
export function originAllowed(
  origin: string | null,
  host: string | null,
  policy: OriginPolicy,
): boolean {
  if (origin === null) return true;
  const origins = policy.origins ?? [];
  if (origins.includes("*") || origins.includes(origin)) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // "null" (sandboxed frames, file:) and anything unparsable
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return false;
  if (host !== null && url.host.toLowerCase() === host.trim().toLowerCase()) return true;
  return isLoopbackHost(splitHost(url.host).hostname);
}
