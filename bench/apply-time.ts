// Wall-clock time of `berth apply` (the compiled CLI) for a copy of the reference platform:
// from scratch (platform down and purged, images already built) and as a no-op, plus
// baselines that show where a no-op's time goes.
//
//   npx tsx bench/apply-time.ts
//
// The copy is platform "bench" on ports 28280/28643 with every app renamed "bench-<app>":
// tenant containers and networks are named after the app alone ({app}-{component}-{env},
// berth-{app}-{env}), so the same app names would take over a running demo's containers.
import { spawn } from "node:child_process";
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseDocument } from "yaml";
import { planPlatform } from "../src/plan/plan.js";
import { applyPlatform } from "../src/runtime/apply.js";
import { containerPostgres } from "../src/runtime/postgres.js";
import { loadSpec } from "../src/spec/index.js";
import type { Docker } from "../src/host/docker.js";
import { EXAMPLE_ROOT, REPO_ROOT, docker as connect, hostLoad, median, ms, mustRun, printTable } from "./lib.js";

const PLATFORM_NAME = "bench";
const HTTP_PORT = 28280;
const HTTPS_PORT = 28643;
const APP_PREFIX = "bench-";
const SCRATCH_RUNS = Number(process.env.SCRATCH_RUNS ?? 3);
const NOOP_RUNS = Number(process.env.NOOP_RUNS ?? 5);
const CLI = ["dist/cli/main.js"];
const COMMAND_TIMEOUT_MS = 300_000;

/** Copies the reference platform and renames the platform, its ports, backup path and apps. */
async function benchSpec(dir: string): Promise<string> {
  const spec = join(dir, "spec");
  await cp(EXAMPLE_ROOT, spec, { recursive: true });
  const platformFile = join(spec, "platform.yaml");
  const platform = parseDocument(await readFile(platformFile, "utf8"));
  platform.set("name", PLATFORM_NAME);
  platform.setIn(["proxy", "httpPort"], HTTP_PORT);
  platform.setIn(["proxy", "httpsPort"], HTTPS_PORT);
  if (platform.hasIn(["backup", "targets"])) platform.setIn(["backup", "targets"], [{ type: "dir", path: join(dir, "backups") }]);
  await writeFile(platformFile, platform.toString());
  for (const entry of await readdir(join(spec, "apps"))) {
    const file = join(spec, "apps", entry);
    const app = parseDocument(await readFile(file, "utf8"));
    app.set("name", `${APP_PREFIX}${String(app.get("name"))}`);
    await writeFile(file, app.toString());
  }
  return spec;
}

interface Timed {
  ok: boolean;
  ms: number;
  stdout: string;
  /** stderr (berth's progress) line by line, with the ms since start at which each arrived. */
  progress: { atMs: number; line: string }[];
}

/** Runs `node ARGS` and times it, start to exit; killed after COMMAND_TIMEOUT_MS. */
async function attempt(args: string[]): Promise<Timed> {
  const started = performance.now();
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const timer = setTimeout(() => child.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
  let stdout = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
  const progress: Timed["progress"] = [];
  createInterface({ input: child.stderr }).on("line", (line) => progress.push({ atMs: performance.now() - started, line }));
  const code = await new Promise<number>((resolve) => child.on("close", (exit) => resolve(exit ?? 1)));
  clearTimeout(timer);
  return { ok: code === 0, ms: performance.now() - started, stdout, progress };
}

const stderrOf = (run: Timed) => run.progress.map((entry) => entry.line).join("\n");

/** Like attempt, but throws when the command fails. */
async function timed(args: string[]): Promise<Timed> {
  const run = await attempt(args);
  if (!run.ok) throw new Error(`${args.join(" ")} failed:\n${run.stdout}${stderrOf(run)}`);
  return run;
}

/**
 * The proxy's log volume is created by Docker from the container's mount, without berth's
 * labels, so `down --purge` (which removes volumes by label) leaves it behind. It is this
 * platform's by name; removed here by that exact name until berth labels it.
 */
async function removeProxyLogsVolume(client: Docker): Promise<void> {
  await client.getVolume(`berth-${PLATFORM_NAME}-proxy-logs`).remove().catch(() => undefined);
}

async function purge(client: Docker, down: string[]): Promise<void> {
  await timed(down);
  await removeProxyLogsVolume(client);
}

async function medianOf(runs: number, args: string[]): Promise<number> {
  const times: number[] = [];
  for (let run = 0; run < runs; run++) times.push((await timed(args)).ms);
  return median(times);
}

/** Counts and times every Engine API call the client makes (dockerode sends them all through modem.dial). */
function countEngineCalls(client: Docker): { calls: Map<string, { count: number; ms: number }> } {
  const modem = client.modem as { dial: (options: { method?: string; path?: string }, callback: (...args: unknown[]) => void) => void };
  const dial = modem.dial.bind(modem);
  const calls = new Map<string, { count: number; ms: number }>();
  modem.dial = (options, callback) => {
    const path = (options.path ?? "")
      .replace(/\?.*$/, "")
      .replace(/^\/images\/.+\/json$/, "/images/:name/json")
      .replace(/^\/(containers|networks|exec|volumes)\/(?!json$)[^/]+/, "/$1/:id");
    const key = `${options.method ?? "GET"} ${path}`;
    const started = performance.now();
    dial(options, (...args: unknown[]) => {
      const entry = calls.get(key) ?? { count: 0, ms: 0 };
      entry.count += 1;
      entry.ms += performance.now() - started;
      calls.set(key, entry);
      callback(...args);
    });
  };
  return { calls };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "berth-bench-apply-"));
  const stateDir = join(dir, "state");
  const spec = await benchSpec(dir);
  const down = [...CLI, "down", spec, "--purge", "--yes", "--state-dir", stateDir];
  const client = connect();
  const apply = [...CLI, "apply", spec, "--state-dir", stateDir];
  try {
    await mustRun("npm", ["run", "build"], { timeoutMs: COMMAND_TIMEOUT_MS });
    console.log(`host: ${hostLoad()}`);
    await purge(client, down);
    // Builds the bench-* images on the first run ever; later runs reuse them (tags are content hashes).
    // A failed apply is finished by the next one, as berth's own message says; bounded to 3 tries.
    for (let attempted = 1; ; attempted++) {
      const warmup = await attempt(apply);
      const built = warmup.stdout.split("\n").filter((line) => line.startsWith("built")).length;
      console.log(`warm-up apply ${attempted}: ${(warmup.ms / 1000).toFixed(1)} s, ${warmup.ok ? "ok" : "FAILED"} (${built} image(s) built)`);
      if (warmup.ok) break;
      if (attempted === 3) throw new Error(`the warm-up apply failed 3 times:\n${stderrOf(warmup)}`);
    }

    // A scratch run that fails (a health check timing out on a loaded host) is reported, not
    // timed, and another scratch run takes its place, up to SCRATCH_RUNS + 3 tries in all.
    const scratch: Timed[] = [];
    for (let run = 1; scratch.length < SCRATCH_RUNS && run <= SCRATCH_RUNS + 3; run++) {
      await purge(client, down);
      const result = await attempt(apply);
      const seconds = (result.ms / 1000).toFixed(2);
      if (!result.ok) {
        console.log(`  scratch ${run}: FAILED after ${seconds} s, not counted: ${result.progress.find((entry) => entry.line.startsWith("error"))?.line ?? ""}`);
        continue;
      }
      scratch.push(result);
      const changes = result.stdout.trim().split("\n").length;
      console.log(`  scratch ${run}: ${seconds} s (${changes} changes; berth says "${result.progress.find((entry) => entry.line.startsWith("applied in"))?.line ?? "?"}")`);
    }
    const noop: number[] = [];
    for (let run = 1; run <= NOOP_RUNS; run++) {
      const result = await timed(apply);
      if (!result.stdout.includes("nothing to change")) throw new Error(`apply ${run} was not a no-op:\n${result.stdout}`);
      noop.push(result.ms);
      console.log(`  no-op ${run}: ${(result.ms / 1000).toFixed(2)} s`);
    }

    // Where a scratch apply goes: when each progress line of the median run appeared.
    const medianScratch = [...scratch].sort((a, b) => a.ms - b.ms)[Math.floor(scratch.length / 2)];
    if (medianScratch) {
      console.log("");
      console.log(`timeline of the median scratch apply (${(medianScratch.ms / 1000).toFixed(2)} s; s since start, berth's progress lines):`);
      for (const { atMs, line } of medianScratch.progress) console.log(`  ${(atMs / 1000).toFixed(2).padStart(6)}  ${line}`);
      console.log(`  ${(medianScratch.ms / 1000).toFixed(2).padStart(6)}  (exit)`);
    }

    // Where a no-op goes: process start, module load + spec load, then the apply itself in-process.
    const nodeStart = await medianOf(NOOP_RUNS, ["-e", "0"]);
    const help = await medianOf(NOOP_RUNS, [...CLI, "--help"]);
    const validate = await medianOf(NOOP_RUNS, [...CLI, "validate", spec]);
    const plan = await medianOf(NOOP_RUNS, [...CLI, "plan", spec]);
    const { calls } = countEngineCalls(client);
    const { root, spec: loaded } = await loadSpec(spec);
    const platformPlan = planPlatform(loaded, { root });
    const inProcess: number[] = [];
    for (let run = 0; run < NOOP_RUNS; run++) {
      const started = performance.now();
      await applyPlatform(platformPlan, { docker: client, stateDir, progress: () => undefined, databases: containerPostgres(client, stateDir) });
      inProcess.push(performance.now() - started);
    }
    const databaseTimes: number[] = [];
    for (let run = 0; run < NOOP_RUNS; run++) {
      const started = performance.now();
      // A client of its own, so the Engine API counts below are those of the applies alone.
      await containerPostgres(connect(), stateDir).converge(platformPlan, () => undefined);
      databaseTimes.push(performance.now() - started);
    }

    console.log("");
    printTable(
      ["measurement", "median s", "target"],
      [
        [`apply from scratch (${scratch.length} runs)`, (median(scratch.map((run) => run.ms)) / 1000).toFixed(2), "<= 20 s"],
        [`apply no-op (${NOOP_RUNS} runs)`, (median(noop) / 1000).toFixed(2), "<= 2 s"],
      ],
    );
    console.log("");
    console.log(`where a no-op apply goes (medians of ${NOOP_RUNS}, ms):`);
    printTable(
      ["part", "ms"],
      [
        ["node -e 0 (process start)", ms(nodeStart)],
        ["berth --help (start + loading the CLI's modules)", ms(help)],
        ["berth validate (start + modules + spec load)", ms(validate)],
        ["berth plan (validate + plan + print)", ms(plan)],
        ["berth apply, no-op (CLI)", ms(median(noop))],
        ["applyPlatform in-process, no-op", ms(median(inProcess))],
        ["  of which database converge alone (pg_hba + roles/databases)", ms(median(databaseTimes))],
      ],
    );
    const perApply = [...calls.entries()].map(([key, entry]) => ({ key, count: entry.count / NOOP_RUNS, ms: entry.ms / NOOP_RUNS }));
    const count = perApply.reduce((sum, entry) => sum + entry.count, 0);
    const summed = perApply.reduce((sum, entry) => sum + entry.ms, 0);
    console.log("");
    console.log(`Engine API calls of one in-process no-op apply: ${count.toFixed(0)} calls, ${ms(summed)} ms summed (some run concurrently)`);
    printTable(
      ["call", "count", "ms"],
      perApply.sort((a, b) => b.ms - a.ms).slice(0, 10).map((entry) => [entry.key, entry.count.toFixed(0), ms(entry.ms)]),
    );
    console.log(`host after: ${hostLoad()}`);
  } finally {
    const cleanup = await attempt(down);
    await removeProxyLogsVolume(client);
    // The spec copy is kept when down fails: it is what a retry of that command needs.
    if (cleanup.ok) await rm(dir, { recursive: true, force: true });
    else console.error(`cleanup failed; run: node ${down.join(" ")}\n${stderrOf(cleanup)}`);
  }
}

await main();
