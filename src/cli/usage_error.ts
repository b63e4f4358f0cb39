/**
 * The error a command throws for bad command-line usage: printed as one line, exit code 1.
 *
 * @module
 */

/** Bad flags or arguments. */
export class UsageError extends Error {
  /** Whether the command's `--help` is worth pointing to (a mistyped flag or command). */
  readonly pointToHelp: boolean;

  /**
   * @param message What was wrong and what to do.
   * @param options `pointToHelp`: end the printed line with the `--help` to read. Default false.
   */
  constructor(message: string, options: { pointToHelp?: boolean } = {}) {
    super(message);
    this.name = "UsageError";
    this.pointToHelp = options.pointToHelp ?? false;
  }
}
