/**
 * Room on disk for pulls, with the disk's space given by hand.
 */

import { equal, rejects } from "node:assert/strict";
import { PullError } from "../../src/models/hf_hub.ts";
import { reserveRoom } from "../../src/models/pull_room.ts";

const GIB = 2 ** 30;

Deno.test("reserveRoom() counts the bytes of pulls under way until they end", async () => {
  const folder = await Deno.makeTempDir({ prefix: "shimmy-pull-room-" });
  try {
    // 1 GiB is kept free (5 % of 100 GiB would be 5 GiB): 3 GiB of room.
    const space = () => Promise.resolve({ free: 4 * GIB, total: 100 * GIB });
    const first = await reserveRoom(folder, 2 * GIB, "o/first", space);
    await rejects(reserveRoom(folder, 2 * GIB, "o/second", space), (error) => {
      equal(error instanceof PullError && error.status, 507);
      equal((error as PullError).code, "disk_space_low");
      equal(
        (error as Error).message,
        `Cannot pull o/second: it needs 2.0 GiB, and the disk of ${folder} has 4.0 GiB free, ` +
          "2.0 GiB of it promised to pulls under way; the pull would leave less than the 1.0 GiB kept " +
          "free: free space on the disk, or pull a smaller quantization",
      );
      return true;
    });
    first();
    first(); // twice gives nothing back twice
    const second = await reserveRoom(folder, 2 * GIB, "o/second", space);
    const third = await reserveRoom(folder, GIB, "o/third", space);
    second();
    third();
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("reserveRoom() checks nothing where the system does not tell the space", async () => {
  const release = await reserveRoom("/nowhere", 2 ** 50, "o/r", () => Promise.resolve(undefined));
  release();
});
