// Secrets as files, without Docker: the planner marks the components, injectedEnv writes
// the values to the runtime directory (a temp dir here, BERTH_RUN_DIR) and injects none of
// them, and the create body mounts them read-only at /run/secrets without holding them.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { planPlatform } from "../../src/plan/plan.js";
import type { ComponentPlan, PlatformPlan } from "../../src/plan/types.js";
import { injectedEnv } from "../../src/runtime/apply.js";
import { configHashOf, tenantCreateOptions } from "../../src/runtime/containers.js";
import { numericOwner, secretFilesRoot, SECRETS_VERSION_VAR } from "../../src/secrets/files.js";
import { secretNameProblem } from "../../src/secrets/store.js";
import { formatIssue } from "../../src/spec/issues.js";
import { validateSpec } from "../../src/spec/validate.js";

let runDir: string;
const previous = process.env.BERTH_RUN_DIR;

before(async () => {
  runDir = await mkdtemp(join(tmpdir(), "berth-run-"));
  process.env.BERTH_RUN_DIR = runDir;
});
after(async () => {
  if (previous === undefined) delete process.env.BERTH_RUN_DIR;
  else process.env.BERTH_RUN_DIR = previous;
  await rm(runDir, { recursive: true, force: true });
});

function planOf(app: string): PlatformPlan {
  const result = validateSpec({ platform: { file: "platform.yaml", text: "name: sf\n" }, apps: [{ file: "apps/shop.yaml", text: app }] }, { cpus: 2, memoryBytes: 4 * 1024 ** 3 });
  if (!result.ok) assert.fail(result.issues.map(formatIssue).join("\n"));
  return planPlatform(result.spec, { root: "/srv/spec" });
}

const SHOP = `
name: shop
secrets: { as: files }
components:
  api: { image: "node:20", port: 3000, database: true, user: "1000:1001" }
  web: { image: "nginx:1.27", port: 8080, secrets: { as: env } }
  worker: { image: "node:20", port: 3001 }
routes:
  - { path: /, to: web }
environments:
  production: { domains: [shop.example.org] }
`;

const component = (plan: PlatformPlan, name: string): ComponentPlan => plan.environments[0]!.components.find((c) => c.name === name)!;
const SECRETS = { API_KEY: "canary-api-key-1", MULTI_LINE: "line one\nline two\n" };

test("the planner marks components whose secrets are files; a component may override the app", () => {
  const plan = planOf(SHOP);
  assert.equal(component(plan, "api").hasSecretFiles, true);
  assert.equal(component(plan, "worker").hasSecretFiles, true);
  assert.equal("hasSecretFiles" in component(plan, "web"), false);
  assert.equal("hasSecretFiles" in component(planOf(SHOP.replace("secrets: { as: files }\n", "")), "api"), false, "env is the default");
});

test("env: the values are environment variables, as before", () => {
  const web = component(planOf(SHOP), "web");
  assert.deepEqual(injectedEnv(web, SECRETS, undefined), SECRETS);
});

test("files: no value is injected or in the create body; each is a read-only file owned by the numeric user", async () => {
  const api = component(planOf(SHOP), "api");
  const env = injectedEnv(api, SECRETS, "postgresql://shop_production:pw@db:5432/shop_production");
  assert.deepEqual(Object.keys(env).sort(), ["BERTH_SECRETS_DIR", "BERTH_SECRETS_VERSION", "DATABASE_URL"]);
  assert.equal(env.BERTH_SECRETS_DIR, "/run/secrets");
  assert.match(env[SECRETS_VERSION_VAR]!, /^[0-9a-f]{32}$/);

  const options = tenantCreateOptions(api.containers[0]!, { image: "node:20", injectedEnv: env });
  const body = JSON.stringify(options);
  for (const value of Object.values(SECRETS)) assert.equal(body.includes(JSON.stringify(value).slice(1, -1)), false, "no value in the create body");
  const dir = join(secretFilesRoot("sf"), "shop-api-production", env[SECRETS_VERSION_VAR]!);
  assert.deepEqual(options.HostConfig?.Mounts, [{ Type: "bind", Source: dir, Target: "/run/secrets", ReadOnly: true }]);
  assert.equal(options.Labels?.["berth.secret-files"], dir);

  assert.deepEqual((await readdir(dir)).sort(), ["API_KEY", "MULTI_LINE"]);
  assert.equal(await readFile(join(dir, "MULTI_LINE"), "utf8"), SECRETS.MULTI_LINE, "the value byte for byte");
  if (process.getuid?.() === 0) {
    const file = await stat(join(dir, "API_KEY"));
    assert.deepEqual([file.mode & 0o777, file.uid, file.gid], [0o400, 1000, 1001]);
    const folder = await stat(dir);
    assert.deepEqual([folder.mode & 0o777, folder.uid], [0o500, 1000]);
  }
  assert.equal((await stat(secretFilesRoot("sf"))).mode & 0o777, 0o700, "the host side is root's only");
});

test("files: same values, same version (no replacement); a changed value, a new version and config hash", () => {
  const api = component(planOf(SHOP), "api");
  const first = injectedEnv(api, SECRETS, undefined);
  assert.deepEqual(injectedEnv(api, { ...SECRETS }, undefined), first);
  const changed = injectedEnv(api, { ...SECRETS, API_KEY: "canary-api-key-2" }, undefined);
  assert.notEqual(changed[SECRETS_VERSION_VAR], first[SECRETS_VERSION_VAR]);
  const hash = (env: Record<string, string>) => configHashOf(tenantCreateOptions(api.containers[0]!, { image: "node:20", injectedEnv: env }));
  assert.notEqual(hash(changed), hash(first));
});

test("files for a user the host cannot resolve are readable in the container, not writable", async () => {
  const worker = component(planOf(SHOP), "worker");
  const env = injectedEnv(worker, SECRETS, undefined);
  const file = await stat(join(secretFilesRoot("sf"), "shop-worker-production", env[SECRETS_VERSION_VAR]!, "API_KEY"));
  assert.equal(file.mode & 0o777, 0o444);
  assert.equal(numericOwner("app"), undefined);
  assert.deepEqual(numericOwner("1000"), { uid: 1000, gid: 0 });
  assert.deepEqual(numericOwner("root"), { uid: 0, gid: 0 });
});

test("a spec env named BERTH_SECRETS_VERSION mounts nothing; secrets cannot take berth's names", () => {
  const plan = planOf(SHOP.replace('port: 3001 }', 'port: 3001, env: { BERTH_SECRETS_VERSION: "0123456789abcdef0123456789abcdef" } }').replace("secrets: { as: files }\n", ""));
  const worker = component(plan, "worker");
  const options = tenantCreateOptions(worker.containers[0]!, { image: "node:20", injectedEnv: injectedEnv(worker, {}, undefined) });
  assert.equal(options.HostConfig?.Mounts, undefined);
  assert.match(secretNameProblem("BERTH_SECRETS_DIR")!, /reserved: berth sets it when secrets are files/);
  assert.match(secretNameProblem("BERTH_SECRETS_VERSION")!, /reserved/);
});
