// berthd's footprint and API latency, with the reference platform running under it.
//   npx tsx bench/berthd.ts [--idle-seconds 60] [--status-requests 1000] [--deploy-rounds 3]
// 1. A copy of examples/reference-platform (platform "benchref", ports 18180/18543) is
//    started by berthd itself (its first reconcile pass).
// 2. Idle: resident memory (VmRSS) and CPU (utime+stime from /proc) over a quiet window,
//    beside a bare `node` process measured the same way as the baseline.
// 3. Status reads: 20 concurrent clients, GET /v1/status (one engine call each), and
//    GET /openapi.json as the baseline of the HTTP/TLS stack itself.
// 4. Deploy starts: 20 concurrent POSTs of a deploy spread over the 6 environments; each
//    environment takes one (202) and refuses the rest (409). Latency to the answer.
// Everything berthd creates carries berth.platform=benchref and is removed by that label.
import { spawn } from "node:child_process";
import { cp, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { api, cleanupPlatform, closeAgent, eventually, rawRequest, startDaemon, type Daemon } from "../test/integration/berthd.js";
import { docker, EXAMPLE_ROOT, hostLoad, median, ms, printTable, sleep } from "./lib.js";

const PLATFORM = "benchref";
const { values } = parseArgs({
  options: {
    "idle-seconds": { type: "string", default: "60" },
    "status-requests": { type: "string", default: "1000" },
    "deploy-rounds": { type: "string", default: "3" },
  },
});
const CLIENTS = 20;
const TICKS = 100; // clock ticks per second on Linux (getconf CLK_TCK)

async function procSample(pid: number): Promise<{ rssKb: number; cpuTicks: number; childTicks: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const stat = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
  return { rssKb: Number(/VmRSS:\s+(\d+)/.exec(status)![1]), cpuTicks: Number(stat[11]) + Number(stat[12]), childTicks: Number(stat[13]) + Number(stat[14]) };
}

/** Processes whose parent is `pid`: berthd's jobs (a deploy, a reconcile pass) run as its children. */
async function childrenOf(pid: number): Promise<number[]> {
  const children: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    if (Number(stat.split(") ")[1]?.split(" ")[1]) === pid) children.push(Number(entry));
  }
  return children;
}

/**
 * RSS (MB, median of samples) and CPU (% of one core) of a process over a window; with its
 * children (berthd's jobs), the largest RSS of the process and its children together, and
 * the CPU of the children that ended in the window (cutime+cstime).
 */
async function footprint(pid: number, seconds: number): Promise<{ rssMb: number; maxRssMb: number; maxWithChildrenMb: number; cpuPercent: number; childCpuPercent: number }> {
  const first = await procSample(pid);
  const rss: number[] = [];
  let maxWithChildren = 0;
  for (let i = 0; i < seconds; i++) {
    await sleep(1000);
    const own = (await procSample(pid)).rssKb / 1024;
    rss.push(own);
    let children = 0;
    for (const child of await childrenOf(pid)) children += ((await procSample(child).catch(() => undefined))?.rssKb ?? 0) / 1024;
    maxWithChildren = Math.max(maxWithChildren, own + children);
  }
  const last = await procSample(pid);
  return {
    rssMb: median(rss),
    maxRssMb: Math.max(...rss),
    maxWithChildrenMb: maxWithChildren,
    cpuPercent: ((last.cpuTicks - first.cpuTicks) / TICKS / seconds) * 100,
    childCpuPercent: ((last.childTicks - first.childTicks) / TICKS / seconds) * 100,
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** `total` requests from CLIENTS concurrent loops; latencies in ms, and the statuses seen. */
async function load(total: number, send: (i: number) => Promise<number>): Promise<{ latencies: number[]; statuses: Map<number, number> }> {
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < total) {
        const i = next++;
        const started = process.hrtime.bigint();
        const status = await send(i);
        latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  return { latencies: latencies.sort((a, b) => a - b), statuses };
}

const row = (name: string, result: { latencies: number[]; statuses: Map<number, number> }) => [
  name,
  String(result.latencies.length),
  [...result.statuses].map(([s, n]) => `${s}×${n}`).join(" "),
  ms(percentile(result.latencies, 50)),
  ms(percentile(result.latencies, 99)),
];

async function main(): Promise<void> {
  const client = docker();
  await cleanupPlatform(client, PLATFORM);
  const specDir = await mkdtemp(join(tmpdir(), "berth-bench-spec-"));
  await cp(EXAMPLE_ROOT, specDir, { recursive: true });
  const platformFile = join(specDir, "platform.yaml");
  await writeFile(platformFile, (await readFile(platformFile, "utf8")).replace("name: reference", `name: ${PLATFORM}`).replace("httpPort: 8080", "httpPort: 18180").replace("httpsPort: 8443", "httpsPort: 18543"));
  // Container and network names carry the app's name: the copies get their own (b-paiss, …)
  // so they cannot collide with the demo platform running beside.
  for (const file of await readdir(join(specDir, "apps"))) {
    const path = join(specDir, "apps", file);
    await writeFile(path, (await readFile(path, "utf8")).replace(/^name: (\S+)$/m, "name: b-$1"));
  }

  let daemon: Daemon | undefined;
  try {
    process.on("exit", (code) => {
      if (code !== 0 && daemon) console.error(`[berthd] its log, last lines but API requests:\n${daemon.log.filter((line) => !line.includes('"msg":"request"')).slice(-25).join("\n")}`);
    });
    console.error(`[berthd] starting on the reference platform (load: ${hostLoad()})`);
    daemon = await startDaemon(specDir, { port: 18771 });
    const started = Date.now();
    await eventually("the reference platform up under berthd", async () => {
      const status = (await api(daemon!, daemon!.adminToken, "GET", "/v1/status")).body as { reconciledAt: string | null; environments: { containers: { state: string }[] }[] };
      return status.reconciledAt && status.environments.every((e) => e.containers.every((c) => c.state === "healthy")) ? true : undefined;
    }, 600_000);
    console.error(`[berthd] platform up in ${((Date.now() - started) / 1000).toFixed(1)} s; settling 10 s`);
    await sleep(10_000);

    const idleSeconds = Number(values["idle-seconds"]);
    const logBefore = daemon.log.length;
    const bare = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
    const [idle, baseline] = await Promise.all([footprint(daemon.process.pid!, idleSeconds), footprint(bare.pid!, idleSeconds)]);
    bare.kill("SIGTERM");
    const passes = daemon.log.slice(logBefore).filter((line) => line.includes('"msg":"reconcile pass"'));

    const total = Number(values["status-requests"]);
    const auth = { authorization: `Bearer ${daemon.adminToken}` };
    const contract = await load(total, async () => (await rawRequest(daemon!, "GET", "/openapi.json", {})).status);
    const status = await load(total, async () => (await rawRequest(daemon!, "GET", "/v1/status", auth)).status);
    const afterReads = await procSample(daemon.process.pid!);

    const environments = ((await api(daemon, daemon.adminToken, "GET", "/v1/status")).body as { environments: { app: string; env: string; containers: { name: string }[] }[] }).environments;
    const images = new Map<string, Record<string, string>>();
    for (const env of environments) {
      const byComponent: Record<string, string> = {};
      for (const container of await client.listContainers({ filters: JSON.stringify({ label: [`berth.platform=${PLATFORM}`, `berth.app=${env.app}`, `berth.env=${env.env}`] }) })) {
        byComponent[container.Labels["berth.component"]!] = container.Image;
      }
      images.set(`${env.app}/${env.env}`, byComponent);
    }
    const deploys = { latencies: [] as number[], statuses: new Map<number, number>() };
    for (let round = 0; round < Number(values["deploy-rounds"]); round++) {
      const started: string[] = [];
      const result = await load(CLIENTS, async (i) => {
        const env = environments[i % environments.length]!;
        const answer = await api(daemon!, daemon!.adminToken, "POST", `/v1/apps/${env.app}/envs/${env.env}/deploys`, { images: images.get(`${env.app}/${env.env}`), reason: "bench" });
        if (answer.status === 202) started.push((answer.body as { id: string }).id);
        return answer.status;
      });
      deploys.latencies.push(...result.latencies);
      for (const [s, n] of result.statuses) deploys.statuses.set(s, (deploys.statuses.get(s) ?? 0) + n);
      for (const id of started) {
        await eventually(`deploy ${id} to finish`, async () => (((await api(daemon!, daemon!.adminToken, "GET", `/v1/operations/${id}`)).body as { state: string }).state !== "running" ? true : undefined), 300_000);
      }
    }
    deploys.latencies.sort((a, b) => a - b);

    console.log(`\nberthd with the reference platform (6 environments) running; load ${hostLoad()}`);
    printTable(["process", "RSS median (MB)", "RSS max (MB)", "max with its jobs (MB)", "CPU (% of a core)", "its jobs' CPU"], [
      ["berthd, idle", idle.rssMb.toFixed(1), idle.maxRssMb.toFixed(1), idle.maxWithChildrenMb.toFixed(1), idle.cpuPercent.toFixed(2), idle.childCpuPercent.toFixed(2)],
      ["bare node (baseline)", baseline.rssMb.toFixed(1), baseline.maxRssMb.toFixed(1), "", baseline.cpuPercent.toFixed(2), ""],
      ["berthd after the read load", (afterReads.rssKb / 1024).toFixed(1), "", "", "", ""],
    ]);
    console.log(`berthd idle RSS is ${(idle.rssMb / baseline.rssMb).toFixed(2)}× a bare node process (target: ≤ 60 MB, < 1% of a core)`);
    console.log(`reconcile passes during the idle window: ${passes.length}${passes.length ? ` (${passes.map((p) => (JSON.parse(p) as { trigger: string }).trigger).join("; ")})` : ""}\n`);
    printTable(["requests (20 concurrent clients)", "n", "answers", "p50 (ms)", "p99 (ms)"], [
      row("GET /openapi.json (baseline: TLS + HTTP)", contract),
      row("GET /v1/status", status),
      row("POST deploy (202 started, 409 busy)", deploys),
    ]);
  } finally {
    await daemon?.stop();
    await closeAgent();
    await cleanupPlatform(client, PLATFORM);
  }
}

await main();
