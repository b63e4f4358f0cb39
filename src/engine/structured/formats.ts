/**
 * The string formats Shimmy honours, as patterns that go through the same automaton as a schema's
 * `pattern` (so a format holds together with `minLength` and `maxLength`): the formats of OpenAI's
 * structured outputs, `date`, `time`, `date-time` (RFC 3339, with a real day for each month and a
 * time zone), `duration` (ISO 8601), `email` (a common subset of addresses: dotted atoms of
 * letters, digits and `_+-`, then one or two domain labels and a top-level domain), `hostname`,
 * `ipv4`, `ipv6` (RFC 4291's full and `::` forms) and `uuid`, and `uri` (pydantic's `HttpUrl`,
 * zod's `url()`: a scheme, `://`, a host name or IPv4 address, a port, a path, a query and a
 * fragment, each of the characters that need no percent-encoding, up to 250 characters). Each is a subset of what its
 * format allows: every string written is valid for ajv-formats' full checks. Lengths are
 * bounded, so a model always reaches the closing quote.
 *
 * @module
 */

const DAY_31 = "(?:0[1-9]|[12]\\d|3[01])";
const DAY_30 = "(?:0[1-9]|[12]\\d|30)";
/** February to the 28th: the 29th is valid only in leap years. */
const DAY_28 = "(?:0[1-9]|1\\d|2[0-8])";
const DATE = `\\d{4}-(?:(?:0[13578]|1[02])-${DAY_31}|(?:0[469]|11)-${DAY_30}|02-${DAY_28})`;
const HOUR = "(?:[01]\\d|2[0-3])";
const MINUTE = "[0-5]\\d";
const TIME = `${HOUR}:${MINUTE}:${MINUTE}(?:\\.\\d{1,6})?(?:Z|[+-]${HOUR}:${MINUTE})`;
const HEX = "[0-9a-f]";
const UUID = `${HEX}{8}-${HEX}{4}-${HEX}{4}-${HEX}{4}-${HEX}{12}`;
const ATOM = "[a-zA-Z0-9_+-]{1,16}";
/** A host name's label: letters, digits and inner hyphens, up to 16 characters. */
const LABEL = "[a-z0-9](?:[a-z0-9-]{0,14}[a-z0-9])?";
const EMAIL = `${ATOM}(?:\\.${ATOM}){0,2}@(?:${LABEL}\\.){1,2}[a-z]{2,6}`;
const HOSTNAME = `${LABEL}(?:\\.${LABEL}){0,3}`;
const OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IPV4 = `${OCTET}(?:\\.${OCTET}){3}`;
const H16 = "[0-9a-f]{1,4}";
/** n groups of 16 bits, each followed by a colon. */
const groups = (n: number) => n === 0 ? "" : `(?:${H16}:){${n}}`;
/** Up to n groups of 16 bits joined by colons, or none. */
const upTo = (n: number) => n === 0 ? "" : `(?:${H16}(?::${H16}){0,${n - 1}})?`;
/** RFC 4291's forms: 8 groups, or `::` for one or more groups of zeros, where they fall. */
const IPV6 = [
  `${groups(7)}${H16}`,
  ...[7, 6, 5, 4, 3, 2, 1, 0].map((before) =>
    `${upTo(before)}::${before >= 6 ? "" : groups(6 - before)}${before === 7 ? "" : H16}`
  ),
].map((form) => `(?:${form})`).join("|");
const DIGITS = "\\d{1,4}";
const DURATION_DATE = `(?:${DIGITS}Y(?:${DIGITS}M)?(?:${DIGITS}D)?|${DIGITS}M(?:${DIGITS}D)?|` +
  `${DIGITS}D)`;
const DURATION_TIME = `T(?:${DIGITS}H(?:${DIGITS}M)?(?:${DIGITS}S)?|${DIGITS}M(?:${DIGITS}S)?|` +
  `${DIGITS}S)`;
const DURATION = `P(?:${DURATION_DATE}(?:${DURATION_TIME})?|${DURATION_TIME}|${DIGITS}W)`;
/** Characters of a path segment, a query or a fragment that need no percent-encoding. */
const URI_CHAR = "[A-Za-z0-9._~!$&'()*+,;=:@-]";
/** A host name's dotted labels also write every IPv4 address. */
const URI = `[a-z][a-z0-9+.-]{0,9}://${HOSTNAME}(?::[1-9]\\d{0,3})?(?:/(?:${URI_CHAR}|/){0,63})?` +
  `(?:\\?(?:${URI_CHAR}|[/?]){0,63})?(?:#(?:${URI_CHAR}|[/?]){0,31})?`;

/** A pattern (ECMAScript syntax, anchored) for each supported `format`. */
export const FORMATS: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries({
    date: DATE,
    time: TIME,
    "date-time": `${DATE}T${TIME}`,
    duration: DURATION,
    email: EMAIL,
    hostname: HOSTNAME,
    ipv4: IPV4,
    ipv6: IPV6,
    uri: URI,
    uuid: UUID,
  }).map(([name, pattern]) => [name, `^(?:${pattern})$`]),
);
