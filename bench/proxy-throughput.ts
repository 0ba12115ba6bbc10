// Throughput and latency of one backend measured directly, through a minimal hand-written nginx,
// and through berth's own proxy (the config renderProxyConfig writes, run by ensureProxy as
// `berth apply` runs it). Prints medians of interleaved wrk runs and the berth/hand-written ratios.
//
//   npx tsx bench/proxy-throughput.ts            # 3 rounds of 10 s per target
//   WRK_DURATION=3s ROUNDS=1 npx tsx bench/proxy-throughput.ts
import { cp, mkdir, mkdtemp, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitHealthy, type Docker } from "../src/host/docker.js";
import { PROXY_MOUNT, proxyDir } from "../src/proxy/apply.js";
import { names } from "../src/plan/names.js";
import { ACME_WEBROOT, ensureProxy } from "../src/runtime/proxy.js";
import { scopeLabels } from "./deploy-lib.js";
import { applyEdits, BENCH_APP, BENCH_DOMAIN, BENCH_HTTP_PORT, BENCH_IMAGE, BENCH_PATH, BENCH_PLATFORM, fixedRouteEdits, minimalNginxConf } from "./proxy-lib.js";
import {
  EXAMPLE_ROOT,
  cleanupBench,
  containerCpuMicros,
  containerIp,
  docker as connect,
  hostLoad,
  httpStatus,
  labelPlan,
  labelledVolume,
  median,
  ms,
  mustRun,
  parseWrk,
  planFromTexts,
  printTable,
  waitUntil,
  type WrkResult,
} from "./lib.js";

const DURATION = process.env.WRK_DURATION ?? "10s";
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const WRK_ARGS = ["-t2", "-c32", `-d${DURATION}`, "--latency"];
const MINIMAL_PROXY = "berth-bench-tp-minimal";
const FIXED_PROXY = "berth-bench-tp-fixed-route";
/** berth.bench=true and berth.bench.scope=tp on everything this bench creates; cleanup removes only those. */
const LABELS = scopeLabels("tp");

/**
 * berth's own rendered configuration with the router taken out (fixedRouteEdits), so berth
 * against it is what the Lua router costs.
 */
async function fixedRouteCopy(stateDir: string, upstream: string, backend: string): Promise<string> {
  const copy = join(stateDir, "fixed-route");
  const source = proxyDir(stateDir).root;
  await cp(source, copy, { recursive: true, verbatimSymlinks: true });
  const generation = join(copy, await readlink(join(source, "current")));
  const edits = fixedRouteEdits(upstream, backend);
  const files: Record<string, string> = {};
  for (const { file } of edits) files[file] = await readFile(join(generation, file), "utf8");
  applyEdits(files, edits, "fixed-route copy");
  for (const [file, text] of Object.entries(files)) {
    // The copy's files are hard links into the live generation: replace them, never write through.
    await rm(join(generation, file));
    await writeFile(join(generation, file), text);
  }
  return copy;
}

interface Target {
  name: string;
  url: string;
  /** The proxy container whose CPU time per request is measured. */
  proxy?: string;
}

async function startContainer(client: Docker, options: Parameters<Docker["createContainer"]>[0]): Promise<void> {
  const container = await client.createContainer(options);
  await container.start();
  const health = await waitHealthy(client, options.name!, 30_000);
  if (!health.ok) throw new Error(`${options.name}: ${health.reason}`);
}

async function wrk(target: Target): Promise<WrkResult> {
  const { stdout } = await mustRun("wrk", [...WRK_ARGS, "-H", `Host: ${BENCH_DOMAIN}`, target.url], { timeoutMs: 120_000 });
  return parseWrk(stdout);
}

async function main(): Promise<void> {
  const client = connect();
  const stateDir = await mkdtemp(join(tmpdir(), "berth-bench-tp-"));
  await cleanupBench(client, LABELS);
  try {
    await mustRun("docker", ["build", "-q", ...Object.entries(LABELS).flatMap(([key, value]) => ["--label", `${key}=${value}`]), "-t", BENCH_IMAGE, join(EXAMPLE_ROOT, "src", "paiss", "web")], {
      timeoutMs: 300_000,
      env: { ...process.env, DOCKER_BUILDKIT: "0" },
    });
    const plan = labelPlan(planFromTexts(BENCH_PLATFORM, { benchtp: BENCH_APP }), LABELS);
    const environment = plan.environments[0]!;
    const backend = environment.components[0]!.containers[0]!;
    const network = environment.network.name;
    await client.createNetwork({ Name: network, Driver: "bridge", Labels: environment.network.labels });

    // The backend runs without berth's resource limits: the bench measures the proxies, not a capped tenant.
    await startContainer(client, { name: backend.name, Image: BENCH_IMAGE, Labels: backend.labels, HostConfig: { NetworkMode: network } });
    const backendIp = await containerIp(client, backend.name, network);

    // berth's proxy exactly as apply starts it: rendered config, one-off nginx -t, swap, start.
    await labelledVolume(client, plan.proxy.volumes.logs, LABELS);
    await ensureProxy(client, plan, stateDir, new Map([[backend.name, backend.name]]), () => undefined);
    const berthIp = await containerIp(client, plan.proxy.container, network);

    const minimalDir = join(stateDir, "minimal");
    await mkdir(minimalDir);
    await writeFile(join(minimalDir, "nginx.conf"), minimalNginxConf({ listen: "80", backend: `${backendIp}:${backend.port}`, pid: "/tmp/nginx.pid" }));
    await startContainer(client, {
      name: MINIMAL_PROXY,
      Image: "berth-nginx:1.22",
      Cmd: ["nginx", "-g", "daemon off;", "-c", "/bench/nginx.conf"],
      Labels: LABELS,
      HostConfig: { NetworkMode: network, Binds: [`${minimalDir}:/bench:ro`] },
    });
    const minimalIp = await containerIp(client, MINIMAL_PROXY, network);

    const fixedDir = await fixedRouteCopy(stateDir, names.upstream(environment.app, environment.env, environment.components[0]!.name), `${backendIp}:${backend.port}`);
    await startContainer(client, {
      name: FIXED_PROXY,
      Image: plan.proxy.image,
      Cmd: ["nginx", "-g", "daemon off;", "-c", `${PROXY_MOUNT}/current/nginx.conf`],
      Labels: LABELS,
      HostConfig: { NetworkMode: network, Binds: [`${fixedDir}:${PROXY_MOUNT}:ro`, `${join(stateDir, "acme")}:${ACME_WEBROOT}:ro`], Tmpfs: { "/var/log/berth": "" } },
    });
    const fixedIp = await containerIp(client, FIXED_PROXY, network);

    // Container addresses avoid docker-proxy, the userland relay Docker puts behind 127.0.0.1 ports;
    // the last target shows what that relay costs on the way a local client reaches berth.
    const targets: Target[] = [
      { name: "direct to backend", url: `http://${backendIp}:${backend.port}${BENCH_PATH}` },
      { name: "hand-written nginx", url: `http://${minimalIp}${BENCH_PATH}`, proxy: MINIMAL_PROXY },
      { name: "berth nginx", url: `http://${berthIp}${BENCH_PATH}`, proxy: plan.proxy.container },
      { name: "berth config, route fixed (no Lua)", url: `http://${fixedIp}${BENCH_PATH}`, proxy: FIXED_PROXY },
      { name: `berth via 127.0.0.1:${BENCH_HTTP_PORT}`, url: `http://127.0.0.1:${BENCH_HTTP_PORT}${BENCH_PATH}` },
    ];
    for (const target of targets) {
      const url = new URL(target.url);
      await waitUntil(`${target.name} answers 200`, async () => (await httpStatus(url.hostname, Number(url.port || 80), BENCH_DOMAIN, BENCH_PATH)) === 200, 10_000, 100);
    }

    console.log(`host: ${hostLoad()}`);
    console.log(`wrk ${WRK_ARGS.join(" ")} -H 'Host: ${BENCH_DOMAIN}' <target>${BENCH_PATH}; ${ROUNDS} interleaved round(s), medians`);
    const results = new Map<string, WrkResult[]>(targets.map((target) => [target.name, []]));
    // The proxy container's CPU time per request: steadier than req/s on a host that wrk, the
    // backend and the proxy share, since it does not depend on who got the CPU when.
    const cpuPerRequest = new Map<string, number[]>();
    for (let round = 1; round <= ROUNDS; round++) {
      for (const target of targets) {
        const cpuBefore = target.proxy ? await containerCpuMicros(client, target.proxy) : undefined;
        const result = await wrk(target);
        const cpuAfter = target.proxy ? await containerCpuMicros(client, target.proxy) : undefined;
        results.get(target.name)!.push(result);
        const cpu = cpuBefore !== undefined && cpuAfter !== undefined ? (cpuAfter - cpuBefore) / result.requests : undefined;
        if (cpu !== undefined) cpuPerRequest.set(target.name, [...(cpuPerRequest.get(target.name) ?? []), cpu]);
        console.log(
          `  round ${round} ${target.name}: ${result.requestsPerSecond.toFixed(0)} req/s, p50 ${ms(result.p50Ms)} ms, p99 ${ms(result.p99Ms)} ms` +
            (cpu !== undefined ? `, proxy CPU ${cpu.toFixed(1)} µs/request` : ""),
        );
      }
    }

    const summary = (name: string) => {
      const runs = results.get(name)!;
      return {
        rps: median(runs.map((run) => run.requestsPerSecond)),
        p50: median(runs.map((run) => run.p50Ms)),
        p99: median(runs.map((run) => run.p99Ms)),
        errors: runs.reduce((sum, run) => sum + run.non2xx + run.socketErrors, 0),
      };
    };
    console.log("");
    printTable(
      ["target", "req/s", "p50 ms", "p99 ms", "non-2xx+socket errors"],
      targets.map(({ name }) => {
        const s = summary(name);
        return [name, s.rps.toFixed(0), ms(s.p50), ms(s.p99), String(s.errors)];
      }),
    );
    const minimal = summary("hand-written nginx");
    const berth = summary("berth nginx");
    console.log("");
    // Rounds are interleaved, so each round's pair saw nearly the same host: its ratio is steadier
    // on a busy machine than the ratio of the medians.
    const paired = (pick: (run: WrkResult) => number) => {
      const hand = results.get("hand-written nginx")!;
      return results.get("berth nginx")!.map((run, round) => pick(run) / pick(hand[round]!));
    };
    const rpsRatios = paired((run) => run.requestsPerSecond);
    const p99Ratios = paired((run) => run.p99Ms);
    const list = (ratios: number[]) => ratios.map((ratio) => ratio.toFixed(2)).join(", ");
    console.log(`berth / hand-written req/s: ${(berth.rps / minimal.rps).toFixed(3)} (ratio of medians); per round ${list(rpsRatios)}, median ${median(rpsRatios).toFixed(3)}  (target >= 0.95)`);
    console.log(`berth / hand-written p99:   ${(berth.p99 / minimal.p99).toFixed(3)} (ratio of medians); per round ${list(p99Ratios)}, median ${median(p99Ratios).toFixed(3)}  (lower is better)`);
    const fixed = summary("berth config, route fixed (no Lua)");
    console.log(`berth / its own config with the route fixed (what the Lua router costs): ${(berth.rps / fixed.rps).toFixed(3)}; fixed route / hand-written (what logs, headers, ids and limits cost): ${(fixed.rps / minimal.rps).toFixed(3)}`);
    const handCpu = cpuPerRequest.get("hand-written nginx");
    const berthCpu = cpuPerRequest.get("berth nginx");
    if (handCpu && berthCpu) {
      console.log(
        `proxy CPU per request, median: berth ${median(berthCpu).toFixed(1)} µs, hand-written ${median(handCpu).toFixed(1)} µs, ratio ${(median(berthCpu) / median(handCpu)).toFixed(2)} (lower is better)`,
      );
    }
    console.log(`host after: ${hostLoad()}`);
  } finally {
    await cleanupBench(client, LABELS);
    await rm(stateDir, { recursive: true, force: true });
  }
}

await main();
