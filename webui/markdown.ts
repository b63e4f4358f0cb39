/**
 * Turns a model's Markdown into sanitized HTML: `marked` parses, `DOMPurify` removes anything
 * active (scripts, event handlers, `javascript:` links), and each code block gets a copy button.
 * Model output is untrusted; the page's Content-Security-Policy is the second fence.
 *
 * @module
 */
/// <reference no-default-lib="true" />
/// <reference lib="dom" />
/// <reference lib="esnext" />

import { marked } from "marked";
import DOMPurify from "dompurify";

// Links in an answer open in a new tab, without this page as their opener or referrer.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

/**
 * Renders Markdown into an element, replacing its content.
 *
 * @param target The element to fill.
 * @param text Markdown from the model or the person.
 */
export function renderMarkdown(target: HTMLElement, text: string): void {
  const html = marked.parse(text, { async: false, gfm: true, breaks: true });
  target.innerHTML = DOMPurify.sanitize(html, { FORBID_TAGS: ["style", "form", "input"] });
  for (const pre of target.querySelectorAll("pre")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.addEventListener("click", async () => {
      await navigator.clipboard?.writeText(pre.querySelector("code")?.textContent ?? "");
      button.textContent = "Copied";
      setTimeout(() => (button.textContent = "Copy"), 1500);
    });
    pre.prepend(button);
  }
}
