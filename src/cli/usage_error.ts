/**
 * The error a command throws for bad command-line usage: printed as one line, exit code 1.
 *
 * @module
 */

/** Bad flags or arguments. */
export class UsageError extends Error {
  /** @param message What was wrong and what to do. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}
