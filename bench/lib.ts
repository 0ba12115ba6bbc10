// Shared pieces of the benchmarks: the bench label and cleanup by it, in-process planning from
// spec texts, bounded waiting, wrk output parsing and table printing. Benchmarks print figures;
// they never assert on timings.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { request } from "node:http";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { connectDocker, removeLabelled, type Docker } from "../src/host/docker.js";
import { planPlatform } from "../src/plan/plan.js";
import type { PlatformPlan } from "../src/plan/types.js";
import { formatIssue } from "../src/spec/issues.js";
import { thisHost } from "../src/spec/index.js";
import { validateSpec } from "../src/spec/validate.js";

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const EXAMPLE_ROOT = join(REPO_ROOT, "examples", "reference-platform");

/** Every Docker object a benchmark creates carries this label; cleanup removes by it, never by prune. */
export const BENCH_LABEL = "berth.bench";
export const BENCH_LABELS = { [BENCH_LABEL]: "true" };

export function docker(): Docker {
  return connectDocker();
}

/**
 * Removes the containers, networks, volumes and images carrying all of `labels` (by default
 * berth.bench=true), and nothing else. A bench that may run beside others passes its own
 * scope label too, so it never removes theirs.
 */
export async function cleanupBench(client: Docker, labels: Record<string, string> = BENCH_LABELS): Promise<void> {
  await removeLabelled(client, Object.entries(labels).map(([key, value]) => `${key}=${value}`), { images: true });
}

/** Validates spec texts in memory (as `berth validate` does from disk) and plans them. */
export function planFromTexts(platformText: string, apps: Record<string, string>, root = REPO_ROOT): PlatformPlan {
  const files = {
    platform: { file: "platform.yaml", text: platformText },
    apps: Object.entries(apps).map(([name, text]) => ({ file: `apps/${name}.yaml`, text })),
  };
  const result = validateSpec(files, thisHost());
  if (!result.ok) throw new Error(`bench spec is invalid:\n${result.issues.map(formatIssue).join("\n")}`);
  return planPlatform(result.spec, { root });
}

/** Adds berth.bench=true (or `labels`) to every object the plan describes, so cleanup by label finds them. */
export function labelPlan(plan: PlatformPlan, labels: Record<string, string> = BENCH_LABELS): PlatformPlan {
  Object.assign(plan.proxy.labels, labels);
  if (plan.postgres.kind === "container") Object.assign(plan.postgres.labels, labels);
  for (const env of plan.environments) {
    Object.assign(env.network.labels, labels);
    for (const component of env.components) for (const container of component.containers) Object.assign(container.labels, labels);
  }
  return plan;
}

/** A named volume with the bench label (or `labels`): Docker would otherwise create a mount's volume unlabelled. */
export async function labelledVolume(client: Docker, name: string, labels: Record<string, string> = BENCH_LABELS): Promise<void> {
  await client.createVolume({ Name: name, Labels: labels });
}

export async function containerIp(client: Docker, container: string, network: string): Promise<string> {
  const info = await client.getContainer(container).inspect();
  const ip = info.NetworkSettings.Networks[network]?.IPAddress;
  if (!ip) throw new Error(`${container} has no address on ${network}`);
  return ip;
}

/**
 * CPU time a container's processes have used so far, in microseconds, from its cgroup (v1's
 * cpuacct or v2's cpu.stat); undefined where neither is readable.
 */
export async function containerCpuMicros(client: Docker, container: string): Promise<number | undefined> {
  const id = (await client.getContainer(container).inspect()).Id;
  const v1 = await readFile(`/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`, "utf8").catch(() => undefined);
  if (v1 !== undefined) return Number(v1.trim()) / 1000;
  const v2 = await readFile(`/sys/fs/cgroup/system.slice/docker-${id}.scope/cpu.stat`, "utf8").catch(() => undefined);
  const usage = v2 && /^usage_usec (\d+)$/m.exec(v2);
  return usage ? Number(usage[1]) : undefined;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Calls `probe` until it returns true or `timeoutMs` passes (then throws); returns the elapsed ms. */
export async function waitUntil(what: string, probe: () => Promise<boolean>, timeoutMs: number, intervalMs = 0): Promise<number> {
  const started = performance.now();
  const deadline = started + timeoutMs;
  while (performance.now() < deadline) {
    if (await probe().catch(() => false)) return performance.now() - started;
    if (intervalMs > 0) await sleep(intervalMs);
  }
  throw new Error(`${what}: not after ${timeoutMs} ms`);
}

/** Status of one GET on a fresh connection (no keep-alive), bounded by a timeout. */
export function httpStatus(address: string, port: number, host: string, path: string, timeoutMs = 2000): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: address, port, path, headers: { host }, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error(`GET http://${address}:${port}${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv (no shell) with a time bound; never throws on a non-zero exit. */
export function runCommand(file: string, args: string[], options: { timeoutMs: number; cwd?: string; env?: NodeJS.ProcessEnv }): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: options.cwd ?? REPO_ROOT, env: options.env ?? process.env, timeout: options.timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout, stderr: error && typeof error.code !== "number" ? `${stderr}${error.message}` : stderr });
    });
  });
}

/** Like runCommand, but throws with the command's output when it fails. */
export async function mustRun(file: string, args: string[], options: { timeoutMs: number; cwd?: string; env?: NodeJS.ProcessEnv }): Promise<CommandResult> {
  const result = await runCommand(file, args, options);
  if (result.code !== 0) throw new Error(`${file} ${args.join(" ")} exited ${result.code}:\n${result.stdout}${result.stderr}`);
  return result;
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export interface WrkResult {
  /** Requests completed in the run. */
  requests: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  socketErrors: number;
}

const WRK_UNITS_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function wrkDuration(text: string, label: string): number {
  const match = new RegExp(`^\\s*${label}\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m").exec(text);
  if (!match) throw new Error(`no "${label}" latency in wrk output:\n${text}`);
  return Number(match[1]) * WRK_UNITS_MS[match[2]!]!;
}

/** Reads req/s, p50, p99 and error counts from `wrk --latency` output. */
export function parseWrk(text: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  const requests = /^\s*(\d+) requests in /m.exec(text);
  if (!rps || !requests) throw new Error(`no Requests/sec or request count in wrk output:\n${text}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketErrors = socket ? socket.slice(1).reduce((sum, count) => sum + Number(count), 0) : 0;
  return { requests: Number(requests[1]), requestsPerSecond: Number(rps[1]), p50Ms: wrkDuration(text, "50%"), p99Ms: wrkDuration(text, "99%"), non2xx: non2xx ? Number(non2xx[1]) : 0, socketErrors };
}

/** A plain text table, columns padded; the first column left-aligned, the others right-aligned. */
export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? "").length)));
  const line = (cells: string[]) => cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join("  ");
  console.log(line(headers));
  console.log(widths.map((width) => "-".repeat(width)).join("  "));
  for (const row of rows) console.log(line(row));
}

/** CPUs and load averages: figures from a busy host are only comparable within one run. */
export function hostLoad(): string {
  const [one, five, fifteen] = readFileSync("/proc/loadavg", "utf8").split(" ");
  return `${cpus().length} CPUs, load average ${one} ${five} ${fifteen}`;
}

export const ms = (value: number) => (value >= 100 ? value.toFixed(0) : value.toFixed(1));
