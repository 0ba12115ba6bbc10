// The shared PostgreSQL as a platform container: its volume, networks and health, the
// pg_hba it enforces, and the tenant databases converged through berth's admin connection.
import type Dockerode from "dockerode";
import type pg from "pg";
import { join } from "node:path";
import { connectAdmin, convergeDatabases, listManagedDatabases, reloadConfig, setRolePassword } from "../database/apply.js";
import { renderHba } from "../database/hba.js";
import { FilePasswordStore } from "../database/passwords.js";
import { generatePassword } from "../database/scram.js";
import { databaseUrl, HBA_FILE, PGDATA, POSTGRES_PORT, postgresServerSettings } from "../database/server.js";
import { BerthError } from "../errors.js";
import { engine, execIn, exitReason, inspectContainer, logTail, type Docker } from "../host/docker.js";
import { writeFileAtomic } from "../host/files.js";
import { platformLabels } from "../plan/names.js";
import type { DatabasePlan, PlatformPlan } from "../plan/types.js";
import type { Change } from "./apply.js";
import { configHashOf, TENANT_LOG_CONFIG, withConfigHash } from "./containers.js";
import type { Progress } from "./images.js";
import { controlNetwork } from "./networks.js";
import { readFile } from "node:fs/promises";

/** The admin role berth connects as (POSTGRES_USER of the container). */
export const ADMIN_ROLE = "berth";
const ADMIN_DATABASE = "berth";

export interface DatabaseRuntime {
  /**
   * Brings up the server and every planned database; returns DATABASE_URL per "app/env".
   * `networks`, when given, settles once the environments' networks exist: until then only the
   * control network is needed, so a new server starts (and initializes) while they are created.
   */
  converge(plan: PlatformPlan, progress: Progress, networks?: Promise<unknown>): Promise<{ changes: Change[]; urls: Record<string, string> }>;
  /** Drops databases of environments no longer planned, only when purging. */
  removeUnused(plan: PlatformPlan, purge: boolean, progress: Progress): Promise<Change[]>;
  /**
   * Gives the environment's role a new generated password, saved first, then set on the
   * server (sessions already open stay open). `restore` puts the previous one back, on both.
   */
  rotatePassword(plan: PlatformPlan, database: DatabasePlan, progress: Progress): Promise<PasswordRotation>;
}

export interface PasswordRotation {
  restore(): Promise<void>;
}

function plannedDatabases(plan: PlatformPlan): DatabasePlan[] {
  return plan.environments.flatMap((env) => (env.database ? [env.database] : []));
}

async function adminPassword(stateDir: string): Promise<string> {
  const file = join(stateDir, "postgres-admin-password");
  const existing = await readFile(file, "utf8").catch(() => undefined);
  if (existing) return existing.trim();
  const password = generatePassword();
  await writeFileAtomic(file, password, 0o600);
  return password;
}

export function postgresCreateOptions(plan: PlatformPlan, password: string): Dockerode.ContainerCreateOptions {
  const postgres = plan.postgres;
  if (postgres.kind !== "container") throw new Error("postgresCreateOptions needs a container plan");
  return withConfigHash({
    name: postgres.container,
    Image: postgres.image,
    Cmd: ["postgres", ...postgresServerSettings(postgres)],
    Env: [`POSTGRES_USER=${ADMIN_ROLE}`, `POSTGRES_PASSWORD=${password}`, `POSTGRES_DB=${ADMIN_DATABASE}`, `PGDATA=${PGDATA}`],
    Labels: postgres.labels,
    StopSignal: "SIGINT",
    StopTimeout: 30,
    Healthcheck: {
      Test: ["CMD", "pg_isready", "-U", ADMIN_ROLE, "-d", ADMIN_DATABASE, "-h", "127.0.0.1"],
      // For `docker ps` and the engine's events: berth waits on its own admin connection
      // (connectWhenReady), so a short interval would only cost CPU all day.
      Interval: 10_000_000_000,
      Timeout: 3_000_000_000,
      Retries: 3,
    },
    HostConfig: {
      NetworkMode: controlNetwork(plan.platform).name,
      Mounts: [{ Type: "volume", Source: postgres.volume, Target: PGDATA }],
      RestartPolicy: { Name: "unless-stopped" },
      SecurityOpt: ["no-new-privileges:true"],
      LogConfig: TENANT_LOG_CONFIG,
      ShmSize: 128 * 1024 * 1024,
    },
  });
}

async function ensureVolume(docker: Docker, plan: PlatformPlan, name: string): Promise<Change[]> {
  try {
    await docker.getVolume(name).inspect();
    return [];
  } catch {
    await engine(`creating volume ${name}`, () => docker.createVolume({ Name: name, Labels: platformLabels(plan.platform, "volume") }));
    return [{ kind: "created", target: `volume ${name}` }];
  }
}

/** Attaches the server to exactly the networks of environments with a database (and its control network). */
async function alignNetworks(docker: Docker, plan: PlatformPlan, container: string, attached: string[]): Promise<boolean> {
  if (plan.postgres.kind !== "container") return false;
  const wanted = new Set([...plan.postgres.networks, controlNetwork(plan.platform).name]);
  const connect = [...wanted].filter((network) => !attached.includes(network));
  const disconnect = attached.filter((network) => !wanted.has(network) && network.startsWith("berth-"));
  // Side by side: each is an engine round trip of its own.
  await Promise.all([
    ...connect.map((network) => engine(`connecting PostgreSQL to ${network}`, () => docker.getNetwork(network).connect({ Container: container }))),
    ...disconnect.map((network) => engine(`disconnecting PostgreSQL from ${network}`, () => docker.getNetwork(network).disconnect({ Container: container, Force: true }))),
  ]);
  return connect.length + disconnect.length > 0;
}

/** The admin URL of the server at `host`. */
function adminUrl(password: string, host: string): string {
  return `postgresql://${ADMIN_ROLE}:${encodeURIComponent(password)}@${host}:${POSTGRES_PORT}/${ADMIN_DATABASE}`;
}

async function ensureServer(docker: Docker, plan: PlatformPlan, password: string, progress: Progress, networks: Promise<unknown> = Promise.resolve()): Promise<{ changes: Change[]; host: string; client: pg.Client }> {
  if (plan.postgres.kind !== "container") throw new Error("ensureServer needs a container plan");
  const changes = await ensureVolume(docker, plan, plan.postgres.volume);
  const options = postgresCreateOptions(plan, password);
  const name = plan.postgres.container;
  let current = await inspectContainer(docker, name);
  if (current && current.Config.Labels["berth.config-hash"] !== configHashOf(options)) {
    progress(`replacing ${name} (its data volume is kept)`);
    await engine(`removing ${name}`, () => docker.getContainer(name).remove({ force: true }));
    current = undefined;
    changes.push({ kind: "replaced", target: name });
  }
  let attaching: Promise<unknown> = Promise.resolve();
  if (!current) {
    progress(`starting ${name}`);
    // Created on the control network (berth's way in); the environments' networks are attached
    // once they exist, while the server initializes.
    await engine(`creating ${name}`, () => docker.createContainer(options));
    await engine(`starting ${name}`, () => docker.getContainer(name).start());
    attaching = networks.then(() => alignNetworks(docker, plan, name, [controlNetwork(plan.platform).name]));
    if (!changes.some((c) => c.target === name)) changes.push({ kind: "created", target: name });
  } else {
    await networks;
    if (await alignNetworks(docker, plan, name, Object.keys(current.NetworkSettings.Networks))) changes.push({ kind: "updated", target: `${name} networks` });
    if (!current.State.Running) {
      await engine(`starting ${name}`, () => docker.getContainer(name).start());
      changes.push({ kind: "started", target: name });
      current = undefined;
    }
  }
  const [ready] = await Promise.all([connectWhenReady(docker, name, controlNetwork(plan.platform).name, password, 60_000, current), attaching]);
  if (!ready.ok) {
    throw new BerthError("DATABASE_FAILED", `PostgreSQL did not become ready: ${ready.reason}\n${await logTail(docker, name)}`, "Check the log above; the data volume is untouched.");
  }
  return { changes, host: ready.host, client: ready.client };
}

/** How often a starting server is asked for a connection, and how often the engine is asked how it runs. */
const READY_CONNECT_MS = 50;
const READY_ENGINE_EVERY = 5;

/**
 * Errors of a server that does not take connections yet: nothing listens on TCP (the first
 * start's initialisation listens on the unix socket only), it is starting up (57P03) or the
 * socket was closed under us. Anything else (a wrong password) is an answer, not a wait.
 */
function isNotReadyYet(error: unknown): boolean {
  const cause = (error as { cause?: unknown }).cause ?? error;
  const { code, message } = cause as { code?: string; message?: string };
  return ["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "EPIPE", "57P03"].includes(code ?? "") || /Connection terminated/i.test(message ?? "");
}

/**
 * Waits for the server by connecting to it as the admin (every 50 ms) rather than for the
 * engine's health check (whose first run comes a whole interval after the start); the engine
 * is asked every fifth round whether the container still runs. Ready means berth's own admin
 * connection works: that connection is returned, for the converge to use.
 */
async function connectWhenReady(
  docker: Docker,
  name: string,
  network: string,
  password: string,
  timeoutMs: number,
  known?: Dockerode.ContainerInspectInfo,
): Promise<{ ok: true; host: string; client: pg.Client } | { ok: false; reason: string }> {
  const deadline = Date.now() + timeoutMs;
  let info = known;
  for (let round = 0; ; round++) {
    if (!info || round % READY_ENGINE_EVERY === 0) info = round === 0 && info ? info : await inspectContainer(docker, name);
    if (!info) return { ok: false, reason: "the container disappeared" };
    const state = info.State;
    // With a restart policy a crashing server is restarted at once: a restart is an exit.
    if (!state.Running || state.Restarting || (known === undefined && info.RestartCount > 0)) return { ok: false, reason: await exitReason(docker, name, info) };
    const host = info.NetworkSettings.Networks[network]?.IPAddress;
    if (host) {
      try {
        return { ok: true, host, client: await connectAdmin(adminUrl(password, host)) };
      } catch (error) {
        if (!isNotReadyYet(error)) throw error;
      }
    }
    if (Date.now() > deadline) return { ok: false, reason: `no connection after ${Math.round(timeoutMs / 1000)} s` };
    await new Promise((resolve) => setTimeout(resolve, READY_CONNECT_MS));
  }
}

/** Writes pg_hba.conf inside the server when it differs; the caller reloads. */
async function installHba(docker: Docker, container: string, client: pg.Client, hba: string): Promise<boolean> {
  // Read over the admin connection: cheaper than an exec on every (no-op) apply.
  const current = (await client.query<{ hba: string }>("select pg_read_file(current_setting('hba_file')) as hba")).rows[0]?.hba;
  if (current === hba) return false;
  // argv, not a shell string: the content is passed as a positional parameter.
  const written = await execIn(docker, container, ["sh", "-c", 'printf "%s" "$1" > "$2.new" && mv "$2.new" "$2"', "sh", hba, HBA_FILE]);
  if (written.exitCode !== 0) throw new BerthError("DATABASE_FAILED", `writing pg_hba.conf failed: ${written.output.trim()}`);
  return true;
}

async function withAdmin<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connectAdmin(url);
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

export function containerPostgres(docker: Docker, stateDir: string): DatabaseRuntime {
  const passwords = new FilePasswordStore(stateDir);
  /** The server, up; `client` is an admin connection already open (container server only), for the caller to close. */
  const admin = async (plan: PlatformPlan, progress: Progress, networks?: Promise<unknown>): Promise<{ url: string; changes: Change[]; tenantHost: string; container?: string; client?: pg.Client }> => {
    if (plan.postgres.kind === "external") return { url: plan.postgres.url, changes: [], tenantHost: new URL(plan.postgres.url).hostname };
    const password = await adminPassword(stateDir);
    const server = await ensureServer(docker, plan, password, progress, networks);
    return { url: adminUrl(password, server.host), changes: server.changes, tenantHost: plan.postgres.container, container: plan.postgres.container, client: server.client };
  };
  /** admin() for callers that open their own connections. */
  const adminUrlOnly = async (plan: PlatformPlan, progress: Progress) => {
    const server = await admin(plan, progress);
    await server.client?.end();
    return server;
  };
  return {
    async converge(plan, progress, networks) {
      const databases = plannedDatabases(plan);
      if (databases.length === 0 && plan.postgres.kind === "container" && !(await inspectContainer(docker, plan.postgres.container))) {
        return { changes: [], urls: {} };
      }
      const server = await admin(plan, progress, networks);
      const changes = [...server.changes];
      let hbaChanged = false;
      let dbChanges: Awaited<ReturnType<typeof convergeDatabases>>;
      const client = server.client ?? (await connectAdmin(server.url));
      try {
        // pg_hba.conf is written (it takes effect at the reload below) while the roles and
        // databases converge, over the one admin connection the readiness wait opened.
        const [hba, converged] = await Promise.allSettled([
          server.container ? installHba(docker, server.container, client, renderHba({ admin: ADMIN_ROLE, plans: databases })) : Promise.resolve(false),
          convergeDatabases(server.url, databases, passwords, { client }),
        ]);
        if (hba.status === "rejected") throw hba.reason;
        if (converged.status === "rejected") throw converged.reason;
        hbaChanged = hba.value;
        dbChanges = converged.value;
        if (hbaChanged) await reloadConfig(client);
      } finally {
        await client.end();
      }
      changes.push(...dbChanges.map((change) => ({ kind: "updated" as const, target: `database ${change.target}`, detail: change.statement })));
      if (hbaChanged) changes.push({ kind: "updated", target: "pg_hba.conf" });
      const urls: Record<string, string> = {};
      for (const env of plan.environments) {
        if (env.database) urls[`${env.app}/${env.env}`] = databaseUrl(env.database, await passwords.passwordFor(env.database.role), server.tenantHost);
      }
      return { changes, urls };
    },
    async rotatePassword(plan, database, progress) {
      const server = await adminUrlOnly(plan, progress);
      const previous = await passwords.passwordFor(database.role);
      const next = generatePassword();
      await passwords.set(database.role, next);
      try {
        await setRolePassword(server.url, database.role, next);
      } catch (error) {
        await passwords.set(database.role, previous);
        throw error;
      }
      progress(`database role ${database.role}: new password set (sessions already open keep running)`);
      return {
        async restore() {
          await passwords.set(database.role, previous);
          await setRolePassword(server.url, database.role, previous);
          progress(`database role ${database.role}: previous password restored`);
        },
      };
    },
    async removeUnused(plan, purge, progress) {
      if (!purge) return [];
      if (plan.postgres.kind === "container" && !(await inspectContainer(docker, plan.postgres.container))) return [];
      const server = await adminUrlOnly(plan, progress);
      const planned = new Set(plannedDatabases(plan).map((db) => db.name));
      const unused = (await withAdmin(server.url, listManagedDatabases)).filter((name) => !planned.has(name));
      if (unused.length === 0) return [];
      const dbChanges = await convergeDatabases(server.url, plannedDatabases(plan), passwords, { purge: unused });
      return dbChanges.map((change) => ({ kind: "removed" as const, target: `database ${change.target}`, detail: change.statement }));
    },
  };
}
