/**
 * Finds the system's Chromium and starts it headless through `puppeteer-core` (no browser
 * is ever downloaded: CI installs Debian's `chromium` in `.ci/run`).
 *
 * @module
 */

import puppeteer, { type Browser } from "puppeteer-core";

/** Where Chromium is looked for, after `SHIMMY_CHROMIUM`. */
export const CHROMIUM_PATHS = [
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome",
  "/usr/bin/google-chrome-stable",
];

/**
 * The Chromium executable to drive.
 *
 * @returns Its path, or undefined when none is installed.
 */
export function findChromium(): string | undefined {
  const explicit = Deno.env.get("SHIMMY_CHROMIUM");
  return [...(explicit ? [explicit] : []), ...CHROMIUM_PATHS].find((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
}

/**
 * Starts a headless Chromium.
 *
 * @param executablePath From {@link findChromium}.
 * @returns The browser; close it when done.
 */
export function launchChromium(executablePath: string): Promise<Browser> {
  return puppeteer.launch({
    executablePath,
    headless: true,
    // CI runs as root, where Chromium's sandbox cannot start.
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}
