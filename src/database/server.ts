// How the shared PostgreSQL server is started and how tenants reach it. Pure.
import { BerthError } from "../errors.js";
import type { DatabasePlan, PostgresPlan } from "../plan/types.js";

/** The data directory of the official image's contract (PGDATA), where its volume is mounted. */
export const PGDATA = "/var/lib/postgresql/data";

/** Where the server reads pg_hba.conf (`SHOW hba_file` tells for sure). */
export const HBA_FILE = `${PGDATA}/pg_hba.conf`;

export const POSTGRES_PORT = 5432;

/** PostgreSQL's default for max_wal_senders. */
const WAL_SENDERS = 10;

/**
 * The server's `-c` flags, to follow `postgres` in the container's command. Changes to
 * max_connections and the reserved connections take effect only at a restart.
 */
export function postgresServerSettings(plan: PostgresPlan): string[] {
  const { maxConnections, reservedConnections } = plan;
  // PostgreSQL 15 refuses to start unless reserved + max_wal_senders < max_connections.
  const walSenders = Math.min(WAL_SENDERS, maxConnections - reservedConnections - 1);
  if (walSenders < 0) {
    throw new BerthError(
      "BAD_ARGUMENT",
      `postgres.reservedConnections (${reservedConnections}) must be less than postgres.maxConnections (${maxConnections})`,
      "Raise maxConnections or lower reservedConnections in the platform file.",
    );
  }
  const settings: Record<string, string | number> = {
    listen_addresses: "*",
    max_connections: maxConnections,
    // Only superusers (the admin) may use the last slots: berth can always log in to
    // repair, even when tenants have taken every other connection.
    superuser_reserved_connections: reservedConnections,
    max_wal_senders: walSenders,
    password_encryption: "scram-sha-256",
    log_connections: "on",
    log_lock_waits: "on",
    log_line_prefix: "%m [%p] %q%u@%d ",
    log_timezone: "UTC",
  };
  return Object.entries(settings).flatMap(([name, value]) => ["-c", `${name}=${value}`]);
}

/**
 * DATABASE_URL of an environment, for its containers: `host` is the server's container name
 * on the environment's network. The passwords berth generates need no escaping; any other
 * is percent-encoded.
 */
export function databaseUrl(plan: DatabasePlan, password: string, host: string, port: number = POSTGRES_PORT): string {
  const user = encodeURIComponent(plan.role);
  return `postgresql://${user}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(plan.name)}`;
}
