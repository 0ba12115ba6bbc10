// Shared pieces of the deploy benchmarks (deploy-load, deploy-time, deploy-git): a bench
// platform on 127.0.0.1:38080/38443 whose every Docker object carries berth.bench=true plus a
// scope label naming the platform, cleanup by those labels and by `down --purge`, image builds,
// steady wrk load with a Lua script, and bounded HTTP polling. Figures only, never assertions.
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { Agent, request } from "node:http";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { DeployDeps } from "../src/deploy/deploy.js";
import type { Docker } from "../src/host/docker.js";
import { names, platformLabels } from "../src/plan/names.js";
import type { PlatformPlan } from "../src/plan/types.js";
import { applyPlatform, type Change } from "../src/runtime/apply.js";
import { downPlatform } from "../src/runtime/down.js";
import { containerPostgres } from "../src/runtime/postgres.js";
import { Store } from "../src/state/store.js";
import { BENCH_LABEL, REPO_ROOT, cleanupBench, mustRun, parseWrk, planFromTexts, type WrkResult } from "./lib.js";

export const HTTP_PORT = 38080;
export const HTTPS_PORT = 38443;
/** Second label on everything these benches create: cleanup never reaches another bench's objects. */
export const SCOPE_LABEL = "berth.bench.scope";

export function scopeLabels(scope: string): Record<string, string> {
  return { [BENCH_LABEL]: "true", [SCOPE_LABEL]: scope };
}

/** platform.yaml of a bench platform: TLS off (plain HTTP on 38080), rate limit class "general" raised so load never meets a 429. */
export function platformYaml(name: string): string {
  return `name: ${name}
proxy:
  bind: 127.0.0.1
  httpPort: ${HTTP_PORT}
  httpsPort: ${HTTPS_PORT}
  image: berth-nginx:1.22
  rateLimits: { general: { rate: 100000, burst: 100000 } }
postgres: { image: berth-postgres:15 }
tls: { mode: off }
`;
}

/** Removes containers, networks, volumes and images labelled berth.bench=true AND berth.bench.scope=SCOPE; nothing else. */
export async function cleanupScope(client: Docker, scope: string): Promise<void> {
  await cleanupBench(client, scopeLabels(scope));
}

export interface BenchPlatform {
  plan: PlatformPlan;
  stateDir: string;
  deps: DeployDeps;
  apply(): Promise<Change[]>;
  /** `down --purge` of the platform, then removal by label; closes the store. */
  teardown(): Promise<void>;
}

/**
 * Plans the spec texts in memory, labels every object of the plan, and creates beforehand,
 * with the labels, the objects berth would otherwise create unlabelled: the control network,
 * the proxy's log volume and PostgreSQL's data volume.
 */
export async function benchPlatform(client: Docker, scope: string, platformText: string, apps: Record<string, string>): Promise<BenchPlatform> {
  const labels = scopeLabels(scope);
  const plan = planFromTexts(platformText, apps, REPO_ROOT);
  Object.assign(plan.proxy.labels, labels);
  if (plan.postgres.kind === "container") Object.assign(plan.postgres.labels, labels);
  for (const env of plan.environments) {
    Object.assign(env.network.labels, labels);
    for (const component of env.components) for (const container of component.containers) Object.assign(container.labels, labels);
  }
  // Leftovers of an interrupted run: the platform's own objects (down --purge; its state
  // directory is gone with the run that made it), then anything else with our labels.
  const scratch = await mkdtemp(join(tmpdir(), `berth-bench-${scope}-down-`));
  await downPlatform(client, plan, scratch, { purge: true }).catch(() => undefined);
  await rm(scratch, { recursive: true, force: true });
  await cleanupScope(client, scope);
  const stateDir = await mkdtemp(join(tmpdir(), `berth-bench-${scope}-`));

  await client.createVolume({ Name: plan.proxy.volumes.logs, Labels: { ...platformLabels(plan.platform, "volume"), ...labels } });
  if (plan.postgres.kind === "container") {
    await client.createNetwork({ Name: names.controlNetwork(plan.platform), Driver: "bridge", Labels: { ...platformLabels(plan.platform, "network"), ...labels } });
    if (plan.environments.some((env) => env.database)) {
      await client.createVolume({ Name: plan.postgres.volume, Labels: { ...platformLabels(plan.platform, "volume"), ...labels } });
    }
  }
  const databases = containerPostgres(client, stateDir);
  const deps: DeployDeps = { docker: client, stateDir, store: new Store(stateDir), databases, progress: () => undefined };
  return {
    plan,
    stateDir,
    deps,
    apply: () => applyPlatform(plan, { docker: client, stateDir, databases, progress: () => undefined }, { healthTimeoutMs: 60_000 }),
    async teardown() {
      deps.store.close();
      await downPlatform(client, plan, stateDir, { purge: true }).catch((error: Error) => console.error(`down --purge: ${error.message}`));
      await cleanupScope(client, scope);
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** `docker build -q` (legacy builder) of DIR as TAG, with the scope labels and any extra ones. */
export async function buildImage(dir: string, tag: string, scope: string, extraLabels: Record<string, string> = {}): Promise<void> {
  const labels = Object.entries({ ...scopeLabels(scope), ...extraLabels }).flatMap(([key, value]) => ["--label", `${key}=${value}`]);
  await mustRun("docker", ["build", "-q", ...labels, "-t", tag, dir], { timeoutMs: 600_000, env: { ...process.env, DOCKER_BUILDKIT: "0" } });
}

/** Builds a Dockerfile given as text (and optional extra files) in a temp context. */
export async function buildFromText(tag: string, scope: string, files: Record<string, string>, extraLabels: Record<string, string> = {}): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "berth-bench-img-"));
  try {
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    await buildImage(dir, tag, scope, extraLabels);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One GET through the proxy on 127.0.0.1 on a fresh connection, bounded by a timeout. */
export function get(host: string, path: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: HTTP_PORT, path, headers: { host }, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${host}${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

export interface LoadResult extends WrkResult {
  seconds: number;
  requests: number;
  /** Responses by HTTP status, counted by the Lua script. */
  statuses: Record<string, number>;
  socket: { connect: number; read: number; write: number; timeout: number };
}

export interface Load {
  stop(): Promise<LoadResult>;
}

/**
 * Steady load through the proxy: wrk with a Lua script that alternates PATHS, waits DELAY ms
 * between a connection's requests (so the rate is at most connections × 1000/DELAY per second),
 * and counts every response by status. Runs until stop() (SIGINT: wrk prints its summary) or
 * at most maxSeconds.
 */
export async function startLoad(options: { host: string; paths: string[]; connections: number; delayMs: number; maxSeconds: number }): Promise<Load> {
  const dir = await mkdtemp(join(tmpdir(), "berth-bench-wrk-"));
  const script = join(dir, "load.lua");
  await writeFile(
    script,
    `local paths = { ${options.paths.map((path) => JSON.stringify(path)).join(", ")} }
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counter = 0; statuses = {} end
function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1])
end
function delay() return ${options.delayMs} end
function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get("statuses")) do total[key] = (total[key] or 0) + count end
  end
  for key, count in pairs(total) do io.write(string.format("status %s %d\\n", key, count)) end
  io.write(string.format("requests %d\\n", summary.requests))
end
`,
  );
  const started = performance.now();
  const child = spawn(
    "wrk",
    ["-t2", `-c${options.connections}`, `-d${options.maxSeconds}s`, "--timeout", "5s", "--latency", "-s", script, "-H", `Host: ${options.host}`, `http://127.0.0.1:${HTTP_PORT}/`],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const exited = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? 1)));
  // Give wrk a moment to connect before the measured actions start.
  await new Promise((resolve) => setTimeout(resolve, 500));
  return {
    async stop() {
      child.kill("SIGINT");
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const code = await exited;
      clearTimeout(killer);
      const seconds = (performance.now() - started) / 1000;
      await rm(dir, { recursive: true, force: true });
      if (code !== 0 || !/Requests\/sec/.test(stdout)) throw new Error(`wrk exited ${code}:\n${stdout}${stderr}`);
      const statuses: Record<string, number> = {};
      for (const match of stdout.matchAll(/^status (\d+) (\d+)$/gm)) statuses[match[1]!] = Number(match[2]);
      const socketMatch = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
      const [connect, read, write, timeout] = socketMatch ? socketMatch.slice(1).map(Number) : [0, 0, 0, 0];
      return {
        ...parseWrk(stdout),
        seconds,
        requests: Number(/^requests (\d+)$/m.exec(stdout)?.[1] ?? 0),
        statuses,
        socket: { connect: connect!, read: read!, write: write!, timeout: timeout! },
      };
    },
  };
}

/** "200:1234 502:3" */
export const formatStatuses = (statuses: Record<string, number>) =>
  Object.entries(statuses)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([status, count]) => `${status}:${count}`)
    .join(" ");

/** Non-2xx responses counted by the script (wrk itself counts only status > 399 as "Non-2xx or 3xx"). */
export const non2xxOf = (result: LoadResult) =>
  Object.entries(result.statuses).reduce((sum, [status, count]) => sum + (status.startsWith("2") ? 0 : count), 0);

export const socketErrorsOf = (result: LoadResult) => result.socket.connect + result.socket.read + result.socket.write + result.socket.timeout;

/** Stops the whole script after `ms` (cleanup runs through the caller's finally via the rejection). */
export function deadline(ms: number, what: string): { check(): void } {
  const until = performance.now() + ms;
  return {
    check() {
      if (performance.now() > until) throw new Error(`${what}: over the ${Math.round(ms / 1000)} s bound`);
    },
  };
}

/** The host's cores and 1-minute load average: figures from a busy host are not comparable. */
export const hostLine = () => `${cpus().length} cores, load average ${loadavg()[0]!.toFixed(1)}`;

export interface ProbeResult {
  requests: number;
  statuses: Record<string, number>;
  /** Requests that got no 2xx answer: time (performance.now()), status or error code, path and the answer's start. */
  failures: { at: number; what: string; detail: string }[];
}

/**
 * A second client beside wrk that accounts for every request it sends: CONNECTIONS loops over
 * a keep-alive agent, each sending GET (PATHS in turn), then waiting INTERVAL ms. A server
 * closing an idle keep-alive connection is not a failure here (the agent drops the socket and
 * opens another for the next request, as browsers do); a request that was sent and got an
 * error or a non-2xx answer is. Bounded by maxSeconds and 100 000 requests per loop.
 */
export function startProbe(options: { host: string; paths: string[]; connections: number; intervalMs: number; maxSeconds: number }): { stop(): Promise<ProbeResult> } {
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections });
  const started = performance.now();
  const result: ProbeResult = { requests: 0, statuses: {}, failures: [] };
  let running = true;
  const once = (path: string) =>
    new Promise<{ outcome: string; body: string }>((resolve) => {
      const req = request({ host: "127.0.0.1", port: HTTP_PORT, path, headers: { host: options.host }, agent, timeout: 5000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ outcome: String(res.statusCode ?? 0), body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", (error: NodeJS.ErrnoException) => resolve({ outcome: error.code ?? error.message, body: "" }));
      });
      req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
      req.on("error", (error: NodeJS.ErrnoException) => resolve({ outcome: error.code ?? error.message, body: "" }));
      req.end();
    });
  const loops = Array.from({ length: options.connections }, async (_, loop) => {
    for (let i = 0; running && i < 100_000 && performance.now() - started < options.maxSeconds * 1000; i++) {
      const path = options.paths[(i + loop) % options.paths.length]!;
      const { outcome, body } = await once(path);
      result.requests++;
      result.statuses[outcome] = (result.statuses[outcome] ?? 0) + 1;
      if (!/^2\d\d$/.test(outcome)) result.failures.push({ at: performance.now(), what: outcome, detail: `${outcome} GET ${path} ${body.replace(/\s+/g, " ").slice(0, 90)}`.trim() });
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return result;
    },
  };
}

/** A plain text table with every column left-aligned (for text columns). */
export function printLeftTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? "").length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd();
  console.log(line(headers));
  console.log(widths.map((width) => "-".repeat(width)).join("  "));
  for (const row of rows) console.log(line(row));
}
