// Time from a route change to the proxy serving it, with N app environments rendered: berth's
// own validate + plan, render, stage (files + `nginx -t` in the proxy container + symlink swap),
// graceful reload, then polling until the new route answers. Prints medians per N.
//
//   npx tsx bench/route-change.ts              # N = 100 and 1000, 5 changes each
//   SIZES=100 RUNS=3 npx tsx bench/route-change.ts
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Docker } from "../src/host/docker.js";
import type { PlatformPlan } from "../src/plan/types.js";
import { proxyDir, reloadProxy, stageProxyConfig, validateInContainer, type ProxyValidator } from "../src/proxy/apply.js";
import { renderProxyConfig, type ProxyObserved } from "../src/proxy/render.js";
import { proxyCreateOptions } from "../src/runtime/proxy.js";
import {
  BENCH_LABELS,
  cleanupBench,
  containerIp,
  docker as connect,
  hostLoad,
  httpStatus,
  labelPlan,
  labelledVolume,
  median,
  ms,
  planFromTexts,
  printTable,
  waitUntil,
} from "./lib.js";

const SIZES = (process.env.SIZES ?? "100,1000").split(",").map(Number);
const RUNS = Number(process.env.RUNS ?? 5);
const HTTP_PORT = 28180;
const HTTPS_PORT = 28543;
const NETWORK = "berth-bench-rc";
const BACKEND = "berth-bench-rc-backend";
const BACKEND_PORT = 8080;
const SERVED_TIMEOUT_MS = 10_000;
// Polling without a pause would take CPU from the nginx master that is loading the new config.
const POLL_INTERVAL_MS = Number(process.env.POLL_MS ?? 5);

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
function appText(index: number, extraPaths: string[] = []): string {
  const routes = ["/app", ...extraPaths].map((path) => `  - { path: ${path}, to: web }`).join("\n");
  return `name: ${appName(index)}
components:
  web: { image: berth-node:20, port: ${BACKEND_PORT} }
routes:
${routes}
environments:
  production: { domains: [${domain(index)}] }
`;
}

/** Every upstream points at the one real backend. */
function observed(plan: PlatformPlan, backend: string): ProxyObserved {
  const upstreams: ProxyObserved["upstreams"] = {};
  for (const env of plan.environments) for (const route of env.routes) upstreams[route.upstream] = [backend];
  return { upstreams, certificates: {} };
}

interface Sample {
  plan: number;
  render: number;
  write: number;
  nginxT: number;
  reload: number;
  served: number;
}

async function measure(client: Docker, size: number, backend: string): Promise<{ samples: Sample[]; files: number; bytes: number }> {
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
    await labelledVolume(client, plan.proxy.volumes.logs);
    options.HostConfig = { ...options.HostConfig, NetworkMode: NETWORK };
    await (await client.createContainer(options)).start();
    const changed = Math.ceil(size / 2);
    await waitUntil("the proxy serves /app", async () => (await httpStatus("127.0.0.1", HTTP_PORT, domain(changed), "/app")) === 200, 30_000, 50);

    const check = validateInContainer(client, container);
    const samples: Sample[] = [];
    // Run 0 is a warm-up (first reload of a fresh master); runs 1..RUNS are measured.
    for (let run = 0; run <= RUNS; run++) {
      const path = `/r${run}`;
      if ((await httpStatus("127.0.0.1", HTTP_PORT, domain(changed), path)) !== 404) throw new Error(`${path} answers before its route exists`);
      apps[appName(changed)] = appText(changed, [path]);

      const start = performance.now();
      plan = labelPlan(planFromTexts(PLATFORM, apps));
      const planned = performance.now();
      const rendered = renderProxyConfig(plan, observed(plan, backend));
      const renderedAt = performance.now();
      let nginxT = 0;
      const timedCheck: ProxyValidator = async (generation) => {
        const checkStart = performance.now();
        const result = await check(generation);
        nginxT = performance.now() - checkStart;
        return result;
      };
      const staged = await stageProxyConfig(dir, rendered, timedCheck);
      if (!staged.changed) throw new Error("the route change rendered no new generation");
      const stagedAt = performance.now();
      await reloadProxy(client, container);
      const reloadedAt = performance.now();
      await waitUntil(`${path} served`, async () => (await httpStatus("127.0.0.1", HTTP_PORT, domain(changed), path)) === 200, SERVED_TIMEOUT_MS, POLL_INTERVAL_MS);
      const servedAt = performance.now();
      if (run > 0) {
        samples.push({
          plan: planned - start,
          render: renderedAt - planned,
          write: stagedAt - renderedAt - nginxT,
          nginxT,
          reload: reloadedAt - stagedAt,
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
  await cleanupBench(client);
  try {
    await client.createNetwork({ Name: NETWORK, Driver: "bridge", Labels: BENCH_LABELS });
    await (
      await client.createContainer({
        name: BACKEND,
        Image: "berth-node:20",
        Cmd: ["node", "-e", BACKEND_SCRIPT],
        Labels: BENCH_LABELS,
        HostConfig: { NetworkMode: NETWORK },
      })
    ).start();
    const backend = `${await containerIp(client, BACKEND, NETWORK)}:${BACKEND_PORT}`;

    const rows: string[][] = [];
    for (const size of SIZES) {
      const { samples, files, bytes } = await measure(client, size, backend);
      const med = (pick: (sample: Sample) => number) => median(samples.map(pick));
      const total = (sample: Sample) => sample.render + sample.write + sample.nginxT + sample.served;
      console.log(`N=${size}: ${files} config files, ${(bytes / 1024).toFixed(0)} KiB; per change (ms) ${samples.map((sample) => ms(total(sample))).join(", ")}`);
      rows.push([
        String(size),
        ms(med((s) => s.plan)),
        ms(med((s) => s.render)),
        ms(med((s) => s.write)),
        ms(med((s) => s.nginxT)),
        ms(med((s) => s.reload)),
        ms(med((s) => s.served)),
        ms(med(total)),
        ms(med((s) => s.plan + total(s))),
      ]);
    }
    console.log("");
    console.log(`medians of ${RUNS} route changes (ms); target: render -> served <= 300 ms at N=1000`);
    printTable(
      ["N apps", "validate+plan", "render", "write+swap", "nginx -t", "reload exec", "reload->served", "render->served", "incl. plan"],
      rows,
    );
    console.log("");
    console.log("write+swap: stageProxyConfig minus nginx -t (compare with the live generation, write files, symlink swap, prune).");
    console.log("reload->served: from `nginx -s reload` (an exec in the container) to the first 200 on the new route.");
    console.log(`host after: ${hostLoad()}`);
  } finally {
    await cleanupBench(client);
  }
}

await main();
