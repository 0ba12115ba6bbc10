// berthd's jobs run in child processes: their outcome, their errors (with the catalogue code,
// message and hint) and their progress come back over the IPC channel, and the runner counts
// what runs. These jobs stop before the engine is needed, so no Docker engine is involved.
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { JobRunner } from "../../src/daemon/control.js";
import { BerthError } from "../../src/errors.js";
import { planPlatform } from "../../src/plan/plan.js";
import { loadSpec } from "../../src/spec/index.js";
import { Store } from "../../src/state/store.js";

const EXAMPLE = join(import.meta.dirname, "..", "..", "examples", "reference-platform");

async function runner(): Promise<{ jobs: JobRunner; stateDir: string }> {
  const { root, spec } = await loadSpec(EXAMPLE);
  const stateDir = await mkdtemp(join(tmpdir(), "berth-jobs-"));
  const keyPath = join(await mkdtemp(join(tmpdir(), "berth-jobs-key-")), "secrets.key");
  return { jobs: new JobRunner({ plan: planPlatform(spec, { root }), stateDir, keyPath }), stateDir };
}

test("a job's result comes back from its child process, which then exits", async () => {
  const { jobs, stateDir } = await runner();
  new Store(stateDir).close();
  const running = jobs.run<unknown[]>({ kind: "recover" }, () => undefined);
  assert.equal(jobs.running, 1);
  assert.deepEqual(await running, []);
  assert.equal(jobs.running, 0);
});

test("a job's failure comes back as the same catalogue error, and nothing is left running", async () => {
  const { jobs } = await runner();
  const lines: string[] = [];
  const failing = jobs.run({ kind: "deploy", request: { app: "nope", env: "production", images: {}, actor: "test", reason: "test" } }, (line) => lines.push(line));
  await assert.rejects(failing, (error: unknown) => {
    assert.ok(error instanceof BerthError);
    assert.equal(error.code, "NOT_FOUND");
    assert.match(error.message, /no environment nope\/production in the spec/);
    assert.match(error.hint ?? "", /Known environments: .*gabs-massage\/production/);
    return true;
  });
  assert.equal(jobs.running, 0);
});

test("jobs run side by side, each in its own process", async () => {
  const { jobs, stateDir } = await runner();
  new Store(stateDir).close();
  const all = Promise.all([jobs.run({ kind: "recover" }, () => undefined), jobs.run({ kind: "recover" }, () => undefined), jobs.run({ kind: "recover" }, () => undefined)]);
  assert.equal(jobs.running, 3);
  assert.deepEqual(await all, [[], [], []]);
  assert.equal(jobs.running, 0);
});
