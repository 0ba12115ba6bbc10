// Clear errors, and nothing changed, when the engine is down, an image is missing or the
// proxy's port is taken: through the real CLI and the real engine.
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:net";
import { after, before, describe, test } from "node:test";
import { cleanupByLabel, docker, REPO_ROOT, run, writeSpec } from "./helpers.js";
import { apiYaml, platformYaml } from "./platform.js";

const client = docker();
const NAME = "bte";

async function berth(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

async function platformObjects(): Promise<string[]> {
  const filters = JSON.stringify({ label: [`berth.platform=${NAME}`] });
  const containers = await client.listContainers({ all: true, filters });
  const networks = await client.listNetworks({ filters });
  return [...containers.map((c) => c.Names[0]!), ...networks.map((n) => n.Name)];
}

const missingImageApp = `name: bte-app
components:
  web: { image: "berth-test/does-not-exist:1", port: 8080 }
routes: [{ path: /, to: web }]
environments:
  production: { domains: [bte-app.test] }
`;

describe("apply refuses clearly and changes nothing", { timeout: 300_000 }, () => {
  before(() => cleanupByLabel(client, NAME));
  after(async () => {
    await berth(["down", specDirForCleanup, "--purge", "--yes", "--state-dir", `/tmp/berth-test-${NAME}`]);
    await cleanupByLabel(client, NAME);
  });
  let specDirForCleanup = "";

  test("when the Docker engine is not reachable", async () => {
    const dir = await writeSpec({ "platform.yaml": platformYaml(NAME), "apps/bte-api.yaml": apiYaml("bte-api") });
    specDirForCleanup = dir;
    const result = await berth(["apply", dir, "--state-dir", `/tmp/berth-test-${NAME}`], { DOCKER_HOST: "unix:///tmp/berth-no-engine.sock" });
    assert.equal(result.code, 69);
    assert.match(result.stderr, /the Docker engine is not reachable/);
    assert.match(result.stderr, /Start it/);
  });

  test("when an image is missing", async () => {
    const dir = await writeSpec({ "platform.yaml": platformYaml(NAME), "apps/bte-app.yaml": missingImageApp });
    const result = await berth(["apply", dir, "--state-dir", `/tmp/berth-test-${NAME}`]);
    assert.equal(result.code, 69);
    assert.match(result.stderr, /image berth-test\/does-not-exist:1 is not on this host/);
    assert.deepEqual(await platformObjects(), [], "no network or container was created");
  });

  test("when the proxy's port is taken", async () => {
    const squatter = createServer();
    squatter.listen(18091, "127.0.0.1");
    await once(squatter, "listening");
    try {
      const dir = await writeSpec({
        "platform.yaml": platformYaml(NAME).replace("httpPort: 18080", "httpPort: 18091"),
        "apps/bte-api.yaml": apiYaml("bte-api"),
      });
      const result = await berth(["apply", dir, "--state-dir", `/tmp/berth-test-${NAME}`]);
      assert.equal(result.code, 69);
      assert.match(result.stderr, /port 127\.0\.0\.1:18091 is already taken by another program; nothing was changed/);
      assert.deepEqual(await platformObjects(), [], "no network or container was created");
    } finally {
      squatter.close();
    }
  });
});
