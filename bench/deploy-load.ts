// Failed requests during deploys under steady load: berth's deploys (10 alternating v1/v2, one
// image that never becomes healthy, one rollback) against the naive way on the same platform
// under the same load (docker rm -f, then create + start with the same options, 10 times).
// Two clients run through nginx meanwhile: wrk (keep-alive, paced by a Lua script, counts
// non-2xx and socket errors) and a keep-alive probe in this process that accounts for every
// request it sends, with the time, so each failure is put down to the deploy step it fell in.
// Prints the counts; asserts nothing.
//
//   npx tsx bench/deploy-load.ts                   # ~5 min
//   CONNECTIONS=8 DELAY_MS=40 PROBE_CONNECTIONS=4 PROBE_INTERVAL_MS=50 npx tsx bench/deploy-load.ts
import { join } from "node:path";
import { deploy, rollback } from "../src/deploy/deploy.js";
import { waitHealthy } from "../src/host/docker.js";
import type { Release } from "../src/state/store.js";
import { tenantCreateOptions } from "../src/runtime/containers.js";
import { reloadProxy } from "../src/proxy/apply.js";
import { ensureProxy, servingNow } from "../src/runtime/proxy.js";
import {
  benchPlatform,
  buildFromText,
  buildImage,
  deadline,
  formatStatuses,
  get,
  hostLine,
  non2xxOf,
  platformYaml,
  printLeftTable,
  socketErrorsOf,
  startLoad,
  startProbe,
  type BenchPlatform,
  type LoadResult,
  type ProbeResult,
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
const RELOADS = 10;
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 8);
const DELAY_MS = Number(process.env.DELAY_MS ?? 40);
const PROBE_CONNECTIONS = Number(process.env.PROBE_CONNECTIONS ?? 4);
const PROBE_INTERVAL_MS = Number(process.env.PROBE_INTERVAL_MS ?? 50);
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
  probe: ProbeResult;
  /** Probe failures by the step they fell in. */
  byStep: Record<string, number>;
  /** Proxy reloads in the phase (one per switch, rollback after the switch, or naive recreate). */
  reloads: number;
}

/** Steps as they happen (performance.now()), so a failure can be put down to the step it fell in. */
const marks: { at: number; step: string }[] = [];
const mark = (step: string) => marks.push({ at: performance.now(), step });
const stepAt = (at: number) => {
  let step = "before";
  for (const m of marks) if (m.at <= at) step = m.step;
  return step;
};
/** The deploy's journal steps, from its progress lines "rN step". */
const journalSteps = (line: string) => {
  const step = /^r\d+ (\S+)$/.exec(line)?.[1];
  if (step) mark(step);
};

async function underLoad(name: string, phases: Phase[], run: () => Promise<number>): Promise<void> {
  const load = await startLoad({ host: DOMAIN, paths: LOAD_PATHS, connections: CONNECTIONS, delayMs: DELAY_MS, maxSeconds: 900 });
  const probe = startProbe({ host: DOMAIN, paths: LOAD_PATHS, connections: PROBE_CONNECTIONS, intervalMs: PROBE_INTERVAL_MS, maxSeconds: 900 });
  let reloads = 0;
  try {
    mark("steady");
    await sleep(1000);
    reloads = await run();
    // A second of load after the last action: a late failure (a drained container, a reload) still counts.
    mark("steady");
    await sleep(1000);
  } finally {
    const probed = await probe.stop();
    const byStep: Record<string, number> = {};
    for (const failure of probed.failures) byStep[stepAt(failure.at)] = (byStep[stepAt(failure.at)] ?? 0) + 1;
    phases.push({ name, load: await load.stop(), probe: probed, byStep, reloads });
    const last = phases.at(-1)!;
    console.error(
      `${name}: wrk ${last.load.requests} requests, ${non2xxOf(last.load)} non-2xx, ${socketErrorsOf(last.load)} socket errors; ` +
        `probe ${probed.requests} requests, ${probed.failures.length} failed`,
    );
  }
}

async function main(): Promise<void> {
  const client = connect();
  let platform: BenchPlatform | undefined;
  try {
    platform = await benchPlatform(client, SCOPE, platformYaml("bdep"), { [APP]: appYaml });
    const { plan, stateDir } = platform;
    const deps = { ...platform.deps, progress: journalSteps };
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
    const hostBefore = hostLine();
    /** Runs one deploy or rollback; returns how many proxy reloads it made (switch, and rollback after the switch). */
    const timed = async (phase: string, what: string, run: () => Promise<Release>): Promise<number> => {
      bound.check();
      const started = performance.now();
      const firstMark = marks.length;
      mark("resolve");
      try {
        const release = await run();
        actions.push({ phase, what, result: `r${release.number} ${release.status}`, ms: performance.now() - started, release });
      } catch (error) {
        const reason = (error as Error).message.replace(/\s+/g, " ").replace(/^.*?keeps serving: - \S+: /, "before the switch: ");
        actions.push({ phase, what, result: `refused ${reason.slice(0, 100)}`, ms: performance.now() - started });
      }
      mark("idle");
      const last = actions.at(-1)!;
      console.error(`  ${phase} ${what}: ${last.result} (${(last.ms / 1000).toFixed(1)} s)`);
      return marks.slice(firstMark).filter((m) => m.step === "health-window" || m.step === "rollback").length;
    };
    const deployImage = (image: string) => () => deploy(plan, { app: APP, env: ENV, images: { backend: image }, actor: "bench", reason: `bench ${image}` }, deps, DEPLOY_OPTIONS);

    await underLoad(`berth: ${DEPLOYS} deploys v1/v2`, phases, async () => {
      let reloads = 0;
      for (let i = 0; i < DEPLOYS; i++) {
        const image = i % 2 === 0 ? V2 : V1;
        reloads += await timed("deploy", image, deployImage(image));
      }
      return reloads;
    });
    await underLoad("berth: crashing image", phases, () => timed("crash", CRASH, deployImage(CRASH)));
    await underLoad("berth: rollback", phases, () => timed("rollback", "rollback", () => rollback(plan, { app: APP, env: ENV, actor: "bench" }, deps, DEPLOY_OPTIONS)));

    // Control: graceful nginx reloads alone (SIGHUP, as berth's switch sends), no container change.
    await underLoad(`control: ${RELOADS} x nginx reload`, phases, async () => {
      for (let i = 0; i < RELOADS; i++) {
        bound.check();
        mark("reload");
        await reloadProxy(client, plan.proxy.container);
        await sleep(1500);
      }
      return RELOADS;
    });

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
        mark("rm -f");
        await client.getContainer(container.name).remove({ force: true });
        mark("create+start");
        await client.createContainer(tenantCreateOptions(container, { image, injectedEnv: { DATABASE_URL: urls[`${APP}/${ENV}`]! } }));
        await client.getContainer(container.name).start();
        mark("proxy");
        await ensureProxy(client, plan, stateDir, await servingNow(client, plan), () => undefined);
        mark("wait-healthy");
        const health = await waitHealthy(client, container.name, 60_000, { network: container.network, port: container.port, path: container.health.path });
        mark("idle");
        actions.push({ phase: "naive", what: image, result: health.ok ? "healthy" : health.reason, ms: performance.now() - started });
        console.error(`  naive ${image}: ${actions.at(-1)!.result} (${(actions.at(-1)!.ms / 1000).toFixed(1)} s)`);
        await sleep(1000);
      }
      return RECREATES;
    });

    console.log(`host: ${hostBefore} before, ${hostLine()} after; platform bdep on 127.0.0.1:38080, TLS off`);
    console.log(
      `wrk:   -t2 -c${CONNECTIONS} keep-alive, ${DELAY_MS} ms between a connection's requests (at most ${Math.round((CONNECTIONS * 1000) / DELAY_MS)} req/s)\n` +
        `probe: ${PROBE_CONNECTIONS} keep-alive loops in this process, ${PROBE_INTERVAL_MS} ms apart (at most ${Math.round((PROBE_CONNECTIONS * 1000) / PROBE_INTERVAL_MS)} req/s)\n` +
        `both:  GET ${LOAD_PATHS.join(" and ")} alternately through nginx (a visit counter upsert and a health check, both PostgreSQL queries)\n` +
        `deploys and the rollback with the CLI's defaults (health window 3 s, drain 2 s)\n`,
    );
    printLeftTable(
      ["#", "phase", "s", "action -> result"],
      actions.map((action, index) => [String(index + 1), action.phase, (action.ms / 1000).toFixed(1), `${action.what} -> ${action.result}`]),
    );
    console.log("");
    printTable(
      ["phase", "s", "reloads", "wrk req", "wrk req/s", "wrk non-2xx", "wrk socket err c/r/w/t", "probe req", "probe failed", "probe failures by step"],
      phases.map(({ name, load, probe, byStep, reloads }) => [
        name,
        load.seconds.toFixed(0),
        String(reloads),
        String(load.requests),
        load.requestsPerSecond.toFixed(0),
        String(non2xxOf(load)),
        `${socketErrorsOf(load)} (${load.socket.connect}/${load.socket.read}/${load.socket.write}/${load.socket.timeout})`,
        String(probe.requests),
        String(probe.failures.length),
        Object.entries(byStep).map(([step, count]) => `${step}:${count}`).join(" ") || "-",
      ]),
    );
    console.log("");
    for (const { name, load, probe } of phases) {
      console.log(`statuses, ${name}: wrk ${formatStatuses(load.statuses)}; probe ${formatStatuses(probe.statuses)}`);
      const kinds = new Map<string, number>();
      for (const failure of probe.failures) kinds.set(`${stepAt(failure.at)}: ${failure.detail}`, (kinds.get(`${stepAt(failure.at)}: ${failure.detail}`) ?? 0) + 1);
      for (const [kind, count] of [...kinds].slice(0, 8)) console.log(`  probe ${count} x ${kind}`);
    }
    const berth = phases.filter((phase) => phase.name.startsWith("berth"));
    const control = phases.filter((phase) => phase.name.startsWith("control"));
    const naive = phases.filter((phase) => phase.name.startsWith("naive"));
    const sum = (list: Phase[], pick: (phase: Phase) => number) => list.reduce((total, phase) => total + pick(phase), 0);
    const line = (list: Phase[]) =>
      `wrk ${sum(list, (p) => non2xxOf(p.load))} non-2xx + ${sum(list, (p) => socketErrorsOf(p.load))} socket errors of ${sum(list, (p) => p.load.requests)} requests; ` +
      `probe ${sum(list, (p) => p.probe.failures.length)} failed of ${sum(list, (p) => p.probe.requests)}`;
    const deployed = actions.filter((action) => action.phase === "deploy" && action.release);
    console.log("");
    console.log(`berth (${DEPLOYS} deploys + 1 crashing image + 1 rollback): ${line(berth)}  (target 0)`);
    console.log(`control (${RELOADS} nginx reloads, nothing else):           ${line(control)}`);
    console.log(`naive (${RECREATES} rm -f + create/start):                 ${line(naive)}`);
    console.log(
      `wrk counts a keep-alive connection that the server closes while idle (nginx's old workers close theirs at a reload) as a read error, ` +
        `with no request on it (see the control row); the probe does not, and counts every request that was sent and failed.`,
    );
    console.log(
      `berth deploy under load, median of ${deployed.length}: ${(median(deployed.map((a) => a.ms)) / 1000).toFixed(2)} s to return, ` +
        `switch done at ${ms(median(deployed.map((a) => a.release!.timings["health-window"] ?? Number.NaN)))} ms of the journal`,
    );
  } finally {
    await platform?.teardown();
  }
}

await main();
