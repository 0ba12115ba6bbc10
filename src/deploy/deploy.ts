// A deploy rolls out a new release of one app environment without dropping a request:
// release command → new containers beside the old → healthy → proxy switched (validated,
// graceful) → health window (back to the old on failure) → drain → old stopped.
// Every step is journaled before it runs; a crash is repaired by recoverDeploys.
import { readFile } from "node:fs/promises";
import { BerthError } from "../errors.js";
import { engine, imageExists, inspectContainer, type Docker } from "../host/docker.js";
import type { EnvironmentPlan, PlatformPlan } from "../plan/types.js";
import { convergeComponent, injectedEnv, NEXT_SUFFIX, removeContainer, retireReplaced, type ContainerOutcome, type ConvergeHooks, type SecretsSource } from "../runtime/apply.js";
import type { Progress } from "../runtime/images.js";
import { ensureImage } from "../runtime/images.js";
import { fetchSource } from "./source.js";
import { ensureNetworks } from "../runtime/networks.js";
import type { DatabaseRuntime } from "../runtime/postgres.js";
import { ensureProxy, holdSwitch, prepareProxy, releaseSwitch, runningContainers, servingNow } from "../runtime/proxy.js";
import type { Release, Store } from "../state/store.js";
import { environmentOf, withReleases } from "./releases.js";

export { environmentOf, withReleases } from "./releases.js";

export interface DeployDeps {
  docker: Docker;
  stateDir: string;
  store: Store;
  databases: DatabaseRuntime;
  progress: Progress;
  /** The environments' secrets (the SecretStore). */
  secrets?: SecretsSource;
}

export interface DeployRequest {
  app: string;
  env: string;
  /** Image per component to roll out; components not named keep their current image. */
  images?: Record<string, string>;
  /** Git ref to build from (a git source only). */
  ref?: string;
  /** A directory holding the app's source (an uploaded build context), built instead of the spec's source. */
  sourceDir?: string;
  /** The secrets version to roll out (a rollback's: its release's); absent or null: the secrets as they are now. */
  secretsVersion?: number | null;
  actor: string;
  reason: string;
}

export interface DeployOptions {
  healthTimeoutMs?: number;
  /** After the switch: how long the new release must stay healthy before the old one goes. */
  healthWindowMs?: number;
  drainMs?: number;
  /** Images of this many latest releases per environment are kept. */
  keepReleases?: number;
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** Linux's USER_HZ, the unit of /proc/PID/stat's times (100 on every architecture berth runs on). */
const CLOCK_TICKS_PER_SECOND = 100;

/** The parent pid of `pid` and when it started (ms since the epoch), from /proc; undefined fields when they cannot be read. */
async function processInfo(pid: number): Promise<{ ppid?: number; startedAt?: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return {};
  // "pid (comm) state ppid ... starttime(22nd) ...": comm may hold spaces and parentheses, so read after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ppid = Number(fields[1]);
  const ticks = Number(fields[19]);
  const bootTime = Number(/^btime (\d+)$/m.exec((await readFile("/proc/stat", "utf8").catch(() => "")))?.[1]);
  const startedAt = Number.isFinite(ticks) && Number.isFinite(bootTime) ? (bootTime + ticks / CLOCK_TICKS_PER_SECOND) * 1000 : undefined;
  return { ...(Number.isInteger(ppid) ? { ppid } : {}), ...(startedAt !== undefined ? { startedAt } : {}) };
}

/**
 * Whether the deploy's process is gone, or going. A live pid that started after the lock was
 * taken is another process (pids are reused, after a reboot at the latest): the holder is
 * gone. A berthd job whose berthd died (it has been handed to init) exits by itself at once,
 * and is waited for, up to 10 s, so that the next berthd repairs its deploy instead of taking
 * it for one still running.
 */
export async function isGone(pid: number, lockedAt: string): Promise<boolean> {
  if (!isAlive(pid)) return true;
  const { ppid, startedAt } = await processInfo(pid);
  // The slack covers /proc's tick granularity and clocks read at different moments.
  if (startedAt !== undefined && startedAt > Date.parse(lockedAt) + 2000) return true;
  if (ppid !== 1) return false;
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 50))) {
    if (!isAlive(pid)) return true;
  }
  return false;
}

/**
 * Repairs deploys whose berth process died: where the old container still runs, the new
 * one is removed (the old release keeps serving); where the old one is already gone, the
 * new one takes its name. Then the proxy is re-rendered from what runs.
 */
export async function recoverDeploys(plan: PlatformPlan, deps: DeployDeps): Promise<Release[]> {
  const recovered: Release[] = [];
  for (const lock of deps.store.locks()) {
    if (lock.pid === process.pid || !(await isGone(lock.pid, lock.startedAt))) continue;
    const release = deps.store.releaseById(lock.releaseId)!;
    const steps = deps.store.journalOf(release.id);
    const env = plan.environments.find((e) => e.app === lock.app && e.env === lock.env);
    let isPromoted = false;
    for (const container of env?.components.flatMap((c) => c.containers) ?? []) {
      const next = await inspectContainer(deps.docker, container.name + NEXT_SUFFIX);
      if (!next) continue;
      const current = await inspectContainer(deps.docker, container.name);
      if (current?.State.Running) await removeContainer(deps.docker, container.name + NEXT_SUFFIX);
      else {
        if (current) await removeContainer(deps.docker, container.name);
        await engine(`renaming ${container.name}${NEXT_SUFFIX}`, () => deps.docker.getContainer(container.name + NEXT_SUFFIX).rename({ name: container.name }));
        isPromoted = true;
      }
    }
    await ensureProxy(deps.docker, plan, deps.stateDir, await servingNow(deps.docker, plan), deps.progress);
    const step = steps.at(-1) ?? "start";
    deps.store.finishRelease(release, {
      status: isPromoted ? "active" : "failed",
      failure: isPromoted ? undefined : `interrupted during "${step}" (berth stopped); the previous release kept serving`,
      hasRunReleaseCommand: steps.includes("release-command"),
      timings: release.timings,
    });
    deps.progress(`recovered the interrupted deploy r${release.number} of ${lock.app}/${lock.env}: ${isPromoted ? "finished it" : "removed its containers"}`);
    recovered.push(deps.store.releaseById(release.id)!);
  }
  return recovered;
}

/**
 * The images of the new release: `--image` ones as given (other components keep their
 * active image); otherwise every component from the spec, building from its source —
 * a git source at `--ref` (or the spec's ref), a local directory as it is now.
 */
async function resolveImages(env: EnvironmentPlan, request: DeployRequest, deps: DeployDeps): Promise<{ images: Record<string, string>; commit?: string }> {
  const names = env.components.map((c) => c.name);
  for (const component of Object.keys(request.images ?? {})) {
    if (!names.includes(component)) {
      throw new BerthError("BAD_ARGUMENT", `--image ${component}=…: ${env.app} has no component "${component}"`, `Its components: ${names.join(", ")}.`);
    }
  }
  const isExplicit = request.images !== undefined && Object.keys(request.images).length > 0;
  const active = deps.store.activeRelease(env.app, env.env);
  const images: Record<string, string> = {};
  let commit: string | undefined;
  for (const component of env.components) {
    const ref = isExplicit ? (request.images?.[component.name] ?? active?.images[component.name]) : undefined;
    if (ref) {
      if (!(await imageExists(deps.docker, ref))) {
        throw new BerthError("IMAGE_MISSING", `image ${ref} for ${env.app}/${component.name} is not on this host`, "Build or load it first; nothing was changed.");
      }
      images[component.name] = ref;
      continue;
    }
    const source = component.image;
    if (source.kind === "build" && request.sourceDir !== undefined) {
      images[component.name] = (await ensureImage(deps.docker, { ...source, source: { kind: "dir", dir: request.sourceDir } }, deps.progress)).ref;
    } else if (source.kind === "build" && source.source.kind === "git") {
      const checkout = await fetchSource(deps.stateDir, env.app, source.source.url, request.ref ?? source.source.ref);
      commit = checkout.commit;
      deps.progress(`${env.app}: ${source.source.url} at ${request.ref ?? source.source.ref} is ${checkout.commit.slice(0, 12)}`);
      const built = await ensureImage(deps.docker, { ...source, source: { kind: "dir", dir: checkout.dir } }, deps.progress);
      const [repo] = built.ref.split(":");
      await engine(`tagging ${built.ref}`, () => deps.docker.getImage(built.ref).tag({ repo: repo!, tag: checkout.commit.slice(0, 12) }));
      images[component.name] = `${repo}:${checkout.commit.slice(0, 12)}`;
    } else {
      if (request.ref !== undefined && source.kind === "build") {
        throw new BerthError("BAD_ARGUMENT", `--ref ${request.ref}: ${env.app}'s source is a local directory, not a git repository`, "Set source: { git, ref } in its app file, or deploy without --ref.");
      }
      images[component.name] = (await ensureImage(deps.docker, source, deps.progress)).ref;
    }
  }
  return { images, ...(commit ? { commit } : {}) };
}

async function imageIds(docker: Docker, images: Record<string, string>): Promise<Record<string, string>> {
  const entries = await Promise.all(
    Object.entries(images).map(async ([component, ref]) => [component, (await engine(`inspecting ${ref}`, () => docker.getImage(ref).inspect())).Id] as const),
  );
  return Object.fromEntries(entries);
}

/** A container that will serve a planned one, and its addresses when the engine gave them before it ran. */
interface EarlyServing {
  container: string;
  addresses?: Record<string, string>;
}

/**
 * prepareProxy for the switch: what serves now, with the planned containers served by `early`
 * (never throws). A new container still starting is not listed as running yet: its addresses
 * come from `early`.
 */
async function prepareSwitch(docker: Docker, plan: PlatformPlan, target: PlatformPlan, stateDir: string, early: Map<string, EarlyServing>): Promise<void> {
  const running = await runningContainers(docker, plan.platform).catch(() => undefined);
  if (!running) return;
  const serving = await servingNow(docker, plan, running);
  for (const [name, { container, addresses }] of early) {
    serving.set(name, container);
    if (addresses && !running.has(container)) running.set(container, { networks: addresses, isHealthy: true });
  }
  await prepareProxy(docker, target, stateDir, serving, { running });
}

/** Polls the new containers for the health window; returns why one failed, if one did. */
async function watchHealth(docker: Docker, names: string[], windowMs: number): Promise<string | undefined> {
  for (const deadline = Date.now() + windowMs; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
    for (const name of names) {
      const info = await inspectContainer(docker, name);
      if (!info?.State.Running || info.State.Restarting || info.RestartCount > 0) return `${name} stopped (exit code ${info?.State.ExitCode ?? "?"}) during the health window`;
      if (info.State.Health?.Status === "unhealthy") return `${name} became unhealthy during the health window`;
    }
  }
  return undefined;
}

export async function deploy(plan: PlatformPlan, request: DeployRequest, deps: DeployDeps, options: DeployOptions = {}): Promise<Release> {
  const { docker, store, progress } = deps;
  await recoverDeploys(plan, deps);
  const env = environmentOf(plan, request.app, request.env);
  const { images, commit } = await resolveImages(env, request, deps);
  // The release is made with the secrets as they are now (or as the rolled-back-to release had
  // them); a secret set later reaches the containers with the next deploy, never in between.
  const secretsVersion = request.secretsVersion ?? deps.secrets?.version(env.app, env.env) ?? null;
  const release = store.beginRelease({
    app: env.app,
    env: env.env,
    images,
    imageIds: await imageIds(docker, images),
    sourceCommit: commit ?? null,
    secretsVersion,
    actor: request.actor,
    reason: request.reason,
  });
  const timings: Record<string, number> = {};
  const started = Date.now();
  const mark = (step: string) => {
    store.journal(release.id, step);
    timings[step] = Date.now() - started;
    progress(`r${release.number} ${step}`);
  };
  let outcomes: ContainerOutcome[] = [];
  let switchedNames: string[] = [];
  let hasRunReleaseCommand = false;
  let preparing: Promise<void> | undefined;
  try {
    mark("prepare");
    // A first deploy may come before any apply: the environment's network must exist.
    await ensureNetworks(docker, plan);
    const target = withReleases(plan, [{ app: env.app, env: env.env, images }]);
    const targetEnv = environmentOf(target, env.app, env.env);
    // A secret that cannot be decrypted fails the deploy here, before anything starts.
    const secrets = deps.secrets?.values(env.app, env.env, { at: secretsVersion ?? undefined }) ?? {};
    const database = targetEnv.database ? await deps.databases.converge(target, progress) : { urls: {} as Record<string, string> };
    mark("start-new");
    hasRunReleaseCommand = targetEnv.components.some((c) => c.release);
    // While the new containers start and boot, the switch is prepared: the proxy configuration
    // that routes to them is written and checked by nginx then (as soon as the engine has given
    // them their addresses), so the switch itself only swaps and reloads.
    const early = new Map<string, EarlyServing>();
    const expected = targetEnv.components.reduce((sum, component) => sum + component.containers.length, 0);
    const hooks: ConvergeHooks = {
      serving: (container, name, addresses) => {
        early.set(container.name, { container: name, ...(addresses ? { addresses } : {}) });
        if (early.size === expected) preparing ??= prepareSwitch(docker, plan, target, deps.stateDir, early);
      },
    };
    const perComponent = await Promise.all(
      targetEnv.components.map((component) =>
        convergeComponent(docker, component, {
          image: images[component.name]!,
          injectedEnv: injectedEnv(component, secrets, database.urls[`${env.app}/${env.env}`]),
        }, options.healthTimeoutMs ?? 60_000, progress, hooks),
      ),
    );
    outcomes = perComponent.flat();
    const failures = outcomes.filter((o) => o.failure);
    if (failures.length > 0) {
      throw new BerthError("BUILD_FAILED", `the new release did not become healthy; the old release keeps serving:\n${failures.map((f) => `- ${f.plan.name}: ${f.failure}`).join("\n")}`);
    }

    mark("switch");
    await preparing;
    // One listing of what runs serves both: which containers serve, and at which addresses.
    const running = await runningContainers(docker, plan.platform);
    const serving = await servingNow(docker, plan, running);
    for (const outcome of outcomes) if (outcome.serving) serving.set(outcome.plan.name, outcome.serving);
    // Held until the new containers carry their planned names: a proxy change made meanwhile
    // for another environment (berthd deploys them side by side) keeps routing here.
    switchedNames = outcomes.filter((o) => o.retire).map((o) => o.plan.name);
    await holdSwitch(deps.stateDir, outcomes.filter((o) => o.retire).map((o) => [o.plan.name, o.serving!] as const));
    await ensureProxy(docker, target, deps.stateDir, serving, progress, { running });

    mark("health-window");
    const fresh = outcomes.filter((o) => o.retire || o.changes.some((c) => c.kind === "created")).map((o) => o.serving!);
    const unhealthy = await watchHealth(docker, fresh, options.healthWindowMs ?? 3000);
    if (unhealthy) {
      mark("rollback");
      await releaseSwitch(deps.stateDir, switchedNames);
      const previous = await servingNow(docker, plan);
      for (const outcome of outcomes) if (outcome.retire) previous.set(outcome.plan.name, outcome.plan.name);
      await ensureProxy(docker, plan, deps.stateDir, previous, progress);
      throw new BerthError("BUILD_FAILED", `the new release failed after the switch: ${unhealthy}; traffic went back to the previous release`);
    }

    mark("drain");
    await retireReplaced(docker, outcomes, options.drainMs ?? 2000);
    await releaseSwitch(deps.stateDir, switchedNames);
    mark("done");
    store.finishRelease(release, { status: "active", hasRunReleaseCommand, timings });
  } catch (error) {
    await releaseSwitch(deps.stateDir, switchedNames).catch(() => undefined);
    await preparing;
    // Whatever failed, the new containers go and the old release keeps (or is back to) serving.
    for (const outcome of outcomes) if (outcome.retire) await removeContainer(docker, outcome.serving!);
    const isRolledBack = store.journalOf(release.id).includes("rollback");
    store.finishRelease(release, { status: isRolledBack ? "rolled-back" : "failed", failure: (error as Error).message, hasRunReleaseCommand, timings });
    throw error;
  }
  await pruneImages(docker, store, env, options.keepReleases ?? 5);
  return store.releaseById(release.id)!;
}

/** Rolls out an earlier release's images again, without rebuilding. */
export async function rollback(plan: PlatformPlan, request: { app: string; env: string; to?: number; actor: string }, deps: DeployDeps, options: DeployOptions = {}): Promise<Release> {
  const releases = deps.store.releases(request.app, request.env);
  const active = releases.find((r) => r.status === "active");
  const target = request.to !== undefined
    ? releases.find((r) => r.number === request.to)
    : releases.find((r) => r.number < (active?.number ?? Infinity) && (r.status === "superseded" || r.status === "active"));
  if (!target) {
    throw new BerthError("NOT_FOUND", `no release ${request.to === undefined ? "before the active one" : `r${request.to}`} of ${request.app}/${request.env} to roll back to`, `See: berth releases ${request.app} --env ${request.env}`);
  }
  const migrated = releases.filter((r) => r.number > target.number && r.hasRunReleaseCommand && r.status !== "failed");
  if (migrated.length > 0) {
    deps.progress(`warning: releases ${migrated.map((r) => `r${r.number}`).join(", ")} ran a release command after r${target.number}: the database was migrated and stays so`);
  }
  // The release's secrets come back with its images (releases made before they recorded their secrets version get today's).
  return deploy(plan, { app: request.app, env: request.env, images: target.images, secretsVersion: target.secretsVersion, actor: request.actor, reason: `rollback to r${target.number}` }, deps, options);
}

/** Removes images of this environment's releases older than the last `keep`, unless still in use. */
async function pruneImages(docker: Docker, store: Store, env: EnvironmentPlan, keep: number): Promise<void> {
  const releases = store.releases(env.app, env.env);
  const kept = new Set(releases.slice(0, keep).flatMap((r) => Object.values(r.images)));
  for (const old of releases.slice(keep)) {
    for (const ref of Object.values(old.images)) {
      if (kept.has(ref) || !ref.startsWith("berth/")) continue;
      await docker.getImage(ref).remove().catch(() => undefined);
    }
  }
}
