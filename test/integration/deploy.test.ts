// Deploys on the real engine under steady traffic: releases recorded, zero failed requests,
// a failing release refused before the switch, a release that dies after the switch rolled
// back by itself, rollback, the per-environment lock, recovery after berth is killed, and
// releases that carry their secrets version (apply keeps it, rollback brings it back).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deploy, recoverDeploys, rollback, type DeployDeps } from "../../src/deploy/deploy.js";
import { BerthError } from "../../src/errors.js";
import { inspectContainer } from "../../src/host/docker.js";
import { withReleases } from "../../src/deploy/releases.js";
import { applyPlatform } from "../../src/runtime/apply.js";
import { containerPostgres } from "../../src/runtime/postgres.js";
import { SecretStore } from "../../src/secrets/store.js";
import { Store } from "../../src/state/store.js";
import { cleanupByLabel, docker, REPO_ROOT } from "./helpers.js";
import { apiYaml, httpsGet, platformYaml, testPlatform, type TestPlatform } from "./platform.js";

const client = docker();
const NAME = "btd";
const APP = "btd-api";
const HOST = "btd-api.test";
const TAGS = ["berth-test/btd-api:v1", "berth-test/btd-api:v2", "berth-test/btd-api:crash", "berth-test/btd-api:dies"];

/** Steady traffic through nginx until stopped, paced under the api class's 20 r/s; bounded in count and time. */
function steadyTraffic(): { stop(): Promise<{ ok: number; failed: string[] }> } {
  let running = true;
  const failed: string[] = [];
  let ok = 0;
  const deadline = Date.now() + 300_000;
  const loop = (async () => {
    for (let i = 0; running && i < 50_000 && Date.now() < deadline; i++) {
      const result = await httpsGet(HOST, "/health").then((r) => String(r.status), (e: Error) => e.message);
      if (result === "200") ok++;
      else failed.push(result);
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { ok, failed };
    },
  };
}

async function buildImage(tag: string, dockerfile: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "berth-img-"));
  await writeFile(join(dir, "Dockerfile"), dockerfile);
  const tar = (await import("tar-fs")).default.pack(dir);
  const stream = await client.buildImage(tar as unknown as NodeJS.ReadableStream, { t: tag, labels: { "berth.test": "true" } });
  await new Promise((resolve, reject) => client.modem.followProgress(stream, (error: Error | null) => (error ? reject(error) : resolve(undefined))));
}

describe("berth deploy", { timeout: 900_000 }, () => {
  let platform: TestPlatform;
  let deps: DeployDeps;

  before(async () => {
    await cleanupByLabel(client);
    platform = await testPlatform(client, { "platform.yaml": platformYaml(NAME), [`apps/${APP}.yaml`]: apiYaml(APP, { staging: false }) });
    await platform.apply();
    // Two tags of the built backend: a deploy between them replaces every container.
    const built = (await inspectContainer(client, `${APP}-backend-production`))!.Config.Image;
    for (const tag of TAGS.slice(0, 2)) await client.getImage(built).tag({ repo: tag.split(":")[0]!, tag: tag.split(":")[1]! });
    // Both have a release command that passes, so they fail where the test says.
    const base = `FROM berth-node:20\nWORKDIR /app\nRUN echo "process.exit(0)" > migrate.js\n`;
    await buildImage(TAGS[2]!, `${base}CMD ["node", "-e", "console.error('boom: no config'); process.exit(2)"]\n`);
    await buildImage(
      TAGS[3]!,
      `${base}CMD ["node", "-e", "require('http').createServer((q, s) => s.end('ok')).listen(3000); setTimeout(() => process.exit(1), 2500)"]\n`,
    );
    deps = { docker: client, stateDir: platform.stateDir, store: new Store(platform.stateDir), databases: containerPostgres(client, platform.stateDir), progress: () => undefined };
  });
  after(async () => {
    deps?.store.close();
    await platform?.down({ purge: true }).catch(() => undefined);
    for (const tag of TAGS) await client.getImage(tag).remove().catch(() => undefined);
    await cleanupByLabel(client);
  });

  test("ten deploys under steady traffic drop no request and record their releases", async () => {
    const traffic = steadyTraffic();
    for (let i = 0; i < 10; i++) {
      const release = await deploy(platform.plan, { app: APP, env: "production", images: { backend: TAGS[i % 2]! }, actor: "test", reason: `deploy ${i}` }, deps, { drainMs: 500, healthWindowMs: 1000 });
      assert.equal(release.status, "active");
      assert.equal(release.number, i + 1);
    }
    const { ok, failed } = await traffic.stop();
    process.stderr.write(`10 deploys: ${ok} requests ok, ${failed.length} failed\n`);
    assert.deepEqual(failed, [], "no failed request");
    assert.ok(ok > 50, `traffic flowed (${ok} requests)`);
    const releases = deps.store.releases(APP, "production");
    assert.equal(releases[0]!.status, "active");
    assert.ok(releases.slice(1).every((r) => r.status === "superseded"));
    assert.ok(releases[0]!.hasRunReleaseCommand, "the release command ran");
    assert.equal((await inspectContainer(client, `${APP}-backend-production-next`)), undefined);
  });

  test("a release that never becomes healthy is refused before the switch; the old keeps serving", async () => {
    const traffic = steadyTraffic();
    await assert.rejects(
      deploy(platform.plan, { app: APP, env: "production", images: { backend: TAGS[2]! }, actor: "test", reason: "crash" }, deps),
      (error: unknown) => error instanceof BerthError && /exited with code 2/.test(error.message) && /boom: no config/.test(error.message),
    );
    const { failed } = await traffic.stop();
    assert.deepEqual(failed, []);
    const [latest] = deps.store.releases(APP, "production");
    assert.equal(latest!.status, "failed");
    assert.match(latest!.failure!, /boom: no config/);
    assert.equal((await inspectContainer(client, `${APP}-backend-production-next`)), undefined, "the new container is removed");
    assert.match((await httpsGet(HOST, "/")).body, /visits/, "the old release serves");
  });

  test("a release that dies after the switch is rolled back automatically", async () => {
    await assert.rejects(
      deploy(platform.plan, { app: APP, env: "production", images: { backend: TAGS[3]! }, actor: "test", reason: "dies" }, deps, { healthWindowMs: 6000, drainMs: 500 }),
      /failed after the switch.*traffic went back to the previous release/s,
    );
    assert.equal(deps.store.releases(APP, "production")[0]!.status, "rolled-back");
    assert.match((await httpsGet(HOST, "/")).body, /visits/, "the previous release serves again");
  });

  test("rollback rolls out the release before the active one, without rebuilding", async () => {
    const active = deps.store.activeRelease(APP, "production")!;
    const release = await rollback(platform.plan, { app: APP, env: "production", actor: "test" }, deps, { drainMs: 500, healthWindowMs: 1000 });
    assert.equal(release.reason, `rollback to r${active.number - 1}`);
    assert.deepEqual(release.images, deps.store.release(APP, "production", active.number - 1)!.images);
    assert.equal((await httpsGet(HOST, "/health")).status, 200);
  });

  test("a second deploy of the same environment is refused while one runs", async () => {
    const held = deps.store.beginRelease({ app: APP, env: "production", images: {}, imageIds: {}, sourceCommit: null, secretsVersion: null, actor: "ci", reason: "held" });
    try {
      await assert.rejects(
        deploy(platform.plan, { app: APP, env: "production", images: { backend: TAGS[0]! }, actor: "test", reason: "second" }, deps),
        (error: unknown) => error instanceof BerthError && error.code === "CONFLICT" && /is being deployed by ci/.test(error.message),
      );
    } finally {
      deps.store.finishRelease(held, { status: "failed", failure: "test lock", hasRunReleaseCommand: false, timings: {} });
    }
  });

  test("a deploy killed after the switch is repaired by the next command: the old release serves", async () => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", "deploy", APP, "--env", "production", "--image", `backend=${TAGS[1]}`, "--spec", platform.specDir, "--state-dir", platform.stateDir, "--drain", "30"],
      { cwd: REPO_ROOT, stdio: ["ignore", "ignore", "pipe"] },
    );
    const sawDrain = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 180_000);
      child.stderr.on("data", (chunk: Buffer) => {
        if (/ drain/.test(chunk.toString())) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
    assert.ok(sawDrain, "the deploy reached its drain step");
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    assert.ok(await inspectContainer(client, `${APP}-backend-production-next`), "killed with two releases side by side");

    const recovered = await recoverDeploys(platform.plan, deps);
    assert.equal(recovered.length, 1);
    assert.equal(recovered[0]!.status, "failed");
    assert.match(recovered[0]!.failure!, /interrupted during "drain"/);
    assert.equal((await inspectContainer(client, `${APP}-backend-production-next`)), undefined);
    assert.equal((await httpsGet(HOST, "/health")).status, 200, "the previous release serves");
    assert.equal(deps.store.locks().length, 0);
  });

  test("a release carries its secrets version: apply keeps it, the next deploy brings a new secret, rollback the old one, and an undecryptable secret fails the deploy before anything starts", async () => {
    const keyDir = await mkdtemp(join(tmpdir(), "berth-btd-keys-"));
    const secrets = new SecretStore(platform.stateDir, { keyPath: join(keyDir, "secrets.key") });
    const withSecrets: DeployDeps = { ...deps, secrets };
    const container = `${APP}-backend-production`;
    const greeting = async () => (await inspectContainer(client, container))!.Config.Env.find((variable) => variable.startsWith("GREETING="));
    const options = { drainMs: 300, healthWindowMs: 1000 };
    try {
      secrets.set(APP, "production", "GREETING", "one");
      const first = await deploy(platform.plan, { app: APP, env: "production", images: { backend: TAGS[0]! }, actor: "test", reason: "secrets one" }, withSecrets, options);
      assert.equal(first.secretsVersion, secrets.version(APP, "production"));
      assert.equal(await greeting(), "GREETING=one");

      // Set after the deploy: an apply (berth apply, berthd's reconcile pass) keeps the release's
      // secrets and leaves its container alone; the next deploy rolls the new value out.
      secrets.set(APP, "production", "GREETING", "two");
      const before = (await inspectContainer(client, container))!.Id;
      const changes = await applyPlatform(withReleases(platform.plan, deps.store.activeReleases()), { ...withSecrets, stateDir: platform.stateDir }, { healthTimeoutMs: 60_000 });
      assert.deepEqual(changes.filter((change) => change.target.includes(container)), [], "apply changes nothing of the deployed container");
      assert.equal((await inspectContainer(client, container))!.Id, before);
      assert.equal(await greeting(), "GREETING=one");
      const second = await deploy(platform.plan, { app: APP, env: "production", images: { backend: TAGS[0]! }, actor: "test", reason: "secrets two" }, withSecrets, options);
      assert.equal(second.secretsVersion, first.secretsVersion! + 1);
      assert.equal(await greeting(), "GREETING=two");

      const back = await rollback(platform.plan, { app: APP, env: "production", actor: "test" }, withSecrets, options);
      assert.equal(back.reason, `rollback to r${first.number}`);
      assert.equal(back.secretsVersion, first.secretsVersion);
      assert.equal(await greeting(), "GREETING=one", "the rolled-back release's secrets");
      assert.equal((await httpsGet(HOST, "/health")).status, 200);

      // A key file that holds none of the keys: the deploy fails before it starts anything.
      const serving = (await inspectContainer(client, container))!.Id;
      const wrongKey = new SecretStore(platform.stateDir, { keyPath: join(keyDir, "other.key") });
      try {
        await assert.rejects(
          deploy(platform.plan, { app: APP, env: "production", images: { backend: TAGS[1]! }, actor: "test", reason: "undecryptable" }, { ...deps, secrets: wrongKey }, options),
          (error: unknown) => error instanceof BerthError && /cannot decrypt the secrets of btd-api\/production: GREETING/.test(error.message),
        );
      } finally {
        wrongKey.close();
      }
      const failed = deps.store.releases(APP, "production")[0]!;
      assert.deepEqual([failed.reason, failed.status], ["undecryptable", "failed"]);
      assert.deepEqual(deps.store.journalOf(failed.id), ["prepare"], "no step after prepare ran");
      assert.equal((await inspectContainer(client, container))!.Id, serving, "the serving container is untouched");
      assert.equal(await inspectContainer(client, `${container}-next`), undefined, "no new container was created");
      assert.equal(await greeting(), "GREETING=one");
      assert.equal((await httpsGet(HOST, "/health")).status, 200);
    } finally {
      secrets.close();
      await rm(keyDir, { recursive: true, force: true });
    }
  });
});
