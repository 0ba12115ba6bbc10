// berth apply end to end on the real engine: a platform comes up, serves through nginx with
// TLS, headers and rate limits, writes its databases, converges to a no-op, survives a
// crashing tenant, and removes what leaves the spec.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { cp, readFile, readlink, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BerthError } from "../../src/errors.js";
import { execIn, inspectContainer } from "../../src/host/docker.js";
import { askToken, proxyDir, routeTableChecker, stageProxyConfig, validateInContainer } from "../../src/proxy/apply.js";
import { renderProxyConfig } from "../../src/proxy/render.js";
import { cleanupByLabel, docker, httpGet } from "./helpers.js";
import { apiYaml, HTTP_PORT, HTTPS_PORT, httpsGet, platformYaml, siteYaml, testPlatform, type TestPlatform } from "./platform.js";

const client = docker();
const NAME = "bta";

async function adminQuery(platform: TestPlatform, sql: string): Promise<pg.QueryResult> {
  const password = (await readFile(join(platform.stateDir, "postgres-admin-password"), "utf8")).trim();
  const info = await inspectContainer(client, `berth-${NAME}-postgres`);
  const host = info!.NetworkSettings.Networks[`berth-${NAME}-control`]!.IPAddress;
  const admin = new pg.Client({ host, user: "berth", password, database: "berth", connectionTimeoutMillis: 5000 });
  await admin.connect();
  try {
    return await admin.query(sql);
  } finally {
    await admin.end();
  }
}

describe("berth apply", { timeout: 600_000 }, () => {
  let platform: TestPlatform;
  const files = { "platform.yaml": platformYaml(NAME), "apps/bta-site.yaml": siteYaml("bta-site"), "apps/bta-api.yaml": apiYaml("bta-api") };

  before(async () => {
    await cleanupByLabel(client);
    platform = await testPlatform(client, files);
  });
  after(async () => {
    await platform?.down({ purge: true }).catch(() => undefined);
    await cleanupByLabel(client);
  });

  test("brings the platform up from scratch", async () => {
    const changes = await platform.apply();
    const created = changes.filter((c) => c.kind === "created").map((c) => c.target);
    for (const name of ["bta-site-web-production", "bta-site-web-staging", "bta-api-backend-production", "bta-api-backend-staging", `berth-${NAME}-proxy`, `berth-${NAME}-postgres`]) {
      assert.ok(created.includes(name), `${name} created (got ${created.join(", ")})`);
    }
  });

  test("a second apply changes nothing", async () => {
    assert.deepEqual(await platform.apply(), []);
  });

  test("every environment answers through nginx over TLS, HTTP redirects, unknown hosts are refused", async () => {
    for (const host of ["bta-site.test", "staging.bta-site.test"]) {
      const response = await httpsGet(host, "/health.txt");
      assert.equal(response.status, 200, host);
      assert.equal(response.body.trim(), "ok");
    }
    const redirect = await httpGet(HTTP_PORT, "bta-site.test", "/page?x=1");
    assert.equal(redirect.status, 308);
    assert.equal(redirect.headers.get("location"), `https://bta-site.test:${HTTPS_PORT}/page?x=1`);
    const unknown = await httpGet(HTTP_PORT, "nobody.test", "/");
    assert.equal(unknown.status, 421);
    await assert.rejects(httpsGet("nobody.test", "/"), /alert|handshake|ECONNRESET|socket/i);
  });

  test("responses carry the security headers and the request id", async () => {
    const response = await httpsGet("bta-site.test", "/", { "x-request-id": "test-request-42" });
    assert.equal(response.headers["x-frame-options"], "SAMEORIGIN");
    assert.equal(response.headers["x-content-type-options"], "nosniff");
    assert.equal(response.headers["referrer-policy"], "strict-origin-when-cross-origin");
    assert.match(String(response.headers["content-security-policy"]), /^default-src 'self'/);
    assert.equal(response.headers["x-request-id"], "test-request-42");
    assert.equal(response.headers["strict-transport-security"], undefined, "HSTS is opt-in");
    const generated = await httpsGet("bta-site.test", "/");
    assert.match(String(generated.headers["x-request-id"]), /^[0-9a-f]{32}$/);
    // The API echoes the id it was given: the answer still carries it once (Node joins repeated headers with ", ").
    const echoed = await httpsGet("bta-api.test", "/", { "x-request-id": "test-request-43" });
    assert.equal(echoed.status, 200);
    assert.equal(echoed.headers["x-request-id"], "test-request-43");
  });

  test("database-backed environments write and read their own database", async () => {
    const first = JSON.parse((await httpsGet("bta-api.test", "/")).body) as { visits: number };
    const second = JSON.parse((await httpsGet("bta-api.test", "/")).body) as { visits: number };
    assert.equal(second.visits, first.visits + 1);
    const staging = JSON.parse((await httpsGet("staging.bta-api.test", "/")).body) as { visits: number };
    assert.equal(staging.visits, 1, "staging counts in its own database");
  });

  test("the api rate-limit class answers 429 beyond its burst", async () => {
    const statuses = await Promise.all(Array.from({ length: 60 }, () => httpsGet("bta-api.test", "/health").then((r) => r.status)));
    assert.ok(statuses.includes(429), `expected some 429 among ${statuses.join(",")}`);
    assert.ok(statuses.includes(200));
  });

  /** The proxy's worker pids (its master is the container's main process, visible from the host), and its address. */
  async function proxyWorkers(): Promise<{ workers: string[]; address: string }> {
    const info = (await inspectContainer(client, `berth-${NAME}-proxy`))!;
    const children = await readFile(`/proc/${info.State.Pid}/task/${info.State.Pid}/children`, "utf8");
    return { workers: children.split(" ").filter(Boolean).sort(), address: Object.values(info.NetworkSettings.Networks)[0]!.IPAddress };
  }

  test("a route change is served without a reload: the same nginx workers, in well under a second", async () => {
    const before = await proxyWorkers();
    // bta-site routes /health.txt only: "/" becomes a 404.
    const narrowed = siteYaml("bta-site").replace("  - { path: /, to: web, limit: general }", "  - { path: /health.txt, to: web, limit: general }");
    const changed = await testPlatform(client, { ...files, "apps/bta-site.yaml": narrowed }, platform.stateDir);
    const started = performance.now();
    const changes = await changed.apply();
    const elapsed = performance.now() - started;
    assert.deepEqual(changes.map((change) => `${change.target}: ${change.detail ?? change.kind}`), [`proxy configuration: generation ${/generation (\d+)/.exec(changes[0]?.detail ?? "")?.[1]} (route table, no reload)`]);
    assert.equal((await httpsGet("bta-site.test", "/")).status, 404, "served as soon as apply returns");
    const health = await httpsGet("bta-site.test", "/health.txt");
    const table = await readFile(join(proxyDir(platform.stateDir).current, "routes.tsv"), "utf8");
    assert.equal(health.status, 200, `${health.body}\n${table}`);
    assert.deepEqual((await proxyWorkers()).workers, before.workers, "no reload: the same workers serve");
    assert.ok(elapsed < 5_000, `the whole apply took ${elapsed.toFixed(0)} ms`);
    // Back, by the same path, timed from the swap alone.
    const back = await platform.apply();
    assert.match(back[0]?.detail ?? "", /route table, no reload/);
    assert.equal((await httpsGet("bta-site.test", "/")).status, 200);
    assert.deepEqual((await proxyWorkers()).workers, before.workers);
  });

  test("a path no route takes is a 404, and /docs is redirected to /docs/ when /docs/ is a prefix route, as nginx would", async () => {
    const routes = siteYaml("bta-site").replace("  - { path: /, to: web, limit: general }", "  - { path: /health.txt, to: web, limit: general }\n  - { path: /docs/, to: web, limit: general }");
    const changed = await testPlatform(client, { ...files, "apps/bta-site.yaml": routes }, platform.stateDir);
    try {
      assert.match((await changed.apply())[0]?.detail ?? "", /route table, no reload/);
      const redirect = await httpsGet("bta-site.test", "/docs?page=2");
      assert.equal(redirect.status, 301);
      assert.equal(redirect.headers.location, `https://bta-site.test:${HTTPS_PORT}/docs/?page=2`);
      assert.equal((await httpsGet("bta-site.test", "/docs/")).headers.location, undefined, "/docs/ itself is routed");
      const missing = await httpsGet("bta-site.test", "/elsewhere");
      assert.equal(missing.status, 404);
      assert.equal(missing.headers["x-content-type-options"], "nosniff", "the 404 carries the security headers");
      assert.match(String(missing.headers["x-request-id"]), /^[0-9a-f]{32}$/);
    } finally {
      await platform.apply();
    }
    assert.equal((await httpsGet("bta-site.test", "/docs")).status, 404, "routed by / again: the static site answers");
  });

  test("a route table the router rejects is never swapped in; one that is swapped in anyway leaves the workers on the last good one", async () => {
    const { workers, address } = await proxyWorkers();
    const dir = proxyDir(platform.stateDir);
    const live = await readlink(dir.current);
    const token = await askToken(address);
    assert.match(token ?? "", /^[0-9a-f]{16}$/);

    // Staged by berth: the running router rejects it before the swap, with its reason.
    const rendered = renderProxyConfig(platform.plan, { upstreams: {}, certificates: {} });
    const broken = { ...rendered, config: { ...rendered.config, "routes.tsv": rendered.config["routes.tsv"]!.replace(/\tprefix\t\/\t/, "\tregex\t^/(\t") } };
    await assert.rejects(
      stageProxyConfig(dir, broken, validateInContainer(client, `berth-${NAME}-proxy`), { checkRouteTable: routeTableChecker([address]) }),
      (error: unknown) => {
        assert.ok(error instanceof BerthError);
        assert.match(error.message, /router rejected the new route table; the running one is unchanged:\nline \d+: .*missing \)/);
        return true;
      },
    );
    assert.equal(await readlink(dir.current), live);

    // Swapped in behind berth's back: the workers log it and keep routing by the table they have.
    const corrupt = join(dir.gen, "999999");
    await cp(join(dir.root, live), corrupt, { recursive: true });
    await writeFile(join(corrupt, "routes.tsv"), "berth-routes\t2\tdeadbeefdeadbeef\tnot-this-config\ngarbage\n");
    await symlink("gen/999999", `${dir.current}.test`);
    await rename(`${dir.current}.test`, dir.current);
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal((await httpsGet("bta-site.test", "/health.txt")).status, 200, "still routed");
      assert.equal(await askToken(address), token, "still the last good table");
      const log = await execIn(client, `berth-${NAME}-proxy`, ["tail", "-n", "20", "/var/log/berth/error.log"]);
      assert.match(log.output, /berth route table \/etc\/berth\/current\/routes\.tsv rejected; routing by the previous one: line 2: expected a route or an upstream/);
      assert.deepEqual((await proxyWorkers()).workers, workers);
    } finally {
      await symlink(live, `${dir.current}.test`);
      await rename(`${dir.current}.test`, dir.current);
      await rm(corrupt, { recursive: true, force: true });
    }
  });

  test("the balancer skips an address that refuses for the next one; an upstream without addresses answers the unavailable page", async () => {
    const { workers, address } = await proxyWorkers();
    const dir = proxyDir(platform.stateDir);
    const live = await readlink(dir.current);
    const token = await askToken(address);
    const table = await readFile(join(dir.root, live, "routes.tsv"), "utf8");
    const upstreamLine = /^upstream\tbta_site_web_production\t(.+)$/m;
    const served = upstreamLine.exec(table)?.[1];
    assert.match(served ?? "", /^\d+\.\d+\.\d+\.\d+:8080$/, "one healthy replica");
    // A table swapped in behind berth's back, with its own token; the workers adopt it within their 50 ms watch.
    const adopt = async (generation: string, addresses: string, tableToken: string) => {
      await cp(join(dir.root, live), join(dir.gen, generation), { recursive: true });
      const [header, ...rest] = table.replace(upstreamLine, `upstream\tbta_site_web_production\t${addresses}`).split("\n");
      await writeFile(join(dir.gen, generation, "routes.tsv"), [header!.replace(/^(berth-routes\t2\t)[^\t]+/, `$1${tableToken}`), ...rest].join("\n"));
      await symlink(`gen/${generation}`, `${dir.current}.test`);
      await rename(`${dir.current}.test`, dir.current);
      for (const deadline = Date.now() + 5_000; (await askToken(address)) !== tableToken && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await askToken(address), tableToken, `every worker adopted ${generation}`);
    };
    try {
      // The proxy's own address on port 1 refuses at once; half the first tries go there.
      const refusing = `${address}:1`;
      await adopt("999997", `${refusing} ${served}`, "balancer-refused");
      const statuses = [];
      for (let i = 0; i < 8; i++) statuses.push((await httpsGet("bta-site.test", "/health.txt")).status);
      assert.deepEqual(statuses, Array(8).fill(200), "every request served by the replica that answers");
      const log = await execIn(client, `berth-${NAME}-proxy`, ["tail", "-n", "50", "/var/log/berth/error.log"]);
      assert.ok(log.output.includes(`upstream: "http://${refusing}/health.txt"`), `the refusing address was tried:\n${log.output}`);

      await adopt("999996", "-", "balancer-none");
      const unavailable = await httpsGet("bta-site.test", "/health.txt");
      assert.equal(unavailable.status, 502);
      assert.match(unavailable.body, /Temporarily unavailable/);
      assert.deepEqual((await proxyWorkers()).workers, workers, "no reload");
    } finally {
      await symlink(live, `${dir.current}.test`);
      await rename(`${dir.current}.test`, dir.current);
      for (const deadline = Date.now() + 5_000; (await askToken(address)) !== token && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
      await rm(join(dir.gen, "999997"), { recursive: true, force: true });
      await rm(join(dir.gen, "999996"), { recursive: true, force: true });
    }
    assert.equal((await httpsGet("bta-site.test", "/health.txt")).status, 200, "served again by the live table");
  });

  test("a crashing tenant fails apply with its reason while the others keep serving", async () => {
    const crashing = await testPlatform(
      client,
      {
        ...files,
        "apps/bta-crash.yaml": `name: bta-crash
source: { path: ../crash }
components:
  app: { build: ., port: 3000, health: /health }
routes: [{ path: /, to: app }]
environments:
  production: { domains: [bta-crash.test] }
`,
        "crash/Dockerfile": `FROM berth-node:20
LABEL berth.test=true
CMD ["node", "-e", "console.error('boom: CONFIG_PATH is not set'); process.exit(3)"]
`,
      },
      platform.stateDir,
    );
    await assert.rejects(crashing.apply(), (error: unknown) => {
      assert.ok(error instanceof BerthError);
      assert.match(error.message, /bta-crash-app-production: the container exited with code 3/);
      assert.match(error.message, /boom: CONFIG_PATH is not set/, "the failing container's last log lines are shown");
      return true;
    });
    assert.equal((await httpsGet("bta-site.test", "/health.txt")).status, 200, "the others keep serving");
    assert.equal((await inspectContainer(client, "bta-crash-app-production")), undefined, "the failed container is removed");
    const cleanup = await platform.apply();
    assert.ok(
      cleanup.every((c) => c.target.includes("bta-crash") || c.target === "proxy configuration"),
      `only the crashed app's leftovers change: ${JSON.stringify(cleanup)}`,
    );
  });

  test("removing an environment removes its containers, routes and network and keeps its database", async () => {
    const smaller = await testPlatform(
      client,
      { ...files, "apps/bta-site.yaml": siteYaml("bta-site", { staging: false }), "apps/bta-api.yaml": apiYaml("bta-api", { staging: false }) },
      platform.stateDir,
    );
    const changes = await smaller.apply();
    const removed = changes.filter((c) => c.kind === "removed").map((c) => c.target);
    assert.ok(removed.includes("bta-site-web-staging"));
    assert.ok(removed.includes("bta-api-backend-staging"));
    assert.ok(removed.includes("network berth-bta-site-staging"));
    assert.equal((await httpGet(HTTP_PORT, "staging.bta-site.test", "/")).status, 421, "its route is gone");
    const kept = await adminQuery(platform, "select datname from pg_database where datname = 'bta_api_staging'");
    assert.equal(kept.rowCount, 1, "the database is kept without --purge");

    const purged = await smaller.apply({ purge: true });
    assert.ok(purged.some((c) => c.kind === "removed" && c.target.includes("bta_api_staging")));
    const gone = await adminQuery(platform, "select datname from pg_database where datname = 'bta_api_staging'");
    assert.equal(gone.rowCount, 0, "--purge drops it");
    assert.equal((await httpsGet("bta-api.test", "/health")).status, 200, "production is untouched");
  });
});
