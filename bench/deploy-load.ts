// Failed requests during deploys under steady load: berth's deploys (10 alternating v1/v2, one
// image that never becomes healthy, one rollback) against the naive way on the same platform
// under the same load (docker rm -f, then create + start with the same options, 10 times).
// Prints the counts; asserts nothing.
//
//   npx tsx bench/deploy-load.ts                   # ~4 min
//   CONNECTIONS=8 DELAY_MS=40 npx tsx bench/deploy-load.ts
import { join } from "node:path";
import { deploy, rollback } from "../src/deploy/deploy.js";
import { waitHealthy } from "../src/host/docker.js";
import type { Release } from "../src/state/store.js";
import { tenantCreateOptions } from "../src/runtime/containers.js";
import { ensureProxy, servingNow } from "../src/runtime/proxy.js";
import {
  benchPlatform,
  buildFromText,
  buildImage,
  deadline,
  formatStatuses,
  get,
  non2xxOf,
  platformYaml,
  socketErrorsOf,
  startLoad,
  type BenchPlatform,
  type LoadResult,
} from "./deploy-lib.js";
import { EXAMPLE_ROOT, docker as connect, median, ms, printTable, sleep, waitUntil } from "./lib.js";

const SCOPE = "bdep";
const APP = "bdep-api";
const ENV = "production";
const DOMAIN = "bdep-api.localhost";
const V1 = "berth-bench/bdep-api:v1";
const V2 = "berth-bench/bdep-api:v2";
const CRASH = "berth-bench/bdep-api:crash";
const DEPLOYS = 10;
const RECREATES = 10;
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 8);
const DELAY_MS = Number(process.env.DELAY_MS ?? 40);
/** The CLI's defaults (berth deploy --drain 2 --health-window 3). */
const DEPLOY_OPTIONS = { drainMs: 2000, healthWindowMs: 3000, healthTimeoutMs: 60_000 };
const LOAD_PATHS = ["/", "/health"];
const bound = deadline(30 * 60_000, "deploy-load");

const appYaml = `name: ${APP}
components:
  backend:
    image: ${V1}
    port: 3000
    health: { path: /health, interval: 1s, timeout: 5s }
    release: [node, migrate.js]
    database: true
routes:
  - { path: /, to: backend, limit: general }
environments:
  ${ENV}: { domains: [${DOMAIN}] }
`;

interface Action {
  phase: string;
  what: string;
  result: string;
  ms: number;
  release?: Release;
}

interface Phase {
  name: string;
  load: LoadResult;
}

async function underLoad(name: string, phases: Phase[], run: () => Promise<void>): Promise<void> {
  const load = await startLoad({ host: DOMAIN, paths: LOAD_PATHS, connections: CONNECTIONS, delayMs: DELAY_MS, maxSeconds: 900 });
  try {
    await sleep(1000);
    await run();
    // A second of load after the last action: a late failure (a drained container, a reload) still counts.
    await sleep(1000);
  } finally {
    phases.push({ name, load: await load.stop() });
  }
}

async function main(): Promise<void> {
  const client = connect();
  let platform: BenchPlatform | undefined;
  try {
    platform = await benchPlatform(client, SCOPE, platformYaml("bdep"), { [APP]: appYaml });
    const { plan, deps, stateDir } = platform;
    // v1 and v2: the example backend built twice, differing by a label only (two image ids, same code).
    const source = join(EXAMPLE_ROOT, "src", "gabs-massage", "backend");
    await buildImage(source, V1, SCOPE, { "berth.bench.version": "v1" });
    await buildImage(source, V2, SCOPE, { "berth.bench.version": "v2" });
    // Its release command passes (so the failure is the health check), its server exits at once.
    await buildFromText(CRASH, SCOPE, {
      Dockerfile: `FROM berth-node:20\nWORKDIR /app\nRUN echo "process.exit(0)" > migrate.js\nUSER app\nCMD ["node", "-e", "console.error('boom: no config'); process.exit(2)"]\n`,
    });
    await platform.apply();
    await waitUntil("the app serves through the proxy", async () => (await get(DOMAIN, "/health")).status === 200, 30_000, 100);

    const actions: Action[] = [];
    const phases: Phase[] = [];
    const timed = async (phase: string, what: string, run: () => Promise<Release>) => {
      bound.check();
      const started = performance.now();
      try {
        const release = await run();
        actions.push({ phase, what, result: `r${release.number} ${release.status}`, ms: performance.now() - started, release });
      } catch (error) {
        actions.push({ phase, what, result: `refused: ${(error as Error).message.split("\n").slice(0, 2).join(" ").slice(0, 110)}`, ms: performance.now() - started });
      }
    };
    const deployImage = (image: string) => () => deploy(plan, { app: APP, env: ENV, images: { backend: image }, actor: "bench", reason: `bench ${image}` }, deps, DEPLOY_OPTIONS);

    await underLoad(`berth: ${DEPLOYS} deploys v1/v2`, phases, async () => {
      for (let i = 0; i < DEPLOYS; i++) {
        const image = i % 2 === 0 ? V2 : V1;
        await timed("deploys", image, deployImage(image));
      }
    });
    await underLoad("berth: crashing image", phases, () => timed("crash", CRASH, deployImage(CRASH)));
    await underLoad("berth: rollback", phases, () => timed("rollback", "rollback", () => rollback(plan, { app: APP, env: ENV, actor: "bench" }, deps, DEPLOY_OPTIONS)));

    // The naive way: what a compose-style recreate does. Same create options as berth's
    // (tenantCreateOptions), no release command (the schema is migrated already). The proxy
    // is pointed at the new container as soon as it runs, as a name lookup would, and the
    // next recreate waits until it is healthy.
    const container = plan.environments[0]!.components[0]!.containers[0]!;
    const { urls } = await deps.databases.converge(plan, () => undefined);
    const active = deps.store.activeRelease(APP, ENV)?.images.backend ?? V1;
    await underLoad(`naive: ${RECREATES} x rm -f + create`, phases, async () => {
      for (let i = 0; i < RECREATES; i++) {
        bound.check();
        const image = (i % 2 === 0) === (active === V2) ? V1 : V2;
        const started = performance.now();
        await client.getContainer(container.name).remove({ force: true });
        await client.createContainer(tenantCreateOptions(container, { image, injectedEnv: { DATABASE_URL: urls[`${APP}/${ENV}`]! } }));
        await client.getContainer(container.name).start();
        await ensureProxy(client, plan, stateDir, await servingNow(client, plan), () => undefined);
        const health = await waitHealthy(client, container.name, 60_000, { network: container.network, port: container.port, path: container.health.path });
        actions.push({ phase: "naive", what: image, result: health.ok ? "healthy" : health.reason, ms: performance.now() - started });
        await sleep(1000);
      }
    });

    console.log(`host: 2 cores shared with whatever else runs; platform bdep on 127.0.0.1:38080, TLS off`);
    console.log(
      `load: wrk -t2 -c${CONNECTIONS} through nginx, ${DELAY_MS} ms between a connection's requests (at most ${Math.round((CONNECTIONS * 1000) / DELAY_MS)} req/s), ` +
        `GET ${LOAD_PATHS.join(" and ")} alternately (a visit counter upsert and a health check, both PostgreSQL queries); ` +
        `deploys with the CLI's defaults (health window 3 s, drain 2 s)\n`,
    );
    printTable(
      ["#", "phase", "action", "result", "s"],
      actions.map((action, index) => [String(index + 1), action.phase, action.what, action.result, (action.ms / 1000).toFixed(1)]),
    );
    console.log("");
    printTable(
      ["phase", "s", "requests", "req/s", "p99 ms", "non-2xx", "socket errors c/r/w/t", "statuses"],
      phases.map(({ name, load }) => [
        name,
        load.seconds.toFixed(0),
        String(load.requests),
        load.requestsPerSecond.toFixed(0),
        ms(load.p99Ms),
        String(non2xxOf(load)),
        `${socketErrorsOf(load)} (${load.socket.connect}/${load.socket.read}/${load.socket.write}/${load.socket.timeout})`,
        formatStatuses(load.statuses),
      ]),
    );
    const berth = phases.filter((phase) => phase.name.startsWith("berth"));
    const naive = phases.filter((phase) => phase.name.startsWith("naive"));
    const failed = (list: Phase[]) => list.reduce((sum, { load }) => sum + non2xxOf(load) + socketErrorsOf(load), 0);
    const total = (list: Phase[]) => list.reduce((sum, { load }) => sum + load.requests, 0);
    const deployed = actions.filter((action) => action.phase === "deploys" && action.release);
    console.log("");
    console.log(`berth (${DEPLOYS} deploys + 1 crashing image + 1 rollback): ${failed(berth)} failed of ${total(berth)} requests  (target 0)`);
    console.log(`naive (${RECREATES} rm -f + create/start):                 ${failed(naive)} failed of ${total(naive)} requests`);
    console.log(
      `berth deploy under load, median of ${deployed.length}: ${(median(deployed.map((a) => a.ms)) / 1000).toFixed(2)} s to return, ` +
        `switch done at ${ms(median(deployed.map((a) => a.release!.timings["health-window"] ?? Number.NaN)))} ms`,
    );
  } finally {
    await platform?.teardown();
  }
}

await main();
