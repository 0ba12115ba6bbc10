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
import { engine, execIn, inspectContainer, logTail, waitHealthy, type Docker } from "../host/docker.js";
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
  /** Brings up the server and every planned database; returns DATABASE_URL per "app/env". */
  converge(plan: PlatformPlan, progress: Progress): Promise<{ changes: Change[]; urls: Record<string, string> }>;
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
      Interval: 1_000_000_000,
      Timeout: 3_000_000_000,
      Retries: 30,
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
  let changed = false;
  for (const network of wanted) {
    if (attached.includes(network)) continue;
    await engine(`connecting PostgreSQL to ${network}`, () => docker.getNetwork(network).connect({ Container: container }));
    changed = true;
  }
  for (const network of attached) {
    if (wanted.has(network) || !network.startsWith("berth-")) continue;
    await engine(`disconnecting PostgreSQL from ${network}`, () => docker.getNetwork(network).disconnect({ Container: container, Force: true }));
    changed = true;
  }
  return changed;
}

async function ensureServer(docker: Docker, plan: PlatformPlan, password: string, progress: Progress): Promise<{ changes: Change[]; host: string }> {
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
  if (!current) {
    progress(`starting ${name}`);
    await engine(`creating ${name}`, () => docker.createContainer(options));
    await alignNetworks(docker, plan, name, [controlNetwork(plan.platform).name]);
    await engine(`starting ${name}`, () => docker.getContainer(name).start());
    if (!changes.some((c) => c.target === name)) changes.push({ kind: "created", target: name });
  } else {
    if (await alignNetworks(docker, plan, name, Object.keys(current.NetworkSettings.Networks))) changes.push({ kind: "updated", target: `${name} networks` });
    if (!current.State.Running) {
      await engine(`starting ${name}`, () => docker.getContainer(name).start());
      changes.push({ kind: "started", target: name });
    }
  }
  const health = await waitHealthy(docker, name, 60_000);
  if (!health.ok) {
    throw new BerthError("DATABASE_FAILED", `PostgreSQL did not become ready: ${health.reason}\n${await logTail(docker, name)}`, "Check the log above; the data volume is untouched.");
  }
  const info = await inspectContainer(docker, name);
  const host = info?.NetworkSettings.Networks[controlNetwork(plan.platform).name]?.IPAddress;
  if (!host) throw new BerthError("DATABASE_FAILED", `PostgreSQL has no address on ${controlNetwork(plan.platform).name}`);
  return { changes, host };
}

/** Writes pg_hba.conf inside the server when it differs; the caller reloads. */
async function installHba(docker: Docker, container: string, url: string, hba: string): Promise<boolean> {
  // Read over the admin connection: cheaper than an exec on every (no-op) apply.
  const current = await withAdmin(url, async (client) => (await client.query<{ hba: string }>("select pg_read_file(current_setting('hba_file')) as hba")).rows[0]?.hba);
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
  const admin = async (plan: PlatformPlan, progress: Progress) => {
    if (plan.postgres.kind === "external") return { url: plan.postgres.url, changes: [] as Change[], tenantHost: new URL(plan.postgres.url).hostname, container: undefined };
    const password = await adminPassword(stateDir);
    const server = await ensureServer(docker, plan, password, progress);
    const url = `postgresql://${ADMIN_ROLE}:${encodeURIComponent(password)}@${server.host}:${POSTGRES_PORT}/${ADMIN_DATABASE}`;
    return { url, changes: server.changes, tenantHost: plan.postgres.container, container: plan.postgres.container };
  };
  return {
    async converge(plan, progress) {
      const databases = plannedDatabases(plan);
      if (databases.length === 0 && plan.postgres.kind === "container" && !(await inspectContainer(docker, plan.postgres.container))) {
        return { changes: [], urls: {} };
      }
      const server = await admin(plan, progress);
      const changes = [...server.changes];
      const hbaChanged = server.container ? await installHba(docker, server.container, server.url, renderHba({ admin: ADMIN_ROLE, plans: databases })) : false;
      const dbChanges = await convergeDatabases(server.url, databases, passwords);
      if (hbaChanged) await withAdmin(server.url, reloadConfig);
      changes.push(...dbChanges.map((change) => ({ kind: "updated" as const, target: `database ${change.target}`, detail: change.statement })));
      if (hbaChanged) changes.push({ kind: "updated", target: "pg_hba.conf" });
      const urls: Record<string, string> = {};
      for (const env of plan.environments) {
        if (env.database) urls[`${env.app}/${env.env}`] = databaseUrl(env.database, await passwords.passwordFor(env.database.role), server.tenantHost);
      }
      return { changes, urls };
    },
    async rotatePassword(plan, database, progress) {
      const server = await admin(plan, progress);
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
      const server = await admin(plan, progress);
      const planned = new Set(plannedDatabases(plan).map((db) => db.name));
      const unused = (await withAdmin(server.url, listManagedDatabases)).filter((name) => !planned.has(name));
      if (unused.length === 0) return [];
      const dbChanges = await convergeDatabases(server.url, plannedDatabases(plan), passwords, { purge: unused });
      return dbChanges.map((change) => ({ kind: "removed" as const, target: `database ${change.target}`, detail: change.statement }));
    },
  };
}
