// berthd as a platform container: `control:` in platform.yaml makes `berth apply` run it
// beside the proxy and PostgreSQL; it serves its API on the host, runs the reconcile loop
// from inside the container, and `berth down` removes it first.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { Agent, request } from "undici";
import { inspectContainer } from "../../src/host/docker.js";
import { cleanupPlatform, eventually } from "./berthd.js";
import { docker, REPO_ROOT, writeSpec } from "./helpers.js";
import { httpsGet, platformYaml, siteYaml } from "./platform.js";

const run = promisify(execFile);
const client = docker();
const NAME = "bdc";
const PORT = 18772;
const CONTAINER = `berth-${NAME}-berthd`;

describe("berthd as a platform container", { timeout: 900_000 }, () => {
  let specDir: string;
  let stateDir: string;
  let env: NodeJS.ProcessEnv;
  let agent: Agent | undefined;
  const berth = (args: string[]) => run(process.execPath, [join(REPO_ROOT, "bin", "berth"), ...args], { env, timeout: 600_000 });

  async function status(): Promise<{ status: number; body: { reconciledAt: string | null; environments: { containers: { state: string }[] }[]; drift: { target: string }[] } }> {
    agent ??= new Agent({ connect: { ca: await readFile(join(stateDir, "api", "cert.pem"), "utf8") } });
    const token = (await readFile(join(stateDir, "admin.token"), "utf8")).trim();
    const response = await request(`https://127.0.0.1:${PORT}/v1/status`, { headers: { authorization: `Bearer ${token}` }, dispatcher: agent });
    return { status: response.statusCode, body: (await response.body.json()) as never };
  }

  before(async () => {
    await cleanupPlatform(client, NAME);
    // The image is berth itself, from this checkout (cached by a hash of its sources).
    await run("bash", [join(REPO_ROOT, "scripts", "images.sh"), "berthd"], { timeout: 600_000 });
    specDir = await writeSpec({
      "platform.yaml": platformYaml(NAME, `control:\n  image: berth-berthd:local\n  listen: 127.0.0.1:${PORT}\n`),
      "apps/delta.yaml": siteYaml("delta", { staging: false }),
    });
    stateDir = await mkdtemp(join(tmpdir(), "berth-state-"));
    const keyDir = await mkdtemp(join(tmpdir(), "berth-key-"));
    env = { ...process.env, BERTH_STATE_DIR: stateDir, BERTH_SECRETS_KEY: join(keyDir, "secrets.key") };
  });

  after(async () => {
    await agent?.close();
    await cleanupPlatform(client, NAME);
  });

  test("apply starts berthd beside the proxy and PostgreSQL; it serves its API and reconciles", async () => {
    const applied = await berth(["apply", specDir]);
    assert.match(applied.stdout, new RegExp(`created\\s+${CONTAINER}`));
    const info = (await inspectContainer(client, CONTAINER))!;
    assert.equal(info.State.Health?.Status, "healthy");
    assert.equal(info.HostConfig.NetworkMode, "host");
    assert.equal(info.HostConfig.RestartPolicy?.Name, "unless-stopped");
    assert.equal(info.Config.Labels["berth.role"], "control");
    const first = await eventually("berthd's first reconcile pass", async () => {
      const answer = await status();
      return answer.body.reconciledAt ? answer : undefined;
    });
    assert.equal(first.status, 200);
    assert.ok(first.body.environments[0]!.containers.every((c) => c.state === "healthy"));

    // The reconcile loop, running inside the container, repairs a removed tenant.
    await client.getContainer("delta-web-production").remove({ force: true });
    await eventually("delta's container back and healthy", async () => ((await inspectContainer(client, "delta-web-production"))?.State.Health?.Status === "healthy" ? true : undefined), 120_000);
    await eventually("delta served again", async () => ((await httpsGet("delta.test", "/health.txt")).status === 200 ? true : undefined), 30_000);
    assert.ok((await status()).body.drift.some((d) => d.target.includes("delta-web-production")));

    // Converged: a second apply changes nothing, berthd included.
    const again = await berth(["apply", specDir]);
    assert.match(again.stdout, /nothing to change/);
  });

  test("down removes berthd first, then the rest", async () => {
    const down = await berth(["down", specDir]);
    const removed = down.stdout.split("\n").filter((line) => line.startsWith("removed"));
    assert.match(removed[0]!, new RegExp(CONTAINER));
    assert.equal(await inspectContainer(client, CONTAINER), undefined);
    assert.equal(await inspectContainer(client, "delta-web-production"), undefined, "nothing brought the tenant back");
  });
});
