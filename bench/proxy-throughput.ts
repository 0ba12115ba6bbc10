// Throughput and latency of one backend measured directly; through hand-written nginx
// configurations: a minimal one, one giving every request only what a platform proxy must, the
// same with the least Lua routing (routes and addresses as data), one giving everything berth's
// proxy gives; through berth's configuration cut to the required duties with its router kept; and
// through berth's own proxy (the config renderProxyConfig writes, run by ensureProxy as `berth
// apply` runs it). Prints medians of interleaved wrk runs and the ratios between them.
//
//   npx tsx bench/proxy-throughput.ts            # 3 rounds of 10 s per target
//   WRK_DURATION=3s ROUNDS=1 npx tsx bench/proxy-throughput.ts
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitHealthy, type Docker } from "../src/host/docker.js";
import { ensureProxy } from "../src/runtime/proxy.js";
import { scopeLabels } from "./deploy-lib.js";
import {
  BENCH_APP,
  BENCH_DOMAIN,
  BENCH_HTTP_PORT,
  BENCH_IMAGE,
  BENCH_PATH,
  BENCH_PLATFORM,
  handWrittenNginxConf,
  minimalNginxConf,
  requiredDutiesEdits,
  writeBerthGeneration,
} from "./proxy-lib.js";
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
const WRK_ARGS = ["-t2", "-c32", "--latency"];
/** Unmeasured, per target, before the rounds: upstream connections open, LuaJIT compiles the router. */
const WARMUP = "2s";
const MINIMAL_PROXY = "berth-bench-tp-minimal";
const REQUIRED_PROXY = "berth-bench-tp-required";
const FEATURES_PROXY = "berth-bench-tp-features";
const ROUTED_PROXY = "berth-bench-tp-routed";
const LUA_FLOOR_PROXY = "berth-bench-tp-lua";
const MINIMAL = "hand-written nginx";
const REQUIRED = "hand-written nginx, required duties";
const FEATURES = "hand-written nginx, berth's features";
const LUA_FLOOR = "hand-written nginx, required duties, least Lua routing";
const ROUTED = "berth nginx cut to the required duties";
const BERTH = "berth nginx";
/** berth.bench=true and berth.bench.scope=tp on everything this bench creates; cleanup removes only those. */
const LABELS = scopeLabels("tp");

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

/**
 * Where a hand-written nginx writes its access log: a Docker volume, as berth's proxy does, so
 * that all of them write to the same disk (a tmpfs would spare them the writes berth makes).
 */
const HAND_WRITTEN_LOGS = "/var/log/bench";

/**
 * nginx in berth's nginx image on the backend's network, running the configuration `conf` from
 * the host's `dir` (mounted at /bench) and logging to a volume; returns its address there.
 */
async function startBenchProxy(client: Docker, network: string, name: string, dir: string, conf: string): Promise<string> {
  await labelledVolume(client, `${name}-logs`, LABELS);
  await startContainer(client, {
    name,
    Image: "berth-nginx:1.22",
    Cmd: ["nginx", "-g", "daemon off;", "-c", conf],
    Labels: LABELS,
    HostConfig: { NetworkMode: network, Binds: [`${dir}:/bench:ro`, `${name}-logs:${HAND_WRITTEN_LOGS}`] },
  });
  return containerIp(client, name, network);
}

/** A hand-written nginx configuration run by startBenchProxy. */
async function startHandWritten(client: Docker, stateDir: string, network: string, name: string, conf: string): Promise<string> {
  const dir = join(stateDir, name);
  await mkdir(dir);
  await writeFile(join(dir, "nginx.conf"), conf);
  return startBenchProxy(client, network, name, dir, "/bench/nginx.conf");
}

/**
 * berth's rendered configuration cut to the required duties, router kept (requiredDutiesEdits),
 * in the proxy container's layout under /bench, run by startBenchProxy.
 */
async function startRouted(client: Docker, stateDir: string, network: string, backend: string): Promise<string> {
  const dir = join(stateDir, ROUTED_PROXY);
  await mkdir(dir);
  const paths = await writeBerthGeneration(dir, { prefix: "/bench", logs: HAND_WRITTEN_LOGS, pid: "/tmp/nginx.pid", backend, edits: requiredDutiesEdits(), target: ROUTED });
  return startBenchProxy(client, network, ROUTED_PROXY, dir, `${paths.live}/nginx.conf`);
}

async function wrk(target: Target, duration = DURATION): Promise<WrkResult> {
  const { stdout } = await mustRun("wrk", [...WRK_ARGS, `-d${duration}`, "-H", `Host: ${BENCH_DOMAIN}`, target.url], { timeoutMs: 120_000 });
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

    const upstream = `${backendIp}:${backend.port}`;
    const minimalIp = await startHandWritten(client, stateDir, network, MINIMAL_PROXY, minimalNginxConf({ listen: "80", backend: upstream, pid: "/tmp/nginx.pid" }));
    const handWritten = (level: "required" | "required+lua" | "berth") =>
      handWrittenNginxConf(level, { listen: "80", backend: upstream, pid: "/tmp/nginx.pid", accessLog: `${HAND_WRITTEN_LOGS}/access.log` });
    const requiredIp = await startHandWritten(client, stateDir, network, REQUIRED_PROXY, handWritten("required"));
    const featuresIp = await startHandWritten(client, stateDir, network, FEATURES_PROXY, handWritten("berth"));
    const luaFloorIp = await startHandWritten(client, stateDir, network, LUA_FLOOR_PROXY, handWritten("required+lua"));
    const routedIp = await startRouted(client, stateDir, network, upstream);

    // Container addresses avoid docker-proxy, the userland relay Docker puts behind 127.0.0.1 ports;
    // the last target shows what that relay costs on the way a local client reaches berth.
    const targets: Target[] = [
      { name: "direct to backend", url: `http://${backendIp}:${backend.port}${BENCH_PATH}` },
      { name: MINIMAL, url: `http://${minimalIp}${BENCH_PATH}`, proxy: MINIMAL_PROXY },
      { name: REQUIRED, url: `http://${requiredIp}${BENCH_PATH}`, proxy: REQUIRED_PROXY },
      { name: FEATURES, url: `http://${featuresIp}${BENCH_PATH}`, proxy: FEATURES_PROXY },
      { name: LUA_FLOOR, url: `http://${luaFloorIp}${BENCH_PATH}`, proxy: LUA_FLOOR_PROXY },
      { name: ROUTED, url: `http://${routedIp}${BENCH_PATH}`, proxy: ROUTED_PROXY },
      { name: BERTH, url: `http://${berthIp}${BENCH_PATH}`, proxy: plan.proxy.container },
      { name: `berth via 127.0.0.1:${BENCH_HTTP_PORT}`, url: `http://127.0.0.1:${BENCH_HTTP_PORT}${BENCH_PATH}` },
    ];
    for (const target of targets) {
      const url = new URL(target.url);
      await waitUntil(`${target.name} answers 200`, async () => (await httpStatus(url.hostname, Number(url.port || 80), BENCH_DOMAIN, BENCH_PATH)) === 200, 10_000, 100);
    }

    for (const target of targets) await wrk(target, WARMUP);
    console.log(`host: ${hostLoad()}`);
    console.log(`wrk ${WRK_ARGS.join(" ")} -d${DURATION} -H 'Host: ${BENCH_DOMAIN}' <target>${BENCH_PATH}, after a ${WARMUP} warm-up of each; ${ROUNDS} interleaved round(s), medians`);
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
    console.log("");
    // Rounds are interleaved, so each round's pair saw nearly the same host: its ratio is steadier
    // on a busy machine than the ratio of the medians.
    const compare = (label: string, numerator: string, denominator: string, note: string) => {
      const top = results.get(numerator)!;
      const bottom = results.get(denominator)!;
      const perRound = (pick: (run: WrkResult) => number) => top.map((run, round) => pick(run) / pick(bottom[round]!));
      const list = (ratios: number[]) => ratios.map((ratio) => ratio.toFixed(2)).join(", ");
      const rps = perRound((run) => run.requestsPerSecond);
      const p99 = perRound((run) => run.p99Ms);
      console.log(`${label}${note}`);
      console.log(`  req/s: ${(summary(numerator).rps / summary(denominator).rps).toFixed(3)} (ratio of medians); per round ${list(rps)}, median ${median(rps).toFixed(3)}`);
      console.log(`  p99:   ${(summary(numerator).p99 / summary(denominator).p99).toFixed(3)} (ratio of medians); per round ${list(p99)}, median ${median(p99).toFixed(3)} (lower is better)`);
      // Empty where the container's cgroup was not found (containerCpuMicros knows cgroup v1 and systemd's v2 layout).
      const cpuTop = cpuPerRequest.get(numerator) ?? [];
      const cpuBottom = cpuPerRequest.get(denominator) ?? [];
      if (cpuTop.length > 0 && cpuBottom.length > 0) {
        console.log(`  proxy CPU per request, medians: ${median(cpuTop).toFixed(1)} vs ${median(cpuBottom).toFixed(1)} µs, ratio ${(median(cpuTop) / median(cpuBottom)).toFixed(2)} (lower is better)`);
      } else {
        console.log("  proxy CPU per request: not measured (the proxies' cgroups were not found)");
      }
    };
    compare("berth / hand-written", BERTH, MINIMAL, " (target: req/s >= 0.95)");
    compare(`${REQUIRED} / hand-written`, REQUIRED, MINIMAL, ": the least the duties every platform proxy owes a request cost in any nginx");
    compare(`${LUA_FLOOR} / hand-written`, LUA_FLOOR, MINIMAL, ": the least any proxy with routes and addresses as data (no reload for a route change or a switch) costs, with the required duties");
    compare(`${ROUTED} / hand-written`, ROUTED, MINIMAL, ": the required duties with routes and addresses as data (berth's router), nothing else");
    compare(`berth / ${FEATURES}`, BERTH, FEATURES, ": what berth's own way of giving the same costs (the router, its request ids)");
    console.log(`host after: ${hostLoad()}`);
  } finally {
    await cleanupBench(client, LABELS);
    await rm(stateDir, { recursive: true, force: true });
  }
}

await main();
