import { deepEqual, equal, ok } from "node:assert/strict";
import { ModelGate } from "../../src/ffi/model_gate.ts";

const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("a decode enters the model gate synchronously while no change is pending", () => {
  const gate = new ModelGate();
  const leave = gate.enterShared();
  equal(typeof leave, "function");
  equal(gate.decodesInFlight, 1);
  (leave as () => void)();
  (leave as () => void)(); // leaving twice counts once
  equal(gate.decodesInFlight, 0);
});

Deno.test("a change waits for the decodes in flight and holds new ones back until it ends", async () => {
  const gate = new ModelGate();
  const events: string[] = [];
  const leaveFirst = gate.enterShared() as () => void;
  let finishChange!: () => void;
  const change = gate.exclusive(async () => {
    events.push("change starts");
    await new Promise<void>((resolve) => (finishChange = resolve));
    events.push("change ends");
    return 7;
  });
  const second = gate.enterShared();
  ok(second instanceof Promise, "a decode asked for during a change waits");
  void second.then((leave) => {
    events.push("second decode enters");
    leave();
  });
  await turn();
  deepEqual(events, [], "the change waits for the decode in flight");
  leaveFirst();
  await turn();
  deepEqual(events, ["change starts"]);
  finishChange();
  equal(await change, 7);
  await turn();
  deepEqual(events, ["change starts", "change ends", "second decode enters"]);
  equal(gate.decodesInFlight, 0);
  equal(typeof gate.enterShared(), "function", "synchronous again once the change is over");
});

Deno.test("changes run one at a time, in order, and a failed one does not block the next", async () => {
  const gate = new ModelGate();
  const events: string[] = [];
  const slow = (name: string, fail = false) => async () => {
    events.push(`${name} starts`);
    await turn();
    events.push(`${name} ends`);
    if (fail) throw new Error(name);
    return name;
  };
  const results = await Promise.allSettled([
    gate.exclusive(slow("a")),
    gate.exclusive(slow("b", true)),
    gate.exclusive(slow("c")),
  ]);
  deepEqual(events, ["a starts", "a ends", "b starts", "b ends", "c starts", "c ends"]);
  deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
  equal(await gate.shared(() => Promise.resolve("read")), "read");
});
