// Deploys built from a git repository at a ref: the commit is fetched, built through the
// Engine API, tagged with the commit, recorded in the release, and served.
import assert from "node:assert/strict";
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { deploy, type DeployDeps } from "../../src/deploy/deploy.js";
import { containerPostgres } from "../../src/runtime/postgres.js";
import { Store } from "../../src/state/store.js";
import { cleanupByLabel, docker, EXAMPLE_ROOT, run } from "./helpers.js";
import { httpsGet, platformYaml, testPlatform, type TestPlatform } from "./platform.js";

const client = docker();
const NAME = "btg";
const APP = "btg-api";

async function git(repo: string, ...args: string[]): Promise<string> {
  const { stdout } = await run("git", ["-C", repo, "-c", "user.name=test", "-c", "user.email=test@berth.test", ...args]);
  return stdout.trim();
}

describe("berth deploy --ref", { timeout: 900_000 }, () => {
  let platform: TestPlatform;
  let deps: DeployDeps;
  let repo = "";
  const builtImages: string[] = [];

  before(async () => {
    await cleanupByLabel(client);
    repo = await mkdtemp(join(tmpdir(), "berth-git-"));
    await cp(join(EXAMPLE_ROOT, "src", "gabs-massage", "backend"), join(repo, "backend"), { recursive: true, filter: (path) => !path.includes("node_modules") });
    // A unique file makes a unique build context: the build really runs.
    await writeFile(join(repo, "backend", "BUILD_ID"), `${Date.now()}-${Math.random()}\n`);
    await run("git", ["init", "--quiet", "--initial-branch", "main", repo]);
    await git(repo, "add", ".");
    await git(repo, "commit", "--quiet", "-m", "v1");
    platform = await testPlatform(client, {
      "platform.yaml": platformYaml(NAME),
      [`apps/${APP}.yaml`]: `name: ${APP}
source: { git: "file://${repo}", ref: main }
components:
  backend: { build: backend, port: 3000, health: { path: /health, interval: 1s, timeout: 5s }, release: [node, migrate.js], database: true }
routes: [{ path: /, to: backend, limit: general }]
environments:
  production: { domains: [${APP}.test] }
`,
    });
    deps = { docker: client, stateDir: platform.stateDir, store: new Store(platform.stateDir), databases: containerPostgres(client, platform.stateDir), progress: () => undefined };
  });
  after(async () => {
    deps?.store.close();
    await platform?.down({ purge: true }).catch(() => undefined);
    for (const image of builtImages) await client.getImage(image).remove({ force: true }).catch(() => undefined);
    await cleanupByLabel(client);
  });

  test("the first deploy builds the ref's commit and serves it", async () => {
    const lines: string[] = [];
    const release = await deploy(platform.plan, { app: APP, env: "production", ref: "main", actor: "test", reason: "first" }, { ...deps, progress: (line) => lines.push(line) }, { drainMs: 200, healthWindowMs: 500 });
    const commit = await git(repo, "rev-parse", "HEAD");
    assert.equal(release.sourceCommit, commit);
    assert.equal(release.images.backend, `berth/${APP}-backend:${commit.slice(0, 12)}`);
    builtImages.push(release.images.backend!);
    assert.ok(lines.some((line) => /Step \d+\/\d+/.test(line)), "the build's progress is streamed");
    assert.match((await httpsGet(`${APP}.test`, "/")).body, /"visits":1/);
  });

  test("a new commit on the branch is the next release", async () => {
    const routes = join(repo, "backend", "routes.js");
    await writeFile(routes, (await readFile(routes, "utf8")).replace("json: { visits:", "json: { visits_v2:"));
    await git(repo, "commit", "--quiet", "-am", "v2");
    const release = await deploy(platform.plan, { app: APP, env: "production", ref: "main", actor: "test", reason: "second" }, deps, { drainMs: 200, healthWindowMs: 500 });
    builtImages.push(release.images.backend!);
    assert.equal(release.number, 2);
    assert.equal(release.sourceCommit, await git(repo, "rev-parse", "HEAD"));
    assert.match((await httpsGet(`${APP}.test`, "/")).body, /"visits_v2":2/, "the new code serves, on the same database");
  });
});
