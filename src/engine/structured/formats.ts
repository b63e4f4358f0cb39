/**
 * GBNF for the string formats Shimmy honours: `date`, `time`, `date-time` (RFC 3339, with a
 * real day for each month and a time zone), `uuid` and `email` (a common subset of addresses:
 * dotted atoms of letters, digits and `_+-`, then two or three domain labels). Lengths are
 * bounded, so a model always reaches the closing quote. Every string written is valid for
 * ajv-formats' full checks.
 *
 * @module
 */

const DAY_31 = `("0" [1-9] | [12] [0-9] | "3" [01])`;
const DAY_30 = `("0" [1-9] | [12] [0-9] | "30")`;
/** February to the 28th: the 29th is valid only in leap years. */
const DAY_28 = `("0" [1-9] | "1" [0-9] | "2" [0-8])`;
const DATE = `[0-9]{4} "-" (("0" [13578] | "1" [02]) "-" ${DAY_31} | ("0" [469] | "11") "-" ` +
  `${DAY_30} | "02" "-" ${DAY_28})`;
const HOUR = `([01] [0-9] | "2" [0-3])`;
const MINUTE = `[0-5] [0-9]`;
const TIME =
  `${HOUR} ":" ${MINUTE} ":" ${MINUTE} ("." [0-9]{1,6})? ("Z" | [+-] ${HOUR} ":" ${MINUTE})`;
const HEX = "[0-9a-f]";
const UUID = `${HEX}{8} "-" ${HEX}{4} "-" ${HEX}{4} "-" ${HEX}{4} "-" ${HEX}{12}`;
const ATOM = "[a-zA-Z0-9_+-]{1,16}";
const LABEL = "[a-z0-9] ([a-z0-9-]{0,14} [a-z0-9])?";
const EMAIL = `${ATOM} ("." ${ATOM}){0,2} "@" (${LABEL} "."){1,2} [a-z]{2,6}`;

/** The inside of a JSON string (quotes not included) for each supported `format`. */
export const FORMATS: Readonly<Record<string, string>> = {
  date: DATE,
  time: TIME,
  "date-time": `${DATE} "T" ${TIME}`,
  uuid: UUID,
  email: EMAIL,
};
