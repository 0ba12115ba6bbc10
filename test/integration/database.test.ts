// Tenant databases on a real PostgreSQL 15 (the berth-postgres:15 image, started here):
// convergence is idempotent and repairs drift, and a tenant role reaches its own database
// only, with its limits — each refusal checked after a positive control shows the same
// connection path works.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import pg from "pg";
import { connectAdmin, convergeDatabases, hbaFile, reloadConfig, type AdminConnection } from "../../src/database/apply.js";
import type { Change } from "../../src/database/diff.js";
import { renderHba } from "../../src/database/hba.js";
import { FilePasswordStore } from "../../src/database/passwords.js";
import { HBA_FILE, databaseUrl, postgresServerSettings } from "../../src/database/server.js";
import type { DatabasePlan, PostgresPlan } from "../../src/plan/types.js";

const IMAGE = "berth-postgres:15";
const LABELS = ["berth.test=true", "berth.test.suite=database"];
const CONTAINER = `berth-test-database-${process.pid}`;
const ADMIN = "berth";
const ADMIN_PASSWORD = randomBytes(18).toString("base64url");
const READY_WITHIN_MS = 90_000;

const SERVER: PostgresPlan = {
  kind: "container",
  container: CONTAINER,
  image: IMAGE,
  volume: "unused",
  maxConnections: 20,
  reservedConnections: 3,
  networks: [],
  labels: {},
};
const ALPHA: DatabasePlan = { name: "alpha_production", role: "alpha_production", connectionLimit: 3, statementTimeoutMs: 1500, idleInTransactionTimeoutMs: 60000 };
// Allowed more connections than the server has for tenants: it can exhaust them.
const BETA: DatabasePlan = { name: "beta_staging", role: "beta_staging", connectionLimit: 40, statementTimeoutMs: 30000, idleInTransactionTimeoutMs: 5000 };
const GAMMA: DatabasePlan = { name: "gamma_staging", role: "gamma_staging", connectionLimit: 5, statementTimeoutMs: 30000, idleInTransactionTimeoutMs: 60000 };

const exec = promisify(execFile);
const docker = async (...args: string[]): Promise<string> => (await exec("docker", args, { timeout: 60_000 })).stdout.trim();

let port = 0;
let stateDir = "";
let passwords: FilePasswordStore;
const admin = (): pg.ClientConfig => ({ host: "127.0.0.1", port, user: ADMIN, password: ADMIN_PASSWORD, database: ADMIN });
/** Everything berth printed while converging: must hold no password. */
const printed: string[] = [];
/** Passwords of purged roles, gone from the store but still never to be seen. */
const forgotten: string[] = [];

async function removeLeftovers(): Promise<void> {
  const ids = await docker("ps", "-aq", ...LABELS.flatMap((label) => ["--filter", `label=${label}`]));
  if (ids) await docker("rm", "-f", "-v", ...ids.split("\n"));
}

async function startServer(): Promise<void> {
  const args = [
    "run", "-d", "--name", CONTAINER, ...LABELS.flatMap((label) => ["--label", label]),
    "-e", `POSTGRES_USER=${ADMIN}`, "-e", `POSTGRES_PASSWORD=${ADMIN_PASSWORD}`, "-e", `POSTGRES_DB=${ADMIN}`,
    "-p", "127.0.0.1::5432",
    IMAGE, "postgres", ...postgresServerSettings(SERVER),
    // Every statement berth sends lands in the server log: the test proves no password does.
    "-c", "log_statement=all",
  ];
  try {
    await docker(...args);
  } catch (error) {
    // Seen under load on these machines; once is enough.
    if (!String((error as { stderr?: string }).stderr).includes("could not find bridge docker0")) throw error;
    await docker("rm", "-f", CONTAINER).catch(() => "");
    await docker(...args);
  }
  const published = await docker("port", CONTAINER, "5432/tcp");
  port = Number(published.split("\n")[0]!.split(":").pop());
  assert.ok(port > 0, `published port of ${CONTAINER}: ${published}`);
}

async function waitReady(): Promise<void> {
  const deadline = Date.now() + READY_WITHIN_MS;
  for (;;) {
    const client = new pg.Client({ ...admin(), connectionTimeoutMillis: 2000 });
    client.on("error", () => undefined);
    try {
      await client.connect();
      await client.query("SELECT 1");
      return;
    } catch (error) {
      const state = await docker("inspect", "--format", "{{.State.Status}}", CONTAINER).catch(() => "removed");
      if (state === "removed" || state === "exited" || state === "dead") {
        throw new Error(`${CONTAINER} is ${state} (removed by another run's cleanup of berth.test=true?): ${(error as Error).message}`);
      }
      if (Date.now() > deadline) {
        const logs = await exec("docker", ["logs", "--tail", "30", CONTAINER]).catch(() => ({ stdout: "", stderr: "" }));
        throw new Error(`PostgreSQL not ready within ${READY_WITHIN_MS} ms: ${(error as Error).message}\n${logs.stdout}${logs.stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

/** Runs a converge while recording what the process prints (and still printing it). */
async function converge(connection: AdminConnection, plans: DatabasePlan[], purge?: string[]): Promise<Change[]> {
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  const record = (write: typeof out) =>
    ((chunk: string | Uint8Array, ...rest: never[]) => {
      printed.push(String(chunk));
      return write(chunk, ...rest);
    }) as typeof out;
  process.stdout.write = record(out);
  process.stderr.write = record(err);
  try {
    return await convergeDatabases(connection, plans, passwords, purge ? { purge } : {});
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

async function tenantConfig(plan: DatabasePlan, database = plan.name): Promise<pg.ClientConfig> {
  return { host: "127.0.0.1", port, user: plan.role, password: await passwords.passwordFor(plan.role), database, connectionTimeoutMillis: 5000 };
}

async function connect(config: pg.ClientConfig): Promise<pg.Client> {
  const client = new pg.Client(config);
  client.on("error", () => undefined);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
  return client;
}

async function withClient<T>(config: pg.ClientConfig, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect(config);
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function settingOf(client: pg.Client, name: string): Promise<string> {
  const result = await client.query<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = $1", [name]);
  return result.rows[0]!.setting;
}

/** Renders pg_hba.conf for the plans, installs it and reloads. */
async function applyHba(plans: DatabasePlan[]): Promise<void> {
  const client = await connectAdmin(admin());
  try {
    await installHba(renderHba({ admin: ADMIN, plans }));
    await reloadConfig(client);
  } finally {
    await client.end();
  }
}

/** Writes pg_hba.conf the way the runtime will: a temp file beside it, then a rename. */
async function installHba(text: string): Promise<void> {
  const temp = `${HBA_FILE}.berth-new`;
  await new Promise<void>((resolve, reject) => {
    const child = spawn("docker", ["exec", "-i", "-u", "postgres", CONTAINER, "tee", temp], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`writing ${temp} failed (${code}): ${stderr}`))));
    child.stdin.end(text);
  });
  await docker("exec", "-u", "postgres", CONTAINER, "mv", "-f", temp, HBA_FILE);
}

before(async () => {
  await docker("image", "inspect", "--format", "{{.Id}}", IMAGE).catch(() => {
    throw new Error(`image ${IMAGE} is missing: build it with scripts/images.sh`);
  });
  await removeLeftovers();
  stateDir = await mkdtemp(join(tmpdir(), "berth-database-test-"));
  passwords = new FilePasswordStore(join(stateDir, "state"));
  await startServer();
  await waitReady();
});

after(async () => {
  if (process.env.BERTH_KEEP !== "1") await removeLeftovers();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

test("the server runs with the planned limits and scram-sha-256", async () => {
  await withClient(admin(), async (client) => {
    assert.equal(await settingOf(client, "max_connections"), "20");
    assert.equal(await settingOf(client, "superuser_reserved_connections"), "3");
    assert.equal(await settingOf(client, "password_encryption"), "scram-sha-256");
  });
});

test("converging a fresh server creates roles and databases; a second run changes nothing", async () => {
  const first = await converge(admin(), [ALPHA, BETA]);
  const statements = first.map((change) => change.statement);
  assert.ok(statements.includes(`CREATE DATABASE "alpha_production"`), statements.join("\n"));
  assert.ok(statements.includes(`REVOKE CONNECT, TEMPORARY ON DATABASE "postgres" FROM PUBLIC`));
  assert.ok(statements.includes(`GRANT USAGE, CREATE ON SCHEMA "public" TO "beta_staging"`));
  assert.ok(
    statements.includes(
      `CREATE ROLE "alpha_production" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 3 PASSWORD '<redacted>'`,
    ),
  );
  // The second run also goes through a connection string (another database in the URL).
  const url = `postgresql://${ADMIN}:${ADMIN_PASSWORD}@127.0.0.1:${port}/${ADMIN}`;
  assert.deepEqual(await converge(url, [ALPHA, BETA]), []);
  assert.deepEqual(await converge(admin(), [ALPHA, BETA]), []);

  await withClient(admin(), async (client) => {
    const stored = await client.query<{ rolname: string; rolpassword: string }>(
      "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY($1) ORDER BY 1",
      [[ALPHA.role, BETA.role]],
    );
    assert.equal(stored.rows.length, 2);
    for (const row of stored.rows) assert.match(row.rolpassword, /^SCRAM-SHA-256\$4096:/, row.rolname);
  });
});

test("a tenant's DATABASE_URL works; a migration can create tables; its timeouts are the plan's", async () => {
  const alphaUrl = databaseUrl(ALPHA, await passwords.passwordFor(ALPHA.role), "127.0.0.1", port);
  await withClient({ connectionString: alphaUrl }, async (client) => {
    await client.query("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)");
    await client.query("INSERT INTO items (name) VALUES ('one')");
    assert.equal((await client.query("SELECT count(*)::int AS n FROM items")).rows[0].n, 1);
    await client.query("CREATE TEMP TABLE scratch (x int)");
    await client.query("CREATE INDEX items_name ON items (name)");
    assert.equal(await settingOf(client, "statement_timeout"), "1500");
    assert.equal(await settingOf(client, "idle_in_transaction_session_timeout"), "60000");
    await assert.rejects(client.query("SELECT pg_sleep(3)"), /canceling statement due to statement timeout/);
  });
  await withClient(await tenantConfig(BETA), async (client) => {
    await client.query("CREATE TABLE secrets (value text)");
    await client.query("INSERT INTO secrets VALUES ('beta only')");
    assert.equal(await settingOf(client, "idle_in_transaction_session_timeout"), "5000");
  });
});

test("a tenant reaches no other database, cannot create databases or roles, nor raise itself", async () => {
  const alpha = await tenantConfig(ALPHA);
  await withClient(alpha, async (client) => {
    assert.equal((await client.query("SELECT current_user AS u")).rows[0].u, ALPHA.role, "positive control");
    await assert.rejects(client.query("CREATE DATABASE stolen"), /permission denied to create database/);
    await assert.rejects(client.query("CREATE ROLE helper LOGIN"), /permission denied to create role/);
    await assert.rejects(client.query(`ALTER ROLE ${ALPHA.role} CREATEDB`), /permission denied/);
    await assert.rejects(client.query(`GRANT CONNECT ON DATABASE ${BETA.name} TO ${ALPHA.role}`), /permission denied/);
    await assert.rejects(client.query(`SET ROLE ${BETA.role}`), /permission denied to set role/);
    await assert.rejects(client.query("DROP SCHEMA public CASCADE"), /must be owner of schema public/);
    await assert.rejects(client.query(`ALTER DATABASE ${ALPHA.name} SET statement_timeout = 0`), /must be owner of database/);
  });
  for (const database of [BETA.name, "postgres", "template1", ADMIN]) {
    await assert.rejects(connect({ ...alpha, database }), new RegExp(`permission denied for database "${database}"`), database);
  }

  // PUBLIC has no CONNECT: a role that is no tenant gets nowhere.
  await withClient(admin(), async (client) => {
    await client.query("CREATE ROLE outsider LOGIN PASSWORD 'outsider-password'");
    const open = await client.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datallowconn AND has_database_privilege('public', datname, 'CONNECT')",
    );
    assert.deepEqual(open.rows, []);
  });
  const outsider = { host: "127.0.0.1", port, user: "outsider", password: "outsider-password", connectionTimeoutMillis: 5000 };
  for (const database of [ALPHA.name, BETA.name, "postgres"]) {
    await assert.rejects(connect({ ...outsider, database }), new RegExp(`permission denied for database "${database}"`));
  }
});

test("even with CONNECT granted by mistake a tenant cannot read another's tables, and converging takes it back", async () => {
  await withClient(admin(), (client) => client.query(`GRANT CONNECT ON DATABASE ${BETA.name} TO ${ALPHA.role}`));
  await withClient(await tenantConfig(ALPHA, BETA.name), async (client) => {
    assert.equal((await client.query("SELECT current_database() AS d")).rows[0].d, BETA.name, "positive control: in");
    // No USAGE on public: its tables cannot even be named, let alone read.
    await assert.rejects(client.query("SELECT * FROM secrets"), /relation "secrets" does not exist/);
    await assert.rejects(client.query("SELECT * FROM public.secrets"), /permission denied for schema public/);
    await assert.rejects(client.query("CREATE TABLE planted (x int)"), /no schema has been selected to create in/);
    await assert.rejects(client.query("CREATE TABLE public.planted (x int)"), /permission denied for schema public/);
  });
  assert.deepEqual(await converge(admin(), [ALPHA, BETA]), [
    { target: BETA.name, statement: `REVOKE CONNECT ON DATABASE "beta_staging" FROM "alpha_production"` },
  ]);
  await assert.rejects(connect(await tenantConfig(ALPHA, BETA.name)), /permission denied for database "beta_staging"/);
});

test("a tenant's own changes to its password and timeouts are undone by the next converge", async () => {
  await withClient(await tenantConfig(ALPHA), async (client) => {
    await client.query(`ALTER ROLE ${ALPHA.role} SET statement_timeout = 0`);
    await client.query(`ALTER ROLE ${ALPHA.role} IN DATABASE ${ALPHA.name} SET idle_in_transaction_session_timeout = 0`);
    await client.query(`ALTER ROLE ${ALPHA.role} PASSWORD 'chosen-by-the-tenant'`);
  });
  await assert.rejects(connect(await tenantConfig(ALPHA)), /password authentication failed/);
  assert.deepEqual(
    (await converge(admin(), [ALPHA, BETA])).map((change) => change.statement),
    [
      `ALTER ROLE "alpha_production" WITH PASSWORD '<redacted>'`,
      `ALTER ROLE "alpha_production" SET statement_timeout = 1500`,
      `ALTER ROLE "alpha_production" IN DATABASE "alpha_production" RESET idle_in_transaction_session_timeout`,
    ],
  );
  await withClient(await tenantConfig(ALPHA), async (client) => {
    assert.equal(await settingOf(client, "statement_timeout"), "1500");
    assert.equal(await settingOf(client, "idle_in_transaction_session_timeout"), "60000");
  });
  assert.deepEqual(await converge(admin(), [ALPHA, BETA]), []);
});

test("a tenant's connection limit is enforced", async () => {
  const config = await tenantConfig(ALPHA);
  const held: pg.Client[] = [];
  try {
    for (let i = 0; i < ALPHA.connectionLimit; i++) held.push(await connect(config));
    await assert.rejects(connect(config), /too many connections for role "alpha_production"/);
  } finally {
    for (const client of held) await client.end();
  }
});

test("with pg_hba.conf installed a tenant is turned away from other databases before authentication", async () => {
  await withClient(admin(), async (client) => assert.equal(await hbaFile(client), HBA_FILE));
  await applyHba([ALPHA, BETA]);
  await withClient(await tenantConfig(ALPHA), (client) => client.query("SELECT 1"));
  await assert.rejects(connect(await tenantConfig(ALPHA, BETA.name)), /pg_hba.conf rejects connection for host ".*", user "alpha_production", database "beta_staging"/);
  await assert.rejects(
    connect({ host: "127.0.0.1", port, user: "outsider", password: "outsider-password", database: ALPHA.name }),
    /pg_hba.conf rejects connection for host ".*", user "outsider"/,
  );
  await withClient({ ...admin(), database: "postgres" }, (client) => client.query("SELECT 1"));

  // A broken file is refused before the reload; the rules in force stay.
  await installHba("host all all all no-such-method\n");
  await withClient(admin(), (client) =>
    assert.rejects(reloadConfig(client), /pg_hba.conf has errors \(line 1: invalid authentication method "no-such-method"\)/),
  );
  await applyHba([ALPHA, BETA]);
  await withClient(await tenantConfig(ALPHA), (tenant) => tenant.query("SELECT 1"));
});

test("the admin still logs in when tenants hold every other connection", async () => {
  const config = await tenantConfig(BETA);
  const held: pg.Client[] = [];
  try {
    let refusal: unknown;
    while (held.length < BETA.connectionLimit) {
      try {
        held.push(await connect(config));
      } catch (error) {
        refusal = error;
        break;
      }
    }
    assert.match(String(refusal), /remaining connection slots are reserved for non-replication superuser connections/);
    assert.ok(held.length <= SERVER.maxConnections - SERVER.reservedConnections);
    await withClient(admin(), async (client) => {
      const count = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1", [BETA.role]);
      assert.equal(count.rows[0]!.n, held.length);
    });
    assert.deepEqual(await converge(admin(), [ALPHA, BETA]), [], "converging works too");
  } finally {
    for (const client of held) await client.end();
  }
});

test("purging drops a removed environment's database, role and password", async () => {
  await converge(admin(), [ALPHA, BETA, GAMMA]);
  await applyHba([ALPHA, BETA, GAMMA]);
  forgotten.push(await passwords.passwordFor(GAMMA.role));
  await withClient(await tenantConfig(GAMMA), async (client) => client.query("CREATE TABLE t (x int)"));
  assert.deepEqual(await converge(admin(), [ALPHA, BETA]), [], "without purge an unplanned database stays");
  const purged = await converge(admin(), [ALPHA, BETA], [GAMMA.name]);
  assert.deepEqual(purged, [
    { target: GAMMA.name, statement: `DROP DATABASE IF EXISTS "gamma_staging" WITH (FORCE)` },
    { target: GAMMA.name, statement: `DROP ROLE IF EXISTS "gamma_staging"` },
  ]);
  const saved = JSON.parse(await readFile(passwords.file, "utf8")) as Record<string, string>;
  assert.deepEqual(Object.keys(saved).sort(), [ALPHA.role, BETA.role]);
  assert.deepEqual(await converge(admin(), [ALPHA, BETA], [GAMMA.name]), []);
  await applyHba([ALPHA, BETA]);

  // Not berth's: refused.
  await withClient(admin(), (client) => client.query("CREATE DATABASE handmade"));
  await assert.rejects(converge(admin(), [ALPHA, BETA], ["handmade"]), /refusing to drop database handmade/);
});

test("passwords are kept 0600 and never printed, returned or logged by the server", async () => {
  assert.equal((await stat(passwords.file)).mode & 0o777, 0o600);
  const saved = [...Object.values(JSON.parse(await readFile(passwords.file, "utf8")) as Record<string, string>), ...forgotten];
  assert.equal(saved.length, 3);
  const everything = await converge(admin(), [ALPHA, BETA]);
  const logs = await exec("docker", ["logs", CONTAINER], { maxBuffer: 64 * 1024 * 1024 });
  const serverLog = logs.stdout + logs.stderr;
  assert.match(serverLog, /statement: CREATE ROLE "alpha_production"/, "log_statement=all logs berth's statements");
  for (const password of saved) {
    assert.ok(!serverLog.includes(password), "a password reached the server log");
    assert.ok(!printed.join("").includes(password), "a password was printed");
    assert.ok(!JSON.stringify(everything).includes(password));
  }
});
