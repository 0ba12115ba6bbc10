// PostgreSQL access: a pool configured from the environment and a migration runner.
import pg from "pg";

/** Reads and checks the settings this service needs from its environment. */
export function databaseSettings(env) {
  const url = env.DATABASE_URL;
  if (!url) {
    throw new Error("DATABASE_URL is not set: the platform must give this component a database (database: true).");
  }
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error("DATABASE_URL is not a valid URL; expected postgresql://USER:PASSWORD@HOST:5432/DATABASE.");
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new Error(`DATABASE_URL must start with postgresql://, got "${parsed.protocol}//".`);
  }
  const max = Number(env.DB_POOL_MAX ?? 4);
  if (!Number.isInteger(max) || max < 1 || max > 100) {
    throw new Error(`DB_POOL_MAX: expected a whole number 1-100, got "${env.DB_POOL_MAX}".`);
  }
  return { url, max };
}

export function createPool({ url, max }, applicationName, log) {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    application_name: applicationName,
    connectionTimeoutMillis: 10000,
    idleTimeoutMillis: 10000,
  });
  // An idle connection that the server drops (restart, failover) emits here; without a
  // listener the whole process would crash.
  pool.on("error", (err) => log.warn("idle database connection lost", { error: err.message }));
  return pool;
}

// Any constant works, as long as every release of this app uses the same one: it makes
// two release commands started at once (two deploys) run one after the other.
const MIGRATION_LOCK = 0x6265727468;

/**
 * Applies the migrations that the database has not seen yet, all in one transaction:
 * either every pending migration is applied or none is.
 * @param {pg.Pool} pool
 * @param {Array<{version: number, name: string, sql: string}>} migrations in version order
 */
export async function migrate(pool, migrations, log) {
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i].version <= migrations[i - 1].version) {
      throw new Error(`migrations must be in increasing version order; ${migrations[i].version} follows ${migrations[i - 1].version}`);
    }
  }
  const client = await pool.connect();
  try {
    await client.query("begin");
    await client.query("select pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await client.query(`
      create table if not exists schema_migrations (
        version integer primary key,
        name text not null,
        applied_at timestamptz not null default now()
      )`);
    const { rows } = await client.query("select version from schema_migrations");
    const applied = new Set(rows.map((r) => r.version));
    const known = new Set(migrations.map((m) => m.version));
    const unknown = [...applied].filter((v) => !known.has(v)).sort((a, b) => a - b);
    if (unknown.length > 0) {
      // A rollback to an older release meets a newer schema; it must stay deployable.
      log.warn("database has migrations this release does not know", { versions: unknown });
    }
    const pending = migrations.filter((m) => !applied.has(m.version));
    for (const m of pending) {
      await client.query(m.sql);
      await client.query("insert into schema_migrations (version, name) values ($1, $2)", [m.version, m.name]);
      log.info("applied migration", { version: m.version, name: m.name });
    }
    await client.query("commit");
    return { applied: pending.map((m) => m.version), version: Math.max(0, ...applied, ...known) };
  } catch (err) {
    await client.query("rollback").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
