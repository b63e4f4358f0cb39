import { AsyncLocalStorage } from "node:async_hooks";
export const traceStore = new AsyncLocalStorage<number[]>();
export const requestTrace = new WeakMap<Request, number[]>();
export function mark(t?: number[]): void {
  (t ?? traceStore.getStore())?.push(performance.now());
}
export function report(t: number[]): void {
  const base = t[0] as number;
  console.error("TRACE", base.toFixed(2), t.map((x) => (x - base).toFixed(2)).join(" "));
}
