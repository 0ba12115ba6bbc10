// Converges the shared server's tenant roles and databases: observe (pg_roles, pg_authid,
// pg_database, pg_namespace), diff against the plans (pure, ./diff.ts), run only what
// differs. Returns the changes made, redacted; a second run returns none.
import pg from "pg";
import { BerthError } from "../errors.js";
import type { DatabasePlan } from "../plan/types.js";
import { PUBLIC_SCHEMA, diffSchema, diffServer, type Change, type Grant, type ObservedRole, type ObservedSchema, type ObservedServer, type Step } from "./diff.js";
import type { PasswordStore } from "./passwords.js";
import { isVerifierOf, scramVerifier } from "./scram.js";
import { alterRolePassword, MANAGED_COMMENT, PUBLIC, SESSION_SETUP } from "./sql.js";

/** How berth reaches the server as its admin (a superuser for the container server). */
export type AdminConnection = string | pg.ClientConfig;

export interface ConvergeOptions {
  /**
   * Databases (and their roles, of the same name) of environments removed from the spec,
   * to drop with their data. Only what carries berth's comment is dropped.
   */
  purge?: readonly string[];
  /**
   * An admin connection to the admin's own database (connectAdmin) to use instead of opening
   * one; the caller keeps it (it is not closed here, and the advisory lock taken on it goes
   * with its session).
   */
  client?: pg.Client;
}

/** Serializes berth processes converging the same server (pg_advisory_lock key: "bert"). */
const CONVERGE_LOCK = 0x62657274;

const CONNECT_TIMEOUT_MS = 10_000;

export async function convergeDatabases(
  admin: AdminConnection,
  plans: readonly DatabasePlan[],
  passwords: PasswordStore,
  options: ConvergeOptions = {},
): Promise<Change[]> {
  const purge = options.purge ?? [];
  const changes: Change[] = [];
  const client = options.client ?? (await connectAdmin(admin));
  try {
    // Held to the end (it goes with the session): another berth converging at once would
    // race this one to CREATE ROLE and fail.
    await client.query("SELECT pg_advisory_lock($1)", [CONVERGE_LOCK]);
    const observed = await observeServer(client, [...plans.map((plan) => plan.role), ...purge]);
    const verifiers: Record<string, string> = {};
    for (const plan of plans) {
      const password = await passwords.passwordFor(plan.role);
      verifiers[plan.role] = scramVerifier(password);
      const role = observed.roles.find((candidate) => candidate.name === plan.role);
      if (role && observed.storedVerifiers) role.hasStoredPassword = isVerifierOf(observed.storedVerifiers.get(plan.role) ?? null, password);
    }
    changes.push(...(await run(client, diffServer(observed, plans, { verifiers, purge }))));
    // Only once the roles are gone: after a failed DROP the password still logs in.
    for (const name of purge) await passwords.forget(name);

    // Each database on a connection of its own, side by side (the lock above is still held).
    const inDatabases = await Promise.allSettled(plans.map(async (plan) => {
      const inDatabase = await connectAdmin(admin, plan.name);
      try {
        return await run(inDatabase, diffSchema(await observeSchema(inDatabase), plan, observed.admin));
      } finally {
        await inDatabase.end();
      }
    }));
    for (const settled of inDatabases) {
      if (settled.status === "rejected") throw settled.reason;
      changes.push(...settled.value);
    }
  } finally {
    if (options.client) await client.query("SELECT pg_advisory_unlock($1)", [CONVERGE_LOCK]).catch(() => undefined);
    else await client.end();
  }
  return changes;
}

/**
 * Gives a role berth manages a new password: ALTER ROLE with its SCRAM verifier (the
 * plaintext never reaches the server). Sessions already logged in keep running; only new
 * logins need the new password. Serialized with converges (the same advisory lock).
 */
export async function setRolePassword(admin: AdminConnection, role: string, password: string): Promise<void> {
  const verifier = scramVerifier(password);
  const client = await connectAdmin(admin);
  try {
    await client.query("SELECT pg_advisory_lock($1)", [CONVERGE_LOCK]);
    const found = await client.query<{ comment: string | null }>("SELECT shobj_description(oid, 'pg_authid') AS comment FROM pg_roles WHERE rolname = $1", [role]);
    if (found.rows.length === 0) throw new BerthError("NOT_FOUND", `the database role ${role} does not exist`, "Run berth apply first: it creates the role.");
    if (found.rows[0]!.comment !== MANAGED_COMMENT) throw new BerthError("CONFLICT", `the database role ${role} is not managed by berth; its password is left alone`);
    try {
      await client.query(alterRolePassword(role, verifier));
    } catch (error) {
      // Never the statement itself: it holds the verifier.
      throw new BerthError("DATABASE_FAILED", `ALTER ROLE ${role} PASSWORD <redacted>: ${(error as Error).message}`, undefined, { cause: error });
    }
  } finally {
    await client.end();
  }
}

/**
 * A connection as the admin, to its own database or the one named, with the session pinned
 * (search_path = pg_catalog, pg_temp; scram-sha-256 for any password set). Close it with end().
 */
export async function connectAdmin(admin: AdminConnection, database?: string): Promise<pg.Client> {
  const config = database === undefined ? asConfig(admin) : inDatabase(admin, database);
  const client = new pg.Client({ connectionTimeoutMillis: CONNECT_TIMEOUT_MS, ...config });
  // An idle client's socket error is emitted, not thrown: without a listener it kills the process.
  client.on("error", () => undefined);
  try {
    await client.connect();
    // One round trip (the simple query protocol runs them in order).
    await client.query(SESSION_SETUP.join("; "));
  } catch (error) {
    await client.end().catch(() => undefined);
    throw new BerthError(
      "DATABASE_FAILED",
      `cannot connect to PostgreSQL as the admin${database === undefined ? "" : ` (database ${database})`}: ${(error as Error).message}`,
      "Check that the server is running and the admin URL (user, password, host, port) is right.",
      { cause: error },
    );
  }
  return client;
}

function asConfig(admin: AdminConnection): pg.ClientConfig {
  return typeof admin === "string" ? { connectionString: admin } : admin;
}

/** The same connection, to another database. A connection string wins over `database` in pg: change both. */
function inDatabase(admin: AdminConnection, database: string): pg.ClientConfig {
  const config = asConfig(admin);
  if (config.connectionString === undefined) return { ...config, database };
  let url: URL;
  try {
    url = new URL(config.connectionString);
  } catch {
    throw new BerthError("BAD_ARGUMENT", "the PostgreSQL admin connection string is not a URL", "Use postgresql://USER:PASSWORD@HOST:PORT/DATABASE.");
  }
  url.pathname = `/${encodeURIComponent(database)}`;
  url.searchParams.delete("dbname");
  return { ...config, connectionString: url.toString(), database };
}

/** Runs the steps in order, each on its own (autocommit: CREATE DATABASE cannot be in a transaction). */
async function run(client: pg.Client, steps: readonly Step[]): Promise<Change[]> {
  const done: Change[] = [];
  for (const { sql, ...change } of steps) {
    try {
      await client.query(sql);
    } catch (error) {
      // The message names the redacted statement: the SQL may hold a password verifier.
      throw new BerthError(
        "DATABASE_FAILED",
        `${change.statement}: ${(error as Error).message}${done.length > 0 ? ` (after ${done.length} other change(s) succeeded)` : ""}`,
        "Fix the cause and apply again: what already succeeded is not repeated.",
        { cause: error },
      );
    }
    done.push(change);
  }
  return done;
}

const GRANTS_OF = (acl: string, kind: string, owner: string) => `
  coalesce((
    SELECT json_agg(json_build_object(
      'grantee', CASE WHEN a.grantee = 0 THEN '${PUBLIC}' ELSE pg_get_userbyid(a.grantee)::text END,
      'privilege', a.privilege_type,
      'isGrantable', a.is_grantable) ORDER BY a.grantee, a.privilege_type)
    FROM aclexplode(coalesce(${acl}, acldefault('${kind}', ${owner}))) AS a
  ), '[]'::json)`;

interface Observation extends ObservedServer {
  /** pg_authid.rolpassword of the roles asked for; undefined when the admin may not read it. */
  storedVerifiers?: Map<string, string | null>;
}

async function observeServer(client: pg.Client, roleNames: readonly string[]): Promise<Observation> {
  const who = await client.query<{ admin: string; database: string }>("SELECT current_user::text AS admin, current_database()::text AS database");
  const roles = await client.query<{
    name: string;
    rolsuper: boolean;
    rolinherit: boolean;
    rolcreaterole: boolean;
    rolcreatedb: boolean;
    rolcanlogin: boolean;
    rolreplication: boolean;
    rolbypassrls: boolean;
    rolconnlimit: number;
    config: string[];
    database_settings: Array<{ database: string; setting: string }>;
    member_of: string[];
    comment: string | null;
  }>(
    `SELECT r.rolname::text AS name, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
            r.rolreplication, r.rolbypassrls, r.rolconnlimit, coalesce(r.rolconfig, '{}')::text[] AS config,
            coalesce((SELECT json_agg(json_build_object('database', d.datname, 'setting', c))
                        FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) AS c
                       WHERE s.setrole = r.oid), '[]'::json) AS database_settings,
            ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                  WHERE m.member = r.oid ORDER BY 1) AS member_of,
            shobj_description(r.oid, 'pg_authid') AS comment
       FROM pg_roles r WHERE r.rolname = ANY($1::text[])`,
    [roleNames],
  );
  const databases = await client.query<{ name: string; owner: string; comment: string | null; grants: Grant[] }>(
    `SELECT d.datname::text AS name, pg_get_userbyid(d.datdba)::text AS owner,
            shobj_description(d.oid, 'pg_database') AS comment, ${GRANTS_OF("d.datacl", "d", "d.datdba")} AS grants
       FROM pg_database d ORDER BY d.datname`,
  );
  const { admin, database } = who.rows[0]!;
  return {
    admin,
    adminDatabase: database,
    roles: roles.rows.map((row): ObservedRole => ({
      name: row.name,
      isSuperuser: row.rolsuper,
      inheritsPrivileges: row.rolinherit,
      canCreateRole: row.rolcreaterole,
      canCreateDatabase: row.rolcreatedb,
      canLogin: row.rolcanlogin,
      canReplicate: row.rolreplication,
      bypassesRls: row.rolbypassrls,
      connectionLimit: row.rolconnlimit,
      settings: Object.fromEntries(row.config.map(splitSetting)),
      databaseSettings: row.database_settings.reduce<Record<string, Record<string, string>>>((byDatabase, { database, setting }) => {
        const [name, value] = splitSetting(setting);
        (byDatabase[database] ??= {})[name] = value;
        return byDatabase;
      }, {}),
      memberOf: row.member_of,
      comment: row.comment,
    })),
    databases: databases.rows,
    storedVerifiers: await observeVerifiers(client, roleNames),
  };
}

/** "statement_timeout=1500" → ["statement_timeout", "1500"], as pg_roles.rolconfig stores them. */
function splitSetting(entry: string): [string, string] {
  const at = entry.indexOf("=");
  return [entry.slice(0, at), entry.slice(at + 1)];
}

async function observeVerifiers(client: pg.Client, roleNames: readonly string[]): Promise<Map<string, string | null> | undefined> {
  try {
    const result = await client.query<{ name: string; verifier: string | null }>(
      "SELECT rolname::text AS name, rolpassword AS verifier FROM pg_authid WHERE rolname = ANY($1::text[])",
      [roleNames],
    );
    return new Map(result.rows.map((row) => [row.name, row.verifier]));
  } catch (error) {
    // A managed server's admin is no superuser: passwords are then set at creation only.
    if ((error as { code?: string }).code === "42501") return undefined;
    throw error;
  }
}

async function observeSchema(client: pg.Client): Promise<ObservedSchema | undefined> {
  const result = await client.query<ObservedSchema>(
    `SELECT pg_get_userbyid(n.nspowner)::text AS owner, ${GRANTS_OF("n.nspacl", "n", "n.nspowner")} AS grants
       FROM pg_namespace n WHERE n.nspname = $1`,
    [PUBLIC_SCHEMA],
  );
  return result.rows[0];
}

/** The databases berth manages (by their comment): those not planned are the purge candidates. */
export async function listManagedDatabases(client: pg.ClientBase): Promise<string[]> {
  const result = await client.query<{ name: string }>(
    "SELECT datname::text AS name FROM pg_database WHERE shobj_description(oid, 'pg_database') = $1 ORDER BY 1",
    [MANAGED_COMMENT],
  );
  return result.rows.map((row) => row.name);
}

/** The file the server reads its host-based authentication rules from (superuser only). */
export async function hbaFile(client: pg.ClientBase): Promise<string> {
  const result = await client.query<{ file: string }>("SELECT current_setting('hba_file') AS file");
  return result.rows[0]!.file;
}

/**
 * Makes the server re-read its configuration, after checking that pg_hba.conf as it is on
 * disk parses: the server would keep its old rules on a bad file, and only say so in its log.
 */
export async function reloadConfig(client: pg.ClientBase): Promise<void> {
  const errors = await client.query<{ line: number; error: string }>(
    "SELECT line_number AS line, error FROM pg_hba_file_rules WHERE error IS NOT NULL ORDER BY line_number",
  );
  if (errors.rows.length > 0) {
    const where = errors.rows.map((row) => `line ${row.line}: ${row.error}`).join("; ");
    throw new BerthError("DATABASE_FAILED", `pg_hba.conf has errors (${where}); the server keeps its previous rules`, "Restore the previous file or fix these lines.");
  }
  const reloaded = await client.query<{ ok: boolean }>("SELECT pg_reload_conf() AS ok");
  if (reloaded.rows[0]?.ok !== true) throw new BerthError("DATABASE_FAILED", "the server did not accept pg_reload_conf()");
}
