// The proxy container and its configuration: upstream addresses are read from the running
// containers, the config is rendered, validated and swapped; nginx's workers adopt a new route
// table by themselves, and anything else takes a graceful reload.
import type Dockerode from "dockerode";
import { access, mkdir, readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import lockfile from "proper-lockfile";
import { BerthError } from "../errors.js";
import { demuxLogs, engine, inspectContainer, logTail, waitHealthy, type Docker, type HealthOutcome } from "../host/docker.js";
import { writeFileAtomic } from "../host/files.js";
import type { PlatformPlan } from "../plan/types.js";
import { names, platformLabels } from "../plan/names.js";
import {
  answersToken,
  awaitRouteTable,
  PROXY_MOUNT,
  proxyDir,
  pruneGenerations,
  reloadProxy,
  routeTableChecker,
  stageProxyConfig,
  validateInContainer,
  type ProxyValidator,
} from "../proxy/apply.js";
import { renderProxyConfig, type ProxyObserved } from "../proxy/render.js";
import { certificateFiles, ensureSelfSigned } from "../tls/selfsigned.js";
import type { Change } from "./apply.js";
import { configHashOf, TENANT_LOG_CONFIG, withConfigHash } from "./containers.js";
import type { Progress } from "./images.js";

export const ACME_WEBROOT = "/var/www/acme";
const LOG_DIR = "/var/log/berth";

export function proxyCreateOptions(plan: PlatformPlan, stateDir: string): Dockerode.ContainerCreateOptions {
  const { proxy } = plan;
  const firstNetwork = proxy.networks[0] ?? "bridge";
  return withConfigHash({
    name: proxy.container,
    Image: proxy.image,
    Cmd: ["nginx", "-g", "daemon off;", "-c", `${PROXY_MOUNT}/current/nginx.conf`],
    // glibc's malloc on transparent huge pages: nginx allocates its parsed configuration in
    // many small pieces, and with a thousand sites a reload (and `nginx -t`, run by exec with
    // this environment) spends most of its time in page faults on 4 KiB pages. Ignored by a
    // glibc older than 2.35 and where huge pages are off.
    Env: ["GLIBC_TUNABLES=glibc.malloc.hugetlb=1"],
    // The rendered configuration needs an image with nginx's Lua module (berth-nginx:1.22 has it):
    // a proxy container created before berth routed by Lua is replaced, with the image as tagged now.
    Labels: { ...proxy.labels, "berth.proxy.router": "lua" },
    ExposedPorts: { "80/tcp": {}, "443/tcp": {} },
    StopSignal: "SIGQUIT",
    Healthcheck: {
      Test: ["CMD-SHELL", "kill -0 $(cat /run/nginx.pid)"],
      // For `docker ps` and the engine's events: berth itself asks nginx for its configuration's
      // token when it needs to know, so a short interval would only cost CPU all day.
      Interval: 10_000_000_000,
      Timeout: 2_000_000_000,
      Retries: 3,
    },
    HostConfig: {
      NetworkMode: firstNetwork,
      PortBindings: {
        "80/tcp": [{ HostIp: proxy.bind, HostPort: String(proxy.httpPort) }],
        "443/tcp": [{ HostIp: proxy.bind, HostPort: String(proxy.httpsPort) }],
      },
      Binds: [`${proxyDir(stateDir).root}:${PROXY_MOUNT}:ro`, `${join(stateDir, "acme")}:${ACME_WEBROOT}:ro`],
      Mounts: [{ Type: "volume", Source: proxy.volumes.logs, Target: LOG_DIR }],
      RestartPolicy: { Name: "unless-stopped" },
      SecurityOpt: ["no-new-privileges:true"],
      CapDrop: ["ALL"],
      // The master binds 80/443 and switches workers to an unprivileged user.
      CapAdd: ["NET_BIND_SERVICE", "SETUID", "SETGID", "CHOWN", "DAC_OVERRIDE"],
      LogConfig: TENANT_LOG_CONFIG,
    },
  });
}

export interface Running {
  networks: Record<string, string>;
  isHealthy: boolean;
}

/** Running tenant containers of the platform by name, from one engine call (not one per container). */
export async function runningContainers(docker: Docker, platform: string): Promise<Map<string, Running>> {
  const list = await engine("listing containers", () =>
    docker.listContainers({ filters: JSON.stringify({ label: [`berth.platform=${platform}`, "berth.role=tenant"] }) }),
  );
  const running = new Map<string, Running>();
  for (const container of list) {
    const networks: Record<string, string> = {};
    for (const [name, endpoint] of Object.entries(container.NetworkSettings.Networks)) networks[name] = endpoint.IPAddress;
    // Status reads "Up 3 minutes (healthy)", "(health: starting)", "(unhealthy)" or has no health part.
    // "starting" counts as healthy: berth routes to a new container only after its own probe passed.
    const isHealthy = !/\(unhealthy\)/.test(container.Status);
    running.set(container.Names[0]!.replace(/^\//, ""), { networks, isHealthy });
  }
  return running;
}

/**
 * Addresses of the containers of each component, routed or not (a route to it is then a change
 * of the route table alone). Healthy ones only, while any is healthy: a failing replica gets no
 * traffic; if none is healthy, all running ones do (better a struggling upstream than a certain 502).
 */
function observeUpstreams(plan: PlatformPlan, serving: Map<string, string>, running: Map<string, Running>): ProxyObserved["upstreams"] {
  const upstreams: ProxyObserved["upstreams"] = {};
  for (const env of plan.environments) {
    for (const component of env.components) {
      const candidates = component.containers
        .map((container) => running.get(serving.get(container.name) ?? ""))
        .filter((container): container is Running => container?.networks[env.network.name] !== undefined);
      const healthy = candidates.filter((container) => container.isHealthy);
      upstreams[names.upstream(env.app, env.env, component.name)] = (healthy.length > 0 ? healthy : candidates).map(
        (container) => `${container.networks[env.network.name]}:${component.port}`,
      );
    }
  }
  return upstreams;
}

/** What serves now: each planned container that runs under its own name. */
export async function servingNow(docker: Docker, plan: PlatformPlan, running?: Map<string, Running>): Promise<Map<string, string>> {
  running ??= await runningContainers(docker, plan.platform);
  const serving = new Map<string, string>();
  for (const env of plan.environments) {
    for (const component of env.components) {
      for (const container of component.containers) if (running.has(container.name)) serving.set(container.name, container.name);
    }
  }
  return serving;
}

async function observeCertificates(plan: PlatformPlan, stateDir: string): Promise<ProxyObserved["certificates"]> {
  const certs = proxyDir(stateDir).certs;
  const entries = await Promise.all(
    plan.environments.map(async (env): Promise<[string, boolean]> => {
      const files = certificateFiles(certs, `${env.app}-${env.env}`);
      return [`${env.app}/${env.env}`, env.tls.mode !== "off" && (await access(files.cert).then(() => true, () => false))];
    }),
  );
  return Object.fromEntries(entries);
}

/** A throwaway container that runs `nginx -t` with the proxy's mounts, when no proxy runs yet. */
function validateOneOff(docker: Docker, options: Dockerode.ContainerCreateOptions): ProxyValidator {
  return async (mainFile) => {
    const container = await engine("starting a config check container", () =>
      docker.createContainer({
        Image: options.Image,
        Cmd: ["nginx", "-t", "-q", "-c", mainFile],
        Labels: { ...options.Labels, "berth.role": "proxy-check" },
        HostConfig: { Binds: options.HostConfig?.Binds, Mounts: options.HostConfig?.Mounts, AutoRemove: false },
      }),
    );
    try {
      await container.start();
      const result = (await container.wait()) as { StatusCode: number };
      const logs = (await container.logs({ stdout: true, stderr: true })) as unknown as Buffer;
      return { ok: result.StatusCode === 0, output: demuxLogs(logs) };
    } finally {
      await container.remove({ force: true });
    }
  };
}

/** Whether something else listens on the address; our own proxy's ports do not count. */
function isPortTaken(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", (error: NodeJS.ErrnoException) => resolve(error.code === "EADDRINUSE"));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(false)));
  });
}

/**
 * Before anything changes: when the proxy container is to be created (or re-created with
 * other ports), its host ports must be free, or apply stops with the port named.
 */
export async function checkProxyPorts(docker: Docker, plan: PlatformPlan): Promise<void> {
  const current = await inspectContainer(docker, plan.proxy.container);
  const bound = Object.values(current?.HostConfig.PortBindings ?? {}).flat() as { HostIp?: string; HostPort?: string }[];
  for (const port of [plan.proxy.httpPort, plan.proxy.httpsPort]) {
    const isOurs = current?.State.Running && bound.some((b) => b.HostPort === String(port) && (b.HostIp ?? "") === plan.proxy.bind);
    if (isOurs) continue;
    if (await isPortTaken(plan.proxy.bind, port)) {
      throw new BerthError(
        "PORT_TAKEN",
        `port ${plan.proxy.bind}:${port} is already taken by another program; nothing was changed`,
        `Stop what listens there (ss -ltnp 'sport = :${port}'), or set another proxy.httpPort/httpsPort in platform.yaml.`,
      );
    }
  }
}

async function ensureCertificates(plan: PlatformPlan, stateDir: string): Promise<void> {
  const certs = proxyDir(stateDir).certs;
  await Promise.all(
    plan.environments
      .filter((env) => env.tls.mode === "self-signed")
      .map((env) => ensureSelfSigned(certificateFiles(certs, `${env.app}-${env.env}`), env.domains)),
  );
}

export interface EnsureProxyOptions {
  /** The platform's running tenant containers, when the caller has just listed them (runningContainers). */
  running?: Map<string, Running>;
}

/** Whether ensureProxy would create or replace the proxy container (it is missing, stopped or planned otherwise). */
export async function proxyNeedsContainer(docker: Docker, plan: PlatformPlan, stateDir: string): Promise<boolean> {
  const current = await inspectContainer(docker, plan.proxy.container);
  return !(current?.State.Running === true && current.Config.Labels["berth.config-hash"] === configHashOf(proxyCreateOptions(plan, stateDir)));
}

/** The configuration for what runs now, and the proxy container it would go to. */
/**
 * Proxy changes go one at a time, across processes too: berthd runs each deploy in a process of
 * its own, side by side, and a CLI may run beside it. Each stages its generation alone and
 * renders from what runs when its turn comes. Within a process the turns queue in order; between
 * processes a lock directory beside the proxy's configuration decides (proper-lockfile: an
 * atomic mkdir, kept fresh while held, taken over once stale after a crash).
 */
let proxyTurn: Promise<unknown> = Promise.resolve();
/** Counts finished turns: a listing of running containers taken before one is stale. */
let turnsDone = 0;

function inTurn<T>(stateDir: string, work: (isFresh: boolean) => Promise<T>): Promise<T> {
  const asked = turnsDone;
  const result = proxyTurn.then(() => withProxyLock(stateDir, (waited) => work(asked === turnsDone && !waited))).finally(() => turnsDone++);
  proxyTurn = result.catch(() => undefined);
  return result;
}

const LOCK_RETRY_MS = 15;
const LOCK_WAIT_MS = 120_000;

/** Runs `work` holding the platform's proxy lock; `waited` tells whether another process held it first. */
async function withProxyLock<T>(stateDir: string, work: (waited: boolean) => Promise<T>): Promise<T> {
  const root = proxyDir(stateDir).root;
  await mkdir(root, { recursive: true });
  const options = { realpath: false, lockfilePath: join(root, ".turn.lock"), stale: 20_000, update: 5_000, onCompromised: () => undefined };
  let waited = false;
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(root, options);
  } catch (error) {
    if ((error as { code?: string }).code !== "ELOCKED") throw error;
    waited = true;
    try {
      release = await lockfile.lock(root, { ...options, retries: { retries: LOCK_WAIT_MS / LOCK_RETRY_MS, factor: 1, minTimeout: LOCK_RETRY_MS, maxTimeout: LOCK_RETRY_MS } });
    } catch (waitError) {
      if ((waitError as { code?: string }).code !== "ELOCKED") throw waitError;
      throw new BerthError("CONFLICT", `another berth process has been changing the proxy for over ${LOCK_WAIT_MS / 1000} s; nothing was changed`, "Check for a stuck berth or berthd job; the lock is taken over 20 s after its holder dies.");
    }
  }
  try {
    return await work(waited);
  } finally {
    await release().catch(() => undefined);
  }
}

/**
 * Containers that deploys in flight have switched traffic to, by planned name (web → web-next),
 * kept in a file beside the proxy's configuration so that every process sees them. Every render
 * honours them, so one environment's proxy change never sends another environment's traffic
 * back to the containers its deploy is about to stop. An entry whose container no longer runs
 * (a deploy that died) counts for nothing.
 */
const switchedFile = (stateDir: string) => join(proxyDir(stateDir).root, "switched.json");

async function readSwitched(stateDir: string): Promise<Map<string, string>> {
  const text = await readFile(switchedFile(stateDir), "utf8").catch(() => "{}");
  try {
    return new Map(Object.entries(JSON.parse(text) as Record<string, string>));
  } catch {
    return new Map();
  }
}

async function updateSwitched(stateDir: string, change: (held: Map<string, string>) => void): Promise<void> {
  await withProxyLock(stateDir, async () => {
    const held = await readSwitched(stateDir);
    change(held);
    await writeFileAtomic(switchedFile(stateDir), JSON.stringify(Object.fromEntries(held)));
  });
}

export function holdSwitch(stateDir: string, entries: Iterable<readonly [string, string]>): Promise<void> {
  return updateSwitched(stateDir, (held) => {
    for (const [name, container] of entries) held.set(name, container);
  });
}

export function releaseSwitch(stateDir: string, names: Iterable<string>): Promise<void> {
  return updateSwitched(stateDir, (held) => {
    for (const name of names) held.delete(name);
  });
}

/** `serving` with the held switches of deploys in flight, where their containers run. */
function withSwitched(serving: Map<string, string>, running: Map<string, Running>, switched: Map<string, string>): Map<string, string> {
  if (switched.size === 0) return serving;
  const merged = new Map(serving);
  for (const [name, container] of switched) if (running.has(container)) merged.set(name, container);
  return merged;
}

async function renderNow(docker: Docker, plan: PlatformPlan, stateDir: string, serving: Map<string, string>, running: Map<string, Running> | undefined) {
  const dir = proxyDir(stateDir);
  await Promise.all([mkdir(dir.certs, { recursive: true }), mkdir(dir.pages, { recursive: true }), mkdir(join(stateDir, "acme"), { recursive: true })]);
  // Independent reads at once: the running containers, the proxy container, the certificates.
  const [upstreams, certificates, current] = await Promise.all([
    Promise.all([running ? Promise.resolve(running) : runningContainers(docker, plan.platform), readSwitched(stateDir)]).then(([containers, switched]) =>
      observeUpstreams(plan, withSwitched(serving, containers, switched), containers),
    ),
    ensureCertificates(plan, stateDir).then(() => observeCertificates(plan, stateDir)),
    inspectContainer(docker, plan.proxy.container),
  ]);
  const rendered = renderProxyConfig(plan, { upstreams, certificates });
  const createOptions = proxyCreateOptions(plan, stateDir);
  const isReusable = current?.State.Running === true && current.Config.Labels["berth.config-hash"] === configHashOf(createOptions);
  return { dir, rendered, createOptions, current, isReusable };
}

/**
 * Prepares a switch ahead of time: the configuration for `serving` (new containers that are
 * still booting), written and checked by nginx but not swapped in. When the switch then
 * renders the same bytes, ensureProxy swaps to it without checking again. Does nothing when
 * the proxy container is not running as planned (ensureProxy would replace it). Never throws:
 * a configuration nginx rejects is rejected again, with its message, by the switch itself.
 */
export async function prepareProxy(docker: Docker, plan: PlatformPlan, stateDir: string, serving: Map<string, string>, options: EnsureProxyOptions = {}): Promise<void> {
  await inTurn(stateDir, async (isFresh) => {
    try {
      const { dir, rendered, isReusable, current } = await renderNow(docker, plan, stateDir, serving, isFresh ? options.running : undefined);
      if (isReusable && current) {
        await stageProxyConfig(dir, rendered, validateInContainer(docker, plan.proxy.container), { swap: false, checkRouteTable: routeTableChecker(addressesOf(current)) });
      }
    } catch {
      // The switch does the same work again and reports what failed.
    }
  });
}

export function ensureProxy(
  docker: Docker,
  plan: PlatformPlan,
  stateDir: string,
  serving: Map<string, string>,
  progress: Progress,
  options: EnsureProxyOptions = {},
): Promise<Change[]> {
  return inTurn(stateDir, (isFresh) => ensureProxyNow(docker, plan, stateDir, serving, progress, isFresh ? options.running : undefined));
}

async function ensureProxyNow(docker: Docker, plan: PlatformPlan, stateDir: string, serving: Map<string, string>, progress: Progress, running: Map<string, Running> | undefined): Promise<Change[]> {
  const { dir, rendered, createOptions, current, isReusable } = await renderNow(docker, plan, stateDir, serving, running);
  const changes: Change[] = [];

  if (isReusable && current) {
    const addresses = addressesOf(current);
    const [networks, staged] = await Promise.all([
      connectNetworks(docker, plan, Object.keys(current.NetworkSettings.Networks)),
      stageProxyConfig(dir, rendered, validateInContainer(docker, plan.proxy.container), { checkRouteTable: routeTableChecker(addresses) }),
    ]);
    if (staged.changed || networks.length > 0) {
      const probe = addresses.length > 0 ? { token: rendered.token, addresses } : undefined;
      // A new route table alone: the workers adopt it without a reload, or berth reloads after all.
      const isAdopted = staged.isRouteTableOnly && networks.length === 0 && probe !== undefined && (await awaitRouteTable(probe));
      if (!isAdopted) await reloadProxy(docker, plan.proxy.container, { probe, master: { containerId: current.Id, pid: current.State.Pid } });
      changes.push({ kind: "updated", target: "proxy configuration", detail: `generation ${staged.generation}${isAdopted ? " (route table, no reload)" : ""}` });
    }
    await pruneGenerations(dir);
    return changes;
  }

  // Created here, labelled, so that down --purge finds it (Docker would create it unlabelled).
  await docker.getVolume(plan.proxy.volumes.logs).inspect().catch(() =>
    engine(`creating volume ${plan.proxy.volumes.logs}`, () => docker.createVolume({ Name: plan.proxy.volumes.logs, Labels: platformLabels(plan.platform, "volume") })),
  );
  await stageProxyConfig(dir, rendered, validateOneOff(docker, createOptions));
  if (current) {
    progress(`replacing ${plan.proxy.container}`);
    await engine(`removing ${plan.proxy.container}`, () => docker.getContainer(plan.proxy.container).remove({ force: true }));
  } else progress(`starting ${plan.proxy.container}`);
  await engine(`creating ${plan.proxy.container}`, () => docker.createContainer(createOptions));
  await connectNetworks(docker, plan, [createOptions.HostConfig!.NetworkMode!]);
  await engine(`starting ${plan.proxy.container}`, () => docker.getContainer(plan.proxy.container).start());
  // Ready when nginx answers the configuration's token: no wait for the engine's first health check.
  const health = await waitServing(docker, plan.proxy.container, rendered.token, 30_000);
  if (!health.ok) {
    throw new BerthError("INTERNAL", `the proxy did not start: ${health.reason}\n${await logTail(docker, plan.proxy.container)}`);
  }
  await pruneGenerations(dir);
  changes.push({ kind: current ? "replaced" : "created", target: plan.proxy.container });
  return changes;
}

/**
 * A started proxy container is ready once nginx answers the token of its configuration (asked
 * every 10 ms at its addresses); it has failed if it stops running. Falls back to the engine's
 * health check when the container has no address berth can reach.
 */
async function waitServing(docker: Docker, container: string, token: string, timeoutMs: number): Promise<HealthOutcome> {
  const deadline = Date.now() + timeoutMs;
  let addresses: string[] = [];
  for (let round = 0; Date.now() < deadline; round++) {
    if (round % 10 === 0) {
      const info = await inspectContainer(docker, container);
      if (!info?.State.Running || info.State.Restarting) return { ok: false, reason: `the container exited with code ${info?.State.ExitCode ?? "?"}` };
      addresses = addressesOf(info);
      if (addresses.length === 0) return waitHealthy(docker, container, Math.max(0, deadline - Date.now()));
    }
    if (await answersToken({ token, addresses })) return { ok: true };
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { ok: false, reason: `nginx did not answer within ${timeoutMs / 1000} s` };
}

/** The proxy container's addresses on its networks, where berth asks its generation server. */
function addressesOf(container: Dockerode.ContainerInspectInfo): string[] {
  return Object.values(container.NetworkSettings.Networks).map((network) => network.IPAddress).filter(Boolean);
}

/** Attaches the proxy to every environment network it lacks (removed networks detach it themselves). */
async function connectNetworks(docker: Docker, plan: PlatformPlan, attached: string[]): Promise<string[]> {
  const changed: string[] = [];
  for (const network of plan.proxy.networks) {
    if (attached.includes(network)) continue;
    await engine(`connecting the proxy to ${network}`, () => docker.getNetwork(network).connect({ Container: plan.proxy.container }));
    changed.push(network);
  }
  return changed;
}
