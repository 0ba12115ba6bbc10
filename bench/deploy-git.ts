// Time of a deploy that builds from git: `berth deploy --ref main` of the example backend
// (gabs-massage) from a temp git repository, cold (no layer cache beyond the base image) and
// warm (a one-line code change: only the late COPY layers rebuild). Median of 3 each, with
// where the time goes (fetch, build, rollout). Prints figures; asserts nothing.
//
//   npx tsx bench/deploy-git.ts                    # ~4 min
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deploy } from "../src/deploy/deploy.js";
import type { Docker } from "../src/host/docker.js";
import type { Release } from "../src/state/store.js";
import { benchPlatform, deadline, get, hostLine, platformYaml, scopeLabels, type BenchPlatform } from "./deploy-lib.js";
import { EXAMPLE_ROOT, docker as connect, median, ms, mustRun, printTable } from "./lib.js";

const SCOPE = "bgit";
const APP = "bgit-api";
const ENV = "production";
const DOMAIN = "bgit-api.localhost";
const RUNS = Number(process.env.RUNS ?? 3);
/** The CLI's defaults (berth deploy --drain 2 --health-window 3). */
const DEPLOY_OPTIONS = { drainMs: 2000, healthWindowMs: 3000, healthTimeoutMs: 120_000 };
const bound = deadline(30 * 60_000, "deploy-git");

async function git(repo: string, ...args: string[]): Promise<string> {
  const { stdout } = await mustRun("git", ["-C", repo, "-c", "user.name=bench", "-c", "user.email=bench@berth.test", ...args], { timeoutMs: 60_000 });
  return stdout.trim();
}

/**
 * The Dockerfile's first instruction after FROM carries the bench labels and a build id: a new
 * id misses the layer cache from there on (a cold build); the same id reuses every layer up
 * to the first changed file (a warm build). The built image carries the labels, so cleanup by
 * label finds it.
 */
async function setBuildId(repo: string, id: string): Promise<void> {
  const file = join(repo, "backend", "Dockerfile");
  const labels = Object.entries({ ...scopeLabels(SCOPE), "berth.bench.build": id }).map(([key, value]) => `${key}=${value}`).join(" ");
  const text = (await readFile(file, "utf8")).replace(/^LABEL berth\.managed=true.*$/m, `LABEL berth.managed=true ${labels}`);
  if (!text.includes(id)) throw new Error("the example Dockerfile has no `LABEL berth.managed=true` line to extend");
  await writeFile(file, text);
}

interface Run {
  kind: "cold" | "warm";
  commit: string;
  fetchMs: number;
  buildMs: number;
  /** From the journal's first step to the end of the switch (the "health-window" offset). */
  rolloutMs: number;
  /** Journal steps: start-new (release command, new container healthy) and switch (proxy). */
  startNewMs: number;
  switchMs: number;
  servingMs: number;
  returnedMs: number;
  steps: number;
  cacheHits: number;
  served: string;
}

async function deployHead(platform: BenchPlatform, repo: string, kind: Run["kind"]): Promise<{ run: Run; release: Release }> {
  const started = performance.now();
  const at: Record<string, number> = {};
  let steps = 0;
  let cacheHits = 0;
  const progress = (line: string) => {
    const now = performance.now() - started;
    if (/: file:\/\/.* is [0-9a-f]{12}$/.test(line)) at.fetched = now;
    else if (/Step \d+\/\d+/.test(line)) steps++;
    else if (/---> Using cache/.test(line)) cacheHits++;
    else if (/^r\d+ prepare$/.test(line)) at.prepare = now;
  };
  const release = await deploy(platform.plan, { app: APP, env: ENV, ref: "main", actor: "bench", reason: `bench ${kind}` }, { ...platform.deps, progress }, DEPLOY_OPTIONS);
  const returnedMs = performance.now() - started;
  const answer = await get(DOMAIN, "/").catch((error: Error) => ({ status: 0, body: error.message }));
  const commit = await git(repo, "rev-parse", "HEAD");
  const run: Run = {
    kind,
    commit: release.sourceCommit === commit ? commit.slice(0, 12) : `${release.sourceCommit?.slice(0, 12)} (HEAD is ${commit.slice(0, 12)}!)`,
    fetchMs: at.fetched ?? Number.NaN,
    buildMs: (at.prepare ?? Number.NaN) - (at.fetched ?? Number.NaN),
    rolloutMs: release.timings["health-window"]!,
    startNewMs: release.timings.switch! - release.timings["start-new"]!,
    switchMs: release.timings["health-window"]! - release.timings.switch!,
    servingMs: (at.prepare ?? Number.NaN) + release.timings["health-window"]!,
    returnedMs,
    steps,
    cacheHits,
    served: `${answer.status} ${answer.body.trim().slice(0, 30)}`,
  };
  return { run, release };
}

/** Removes every tag of an image (the last tag removes it and its unused layers); an image still in use stays. */
async function removeImage(client: Docker, id: string): Promise<void> {
  const info = await client.getImage(id).inspect().catch(() => undefined);
  for (const tag of info?.RepoTags ?? []) await client.getImage(tag).remove().catch(() => undefined);
}

async function main(): Promise<void> {
  const client = connect();
  let platform: BenchPlatform | undefined;
  const repo = await mkdtemp(join(tmpdir(), "berth-bench-git-"));
  try {
    await cp(join(EXAMPLE_ROOT, "src", "gabs-massage", "backend"), join(repo, "backend"), { recursive: true, filter: (path) => !path.includes("node_modules") });
    await mustRun("git", ["init", "--quiet", "--initial-branch", "main", repo], { timeoutMs: 60_000 });
    const unique = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    await setBuildId(repo, `warmup-${unique}`);
    await git(repo, "add", ".");
    await git(repo, "commit", "--quiet", "-m", "warm-up");

    platform = await benchPlatform(client, SCOPE, platformYaml("bgit"), {
      [APP]: `name: ${APP}
source: { git: "file://${repo}", ref: main }
components:
  backend: { build: backend, port: 3000, health: { path: /health, interval: 1s, timeout: 5s }, release: [node, migrate.js], database: true }
routes: [{ path: /, to: backend, limit: general }]
environments:
  ${ENV}: { domains: [${DOMAIN}] }
`,
    });
    await platform.apply();
    // Not counted: the first deploy creates the container; the measured ones replace it.
    let previous = (await deployHead(platform, repo, "cold")).release;

    const runs: Run[] = [];
    const hostBefore = hostLine();
    const routes = join(repo, "backend", "routes.js");
    for (const kind of ["cold", "warm"] as const) {
      for (let i = 1; i <= RUNS; i++) {
        bound.check();
        if (kind === "cold") await setBuildId(repo, `cold-${i}-${unique}`);
        else await writeFile(routes, `${await readFile(routes, "utf8")}// bench: warm deploy ${i}\n`);
        await git(repo, "commit", "--quiet", "-am", `${kind} ${i}`);
        const { run, release } = await deployHead(platform, repo, kind);
        runs.push(run);
        console.error(`  ${kind} ${i}: fetch ${ms(run.fetchMs)} ms, build ${ms(run.buildMs)} ms (${run.cacheHits}/${run.steps} steps cached), serving at ${ms(run.servingMs)} ms (${hostLine()})`);
        // The image the previous release ran is no longer in use: remove it (all its tags).
        await removeImage(client, previous.imageIds.backend!);
        previous = release;
      }
    }

    console.log(`host: ${hostBefore} before, ${hostLine()} after`);
    console.log(`berth deploy ${APP} --ref main (a file:// git repo with examples/reference-platform/src/gabs-massage/backend), in-process deploy(), CLI defaults (health window 3 s, drain 2 s); ms from calling deploy()`);
    console.log(`cold: a new build id in the LABEL right after FROM, so no layer but the base image is cached; warm: a one-line change in routes.js (only COPY *.js and later rebuild)\n`);
    printTable(
      ["kind", "commit", "fetch", "build", "cached steps", "rollout to switch", "serving", "deploy returned", "GET /"],
      runs.map((run) => [run.kind, run.commit, ms(run.fetchMs), ms(run.buildMs), `${run.cacheHits}/${run.steps}`, ms(run.rolloutMs), ms(run.servingMs), ms(run.returnedMs), run.served]),
    );
    console.log("");
    for (const kind of ["cold", "warm"] as const) {
      const of = runs.filter((run) => run.kind === kind);
      const med = (pick: (run: Run) => number) => ms(median(of.map(pick)));
      console.log(
        `${kind}: median of ${of.length}: serving after ${med((r) => r.servingMs)} ms (min ${ms(Math.min(...of.map((r) => r.servingMs)))}, max ${ms(Math.max(...of.map((r) => r.servingMs)))}); ` +
          `fetch ${med((r) => r.fetchMs)}, build ${med((r) => r.buildMs)}, rollout to switch ${med((r) => r.rolloutMs)} ` +
          `(start-new ${med((r) => r.startNewMs)}, switch ${med((r) => r.switchMs)}); deploy returned ${med((r) => r.returnedMs)} ms`,
      );
    }
  } finally {
    await platform?.teardown();
    await rm(repo, { recursive: true, force: true });
  }
}

await main();
