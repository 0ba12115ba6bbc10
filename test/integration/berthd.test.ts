// berthd for real: a daemon process on a test platform (real Docker engine, nginx,
// PostgreSQL), driven through its HTTPS API and through the remote CLI.
//  - contract: every operation of api/openapi.yaml is exercised, and each answer is checked
//    against the contract here as well as by the server;
//  - scopes: the full matrix of token scope × operation × target;
//  - bad input: over 200 malformed requests, each answered 4xx with a problem, nothing changed;
//  - audit log, reconcile loop (a removed container comes back; drift is reported), SIGTERM.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import Database from "better-sqlite3";
import { after, before, describe, test } from "node:test";
import { Agent, request } from "undici";
import { loadContract } from "../../src/api/contract.js";
import { packSource } from "../../src/cli/upload.js";
import { SecretStore } from "../../src/secrets/store.js";
import { Store } from "../../src/state/store.js";
import { assertNoCanary, filesUnder } from "../canary.js";
import { inspectContainer } from "../../src/host/docker.js";
import { api, cleanupPlatform, closeAgent, eventually, rawRequest, startDaemon, type Answer, type Daemon } from "./berthd.js";
import { docker, EXAMPLE_ROOT, REPO_ROOT, writeSpec } from "./helpers.js";
import { apiYaml, httpsGet, platformYaml, siteYaml } from "./platform.js";

const client = docker();
const NAME = "bd";
const contract = loadContract();
const exercised = new Set<string>();

interface EnvStatus {
  app: string;
  env: string;
  release: string | null;
  containers: { name: string; state: string }[];
}

/** Checks an answer against the contract (independently of the server's own check) and records the operation as exercised. */
function conforms(method: string, path: string, answer: Answer): Answer {
  const routed = contract.route(method, new URL(path, "https://x").pathname);
  assert.ok(routed && "operation" in routed, `${method} ${path} is an operation of the contract`);
  const response = routed.operation.responses.get(String(answer.status)) ?? routed.operation.responses.get("default");
  assert.ok(response, `${routed.operation.id} documents status ${answer.status}`);
  if (response.validate) assert.ok(response.validate(answer.body), `${routed.operation.id} ${answer.status} matches the contract: ${JSON.stringify(response.validate.errors)}\n${answer.text.slice(0, 500)}`);
  if (answer.status < 400) exercised.add(routed.operation.id);
  return answer;
}

describe("berthd", { timeout: 1_500_000 }, () => {
  let daemon: Daemon;
  let specDir: string;
  /** The first deploy's operation, of alpha/production: the scope matrix reads it with every token. */
  let alphaProductionOperation: string | undefined;
  const as = (token: string | undefined, method: string, path: string, body?: unknown) => api(daemon, token, method, path, body).then((a) => conforms(method, path, a));
  const admin = (method: string, path: string, body?: unknown) => as(daemon.adminToken, method, path, body);
  const cli = (args: string[], token: string, input?: string) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [join(REPO_ROOT, "bin", "berth"), ...args], { env: { ...process.env, BERTH_HOST: daemon.url, BERTH_TOKEN: token, BERTH_CA: daemon.caPath }, timeout: 300_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
      if (input !== undefined) child.stdin!.end(input);
    });

  /** Waits for an operation to end by following its event stream; returns the events' text and the final operation. */
  async function followOperation(token: string, id: string): Promise<{ events: string; final: { state: string; release: { number: number } | null; error: unknown } }> {
    const answer = await rawRequest(daemon, "GET", `/v1/operations/${id}/events`, { authorization: `Bearer ${token}` });
    assert.equal(answer.status, 200);
    assert.match(String(answer.headers["content-type"]), /text\/event-stream/);
    exercised.add("streamOperation");
    const end = /event: end\ndata: (.*)\n/.exec(answer.text);
    assert.ok(end, `the stream ends with an end event: ${answer.text.slice(-300)}`);
    return { events: answer.text, final: JSON.parse(end[1]!) as { state: string; release: { number: number } | null; error: unknown } };
  }

  before(async () => {
    await cleanupPlatform(client, NAME);
    specDir = await writeSpec({
      "platform.yaml": platformYaml(NAME),
      "apps/alpha.yaml": siteYaml("alpha"),
      "apps/beta.yaml": siteYaml("beta", { staging: false }),
      "apps/gamma.yaml": apiYaml("gamma", { staging: false }),
    });
    daemon = await startDaemon(specDir);
    // The first reconcile pass brings the platform up.
    await eventually("every environment served by healthy containers", async () => {
      const status = (await api(daemon, daemon.adminToken, "GET", "/v1/status")).body as { environments: EnvStatus[]; reconciledAt: string | null };
      return status.reconciledAt !== null && status.environments.every((e) => e.containers.every((c) => c.state === "healthy")) ? true : undefined;
    }, 300_000);
  });

  after(async () => {
    const code = await daemon?.stop();
    await closeAgent();
    await cleanupPlatform(client, NAME);
    if (daemon) for (const path of [daemon.stateDir, daemon.env.BERTH_SECRETS_KEY!]) await rm(path, { recursive: true, force: true });
    assert.equal(code, 0, "berthd exits 0 on SIGTERM");
  });

  test("serves its contract at /openapi.json and readable docs at /docs, without a token", async () => {
    const document = await rawRequest(daemon, "GET", "/openapi.json", {});
    assert.equal(document.status, 200);
    assert.equal((document.body as { openapi: string }).openapi, "3.1.0");
    assert.deepEqual(Object.keys((document.body as { paths: object }).paths), Object.keys(contract.document.paths as object));
    const docs = await rawRequest(daemon, "GET", "/docs", {});
    assert.equal(docs.status, 200);
    for (const operation of contract.operations) assert.ok(docs.text.includes(operation.id), `the docs describe ${operation.id}`);
  });

  test("status, apps, app, environment, logs and releases describe what runs", async () => {
    const status = (await admin("GET", "/v1/status")).body as { platform: string; environments: EnvStatus[]; reconciledAt: string | null };
    assert.equal(status.platform, NAME);
    assert.deepEqual(status.environments.map((e) => `${e.app}/${e.env}`).sort(), ["alpha/production", "alpha/staging", "beta/production", "gamma/production"]);
    assert.ok(status.reconciledAt, "the first reconcile pass is recorded");
    const apps = (await admin("GET", "/v1/apps")).body as { apps: { name: string; environments: string[] }[] };
    assert.deepEqual(apps.apps.find((a) => a.name === "alpha")?.environments.sort(), ["production", "staging"]);
    const app = (await admin("GET", "/v1/apps/alpha")).body as { environments: EnvStatus[] };
    assert.equal(app.environments.length, 2);
    const env = (await admin("GET", "/v1/apps/alpha/envs/production")).body as EnvStatus;
    assert.deepEqual(env.containers.map((c) => [c.name, c.state]), [["alpha-web-production", "healthy"]]);
    const logs = (await admin("GET", "/v1/apps/gamma/envs/production/logs?lines=5")).body as { containers: { name: string; lines: string[] }[] };
    assert.equal(logs.containers[0]?.name, "gamma-backend-production");
    assert.ok(logs.containers[0]!.lines.length > 0 && logs.containers[0]!.lines.length <= 5, `up to 5 log lines: ${JSON.stringify(logs)}`);
    const releases = (await admin("GET", "/v1/apps/alpha/envs/production/releases")).body as { releases: unknown[] };
    assert.deepEqual(releases.releases, []);
  });

  test("a deploy answers 202, streams its progress, and its release serves; a rollback goes back", async () => {
    const image = (await inspectContainer(client, "alpha-web-production"))!.Config.Image;
    const started = await admin("POST", "/v1/apps/alpha/envs/production/deploys", { images: { web: image }, reason: "first via the API" });
    assert.equal(started.status, 202);
    const operation = started.body as { id: string; state: string };
    alphaProductionOperation = operation.id;
    assert.equal(started.headers.location, `/v1/operations/${operation.id}`);
    const again = await admin("POST", "/v1/apps/alpha/envs/production/deploys", { images: { web: image } });
    assert.equal(again.status, 409, "a second deploy of the same environment is refused while the first runs");
    assert.match((again.body as { detail: string }).detail, new RegExp(`being deployed by token:admin \\(operation ${operation.id}`));
    const { events, final } = await followOperation(daemon.adminToken, operation.id);
    assert.equal(final.state, "succeeded", JSON.stringify(final.error));
    for (const step of ["prepare", "start-new", "switch", "done"]) assert.ok(events.includes(`r1 ${step}`), `progress shows the ${step} step`);
    assert.equal((await httpsGet("alpha.test", "/health.txt")).status, 200);
    const read = (await admin("GET", `/v1/operations/${operation.id}`)).body as { state: string; release: { number: number; actor: string; reason: string } };
    assert.deepEqual([read.state, read.release.number, read.release.actor, read.release.reason], ["succeeded", 1, "token:admin", "first via the API"]);

    const second = (await admin("POST", "/v1/apps/alpha/envs/production/deploys", { images: { web: image }, reason: "second" })).body as { id: string };
    assert.equal((await followOperation(daemon.adminToken, second.id)).final.state, "succeeded");
    const back = await admin("POST", "/v1/apps/alpha/envs/production/rollback", { to: 1 });
    assert.equal(back.status, 202);
    const rolled = await followOperation(daemon.adminToken, (back.body as { id: string }).id);
    assert.equal(rolled.final.state, "succeeded");
    const releases = ((await admin("GET", "/v1/apps/alpha/envs/production/releases")).body as { releases: { number: number; status: string; reason: string }[] }).releases;
    assert.deepEqual(releases.map((r) => [r.number, r.status, r.reason]), [[3, "active", "rollback to r1"], [2, "superseded", "second"], [1, "superseded", "first via the API"]]);
    assert.equal((await httpsGet("alpha.test", "/health.txt")).status, 200);
  });

  test("berthd killed mid-deploy: the next start repairs it from the journal and the old release keeps serving", async () => {
    const image = (await inspectContainer(client, "alpha-web-production"))!.Config.Image;
    const before = ((await admin("GET", "/v1/apps/alpha/envs/production/releases")).body as { releases: { number: number; status: string }[] }).releases;
    // A new secret changes the container's environment: the deploy must start a new container.
    assert.equal((await admin("PUT", "/v1/apps/alpha/envs/production/secrets/RELEASE_MARK", { value: "crash-test" })).status, 200);
    const started = (await admin("POST", "/v1/apps/alpha/envs/production/deploys", { images: { web: image }, reason: "to be cut short" })).body as { id: string };
    // Follow the progress until the new container serves beside the old, then SIGKILL berthd.
    const response = await request(`${daemon.url}/v1/operations/${started.id}/events`, { headers: { authorization: `Bearer ${daemon.adminToken}` }, dispatcher: new Agent({ connect: { ca: daemon.ca } }) });
    let seen = "";
    for await (const chunk of response.body) {
      seen += (chunk as Buffer).toString();
      if (/r\d+ health-window/.test(seen)) break;
      assert.ok(!seen.includes("event: end"), `the deploy ended before it could be interrupted: ${seen}`);
    }
    daemon.process.kill("SIGKILL");
    await new Promise((resolve) => daemon.process.once("exit", resolve));
    assert.ok(await inspectContainer(client, "alpha-web-production-next"), "the half-made release's container is left behind by the kill");

    daemon = await startDaemon(specDir, { stateDir: daemon.stateDir });
    const operation = (await admin("GET", `/v1/operations/${started.id}`)).body as { state: string; error: { type: string } | null };
    assert.deepEqual([operation.state, operation.error?.type], ["failed", "https://berth.dev/problems/interrupted"]);
    const releases = ((await admin("GET", "/v1/apps/alpha/envs/production/releases")).body as { releases: { number: number; status: string; failure: string | null }[] }).releases;
    assert.equal(releases.length, before.length + 1);
    assert.equal(releases[0]!.status, "failed");
    assert.match(releases[0]!.failure ?? "", /interrupted during "health-window"/);
    assert.equal(releases.find((r) => r.status === "active")?.number, before.find((r) => r.status === "active")?.number, "the previous release is still the active one");
    assert.equal(await inspectContainer(client, "alpha-web-production-next"), undefined, "the half-made container is gone");
    assert.equal((await httpsGet("alpha.test", "/health.txt")).status, 200);
    const env = (await admin("GET", "/v1/apps/alpha/envs/production")).body as { deploying: string | null };
    assert.equal(env.deploying, null);
  });

  test("two environments deploy at once, each switching its own traffic, and no request fails", async () => {
    // New secrets change both environments' containers, so both deploys replace them.
    for (const [app, env] of [["alpha", "production"], ["beta", "production"]]) {
      assert.equal((await admin("PUT", `/v1/apps/${app}/envs/${env}/secrets/SIDE_BY_SIDE`, { value: "1" })).status, 200);
    }
    const before = { alpha: (await inspectContainer(client, "alpha-web-production"))!.Id, beta: (await inspectContainer(client, "beta-web-production"))!.Id };
    const [a, b] = await Promise.all([
      admin("POST", "/v1/apps/alpha/envs/production/deploys", { reason: "side by side" }),
      admin("POST", "/v1/apps/beta/envs/production/deploys", { reason: "side by side" }),
    ]);
    assert.deepEqual([a.status, b.status], [202, 202]);
    let isDone = false;
    const failures: string[] = [];
    let requests = 0;
    const traffic = (async () => {
      for (const deadline = Date.now() + 240_000; !isDone && Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
        for (const host of ["alpha.test", "beta.test"]) {
          requests++;
          const answer = await httpsGet(host, "/health.txt").catch((error: Error) => ({ status: 0, body: error.message }));
          if (answer.status !== 200) failures.push(`${host}: ${answer.status} ${answer.body.slice(0, 80)}`);
        }
      }
    })();
    const results = await Promise.all([a, b].map((started) => followOperation(daemon.adminToken, (started.body as { id: string }).id)));
    isDone = true;
    await traffic;
    assert.deepEqual(results.map((r) => r.final.state), ["succeeded", "succeeded"], JSON.stringify(results.map((r) => r.final.error)));
    assert.notEqual((await inspectContainer(client, "alpha-web-production"))!.Id, before.alpha, "alpha runs a new container");
    assert.notEqual((await inspectContainer(client, "beta-web-production"))!.Id, before.beta, "beta runs a new container");
    assert.ok(requests > 20, `${requests} requests during the deploys`);
    assert.deepEqual(failures, [], `${failures.length} of ${requests} requests failed`);
  });

  test("the remote CLI deploys the local working directory as an uploaded build context", async () => {
    const token = ((await admin("POST", "/v1/tokens", { name: "laptop", scope: { kind: "app", app: "alpha" } })).body as { token: string }).token;
    const result = await cli(["deploy", "alpha", "--env", "staging", "--upload", join(EXAMPLE_ROOT, "src", "paiss"), "--reason", "from my laptop"], token);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^alpha\/staging: r1 is serving$/m);
    assert.match(result.stderr, /uploading .*paiss: \d+ files/);
    assert.match(result.stderr, /r1 switch/, "progress streams to the terminal");
    const release = ((await admin("GET", "/v1/apps/alpha/envs/staging/releases")).body as { releases: { actor: string; images: Record<string, string> }[] }).releases[0]!;
    assert.equal(release.actor, "token:laptop");
    assert.match(release.images.web!, /^berth\/alpha-web:/);
    assert.deepEqual(await readdir(join(daemon.stateDir, "uploads")), [], "the upload is removed after its deploy");
    // The upload operation on its own: a gzip'd tar of the source, answered with its id and size.
    const packed = await packSource(join(EXAMPLE_ROOT, "src", "paiss"));
    const chunks: Buffer[] = [];
    for await (const chunk of packed.stream) chunks.push(chunk as Buffer);
    const uploaded = conforms("POST", "/v1/apps/alpha/envs/staging/sources", await rawRequest(daemon, "POST", "/v1/apps/alpha/envs/staging/sources", { authorization: `Bearer ${token}`, "content-type": "application/gzip" }, Buffer.concat(chunks)));
    assert.equal(uploaded.status, 201, uploaded.text);
    assert.equal((uploaded.body as { files: number }).files, packed.files);
    assert.equal((await httpsGet("staging.alpha.test", "/health.txt")).status, 200);
    // The same command, scoped to alpha, may not touch beta.
    const refused = await cli(["releases", "beta", "--env", "production"], token);
    assert.equal(refused.code, 77, refused.stderr);
    assert.match(refused.stderr, /token "laptop" \(app alpha\) may not act on beta\/production/);
  });

  test("secrets through the API and the remote CLI: set (stdin too), deployed, listed, unset — values never come back", async () => {
    const canary = "canary-7f3c9b1e-never-shown";
    const canaries = [canary, `${canary}-2`];
    const set = await admin("PUT", "/v1/apps/beta/envs/production/secrets/API_KEY", { value: canary });
    assert.deepEqual([set.status, (set.body as { name: string; version: number }).name, (set.body as { version: number }).version], [200, "API_KEY", 1]);
    const viaCli = await cli(["secrets", "set", "beta", "--env", "production", "SMTP_PASSWORD"], daemon.adminToken, `${canary}-2\n`);
    assert.equal(viaCli.code, 0, viaCli.stderr);
    // What berthd stored is what was sent, the stdin value included (its final newline dropped).
    const store = new SecretStore(daemon.stateDir, { keyPath: daemon.env.BERTH_SECRETS_KEY! });
    try {
      const stored = store.values("beta", "production");
      assert.deepEqual([stored.API_KEY, stored.SMTP_PASSWORD], canaries);
    } finally {
      store.close();
    }

    // A deploy hands them to the tenant (the control: env injection puts them in its
    // configuration), while no process shows them in its arguments.
    const image = (await inspectContainer(client, "beta-web-production"))!.Config.Image;
    const started = await admin("POST", "/v1/apps/beta/envs/production/deploys", { images: { web: image }, reason: "with secrets" });
    assert.equal(started.status, 202, started.text);
    const operation = (started.body as { id: string }).id;
    let snapshots = 0;
    for (const deadline = Date.now() + 120_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 100))) {
      const { stdout: ps } = await promisify(execFile)("ps", ["-eo", "args"]);
      assertNoCanary(canaries, "ps output during the deploy", Buffer.from(ps));
      snapshots++;
      if (((await admin("GET", `/v1/operations/${operation}`)).body as { state: string }).state !== "running") break;
    }
    const followed = await followOperation(daemon.adminToken, operation);
    assert.equal(followed.final.state, "succeeded", JSON.stringify(followed.final.error));
    assert.ok(snapshots >= 2, `${snapshots} process lists taken while the deploy ran`);
    const env = (await inspectContainer(client, "beta-web-production"))!.Config.Env;
    assert.ok(env.includes(`API_KEY=${canary}`) && env.includes(`SMTP_PASSWORD=${canary}-2`), "the deployed container got both values");

    const listed = await admin("GET", "/v1/apps/beta/envs/production/secrets");
    const names = (listed.body as { secrets: { name: string }[] }).secrets.map((s) => s.name);
    assert.deepEqual(names.filter((name) => ["API_KEY", "SMTP_PASSWORD"].includes(name)), ["API_KEY", "SMTP_PASSWORD"]);
    const listedCli = await cli(["secrets", "list", "beta", "--env", "production"], daemon.adminToken);
    assert.match(listedCli.stdout, /API_KEY\s+v1/);
    const answers = [
      set,
      listed,
      await admin("GET", `/v1/operations/${operation}`),
      await admin("GET", "/v1/apps/beta/envs/production/releases"),
      await admin("GET", "/v1/apps/beta/envs/production"),
      await admin("GET", "/v1/status"),
      await admin("GET", "/v1/audit?app=beta&limit=1000"),
      await admin("DELETE", "/v1/apps/beta/envs/production/secrets/SMTP_PASSWORD"),
    ];
    assert.equal(answers.at(-1)!.status, 200);
    const texts: [string, string][] = [
      ...answers.map((answer, index): [string, string] => [`API answer ${index}`, answer.text]),
      ["the operation's event stream", followed.events],
      ["CLI output", `${viaCli.stdout}${viaCli.stderr}${listedCli.stdout}${listedCli.stderr}`],
      ["berthd's log", daemon.log.join("\n")],
      ["berthd's stderr", daemon.stderr()],
    ];
    for (const [where, text] of texts) assertNoCanary(canaries, where, Buffer.from(text));

    // Nor at rest: every file of the state directory, each table's rows (blobs as their bytes),
    // and a dump of the database by sqlite3 itself.
    for (const [file, bytes] of await filesUnder(daemon.stateDir)) assertNoCanary(canaries, file, bytes);
    const db = new Database(join(daemon.stateDir, "berth.db"), { readonly: true });
    try {
      const tables = (db.prepare("select name from sqlite_master where type = 'table'").all() as { name: string }[]).map((t) => t.name);
      assert.ok(tables.some((t) => t.startsWith("secret")), `the secrets live in berth.db: ${tables.join(", ")}`);
      for (const table of tables) {
        for (const row of db.prepare(`select * from "${table}"`).all() as Record<string, unknown>[]) {
          for (const [column, value] of Object.entries(row)) assertNoCanary(canaries, `${table}.${column}`, Buffer.isBuffer(value) ? value : Buffer.from(String(value)));
        }
      }
    } finally {
      db.close();
    }
    const dump = await promisify(execFile)("sqlite3", [join(daemon.stateDir, "berth.db"), ".dump"], { maxBuffer: 64 * 1024 * 1024 });
    assert.match(dump.stdout, /CREATE TABLE/i, "sqlite3 dumped the database");
    assertNoCanary(canaries, "sqlite3 .dump of berth.db", Buffer.from(dump.stdout));
  });

  test("rotating a database password rolls out a new release that serves with the new password", async () => {
    const before = await httpsGet("gamma.test", "/health");
    assert.equal(before.status, 200);
    const started = await admin("POST", "/v1/apps/gamma/envs/production/database/rotate-password");
    assert.equal(started.status, 202);
    const { final } = await followOperation(daemon.adminToken, (started.body as { id: string }).id);
    assert.equal(final.state, "succeeded", JSON.stringify(final.error));
    assert.equal((await httpsGet("gamma.test", "/health")).status, 200);
  });

  test("the scope matrix: every token scope × operation × target answers as allowed or forbidden", async () => {
    const make = async (name: string, scope: object) => ((await admin("POST", "/v1/tokens", { name, scope })).body as { token: string }).token;
    const tokens = {
      admin: daemon.adminToken,
      app: await make("matrix-app", { kind: "app", app: "alpha" }),
      env: await make("matrix-env", { kind: "environment", app: "alpha", env: "staging" }),
    };
    const targets = [["alpha", "production"], ["alpha", "staging"], ["beta", "production"]] as const;
    const allowed = (scope: keyof typeof tokens, app: string, env: string) => scope === "admin" || (scope === "app" && app === "alpha") || (scope === "env" && app === "alpha" && env === "staging");
    // Each probe passes authorization and then stops at a known answer, or changes only a probe secret.
    const probes: { op: string; method: string; path: (a: string, e: string) => string; body?: unknown; raw?: { type: string; data: Buffer }; ok: number }[] = [
      { op: "getEnvironment", method: "GET", path: (a, e) => `/v1/apps/${a}/envs/${e}`, ok: 200 },
      { op: "listReleases", method: "GET", path: (a, e) => `/v1/apps/${a}/envs/${e}/releases`, ok: 200 },
      { op: "getLogs", method: "GET", path: (a, e) => `/v1/apps/${a}/envs/${e}/logs?lines=1`, ok: 200 },
      { op: "listSecrets", method: "GET", path: (a, e) => `/v1/apps/${a}/envs/${e}/secrets`, ok: 200 },
      { op: "setSecret", method: "PUT", path: (a, e) => `/v1/apps/${a}/envs/${e}/secrets/MATRIX_PROBE`, body: { value: "probe" }, ok: 200 },
      { op: "unsetSecret", method: "DELETE", path: (a, e) => `/v1/apps/${a}/envs/${e}/secrets/MATRIX_PROBE`, ok: 200 },
      { op: "createDeploy", method: "POST", path: (a, e) => `/v1/apps/${a}/envs/${e}/deploys`, body: { images: { nosuch: "x:1" } }, ok: 400 },
      { op: "createRollback", method: "POST", path: (a, e) => `/v1/apps/${a}/envs/${e}/rollback`, body: { to: 999 }, ok: 404 },
      { op: "rotateDatabasePassword", method: "POST", path: (a, e) => `/v1/apps/${a}/envs/${e}/database/rotate-password`, ok: 400 },
      { op: "uploadSource", method: "POST", path: (a, e) => `/v1/apps/${a}/envs/${e}/sources`, raw: { type: "application/gzip", data: Buffer.from("not gzip") }, ok: 400 },
    ];
    let checked = 0;
    for (const [scope, token] of Object.entries(tokens) as [keyof typeof tokens, string][]) {
      for (const [app, env] of targets) {
        for (const probe of probes) {
          const path = probe.path(app, env);
          const answer = probe.raw
            ? await rawRequest(daemon, probe.method, path, { authorization: `Bearer ${token}`, "content-type": probe.raw.type }, probe.raw.data)
            : await as(token, probe.method, path, probe.body);
          const expected = allowed(scope, app, env) ? probe.ok : 403;
          assert.equal(answer.status, expected, `${scope} token, ${probe.op} on ${app}/${env}: ${answer.text.slice(0, 300)}`);
          checked++;
        }
      }
      // App-level and platform-level operations.
      const expectations: [string, string, number][] = [
        ["GET", "/v1/apps/alpha", 200],
        ["GET", "/v1/apps/beta", scope === "admin" ? 200 : 403],
        ["GET", "/v1/tokens", scope === "admin" ? 200 : 403],
        ["DELETE", "/v1/tokens/000000000000", scope === "admin" ? 404 : 403],
        ["GET", "/v1/audit?app=beta", scope === "admin" ? 200 : 403],
        ["GET", "/v1/audit", 200],
      ];
      for (const [method, path, status] of expectations) {
        const answer = await as(token, method, path);
        assert.equal(answer.status, status, `${scope} token, ${method} ${path}: ${answer.text.slice(0, 300)}`);
        checked++;
      }
      const created = await as(token, "POST", "/v1/tokens", { name: `made-by-${scope}`, scope: { kind: "admin" } });
      assert.equal(created.status, scope === "admin" ? 201 : 403, `${scope} token creating an admin token`);
      const visible = ((await as(token, "GET", "/v1/status")).body as { environments: EnvStatus[] }).environments.map((e) => `${e.app}/${e.env}`);
      assert.deepEqual(visible.sort(), scope === "admin" ? ["alpha/production", "alpha/staging", "beta/production", "gamma/production"] : scope === "app" ? ["alpha/production", "alpha/staging"] : ["alpha/staging"]);
      const apps = ((await as(token, "GET", "/v1/apps")).body as { apps: { name: string }[] }).apps.map((a) => a.name);
      assert.deepEqual(apps.sort(), scope === "admin" ? ["alpha", "beta", "gamma"] : ["alpha"]);
      const envsOfAlpha = ((await as(token, "GET", "/v1/apps/alpha")).body as { environments: EnvStatus[] }).environments.map((e) => e.env);
      assert.deepEqual(envsOfAlpha.sort(), scope === "env" ? ["staging"] : ["production", "staging"]);
      const auditTargets = new Set(((await as(token, "GET", "/v1/audit?limit=1000")).body as { entries: { target: string }[] }).entries.map((e) => e.target));
      if (scope === "app") assert.ok([...auditTargets].every((t) => t === "alpha" || t.startsWith("alpha/")), `app token sees only alpha's audit entries: ${[...auditTargets].join(", ")}`);
      if (scope === "env") assert.ok([...auditTargets].every((t) => t === "alpha/staging"), `env token sees only alpha/staging's entries: ${[...auditTargets].join(", ")}`);
      checked += 5;
    }
    // Operations belong to their environment: alpha/production's deploy, read and followed by
    // each token; only the alpha/staging token is refused.
    assert.ok(alphaProductionOperation, "the deploy test ran first and kept its operation");
    for (const [scope, token] of Object.entries(tokens) as [keyof typeof tokens, string][]) {
      const expected = allowed(scope, "alpha", "production") ? 200 : 403;
      const read = await as(token, "GET", `/v1/operations/${alphaProductionOperation}`);
      assert.equal(read.status, expected, `${scope} token, getOperation of alpha/production: ${read.text.slice(0, 300)}`);
      if (expected === 200) assert.equal((read.body as { app: string; env: string }).env, "production");
      const events = await rawRequest(daemon, "GET", `/v1/operations/${alphaProductionOperation}/events`, { authorization: `Bearer ${token}` });
      assert.equal(events.status, expected, `${scope} token, streamOperation of alpha/production: ${events.text.slice(0, 300)}`);
      if (expected === 200) assert.match(events.text, /event: end\n/);
      checked += 2;
    }
    assert.ok(checked >= 100, `${checked} scope checks`);

    // A revoked token stops working at once.
    const listed = ((await admin("GET", "/v1/tokens")).body as { tokens: { id: string; name: string }[] }).tokens;
    const appToken = listed.find((t) => t.name === "matrix-app")!;
    assert.equal((await admin("DELETE", `/v1/tokens/${appToken.id}`)).status, 200);
    const after = await as(tokens.app, "GET", "/v1/apps/alpha/envs/production");
    assert.equal(after.status, 401);
    assert.ok(!JSON.stringify(listed).includes(tokens.env.slice(20)), "token lists never show token values");
  });

  test("over 200 malformed requests: each gets a 4xx problem naming the cause, and nothing changes", async () => {
    const snapshot = async () => {
      const parts: unknown[] = [];
      for (const [app, env] of [["alpha", "production"], ["alpha", "staging"], ["beta", "production"], ["gamma", "production"]]) {
        parts.push((await api(daemon, daemon.adminToken, "GET", `/v1/apps/${app}/envs/${env}/releases`)).body);
        parts.push((await api(daemon, daemon.adminToken, "GET", `/v1/apps/${app}/envs/${env}/secrets`)).body);
      }
      // Every token but when it was last used (the requests here use the admin token).
      parts.push(((await api(daemon, daemon.adminToken, "GET", "/v1/tokens")).body as { tokens: object[] }).tokens.map((token) => ({ ...token, lastUsedAt: undefined })));
      parts.push(await readdir(join(daemon.stateDir, "uploads")).catch(() => []));
      return JSON.stringify(parts);
    };
    const revoked = ((await admin("POST", "/v1/tokens", { name: "soon-revoked", scope: { kind: "admin" } })).body as { id: string; token: string });
    await admin("DELETE", `/v1/tokens/${revoked.id}`);
    const before = await snapshot();
    const t = daemon.adminToken;
    type Case = { name: string; method: string; path: string; headers?: Record<string, string>; body?: string | Buffer; status: number; field?: string };
    const cases: Case[] = [];
    const json = { "content-type": "application/json" };
    const auth = (token = t) => ({ authorization: `Bearer ${token}` });
    const mutations: [string, string, string][] = [
      ["POST", "/v1/apps/alpha/envs/staging/deploys", "{}"],
      ["POST", "/v1/apps/alpha/envs/staging/rollback", "{}"],
      ["PUT", "/v1/apps/alpha/envs/staging/secrets/BAD_INPUT", '{"value":"x"}'],
      ["DELETE", "/v1/apps/alpha/envs/staging/secrets/API_KEY", ""],
      ["POST", "/v1/tokens", '{"name":"x","scope":{"kind":"admin"}}'],
      ["DELETE", "/v1/tokens/000000000001", ""],
      ["POST", "/v1/apps/gamma/envs/production/database/rotate-password", ""],
      ["POST", "/v1/apps/alpha/envs/staging/sources", ""],
    ];
    // Missing, malformed, unknown and revoked tokens, on every mutation.
    const badAuth: [string, Record<string, string>][] = [
      ["no token", {}],
      ["empty bearer", { authorization: "Bearer " }],
      ["basic auth", { authorization: `Basic ${Buffer.from("admin:admin").toString("base64")}` }],
      ["malformed token", { authorization: "Bearer berth_nothex_abc" }],
      ["unknown token", { authorization: `Bearer berth_0123456789ab_${"A".repeat(43)}` }],
      ["tampered token", { authorization: `Bearer ${t.slice(0, -1)}${t.endsWith("A") ? "B" : "A"}` }],
      ["revoked token", auth(revoked.token)],
    ];
    for (const [method, path, body] of [...mutations, ["GET", "/v1/status", ""] as [string, string, string]]) {
      for (const [name, headers] of badAuth) cases.push({ name: `${name}: ${method} ${path}`, method, path, headers: { ...headers, ...json }, body, status: 401 });
    }
    // Names with path separators, shell metacharacters and other junk, in every name position.
    const badNames = ["..%2F..%2Fetc", "a%2Fb", "%3Brm%20-rf%20%2F", "%24(id)", "%60id%60", "Alpha", "a%20b", "-alpha", "alpha-", "a".repeat(70), "%00", "al%C3%A9pha", "a.b", "a_b", "*"];
    for (const bad of badNames) {
      cases.push({ name: `app ${bad}`, method: "GET", path: `/v1/apps/${bad}/envs/staging`, headers: auth(), status: 400, field: "path.app" });
      cases.push({ name: `env ${bad}`, method: "POST", path: `/v1/apps/alpha/envs/${bad}/deploys`, headers: { ...auth(), ...json }, body: "{}", status: 400, field: "path.env" });
      cases.push({ name: `secret name ${bad}`, method: "PUT", path: `/v1/apps/alpha/envs/staging/secrets/${bad}`, headers: { ...auth(), ...json }, body: '{"value":"x"}', status: 400, field: "path.name" });
      cases.push({ name: `token id ${bad}`, method: "DELETE", path: `/v1/tokens/${bad}`, headers: auth(), status: 400, field: "path.id" });
    }
    // Bodies of the deploy: malformed JSON, wrong types, unknown fields, bad values, size, media type.
    const deploy = "/v1/apps/alpha/envs/staging/deploys";
    const deployBodies: [string, string, string?][] = [
      ["truncated JSON", '{"images":'],
      ["not JSON", "images=web"],
      ["single quotes", "{'ref':'main'}"],
      ["trailing comma", '{"ref":"main",}'],
      ["empty body", ""],
      ["JSON null", "null", "body"],
      ["JSON array", "[]", "body"],
      ["JSON string", '"deploy"', "body"],
      ["JSON number", "42", "body"],
      ["images a string", '{"images":"web=x"}', "body.images"],
      ["images an array", '{"images":["x"]}', "body.images"],
      ["image a number", '{"images":{"web":1}}', "body.images.web"],
      ["image with shell", '{"images":{"web":"$(reboot)"}}', "body.images.web"],
      ["image with spaces", '{"images":{"web":"a b"}}', "body.images.web"],
      ["component with path", '{"images":{"../web":"x:1"}}', "body.images"],
      ["ref a number", '{"ref":5}', "body.ref"],
      ["ref an option", '{"ref":"--upload-pack=touch /tmp/x"}', "body.ref"],
      ["ref with shell", '{"ref":"main;reboot"}', "body.ref"],
      ["ref empty", '{"ref":""}', "body.ref"],
      ["source not an upload id", '{"source":"../../etc"}', "body.source"],
      ["source a number", '{"source":1}', "body.source"],
      ["reason an object", '{"reason":{}}', "body.reason"],
      ["reason with a newline", '{"reason":"a\\nb"}', "body.reason"],
      ["unknown field", '{"image":{"web":"x:1"}}', "body.image"],
      ["unknown field beside known", '{"ref":"main","force":true}', "body.force"],
      ["ref and images together", '{"ref":"main","images":{"web":"x:1"}}', "body.ref"],
      ["unknown upload", '{"source":"up_0123456789abcdef"}'],
    ];
    for (const [name, body, field] of deployBodies) {
      cases.push({ name: `deploy: ${name}`, method: "POST", path: deploy, headers: { ...auth(), ...json }, body, status: name === "unknown upload" ? 404 : 400, ...(field ? { field } : {}) });
    }
    cases.push({ name: "deploy: oversized body", method: "POST", path: deploy, headers: { ...auth(), ...json }, body: JSON.stringify({ reason: "x".repeat(300 * 1024) }), status: 413 });
    cases.push({ name: "deploy: text/plain", method: "POST", path: deploy, headers: { ...auth(), "content-type": "text/plain" }, body: "{}", status: 415 });
    cases.push({ name: "deploy: no content type", method: "POST", path: deploy, headers: auth(), body: "{}", status: 415 });
    cases.push({ name: "deploy: form", method: "POST", path: deploy, headers: { ...auth(), "content-type": "application/x-www-form-urlencoded" }, body: "ref=main", status: 415 });
    // Rollback, secrets and tokens bodies.
    for (const [name, body, field] of [["to zero", '{"to":0}', "body.to"], ["to negative", '{"to":-1}', "body.to"], ["to a string", '{"to":"3"}', "body.to"], ["to a fraction", '{"to":1.5}', "body.to"], ["to huge", '{"to":1e12}', "body.to"], ["unknown field", '{"release":1}', "body.release"]]) {
      cases.push({ name: `rollback: ${name}`, method: "POST", path: "/v1/apps/alpha/envs/staging/rollback", headers: { ...auth(), ...json }, body: body!, status: 400, field: field! });
    }
    const secret = "/v1/apps/alpha/envs/staging/secrets/BAD_INPUT";
    for (const [name, body, field] of [["no value", "{}", "body.value"], ["value a number", '{"value":1}', "body.value"], ["value null", '{"value":null}', "body.value"], ["value an array", '{"value":["x"]}', "body.value"], ["value too long", JSON.stringify({ value: "x".repeat(65537) }), "body.value"], ["unknown field", '{"value":"x","version":2}', "body.version"], ["malformed", '{"value":"x"', undefined]]) {
      cases.push({ name: `secret: ${name}`, method: "PUT", path: secret, headers: { ...auth(), ...json }, body: body!, status: 400, ...(field ? { field } : {}) });
    }
    cases.push({ name: "secret: reserved DATABASE_URL", method: "PUT", path: "/v1/apps/alpha/envs/staging/secrets/DATABASE_URL", headers: { ...auth(), ...json }, body: '{"value":"postgres://x"}', status: 400 });
    cases.push({ name: "secret: unset one never set", method: "DELETE", path: "/v1/apps/alpha/envs/staging/secrets/NEVER_SET", headers: auth(), status: 404 });
    const tokenBodies: [string, string, string?][] = [
      ["no scope", '{"name":"x"}', "body.scope"],
      ["no name", '{"scope":{"kind":"admin"}}', "body.name"],
      ["name with spaces", '{"name":"a b","scope":{"kind":"admin"}}', "body.name"],
      ["name with shell", '{"name":"$(id)","scope":{"kind":"admin"}}', "body.name"],
      ["name with slash", '{"name":"a/b","scope":{"kind":"admin"}}', "body.name"],
      ["scope kind root", '{"name":"x","scope":{"kind":"root"}}', "body.scope"],
      ["app scope without app", '{"name":"x","scope":{"kind":"app"}}', "body.scope"],
      ["admin scope with app", '{"name":"x","scope":{"kind":"admin","app":"alpha"}}', "body.scope"],
      ["environment scope without env", '{"name":"x","scope":{"kind":"environment","app":"alpha"}}', "body.scope"],
      ["scope a string", '{"name":"x","scope":"admin"}', "body.scope"],
      ["app not in the spec", '{"name":"x","scope":{"kind":"app","app":"nosuch"}}', "body.scope.app"],
      ["app with path", '{"name":"x","scope":{"kind":"app","app":"../alpha"}}', "body.scope"],
    ];
    for (const [name, body, field] of tokenBodies) cases.push({ name: `token: ${name}`, method: "POST", path: "/v1/tokens", headers: { ...auth(), ...json }, body, status: 400, ...(field ? { field } : {}) });
    cases.push({ name: "token: environment not in the spec", method: "POST", path: "/v1/tokens", headers: { ...auth(), ...json }, body: '{"name":"x","scope":{"kind":"environment","app":"alpha","env":"nosuch"}}', status: 404 });
    // Query parameters.
    for (const [name, query, field] of [["lines zero", "lines=0", "query.lines"], ["lines text", "lines=abc", "query.lines"], ["lines huge", "lines=99999", "query.lines"], ["unknown parameter", "follow=1", "query.follow"], ["component bad", "component=..%2Fx", "query.component"], ["repeated", "lines=1&lines=2", undefined]]) {
      cases.push({ name: `logs: ${name}`, method: "GET", path: `/v1/apps/alpha/envs/staging/logs?${query}`, headers: auth(), status: 400, ...(field ? { field } : {}) });
    }
    for (const [name, query, field] of [["limit zero", "limit=0", "query.limit"], ["cursor text", "cursor=abc", "query.cursor"], ["app bad", "app=%3Bx", "query.app"]]) {
      cases.push({ name: `audit: ${name}`, method: "GET", path: `/v1/audit?${query}`, headers: auth(), status: 400, field: field! });
    }
    // Methods and routes that do not exist, bodies where none is taken, unknown operations.
    cases.push({ name: "PATCH status", method: "PATCH", path: "/v1/status", headers: auth(), status: 405 });
    cases.push({ name: "DELETE apps", method: "DELETE", path: "/v1/apps", headers: auth(), status: 405 });
    cases.push({ name: "PUT releases", method: "PUT", path: "/v1/apps/alpha/envs/staging/releases", headers: { ...auth(), ...json }, body: "{}", status: 405 });
    cases.push({ name: "unknown route", method: "GET", path: "/v1/nothing", headers: auth(), status: 404 });
    cases.push({ name: "path traversal route", method: "GET", path: "/v1/apps/alpha/envs/staging/../../../../etc/passwd", headers: auth(), status: 404 });
    cases.push({ name: "body on rotate-password", method: "POST", path: "/v1/apps/gamma/envs/production/database/rotate-password", headers: { ...auth(), ...json }, body: '{"password":"x"}', status: 400 });
    cases.push({ name: "unknown operation", method: "GET", path: "/v1/operations/op_0000000000000000", headers: auth(), status: 404 });
    cases.push({ name: "bad operation id", method: "GET", path: "/v1/operations/..%2Fx", headers: auth(), status: 400, field: "path.id" });
    cases.push({ name: "unknown environment", method: "GET", path: "/v1/apps/alpha/envs/qa", headers: auth(), status: 404 });
    cases.push({ name: "unknown app", method: "GET", path: "/v1/apps/nosuch", headers: auth(), status: 404 });
    // Uploads that are not archives, or hold nothing usable.
    const upload = "/v1/apps/alpha/envs/staging/sources";
    cases.push({ name: "upload: JSON instead of tar", method: "POST", path: upload, headers: { ...auth(), ...json }, body: "{}", status: 415 });
    cases.push({ name: "upload: garbage gzip", method: "POST", path: upload, headers: { ...auth(), "content-type": "application/gzip" }, body: Buffer.from("garbage"), status: 400 });
    cases.push({ name: "upload: empty tar", method: "POST", path: upload, headers: { ...auth(), "content-type": "application/x-tar" }, body: Buffer.alloc(1024), status: 400 });
    cases.push({ name: "upload: gzip of nothing", method: "POST", path: upload, headers: { ...auth(), "content-type": "application/gzip" }, body: gzipSync(Buffer.alloc(1024)), status: 400 });

    assert.ok(cases.length >= 200, `${cases.length} malformed requests`);
    for (const c of cases) {
      const answer = await rawRequest(daemon, c.method, c.path, c.headers ?? {}, c.body);
      assert.equal(answer.status, c.status, `${c.name}: ${answer.text.slice(0, 400)}`);
      assert.match(String(answer.headers["content-type"]), /^application\/problem\+json/, `${c.name}: a problem document`);
      const problem = answer.body as { status: number; title: string; detail: string; errors?: { path: string }[] };
      assert.equal(problem.status, c.status, c.name);
      assert.ok(problem.detail.length > 10, `${c.name}: says what is wrong`);
      if (c.field) assert.ok(problem.errors?.some((e) => e.path === c.field || e.path.startsWith(`${c.field}.`)) ?? false, `${c.name}: names ${c.field}: ${answer.text}`);
    }
    assert.equal(await snapshot(), before, "no malformed request changed releases, secrets, tokens or uploads");
  });

  test("the audit log records every mutation with actor, target, source and result, and cannot be altered", async () => {
    const page = (await admin("GET", "/v1/audit?limit=1000")).body as { entries: { actor: string; operation: string; target: string; source: string; status: number; result: string }[]; next: string | null };
    const has = (predicate: (e: (typeof page.entries)[number]) => boolean, what: string) => assert.ok(page.entries.some(predicate), what);
    has((e) => e.operation === "createDeploy" && e.target === "alpha/production" && e.actor === "admin" && e.status === 202 && e.result === "ok" && e.source === "127.0.0.1", "the deploy");
    has((e) => e.operation === "createDeploy" && e.actor === "laptop" && e.target === "alpha/staging", "the remote CLI's deploy");
    // A 202 says the work was accepted; the entry appended when it ended says what came of it.
    has((e) => e.operation === `deploy ${alphaProductionOperation} succeeded` && e.target === "alpha/production" && e.actor === "admin" && e.status === 200 && e.result === "ok", "the deploy's outcome");
    has((e) => e.operation === "setSecret" && e.target === "beta/production" && e.result === "ok", "a secret set");
    has((e) => e.operation === "createToken" && e.target.startsWith("token:"), "a token created");
    has((e) => e.operation === "revokeToken" && e.result === "ok", "a token revoked");
    has((e) => e.actor === "anonymous" && e.status === 401 && e.result === "refused", "a refused request without a token");
    has((e) => e.actor === "matrix-env" && e.status === 403 && e.target === "beta/production", "an out-of-scope attempt");
    assert.ok(!page.entries.some((e) => e.operation.startsWith("get") || e.operation.startsWith("list")), "reads are not mutations");
    // Paging by cursor walks back without overlap.
    const first = (await admin("GET", "/v1/audit?limit=2")).body as { entries: { id: string }[]; next: string };
    const second = (await admin("GET", `/v1/audit?limit=2&cursor=${first.next}`)).body as { entries: { id: string }[] };
    assert.ok(Number(second.entries[0]!.id) < Number(first.entries[1]!.id));
    // The table itself refuses changes.
    const db = new Database(join(daemon.stateDir, "berth.db"));
    try {
      assert.throws(() => db.prepare("update audit set result = 'ok'").run(), /append-only/);
      assert.throws(() => db.prepare("delete from audit").run(), /append-only/);
    } finally {
      db.close();
    }
  });

  test("the reconcile loop brings back a removed tenant container and reports the drift", async () => {
    const name = "beta-web-production";
    await client.getContainer(name).remove({ force: true });
    const healthy = await eventually("the container back and healthy", async () => {
      const info = await inspectContainer(client, name);
      return info?.State.Health?.Status === "healthy" ? info : undefined;
    }, 120_000);
    assert.ok(healthy.State.Running);
    const served = await eventually("beta served again", async () => ((await httpsGet("beta.test", "/health.txt")).status === 200 ? true : undefined), 30_000);
    assert.equal(served, true);
    const status = (await admin("GET", "/v1/status")).body as { drift: { target: string; detail: string }[] };
    assert.ok(status.drift.some((d) => d.target.includes(name) && /destroy|die/.test(d.detail)), `the drift is reported: ${JSON.stringify(status.drift)}`);
  });

  test("a container that dies while another environment is deployed from the CLI comes back once that deploy is over", async () => {
    // A CLI deploy of alpha/staging beside berthd: its lock, held by this (live) process.
    const store = new Store(daemon.stateDir);
    const held = store.beginRelease({ app: "alpha", env: "staging", images: {}, imageIds: {}, sourceCommit: null, secretsVersion: null, actor: "cli:beside", reason: "held by the test" });
    const name = "beta-web-production";
    const logged = daemon.log.length;
    try {
      await client.getContainer(name).remove({ force: true });
      // The pass does not touch a platform with a deploy running beside it: it waits, as apply does.
      await eventually("the pass deferred", async () => (daemon.log.slice(logged).some((line) => line.includes("reconcile pass deferred: alpha/staging is being deployed by cli:beside")) ? true : undefined), 30_000);
      assert.equal(await inspectContainer(client, name), undefined, "not repaired while the deploy runs");
    } finally {
      store.finishRelease(held, { status: "failed", failure: "held by the test", hasRunReleaseCommand: false, timings: {} });
      store.close();
    }
    const healthy = await eventually("the container back and healthy after the deploy", async () => {
      const info = await inspectContainer(client, name);
      return info?.State.Health?.Status === "healthy" ? info : undefined;
    }, 120_000);
    assert.ok(healthy.State.Running);
    assert.equal((await httpsGet("beta.test", "/health.txt")).status, 200);
  });

  test("every operation of the contract was exercised with a successful answer", () => {
    const missing = contract.operations.map((o) => o.id).filter((id) => !exercised.has(id));
    assert.deepEqual(missing, [], `operations never exercised: ${missing.join(", ")}`);
  });
});
