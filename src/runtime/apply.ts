// berth apply: converge this host to the plan. Order matters for "what serves keeps serving":
// networks → database → images → tenant containers (new beside old, wait healthy) → proxy
// (validated swap, graceful reload) → only then remove what the plan no longer has.
import type Dockerode from "dockerode";
import { BerthError } from "../errors.js";
import { answersHttp, engine, exitReason, engineError, inspectContainer, logTail, pingEngine, waitHealthy, type Docker, type HealthOutcome, type HttpProbe } from "../host/docker.js";
import { LABEL } from "../plan/names.js";
import type { ComponentPlan, ContainerPlan, EnvironmentPlan, PlatformPlan } from "../plan/types.js";
import { configHashOf, tenantCreateOptions, type TenantRuntime } from "./containers.js";
import { ensureImage, type Progress } from "./images.js";
import { createNetworks, removeNetworks } from "./networks.js";
import { checkProxyPorts, ensureProxy, proxyNeedsContainer, servingNow } from "./proxy.js";
import type { DatabaseRuntime } from "./postgres.js";
import { secretFilesOf, SECRETS_DIR_VAR, SECRETS_MOUNT, SECRETS_VERSION_VAR, writeSecretFiles } from "../secrets/files.js";

export interface Change {
  kind: "created" | "replaced" | "started" | "removed" | "updated" | "built";
  target: string;
  detail?: string;
}

export interface ApplyDeps {
  docker: Docker;
  stateDir: string;
  progress: Progress;
  /** Brings up PostgreSQL and the environments' databases; returns how tenants reach them. */
  databases: DatabaseRuntime;
  /** The environments' secrets (the SecretStore). */
  secrets?: SecretsSource;
}

/** An environment's secrets, as the SecretStore keeps them: versioned, decrypted on demand. */
export interface SecretsSource {
  /** The environment's secrets version now: it changes with every set and unset; 0 before the first. */
  version(app: string, env: string): number;
  /** Every live secret's value as of secrets version `at` (default: now); throws when one cannot be decrypted. */
  values(app: string, env: string, options?: { at?: number }): Record<string, string>;
}

/**
 * What berth injects into a component's containers: its secrets, and DATABASE_URL (which no
 * secret may shadow). With `secrets.as: files` the secrets are written to the host's tmpfs
 * here (src/secrets/files.ts) and the variables only say where and which version:
 * BERTH_SECRETS_DIR=/run/secrets and BERTH_SECRETS_VERSION, from which tenantCreateOptions
 * mounts them; no value is in the container's configuration.
 */
export function injectedEnv(component: ComponentPlan, secrets: Record<string, string>, databaseUrl: string | undefined): Record<string, string> {
  const database: Record<string, string> = component.hasDatabase && databaseUrl ? { DATABASE_URL: databaseUrl } : {};
  const first = component.containers[0];
  if (!component.hasSecretFiles || !first) return { ...secrets, ...database };
  const target = { platform: first.labels[LABEL.platform] ?? "", app: first.app, env: first.env, component: component.name, ...(first.user ? { user: first.user } : {}) };
  return { [SECRETS_DIR_VAR]: SECRETS_MOUNT, [SECRETS_VERSION_VAR]: writeSecretFiles(target, secrets), ...database };
}

export interface ApplyOptions {
  /** Also drop the databases of environments no longer in the spec. */
  purge?: boolean;
  /** How long a new container may take to become healthy. */
  healthTimeoutMs?: number;
  /** How long a replaced container keeps running after the proxy moved away from it. */
  drainMs?: number;
}

export const NEXT_SUFFIX = "-next";

export const DEFAULT_DRAIN_MS = 2000;

export interface ContainerOutcome {
  plan: ContainerPlan;
  /** The container that should serve after this apply, or undefined when none can. */
  serving?: string;
  /** The previous container to remove once the proxy points at the new one. */
  retire?: string;
  changes: Change[];
  failure?: string;
}

export async function applyPlatform(plan: PlatformPlan, deps: ApplyDeps, options: ApplyOptions = {}): Promise<Change[]> {
  const { docker, progress } = deps;
  await pingEngine(docker);
  const changes: Change[] = [];

  // Everything that can be checked without changing anything is checked first: a missing
  // image, a failed build, a taken port or a secret that cannot be decrypted leaves the host
  // exactly as it was. The images are looked at side by side (hashing a build context and
  // asking the engine cost the same whatever the order); warnings keep the plan's order.
  const wantedImages = new Map<string, { app: string; component: ComponentPlan }>();
  for (const env of plan.environments) {
    for (const component of env.components) {
      const key = JSON.stringify(component.image);
      if (!wantedImages.has(key) && !isAwaitingDeploy(component)) wantedImages.set(key, { app: env.app, component });
    }
  }
  const ensured = await mapBounded([...wantedImages], IMAGE_CONCURRENCY, async ([key, { app, component }]) => {
    const image = await ensureImage(docker, component.image, progress);
    const user = component.containers[0]?.user ?? (await imageUser(docker, image.ref));
    return { key, app, component, image, isRoot: isRoot(user) };
  });
  const images = new Map<string, string>();
  for (const { key, app, component, image, isRoot: runsAsRoot } of ensured) {
    if (image.built) changes.push({ kind: "built", target: image.ref });
    images.set(key, image.ref);
    if (runsAsRoot) progress(`warning: ${app}/${component.name} runs as root; add USER to its Dockerfile or set user: in the app file`);
  }
  // Read before anything starts: a secret that cannot be decrypted stops the apply, it is
  // never shipped as an empty environment. A deployed environment gets the secrets its release
  // was made with: a secret set since then waits for the next deploy, as its images do.
  const secrets = new Map(plan.environments.map((env) => [`${env.app}/${env.env}`, deps.secrets?.values(env.app, env.env, { at: env.secretsVersion }) ?? {}]));
  await checkProxyPorts(docker, plan);

  // PostgreSQL starts once its control network exists; the environments' networks are created
  // meanwhile, and must all exist before the proxy or a tenant is created.
  const networks = await createNetworks(docker, plan);
  await networks.control;
  // A proxy container that must be created (or replaced) starts now, routing to what serves now
  // (nothing, on a fresh host), beside the database and the tenants; their addresses come later
  // in a new route table. Its errors are thrown where it is awaited.
  const earlyProxy = (await proxyNeedsContainer(docker, plan, deps.stateDir))
    ? networks.all.then(() => servingNow(docker, plan)).then((serving) => ensureProxy(docker, plan, deps.stateDir, serving, progress))
    : undefined;
  earlyProxy?.catch(() => undefined);

  // The longest chain is PostgreSQL, then release commands (migrations), then their components'
  // containers; container starts queue up in the engine (on a small host, over half a second
  // each). So components that need neither a database nor a release command start beside
  // PostgreSQL's start, while the engine has little else to do; of the others, the release
  // commands' one-off containers start first, and the rest once those run.
  const timeoutMs = options.healthTimeoutMs ?? 60_000;
  const converging = plan.environments.flatMap((env) =>
    env.components.filter((component) => !isAwaitingDeploy(component, progress, env.app)).map((component) => ({ env, component })),
  );
  const isIndependent = (component: ComponentPlan) => !component.hasDatabase && !component.release;
  const runtimeOf = (env: EnvironmentPlan, component: ComponentPlan, databaseUrls: Record<string, string>): TenantRuntime => ({
    image: images.get(JSON.stringify(component.image))!,
    injectedEnv: injectedEnv(component, secrets.get(`${env.app}/${env.env}`)!, databaseUrls[`${env.app}/${env.env}`]),
  });
  // One listing of every container serves both groups: a container found running as planned is left alone.
  const listing = networks.all.then(() => listContainersByName(docker));
  const independent = listing.then(async (listed) =>
    Promise.all(
      converging.filter(({ component }) => isIndependent(component)).map(({ env, component }) => convergeComponent(docker, component, runtimeOf(env, component, {}), timeoutMs, progress, { listed })),
    ),
  );
  let independentFailure: { error: unknown } | undefined;
  independent.catch((error: unknown) => (independentFailure ??= { error }));

  const database = await deps.databases.converge(plan, progress, networks.all).catch(async (error: unknown) => {
    await independent.catch(() => undefined);
    throw error;
  });
  // An engine error there: no migration is started (what serves keeps serving).
  if (independentFailure) throw independentFailure.error;
  changes.push(...(await networks.all));
  changes.push(...database.changes);

  const listed = await listing;
  const dependent = converging.filter(({ component }) => !isIndependent(component));
  // One gate per component with a release command, opened once its one-off container runs
  // (or none was needed); resolving a gate twice changes nothing.
  const gates = dependent.map(({ component }) => (component.release ? gate() : undefined));
  const releasesRunning = Promise.all(gates.flatMap((released) => (released ? [released.opened] : [])));
  // Everything started is awaited before any error is thrown: no migration or start goes on unwatched.
  const settled = await Promise.allSettled([
    independent,
    ...dependent.map(async ({ env, component }, index) => {
      const released = gates[index];
      if (!released) await releasesRunning;
      try {
        return await convergeComponent(docker, component, runtimeOf(env, component, database.urls), timeoutMs, progress, { listed, ...(released ? { releaseStarted: released.open } : {}) });
      } finally {
        // Whatever happened to this component, the others are not kept waiting for it.
        released?.open();
      }
    }),
  ]);
  const failed = settled.find((result) => result.status === "rejected");
  if (failed) throw failed.reason;
  const outcomes = settled.flatMap((result) => (result.status === "fulfilled" ? result.value.flat() : []));
  for (const outcome of outcomes) changes.push(...outcome.changes);

  const serving = new Map(outcomes.filter((o) => o.serving).map((o) => [o.plan.name, o.serving!]));
  if (earlyProxy) changes.push(...(await earlyProxy));
  changes.push(...(await ensureProxy(docker, plan, deps.stateDir, serving, progress)));

  await retireReplaced(docker, outcomes, options.drainMs ?? DEFAULT_DRAIN_MS);
  changes.push(...(await removeOrphans(docker, plan)));
  changes.push(...(await removeNetworks(docker, plan)));
  changes.push(...(await deps.databases.removeUnused(plan, options.purge ?? false, progress)));

  const failures = outcomes.filter((o) => o.failure);
  if (failures.length > 0) {
    throw new BerthError(
      "INTERNAL",
      `${failures.length} container(s) could not be brought up; what was serving keeps serving:\n` +
        failures.map((f) => `- ${f.plan.name}: ${f.failure}`).join("\n"),
      "Fix the cause and run berth apply again; it finishes the job.",
    );
  }
  return changes;
}

/** A promise and the function that resolves it. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/** How many images are hashed and looked up at once. */
const IMAGE_CONCURRENCY = 4;

/** `work` on every item, at most `limit` at a time; results in the items' order. */
async function mapBounded<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    // After a failure nothing more is started: the first error is the apply's.
    while (next < items.length && !failed) {
      const index = next++;
      results[index] = await work(items[index]!).catch((error: unknown) => {
        failed = true;
        throw error;
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * A component built from a git repository runs only once `berth deploy` made a release of
 * it (apply then keeps that release's image); until then apply leaves it alone.
 */
function isAwaitingDeploy(component: ComponentPlan, progress?: Progress, app?: string): boolean {
  const isWaiting = component.image.kind === "build" && component.image.source.kind === "git";
  if (isWaiting && progress) progress(`${app}/${component.name}: built from git and not deployed yet; run berth deploy ${app} --env ${component.containers[0]?.env ?? "ENV"}`);
  return isWaiting;
}

async function imageUser(docker: Docker, ref: string): Promise<string> {
  const info = await engine(`inspecting image ${ref}`, () => docker.getImage(ref).inspect());
  return info.Config.User ?? "";
}

export function isRoot(user: string): boolean {
  return user === "" || user === "root" || user === "0" || user.startsWith("0:") || user.startsWith("root:");
}


async function startAndWait(
  docker: Docker,
  options: Dockerode.ContainerCreateOptions,
  plan: ContainerPlan,
  timeoutMs: number,
  onAddressed?: (address: string | undefined) => void,
): Promise<string | undefined> {
  const name = options.name!;
  const id = await createContainer(docker, options);
  let isStarting = true;
  const starting = engine(`starting ${name}`, () => docker.getContainer(name).start()).finally(() => (isStarting = false));
  // The engine gives the container its address early in a start that can take seconds: read
  // meanwhile from the network, it lets a deploy prepare its switch while the container starts.
  const early = onAddressed ? addressWhileStarting(docker, plan.network, id, () => isStarting) : undefined;
  let isAnnounced = false;
  void early?.then((address) => {
    if (address === undefined || isAnnounced || !isStarting) return;
    isAnnounced = true;
    onAddressed!(address);
  });
  await starting;
  const address = await early;
  if (!isAnnounced) onAddressed?.(undefined);
  isAnnounced = true;
  const health = await waitReady(docker, name, timeoutMs, probeOf(plan), address);
  if (health.ok) return undefined;
  const logs = await logTail(docker, name, 15);
  await removeContainer(docker, name);
  return `${health.reason}${logs ? `\n  last log lines:\n${logs.replace(/^/gm, "    ")}` : ""}`;
}

/** How often the network is asked for a starting container's address. */
const EARLY_ADDRESS_MS = 20;

/** The container's address on `network` once the engine has given it one, while `isStarting` holds (undefined after). Never throws. */
async function addressWhileStarting(docker: Docker, network: string, id: string, isStarting: () => boolean): Promise<string | undefined> {
  while (isStarting()) {
    const info = (await docker.getNetwork(network).inspect().catch(() => undefined)) as { Containers?: Record<string, { IPv4Address?: string }> } | undefined;
    const address = info?.Containers?.[id]?.IPv4Address?.split("/")[0];
    if (address) return address;
    await pause(EARLY_ADDRESS_MS);
  }
  return undefined;
}

const probeOf = (plan: ContainerPlan): HttpProbe => ({ network: plan.network, port: plan.port, path: plan.health.path });

/**
 * How often a starting container is asked over HTTP, and how often the engine is asked how it
 * runs. The app's answer is what makes it ready; the engine only tells of an exit or of its own
 * health verdict, and an apply waits on a dozen containers at once: asked every 50 ms, the
 * engine spent the CPU the starts needed on answering.
 */
const READY_PROBE_MS = 10;
const READY_ENGINE_MS = 250;

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * waitHealthy for a container berth just started, on the way to a switch, with its two questions
 * asked side by side instead of in turn: the engine (has it exited, restarted, been found
 * unhealthy or healthy?) every 250 ms, and meanwhile the app over HTTP every
 * 10 ms from the moment the container has an address (`address`, when the caller knows it; else
 * from the engine's first answer; a refused connection costs nothing). An
 * answer from the app is not held up by the engine's next round trip. Same outcomes.
 */
async function waitReady(docker: Docker, container: string, timeoutMs: number, probe: HttpProbe, address?: string): Promise<HealthOutcome> {
  const deadline = Date.now() + timeoutMs;
  let outcome: HealthOutcome | undefined;
  // Known already when it was read from the network during the start: the app is asked at once.
  let ip: string | undefined = address;
  const engineLoop = (async () => {
    while (!outcome) {
      const info = await inspectContainer(docker, container).catch((error: unknown) => {
        outcome ??= { ok: false, reason: "the engine could not be asked" }; // stops the HTTP loop; the error is thrown below
        throw error;
      });
      if (outcome) return;
      if (!info) {
        outcome = { ok: false, reason: "the container disappeared" };
        return;
      }
      const state = info.State;
      // With a restart policy a crashing process is restarted at once: a restart is an exit.
      if (!state.Running || state.Restarting || info.RestartCount > 0) {
        outcome = { ok: false, reason: "" }; // stops the HTTP loop while the exit code is looked up
        outcome.reason = await exitReason(docker, container, info);
        return;
      }
      const health = state.Health?.Status;
      if (health === undefined || health === "healthy") outcome = { ok: true };
      else if (health === "unhealthy") {
        const last = state.Health?.Log?.at(-1)?.Output?.trim();
        outcome = { ok: false, reason: `the health check failed${last ? `: ${last}` : ""}` };
      } else if (Date.now() > deadline) outcome = { ok: false, reason: `not healthy after ${Math.round(timeoutMs / 1000)} s (status ${health})` };
      ip ??= info.NetworkSettings.Networks[probe.network]?.IPAddress || undefined;
      if (!outcome) await pause(READY_ENGINE_MS);
    }
  })();
  const httpLoop = (async () => {
    while (!outcome) {
      if (ip && (await answersHttp(ip, probe))) outcome ??= { ok: true };
      else await pause(READY_PROBE_MS);
    }
  })();
  // Whichever settles the outcome first; an engine failure after the app answered changes nothing.
  await Promise.race([engineLoop, httpLoop]);
  // An exit was seen: the engine loop is still finding out its exit code.
  if (outcome && !outcome.ok && outcome.reason === "") await engineLoop;
  engineLoop.catch(() => undefined);
  return outcome!;
}

/** Creates a container, retrying once on the engine's transient "could not find bridge" error; returns its id. */
async function createContainer(docker: Docker, options: Dockerode.ContainerCreateOptions): Promise<string> {
  try {
    return (await docker.createContainer(options)).id;
  } catch (error) {
    if (!/could not find bridge/i.test(String((error as Error).message))) throw engineError(error, `creating ${options.name}`);
    return (await engine(`creating ${options.name}`, () => docker.createContainer(options))).id;
  }
}

/**
 * A component's release command (migrations) runs once, in a one-off container on the
 * environment's network, before any of its containers is created or replaced; if it fails,
 * none is, and what serves keeps serving.
 */
/**
 * After the proxy moved to the new containers: give in-flight requests on the old ones time
 * to finish (nginx's old workers still send them there), stop them gracefully (SIGTERM, the
 * app closes its listener and finishes), then give the new ones the plain names.
 */
export async function retireReplaced(docker: Docker, outcomes: ContainerOutcome[], drainMs: number): Promise<void> {
  const retiring = outcomes.filter((outcome) => outcome.retire);
  if (retiring.length === 0) return;
  await new Promise((resolve) => setTimeout(resolve, drainMs));
  await Promise.all(
    retiring.map(async (outcome) => {
      await engine(`stopping ${outcome.retire}`, () => docker.getContainer(outcome.retire!).stop({ t: 10 })).catch(() => undefined);
      await removeContainer(docker, outcome.retire!);
      await engine(`renaming ${outcome.serving}`, () => docker.getContainer(outcome.serving!).rename({ name: outcome.plan.name }));
    }),
  );
}

export interface ConvergeHooks {
  /**
   * Which container will serve a planned one, as soon as that is known: the current one when it
   * stays, or the new one once the engine gave it its address while starting it (`addresses`, by
   * network; none when the start finished first) or right after it started, either way before it
   * is healthy. A deploy prepares its proxy switch from these while the new containers start and
   * boot. Called at most once per container, and also for one that fails later.
   */
  serving?: (plan: ContainerPlan, container: string, addresses?: Record<string, string>) => void;
  /**
   * Every container on the host by name, as one listing reported them just before: a container
   * found there running with its planned configuration (and no half-made replacement beside it)
   * stays without being inspected. Anything else is inspected as usual.
   */
  listed?: Map<string, Dockerode.ContainerInfo>;
  /**
   * Called when a component's release command runs, or when it needs none (its containers are
   * as planned); the caller also calls it once the component is done, whatever happened.
   */
  releaseStarted?: () => void;
}

/** Whether the listing shows `name` running as planned (configuration hash `wanted`, this platform's) with no `-next` beside it. */
function isListedAsPlanned(listed: Map<string, Dockerode.ContainerInfo> | undefined, name: string, wanted: string, platform: string | undefined): boolean {
  const found = listed?.get(name);
  return found !== undefined && found.State === "running" && found.Labels[LABEL.configHash] === wanted && found.Labels[LABEL.platform] === platform && !listed!.has(name + NEXT_SUFFIX);
}

/** Every container on the host (running or not) by name, from one engine call. */
export async function listContainersByName(docker: Docker): Promise<Map<string, Dockerode.ContainerInfo>> {
  const all = await engine("listing containers", () => docker.listContainers({ all: true }));
  return new Map(all.flatMap((container) => container.Names.map((name): [string, Dockerode.ContainerInfo] => [name.replace(/^\//, ""), container])));
}

/** The `serving` hook for a container being started, if there is one. */
function announcer(plan: ContainerPlan, container: string, hooks: ConvergeHooks): ((address: string | undefined) => void) | undefined {
  const { serving } = hooks;
  return serving && ((address) => serving(plan, container, address === undefined ? undefined : { [plan.network]: address }));
}

export async function convergeComponent(docker: Docker, component: ComponentPlan, runtime: TenantRuntime, timeoutMs: number, progress: Progress, hooks: ConvergeHooks = {}): Promise<ContainerOutcome[]> {
  if (component.release) {
    const pending = await Promise.all(component.containers.map(async (container) => {
      const wanted = configHashOf(tenantCreateOptions(container, runtime));
      if (isListedAsPlanned(hooks.listed, container.name, wanted, container.labels[LABEL.platform])) return false;
      const current = await inspectContainer(docker, container.name);
      return current?.Config.Labels[LABEL.configHash] !== wanted;
    }));
    if (pending.some(Boolean)) {
      const failure = await runRelease(docker, component.containers[0]!, component.release, runtime, progress, hooks.releaseStarted);
      if (failure) {
        return Promise.all(component.containers.map(async (plan) => {
          const current = await inspectContainer(docker, plan.name);
          return { plan, serving: current?.State.Running ? plan.name : undefined, changes: [], failure: `release command failed: ${failure}` };
        }));
      }
    } else {
      hooks.releaseStarted?.();
    }
  }
  return Promise.all(component.containers.map((container) => convergeContainer(docker, container, runtime, timeoutMs, progress, hooks)));
}

/** `started`: called once the one-off container runs. */
async function runRelease(docker: Docker, container: ContainerPlan, release: string[], runtime: TenantRuntime, progress: Progress, started?: () => void): Promise<string | undefined> {
  const base = tenantCreateOptions(container, runtime);
  const name = `${container.name}-release`;
  await removeContainer(docker, name);
  progress(`running release command of ${container.app}/${container.component}/${container.env}: ${release.join(" ")}`);
  const options: Dockerode.ContainerCreateOptions = {
    ...base,
    name,
    Cmd: release,
    Healthcheck: { Test: ["NONE"] },
    Labels: { ...base.Labels, [LABEL.role]: "release" },
    HostConfig: { ...base.HostConfig, RestartPolicy: { Name: "no" } },
  };
  await createContainer(docker, options);
  try {
    await engine(`starting ${name}`, () => docker.getContainer(name).start());
    started?.();
    const result = (await engine(`waiting for ${name}`, () => docker.getContainer(name).wait())) as { StatusCode: number };
    if (result.StatusCode === 0) return undefined;
    const logs = await logTail(docker, name, 15);
    return `exit code ${result.StatusCode}${logs ? `\n  last log lines:\n${logs.replace(/^/gm, "    ")}` : ""}`;
  } finally {
    await removeContainer(docker, name);
  }
}

async function convergeContainer(
  docker: Docker,
  plan: ContainerPlan,
  runtime: TenantRuntime,
  timeoutMs: number,
  progress: Progress,
  hooks: ConvergeHooks,
): Promise<ContainerOutcome> {
  const options = tenantCreateOptions(plan, runtime);
  const wanted = configHashOf(options);
  const nextName = plan.name + NEXT_SUFFIX;
  if (isListedAsPlanned(hooks.listed, plan.name, wanted, plan.labels[LABEL.platform])) {
    hooks.serving?.(plan, plan.name);
    return { plan, serving: plan.name, changes: [] };
  }
  // Both at once: one engine round trip instead of two on the way to every switch.
  const [found, next] = await Promise.all([inspectContainer(docker, plan.name), inspectContainer(docker, nextName)]);
  let current = found;
  const owner = current?.Config.Labels[LABEL.platform];
  if (current && owner !== plan.labels[LABEL.platform]) {
    // Names do not carry the platform: never take over another platform's (or anyone's) container.
    return { plan, changes: [], failure: `a container named ${plan.name} already exists and belongs to ${owner ? `platform ${owner}` : "something other than berth"}; rename the app or remove that container` };
  }
  if (next) {
    // An earlier apply stopped between starting the new container and renaming it.
    if (!current && next.State.Running) {
      await engine(`renaming ${nextName}`, () => docker.getContainer(nextName).rename({ name: plan.name }));
      current = await inspectContainer(docker, plan.name);
    } else await removeContainer(docker, nextName);
  }

  if (current && current.Config.Labels[LABEL.configHash] === wanted) {
    if (current.State.Running) {
      hooks.serving?.(plan, plan.name);
      return { plan, serving: plan.name, changes: [] };
    }
    await engine(`starting ${plan.name}`, () => docker.getContainer(plan.name).start());
    hooks.serving?.(plan, plan.name);
    const health = await waitHealthy(docker, plan.name, timeoutMs, probeOf(plan));
    return health.ok
      ? { plan, serving: plan.name, changes: [{ kind: "started", target: plan.name }] }
      : { plan, changes: [{ kind: "started", target: plan.name }], failure: health.reason };
  }

  if (!current) {
    progress(`starting ${plan.name}`);
    const failure = await startAndWait(docker, options, plan, timeoutMs, announcer(plan, plan.name, hooks));
    return failure ? { plan, changes: [], failure } : { plan, serving: plan.name, changes: [{ kind: "created", target: plan.name }] };
  }

  // Changed: start the new one beside the old; the old keeps serving until the proxy moves.
  progress(`replacing ${plan.name}`);
  const failure = await startAndWait(docker, { ...options, name: nextName }, plan, timeoutMs, announcer(plan, nextName, hooks));
  if (failure) return { plan, serving: current.State.Running ? plan.name : undefined, changes: [], failure };
  return { plan, serving: nextName, retire: plan.name, changes: [{ kind: "replaced", target: plan.name }] };
}

export async function removeContainer(docker: Docker, name: string): Promise<void> {
  const secretFiles = await secretFilesOf(docker, name);
  try {
    await docker.getContainer(name).remove({ force: true, v: false });
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode !== 404) throw engineError(error, `removing ${name}`);
  }
  // Its secret files (secrets.as: files) go with it, unless another container mounts them.
  await secretFiles?.release();
}

export function managedFilter(platform: string, role: string): string {
  return JSON.stringify({ label: [`${LABEL.managed}=true`, `${LABEL.platform}=${platform}`, `${LABEL.role}=${role}`] });
}

/** Tenant containers of this platform that the plan no longer has. */
async function removeOrphans(docker: Docker, plan: PlatformPlan): Promise<Change[]> {
  const wanted = new Set(plan.environments.flatMap((env: EnvironmentPlan) => env.components.flatMap((c) => c.containers.map((x) => x.name))));
  const running = await engine("listing tenant containers", () => docker.listContainers({ all: true, filters: managedFilter(plan.platform, "tenant") }));
  const changes: Change[] = [];
  for (const container of running) {
    const name = container.Names[0]!.replace(/^\//, "");
    if (wanted.has(name)) continue;
    await removeContainer(docker, name);
    changes.push({ kind: "removed", target: name });
  }
  return changes;
}
