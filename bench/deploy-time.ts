// Time from `deploy --image` to the new release serving, for a tiny app whose two versions
// answer differently: the switch step's end from the release journal, and the first request
// through nginx that sees the new version (polled every 10 ms). Median, min and max of 10
// deploys, and the step breakdown; beside each deploy, the engine's floor for the same work
// (create + start a container until it answers; one `nginx -t` exec in the proxy). Prints
// figures; asserts nothing.
//
//   npx tsx bench/deploy-time.ts                   # ~2 min
import { deploy } from "../src/deploy/deploy.js";
import { execIn, type Docker } from "../src/host/docker.js";
import { PROXY_MOUNT } from "../src/proxy/apply.js";
import { tenantCreateOptions } from "../src/runtime/containers.js";
import { benchPlatform, buildFromText, deadline, get, hostLine, platformYaml, scopeLabels, type BenchPlatform } from "./deploy-lib.js";
import { containerIp, docker as connect, httpStatus, median, ms, printTable, sleep, waitUntil } from "./lib.js";

const SCOPE = "bdep";
const APP = "bdep-echo";
const ENV = "production";
const DOMAIN = "bdep-echo.localhost";
const IMAGES = { v1: "berth-bench/bdep-echo:v1", v2: "berth-bench/bdep-echo:v2" } as const;
const RUNS = Number(process.env.RUNS ?? 10);
const POLL_MS = 10;
/** The CLI's defaults (berth deploy --drain 2 --health-window 3); neither is part of "to serving". */
const DEPLOY_OPTIONS = { drainMs: 2000, healthWindowMs: 3000, healthTimeoutMs: 60_000 };
const TARGET_MS = 1500;
const bound = deadline(20 * 60_000, "deploy-time");

/** Answers its version on every path and "ok" on /health; closes its listener on SIGTERM. */
const SERVER = `const http = require("node:http");
const version = process.env.BENCH_VERSION;
const server = http.createServer((req, res) => {
  res.setHeader("content-type", "text/plain");
  res.end(req.url === "/health" ? "ok\\n" : version + "\\n");
});
server.listen(8080);
process.on("SIGTERM", () => { server.close(() => process.exit(0)); setTimeout(() => process.exit(0), 1000).unref(); });
`;
const dockerfile = (version: string) => `FROM berth-node:20\nWORKDIR /app\nCOPY server.js ./\nENV BENCH_VERSION=${version}\nUSER app\nCMD ["node", "server.js"]\n`;

const appYaml = `name: ${APP}
components:
  web:
    image: ${IMAGES.v1}
    port: 8080
    health: { path: /health, interval: 1s, timeout: 2s }
routes:
  - { path: /, to: web, limit: general }
environments:
  ${ENV}: { domains: [${DOMAIN}] }
`;

interface Run {
  version: string;
  /** From calling deploy() to its journal's first step: images resolved, release begun. */
  beforeMs: number;
  prepareMs: number;
  startNewMs: number;
  switchMs: number;
  /** beforeMs + the journal's "health-window" offset: when the proxy switch had finished. */
  switchedMs: number;
  /** First request through nginx (fresh connection, every 10 ms) that answered the new version. */
  servedMs: number;
  returnedMs: number;
  /** Requests of the poll that failed (non-200 or error); 0 expected. */
  pollFailures: number;
}

async function measure(platform: BenchPlatform, version: keyof typeof IMAGES): Promise<Run> {
  const started = performance.now();
  let journalStart = Number.NaN;
  let servedMs = Number.NaN;
  let pollFailures = 0;
  let settledAt = Number.POSITIVE_INFINITY;
  const progress = (line: string) => {
    if (/^r\d+ prepare$/.test(line)) journalStart = performance.now() - started;
  };
  // Bounded: at most 6000 polls, 60 s, or 2 s after the deploy returned.
  const poll = (async () => {
    for (let i = 0; i < 6000 && performance.now() - started < 60_000 && performance.now() < settledAt + 2000; i++) {
      const answer = await get(DOMAIN, "/", 1000).catch(() => undefined);
      if (answer?.status !== 200) pollFailures++;
      else if (answer.body.trim() === version) {
        servedMs = performance.now() - started;
        return;
      }
      await sleep(POLL_MS);
    }
  })();
  try {
    const release = await deploy(
      platform.plan,
      { app: APP, env: ENV, images: { web: IMAGES[version] }, actor: "bench", reason: `bench ${version}` },
      { ...platform.deps, progress },
      DEPLOY_OPTIONS,
    );
    const returnedMs = performance.now() - started;
    settledAt = performance.now();
    await poll;
    const t = release.timings;
    return {
      version,
      beforeMs: journalStart,
      prepareMs: t["start-new"]! - t.prepare!,
      startNewMs: t.switch! - t["start-new"]!,
      switchMs: t["health-window"]! - t.switch!,
      switchedMs: journalStart + t["health-window"]!,
      servedMs,
      returnedMs,
      pollFailures,
    };
  } finally {
    settledAt = Math.min(settledAt, performance.now());
    await poll;
  }
}

interface Floor {
  /** docker create + start of the v1 image with berth's create options, until GET /health at its IP answers 200 (polled every 10 ms). */
  startMs: number;
  /** One `nginx -t` of the live configuration by exec in the proxy container (the switch step runs one). */
  execMs: number;
}

/** What the engine alone takes for the work of start-new and switch, measured beside each deploy. */
async function engineFloor(client: Docker, platform: BenchPlatform): Promise<Floor> {
  const container = platform.plan.environments[0]!.components[0]!.containers[0]!;
  const name = `${APP}-floor`;
  // Not a tenant of the platform (only the scope labels), so berth never routes to it.
  const options = { ...tenantCreateOptions(container, { image: IMAGES.v1, injectedEnv: {} }), name, Labels: scopeLabels(SCOPE), NetworkingConfig: {} };
  const started = performance.now();
  try {
    await client.createContainer(options);
    await client.getContainer(name).start();
    const ip = await containerIp(client, name, container.network);
    await waitUntil("the floor container answers", async () => (await httpStatus(ip, container.port, DOMAIN, "/health", 1000)) === 200, 30_000, POLL_MS);
  } finally {
    await client.getContainer(name).remove({ force: true }).catch(() => undefined);
  }
  const startMs = performance.now() - started;
  const execStarted = performance.now();
  await execIn(client, platform.plan.proxy.container, ["nginx", "-t", "-q", "-c", `${PROXY_MOUNT}/current/nginx.conf`]);
  return { startMs, execMs: performance.now() - execStarted };
}

async function main(): Promise<void> {
  const client = connect();
  let platform: BenchPlatform | undefined;
  try {
    platform = await benchPlatform(client, SCOPE, platformYaml("bdep"), { [APP]: appYaml });
    for (const [version, tag] of Object.entries(IMAGES)) await buildFromText(tag, SCOPE, { Dockerfile: dockerfile(version), "server.js": SERVER });
    await platform.apply();
    await waitUntil("v1 serves through the proxy", async () => (await get(DOMAIN, "/")).body.trim() === "v1", 30_000, 100);
    // One deploy not counted: the first replacement (store, proxy generation, caches) is not typical.
    await measure(platform, "v2");

    const runs: Run[] = [];
    const floors: Floor[] = [];
    const hostBefore = hostLine();
    for (let i = 0; i < RUNS; i++) {
      bound.check();
      const run = await measure(platform, i % 2 === 0 ? "v1" : "v2");
      runs.push(run);
      await sleep(500);
      floors.push(await engineFloor(client, platform));
      console.error(
        `  deploy ${i + 1} -> ${run.version}: prepare ${ms(run.prepareMs)}, start-new ${ms(run.startNewMs)}, switch ${ms(run.switchMs)}; ` +
          `switched ${ms(run.switchedMs)} ms, served ${ms(run.servedMs)} ms, returned ${ms(run.returnedMs)} ms; ` +
          `floor: start ${ms(floors.at(-1)!.startMs)}, nginx -t ${ms(floors.at(-1)!.execMs)} (${hostLine()})`,
      );
      await sleep(500);
    }

    console.log(`host: ${hostBefore} before, ${hostLine()} after`);
    console.log(`${RUNS} deploys of ${APP} (alternately ${IMAGES.v1} / ${IMAGES.v2}), in-process deploy() as \`berth deploy --image\` runs it, CLI defaults (health window 3 s, drain 2 s); ms from calling deploy()\n`);
    printTable(
      ["#", "to", "before journal", "prepare", "start-new", "switch", "switch done", "served (poll)", "deploy returned", "poll failures"],
      runs.map((run, index) => [
        String(index + 1),
        run.version,
        ms(run.beforeMs),
        ms(run.prepareMs),
        ms(run.startNewMs),
        ms(run.switchMs),
        ms(run.switchedMs),
        ms(run.servedMs),
        ms(run.returnedMs),
        String(run.pollFailures),
      ]),
    );
    const stat = (pick: (run: Run) => number) => {
      const values = runs.map(pick);
      return `${ms(median(values))} (min ${ms(Math.min(...values))}, max ${ms(Math.max(...values))})`;
    };
    console.log("");
    console.log(`median breakdown: before journal ${ms(median(runs.map((r) => r.beforeMs)))} ms, prepare ${ms(median(runs.map((r) => r.prepareMs)))} ms, start-new ${ms(median(runs.map((r) => r.startNewMs)))} ms, switch ${ms(median(runs.map((r) => r.switchMs)))} ms`);
    console.log(`to serving, switch done (journal):       ${stat((r) => r.switchedMs)} ms  (target <= ${TARGET_MS})`);
    console.log(`to serving, first request sees new (wall): ${stat((r) => r.servedMs)} ms  (target <= ${TARGET_MS})`);
    console.log(`deploy returned (incl. health window and drain): ${stat((r) => r.returnedMs)} ms`);
    console.log(`poll requests that failed: ${runs.reduce((sum, r) => sum + r.pollFailures, 0)}`);
    console.log(
      `engine floor, median of ${floors.length} (measured after each deploy): create + start + answering ${ms(median(floors.map((f) => f.startMs)))} ms ` +
        `(vs start-new ${ms(median(runs.map((r) => r.startNewMs)))}); exec nginx -t ${ms(median(floors.map((f) => f.execMs)))} ms (vs switch ${ms(median(runs.map((r) => r.switchMs)))})`,
    );
  } finally {
    await platform?.teardown();
  }
}

await main();
