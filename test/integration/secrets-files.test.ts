// The secrets canary against the real engine: canary values set as secrets of an app whose
// secrets are files (secrets.as: files) and of one whose secrets are environment variables.
// `docker inspect` of the files app's container holds none of them (the env app's does: the
// check finds them where they are), the app reads each from /run/secrets through nginx, the
// files are read-only and owned by the container's user, nothing lands under the state
// directory, a changed value replaces the container and its old files go, and `down`
// removes the rest.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { execIn, inspectContainer } from "../../src/host/docker.js";
import { applyPlatform, type ApplyDeps } from "../../src/runtime/apply.js";
import { containerPostgres } from "../../src/runtime/postgres.js";
import { secretFilesRoot } from "../../src/secrets/files.js";
import { SecretStore } from "../../src/secrets/store.js";
import { assertNoCanary, filesUnder } from "../canary.js";
import { cleanupByLabel, docker, run } from "./helpers.js";
import { httpsGet, platformYaml, testPlatform, type TestPlatform } from "./platform.js";

const client = docker();
const NAME = "bsf";
const IMAGE = "berth-test/bsf-reader:v1";

/** Serves /health, /secret/NAME (the file /run/secrets/NAME) and /env (its variable names). */
const SERVER = `
const http = require("http"), fs = require("fs");
const server = http.createServer((req, res) => {
  if (req.url === "/health") return res.end("ok");
  if (req.url === "/env") return res.end(JSON.stringify(Object.keys(process.env).sort()));
  const match = /^\\/secret\\/([A-Z_0-9]+)$/.exec(req.url);
  if (!match) { res.statusCode = 404; return res.end(); }
  try { res.end(fs.readFileSync("/run/secrets/" + match[1])); } catch (error) { res.statusCode = 500; res.end(error.code); }
}).listen(3000);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
`;

function appYaml(app: string, as: "files" | "env"): string {
  return `name: ${app}
secrets: { as: ${as} }
components:
  web:
    image: ${IMAGE}
    port: 3000
    user: "1000:1000"
    health: { path: /health, interval: 1s, timeout: 2s }
    resources: { cpus: 0.25, memory: 64M }
routes:
  - { path: /, to: web }
environments:
  production: { domains: [${app}.test] }
`;
}

async function buildImage(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "berth-img-"));
  await writeFile(join(dir, "server.js"), SERVER);
  await writeFile(join(dir, "Dockerfile"), `FROM berth-node:20\nCOPY server.js /srv/server.js\nCMD ["node", "/srv/server.js"]\n`);
  const tar = (await import("tar-fs")).default.pack(dir);
  const stream = await client.buildImage(tar as unknown as NodeJS.ReadableStream, { t: IMAGE, labels: { "berth.test": "true" } });
  await new Promise((resolve, reject) => client.modem.followProgress(stream, (error: Error | null) => (error ? reject(error) : resolve(undefined))));
  await rm(dir, { recursive: true, force: true });
}

describe("secrets as files on the real engine", { timeout: 600_000 }, () => {
  let platform: TestPlatform;
  let dir: string;
  let secrets: SecretStore;
  let deps: ApplyDeps;
  const canaries: string[] = [];
  const canary = (label: string) => {
    const value = `canary-${label}-${randomUUID()}`;
    canaries.push(value);
    return value;
  };
  const values: Record<string, string> = {};
  const apply = () => applyPlatform(platform.plan, deps, { healthTimeoutMs: 60_000, drainMs: 200 });

  before(async () => {
    await cleanupByLabel(client, NAME);
    await rm(join(secretFilesRoot(NAME)), { recursive: true, force: true });
    await buildImage();
    platform = await testPlatform(client, {
      "platform.yaml": platformYaml(NAME),
      "apps/bsf-files.yaml": appYaml("bsf-files", "files"),
      "apps/bsf-env.yaml": appYaml("bsf-env", "env"),
    });
    dir = await mkdtemp(join(tmpdir(), "berth-bsf-keys-"));
    secrets = new SecretStore(platform.stateDir, { keyPath: join(dir, "secrets.key") });
    deps = { docker: client, stateDir: platform.stateDir, progress: () => undefined, databases: containerPostgres(client, platform.stateDir), secrets };
  });
  after(async () => {
    secrets?.close();
    await platform?.down({ purge: true }).catch(() => undefined);
    await client.getImage(IMAGE).remove().catch(() => undefined);
    await cleanupByLabel(client, NAME);
    await rm(secretFilesRoot(NAME), { recursive: true, force: true });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("docker inspect holds no canary; the app reads each from /run/secrets", async () => {
    values.API_KEY = canary("api");
    values.MULTI = `${canary("multi")}\nsecond line\n`;
    secrets.setMany("bsf-files", "production", values);
    secrets.setMany("bsf-env", "production", { API_KEY: canary("env-api") });
    await apply();

    const [filesInspect, envInspect] = await Promise.all(["bsf-files-web-production", "bsf-env-web-production"].map(async (name) => (await run("docker", ["inspect", name])).stdout));
    assertNoCanary(canaries, "docker inspect bsf-files-web-production", Buffer.from(filesInspect!));
    const apiInspect = JSON.stringify(await client.getContainer("bsf-files-web-production").inspect());
    assertNoCanary(canaries, "the Engine API's inspect of bsf-files-web-production", Buffer.from(apiInspect));
    // The control: with env injection the same check finds the value.
    assert.throws(() => assertNoCanary(canaries, "docker inspect bsf-env-web-production", Buffer.from(envInspect!)), /holds the canary/);

    for (const [name, value] of Object.entries(values)) {
      const response = await httpsGet("bsf-files.test", `/secret/${name}`);
      assert.deepEqual([response.status, response.body], [200, value], `/run/secrets/${name} through nginx`);
    }
    const env = JSON.parse((await httpsGet("bsf-files.test", "/env")).body) as string[];
    assert.ok(env.includes("BERTH_SECRETS_DIR") && !env.includes("API_KEY") && !env.includes("MULTI"), env.join(","));

    const inContainer = await execIn(client, "bsf-files-web-production", ["sh", "-c", 'stat -c "%a %u %g" /run/secrets /run/secrets/API_KEY; touch /run/secrets/X 2>&1; echo "$BERTH_SECRETS_DIR"']);
    const [folder, file, touched, secretsDir] = inContainer.output.trim().split("\n");
    assert.equal(folder, "500 1000 1000");
    assert.equal(file, "400 1000 1000");
    assert.match(touched!, /Read-only file system/);
    assert.equal(secretsDir, "/run/secrets");

    const info = (await inspectContainer(client, "bsf-files-web-production"))!;
    const mount = info.Mounts.find((m) => m.Destination === "/run/secrets")!;
    assert.equal(mount.RW, false);
    assert.ok(mount.Source.startsWith(`${secretFilesRoot(NAME)}/bsf-files-web-production/`), mount.Source);
    assert.equal((await stat(secretFilesRoot(NAME))).mode & 0o777, 0o700);

    // Nothing under the state directory or the key file.
    for (const [path, bytes] of [...(await filesUnder(platform.stateDir)), ...(await filesUnder(dir))]) assertNoCanary(canaries, path, bytes);

    const again = await apply();
    assert.deepEqual(again.filter((c) => c.kind !== "updated" || !c.target.startsWith("database")), [], "a second apply changes nothing");
  });

  test("a changed value replaces the container; the old version's files go with the old container", async () => {
    const component = join(secretFilesRoot(NAME), "bsf-files-web-production");
    const [before] = await readdir(component).then((entries) => entries.filter((e) => !e.startsWith(".")));
    values.API_KEY = canary("api-2");
    secrets.setMany("bsf-files", "production", { API_KEY: values.API_KEY });
    const changes = await apply();
    assert.ok(changes.some((c) => c.kind === "replaced" && c.target === "bsf-files-web-production"), JSON.stringify(changes));
    assert.equal((await httpsGet("bsf-files.test", "/secret/API_KEY")).body, values.API_KEY);
    const versions = (await readdir(component)).filter((e) => !e.startsWith("."));
    assert.equal(versions.length, 1, versions.join(","));
    assert.notEqual(versions[0], before);
    assertNoCanary(canaries, "docker inspect after the change", Buffer.from((await run("docker", ["inspect", "bsf-files-web-production"])).stdout));
  });

  test("down removes the containers and their secret files", async () => {
    await platform.down();
    assert.deepEqual(await readdir(secretFilesRoot(NAME)).then((entries) => entries.filter((e) => !e.startsWith("."))), []);
  });
});
