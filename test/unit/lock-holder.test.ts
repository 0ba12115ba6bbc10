// Whether a deploy lock's holder still runs: by its pid, and by when that pid's process started
// (a pid reused by a later process, after a reboot at the latest, is not the holder).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { test } from "node:test";
import { isGone } from "../../src/deploy/deploy.js";

test("a live process that started before the lock holds it; one that started after it does not; an exited one does not", async () => {
  const child = spawn("sleep", ["30"], { stdio: "ignore" });
  await once(child, "spawn");
  try {
    const pid = child.pid!;
    const lockedAfterStart = new Date(Date.now() + 1000).toISOString();
    const lockedBeforeStart = new Date(Date.now() - 60_000).toISOString();
    assert.equal(await isGone(pid, lockedAfterStart), false, "the holder runs");
    assert.equal(await isGone(pid, lockedBeforeStart), true, "this pid started after the lock was taken: another process");
  } finally {
    child.kill();
    await once(child, "exit");
  }
  assert.equal(await isGone(child.pid!, new Date().toISOString()), true, "exited");
});
