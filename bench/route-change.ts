// Time from a route change to the proxy serving it, with N app environments rendered: berth's
// own validate + plan, render, stage, apply, then polling until the change answers. Prints
// medians per N, for a route change (only the route table changes: the running router checks it,
// `current` is swapped, the workers adopt it without a reload) and for a new domain (nginx -t of
// everything, symlink swap, graceful reload).
//
//   npx tsx bench/route-change.ts              # N = 100 and 1000, 5 route changes + 3 domain changes each
//   SIZES=100 RUNS=3 FULL_RUNS=1 npx tsx bench/route-change.ts
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Docker } from "../src/host/docker.js";
import type { PlatformPlan } from "../src/plan/types.js";
import { names } from "../src/plan/names.js";
import {
  awaitRouteTable,
  proxyDir,
  pruneGenerations,
  reloadProxy,
  routeTableChecker,
  stageProxyConfig,
  validateInContainer,
  type ProxyValidator,
  type RouteTableChecker,
} from "../src/proxy/apply.js";
import { renderProxyConfig, type ProxyObserved } from "../src/proxy/render.js";
import { proxyCreateOptions } from "../src/runtime/proxy.js";
import { cleanupScope, scopeLabels } from "./deploy-lib.js";
import {
  containerIp,
  docker as connect,
  hostLoad,
  httpStatus,
  median,
  ms,
  planFromTexts,
  printTable,
  waitUntil,
} from "./lib.js";

const SIZES = (process.env.SIZES ?? "100,1000").split(",").map(Number);
const RUNS = Number(process.env.RUNS ?? 5);
const FULL_RUNS = Number(process.env.FULL_RUNS ?? 3);
const HTTP_PORT = 28180;
const HTTPS_PORT = 28543;
const NETWORK = "berth-bench-rc";
const BACKEND = "berth-bench-rc-backend";
const BACKEND_PORT = 8080;
const SERVED_TIMEOUT_MS = 10_000;
// Polling without a pause would take CPU from the nginx master that is loading the new config.
const POLL_INTERVAL_MS = Number(process.env.POLL_MS ?? 5);

/** Every object this bench creates carries berth.bench=true and berth.bench.scope=rc; cleanup removes only those. */
const SCOPE = "rc";
const LABELS = scopeLabels(SCOPE);

function labelPlan(plan: PlatformPlan): PlatformPlan {
  Object.assign(plan.proxy.labels, LABELS);
  return plan;
}

/** Answers 200 to every path, so a route's first 200 means nginx routes it; stops on SIGTERM. */
const BACKEND_SCRIPT = `const server = require("http").createServer((req, res) => res.end("ok\\n")).listen(${BACKEND_PORT});
process.on("SIGTERM", () => server.close(() => process.exit(0)));`;

// Rate limits high enough that polling never meets a 429.
const PLATFORM = `name: benchrc
proxy:
  bind: 127.0.0.1
  httpPort: ${HTTP_PORT}
  httpsPort: ${HTTPS_PORT}
  image: berth-nginx:1.22
  rateLimits: { general: { rate: 100000, burst: 100000 } }
tls: { mode: off }
`;

const appName = (index: number) => `a${String(index).padStart(4, "0")}`;
const domain = (index: number) => `${appName(index)}.benchrc.localhost`;

/** One app, one environment; no route for "/", so an unrouted path is berth's 404 until it is added. */
function appText(index: number, extraPaths: string[] = [], extraDomains: string[] = []): string {
  const routes = ["/app", ...extraPaths].map((path) => `  - { path: ${path}, to: web }`).join("\n");
  return `name: ${appName(index)}
components:
  web: { image: berth-node:20, port: ${BACKEND_PORT} }
routes:
${routes}
environments:
  production: { domains: [${[domain(index), ...extraDomains].join(", ")}] }
`;
}

/** Every upstream points at the one real backend. */
function observed(plan: PlatformPlan, backend: string): ProxyObserved {
  const upstreams: ProxyObserved["upstreams"] = {};
  for (const env of plan.environments) for (const component of env.components) upstreams[names.upstream(env.app, env.env, component.name)] = [backend];
  return { upstreams, certificates: {} };
}

interface Sample {
  plan: number;
  render: number;
  write: number;
  /** nginx -t, or the router's check of the staged route table. */
  check: number;
  checked: string;
  /** Reload, or the workers adopting the route table, until a fresh connection gets the new token. */
  apply: number;
  applied: "reload" | "route table";
  served: number;
}

/** What a change does: "route" adds a route /rK to the middle app; "domain" adds a domain dK to it (and nothing answers on it before). */
type Change = "route" | "domain";

async function measure(client: Docker, size: number, backend: string): Promise<{ samples: Record<Change, Sample[]>; files: number; bytes: number }> {
  const stateDir = await mkdtemp(join(tmpdir(), "berth-bench-rc-"));
  const dir = proxyDir(stateDir);
  const apps: Record<string, string> = {};
  for (let index = 1; index <= size; index++) apps[appName(index)] = appText(index);
  let plan = labelPlan(planFromTexts(PLATFORM, apps));
  const container = plan.proxy.container;
  try {
    await Promise.all([mkdir(dir.certs, { recursive: true }), mkdir(join(stateDir, "acme"), { recursive: true })]);
    const first = renderProxyConfig(plan, observed(plan, backend));
    await stageProxyConfig(dir, first, undefined);

    // The proxy as berth creates it (bind mount at /etc/berth, same command and limits), on the
    // backend's network only: the upstreams are addresses, so it needs no per-app networks.
    const options = proxyCreateOptions(plan, stateDir);
    await client.createVolume({ Name: plan.proxy.volumes.logs, Labels: LABELS });
    options.HostConfig = { ...options.HostConfig, NetworkMode: NETWORK };
    await (await client.createContainer(options)).start();
    const changed = Math.ceil(size / 2);
    await waitUntil("the proxy serves /app", async () => (await httpStatus("127.0.0.1", HTTP_PORT, domain(changed), "/app")) === 200, 30_000, 50);
    // As ensureProxy does: the reload is done when the proxy answers the new configuration's token.
    const proxyAddress = await containerIp(client, container, NETWORK);

    const check = validateInContainer(client, container);
    const askRouter = routeTableChecker([proxyAddress]);
    const samples: Record<Change, Sample[]> = { route: [], domain: [] };
    const paths: string[] = [];
    const domains: string[] = [];
    // Run 0 is a warm-up (first reload of a fresh master, and a first generation nginx had not checked).
    const schedule: Change[] = ["route", ...Array<Change>(RUNS).fill("route"), ...Array<Change>(FULL_RUNS).fill("domain")];
    for (const [run, kind] of schedule.entries()) {
      const path = kind === "route" ? `/r${run}` : "/app";
      const host = kind === "route" ? domain(changed) : `d${run}.${domain(changed)}`;
      if ((await httpStatus("127.0.0.1", HTTP_PORT, host, path)) === 200) throw new Error(`${host}${path} answers before the change`);
      if (kind === "route") paths.push(path);
      else domains.push(host);
      apps[appName(changed)] = appText(changed, paths, domains);

      const start = performance.now();
      plan = labelPlan(planFromTexts(PLATFORM, apps));
      const planned = performance.now();
      const rendered = renderProxyConfig(plan, observed(plan, backend));
      const renderedAt = performance.now();
      let checkTime = 0;
      let checkedFile = "";
      const timedCheck: ProxyValidator = async (mainFile) => {
        const checkStart = performance.now();
        const result = await check(mainFile);
        checkTime += performance.now() - checkStart;
        checkedFile = mainFile;
        return result;
      };
      const timedRouter: RouteTableChecker = async (generation) => {
        const checkStart = performance.now();
        const result = await askRouter(generation);
        checkTime += performance.now() - checkStart;
        return result;
      };
      const staged = await stageProxyConfig(dir, rendered, timedCheck, { checkRouteTable: timedRouter });
      if (!staged.changed) throw new Error("the change rendered no new generation");
      const stagedAt = performance.now();
      // As ensureProxy does: a new route table alone is adopted by the workers, anything else reloads.
      const probe = { token: rendered.token, addresses: [proxyAddress] };
      const isAdopted = staged.isRouteTableOnly && (await awaitRouteTable(probe));
      if (!isAdopted) await reloadProxy(client, container, { probe });
      const reloadedAt = performance.now();
      await waitUntil(`${host}${path} served`, async () => (await httpStatus("127.0.0.1", HTTP_PORT, host, path)) === 200, SERVED_TIMEOUT_MS, POLL_INTERVAL_MS);
      const servedAt = performance.now();
      // After the switch, as ensureProxy does: not on the way to serving.
      await pruneGenerations(dir);
      if (run > 0) {
        samples[kind].push({
          plan: planned - start,
          render: renderedAt - planned,
          write: stagedAt - renderedAt - checkTime,
          check: checkTime,
          checked: `${staged.checked}${checkedFile ? ` (${checkedFile.slice(checkedFile.lastIndexOf("/") + 1)})` : ""}`,
          apply: reloadedAt - stagedAt,
          applied: isAdopted ? "route table" : "reload",
          served: servedAt - stagedAt,
        });
      }
    }
    const rendered = renderProxyConfig(plan, observed(plan, backend));
    const contents = Object.values(rendered.config);
    return { samples, files: contents.length, bytes: contents.reduce((sum, text) => sum + Buffer.byteLength(text), 0) };
  } finally {
    await client.getContainer(container).remove({ force: true }).catch(() => undefined);
    await rm(stateDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const client = connect();
  console.log(`host: ${hostLoad()}`);
  await cleanupScope(client, SCOPE);
  try {
    await client.createNetwork({ Name: NETWORK, Driver: "bridge", Labels: LABELS });
    await (
      await client.createContainer({
        name: BACKEND,
        Image: "berth-node:20",
        Cmd: ["node", "-e", BACKEND_SCRIPT],
        Labels: LABELS,
        HostConfig: { NetworkMode: NETWORK },
      })
    ).start();
    const backend = `${await containerIp(client, BACKEND, NETWORK)}:${BACKEND_PORT}`;

    const rows: string[][] = [];
    for (const size of SIZES) {
      const { samples: byKind, files, bytes } = await measure(client, size, backend);
      for (const kind of ["route", "domain"] as const) {
        const samples = byKind[kind];
        if (samples.length === 0) continue;
        const med = (pick: (sample: Sample) => number) => median(samples.map(pick));
        const total = (sample: Sample) => sample.render + sample.write + sample.check + sample.served;
        console.log(
          `N=${size} ${kind}: ${files} config files, ${(bytes / 1024).toFixed(0)} KiB; per change (ms) ${samples.map((sample) => ms(total(sample))).join(", ")}; ` +
            `checked ${[...new Set(samples.map((s) => s.checked))].join(", ")}; applied by ${[...new Set(samples.map((s) => s.applied))].join(", ")}`,
        );
        rows.push([
          `${size} ${kind}`,
          ms(med((s) => s.plan)),
          ms(med((s) => s.render)),
          ms(med((s) => s.write)),
          ms(med((s) => s.check)),
          ms(med((s) => s.apply)),
          ms(med((s) => s.served)),
          ms(med(total)),
          ms(med((s) => s.plan + total(s))),
        ]);
      }
    }
    console.log("");
    console.log(`medians of ${RUNS} route changes and ${FULL_RUNS} domain changes (ms); target: render -> served <= 300 ms at N=1000`);
    printTable(
      ["N apps, change", "validate+plan", "render", "write+swap", "check", "apply", "apply->served", "render->served", "incl. plan"],
      rows,
    );
    console.log("");
    console.log("route: a route added to one app (only the route table changes: the running router checks it, no nginx -t, no reload);");
    console.log("domain: a domain added to one app (nginx -t of everything, then a reload).");
    console.log("write+swap: stageProxyConfig minus the check (compare with the live generation's manifest, write changed files, link the rest, sync, symlink swap).");
    console.log("check: the router's answer on the staged route table, and nginx -t when the rest changed.");
    console.log("apply: until a fresh connection gets the new token (every worker adopted the table, or a reload finished); apply->served: to the first 200 on the change.");
    console.log(`host after: ${hostLoad()}`);
  } finally {
    await cleanupScope(client, SCOPE);
  }
}

await main();
