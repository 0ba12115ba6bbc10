// SQL statements that shape tenant roles and databases. Pure: each function returns one
// statement as text. Every name is quoted and every value escaped here — names come from
// the validated spec, but a statement must stay safe even if that validation changes.
import { escapeIdentifier, escapeLiteral } from "pg";
import { BerthError } from "../errors.js";
import type { DatabasePlan } from "../plan/types.js";

/** The comment berth puts on the roles and databases it manages: only those may be purged. */
export const MANAGED_COMMENT = "managed by berth";

/** What a tenant role may do: log in. Nothing that reaches beyond its own database. */
export const TENANT_ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT";

/** Stands in for a password verifier in anything printed or returned. */
export const REDACTED = "<redacted>";

/**
 * Run first on every connection berth opens: a pinned search_path so that no object a
 * tenant creates (a function or operator in a schema it owns) can shadow a catalog one
 * in the admin's session — the CVE-2018-1058 class.
 */
export const SESSION_SETUP = [
  "SET search_path = pg_catalog, pg_temp",
  "SET password_encryption = 'scram-sha-256'",
  "SET application_name = 'berth'",
] as const;

/** The grantee PUBLIC: every role, present and future. */
export const PUBLIC = "PUBLIC";

export type DatabasePrivilege = "CREATE" | "CONNECT" | "TEMPORARY";
export type SchemaPrivilege = "USAGE" | "CREATE";

/** A tenant gets exactly these on its own database, and nothing on any other. */
export const TENANT_DATABASE_PRIVILEGES: readonly DatabasePrivilege[] = ["CONNECT", "TEMPORARY"];
/**
 * ... and these on the schema public of its database: enough for a migration to create
 * tables (which the tenant then owns), not enough to drop or re-grant the schema itself.
 */
export const TENANT_SCHEMA_PRIVILEGES: readonly SchemaPrivilege[] = ["USAGE", "CREATE"];

export const quoteName = (name: string): string => escapeIdentifier(name);
const grantee = (name: string): string => (name === PUBLIC ? PUBLIC : quoteName(name));

function milliseconds(name: string, value: number): string {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new BerthError("BAD_ARGUMENT", `${name} must be a whole number of milliseconds, got ${value}`);
  }
  return String(value);
}

function connectionLimit(value: number): string {
  if (!Number.isSafeInteger(value) || value < -1) {
    throw new BerthError("BAD_ARGUMENT", `a connection limit must be a whole number (or -1: none), got ${value}`);
  }
  return String(value);
}

/** The role, able to log in with the password whose SCRAM verifier is given (REDACTED to print it). */
export function createRole(plan: DatabasePlan, verifier: string): string {
  return `CREATE ROLE ${quoteName(plan.role)} WITH ${TENANT_ROLE_ATTRIBUTES} CONNECTION LIMIT ${connectionLimit(plan.connectionLimit)} PASSWORD ${escapeLiteral(verifier)}`;
}

/** Resets every attribute of an existing role to what a tenant role has. */
export function alterRoleAttributes(plan: DatabasePlan): string {
  return `ALTER ROLE ${quoteName(plan.role)} WITH ${TENANT_ROLE_ATTRIBUTES} CONNECTION LIMIT ${connectionLimit(plan.connectionLimit)}`;
}

export function alterRolePassword(role: string, verifier: string): string {
  return `ALTER ROLE ${quoteName(role)} WITH PASSWORD ${escapeLiteral(verifier)}`;
}

/** A session default of the role, in milliseconds (a tenant can SET it away in its session). */
export function setRoleDefault(role: string, setting: RoleTimeout, valueMs: number): string {
  return `ALTER ROLE ${quoteName(role)} SET ${setting} = ${milliseconds(setting, valueMs)}`;
}

/** Drops a per-database override (ALTER ROLE ... IN DATABASE ... SET), which beats the role's default. */
export function resetRoleDefaultInDatabase(role: string, database: string, setting: RoleTimeout): string {
  return `ALTER ROLE ${quoteName(role)} IN DATABASE ${quoteName(database)} RESET ${setting}`;
}

export type RoleTimeout = "statement_timeout" | "idle_in_transaction_session_timeout";

/** The role defaults a plan asks for, as PostgreSQL stores them in pg_roles.rolconfig. */
export function roleDefaults(plan: DatabasePlan): Record<RoleTimeout, string> {
  return {
    statement_timeout: milliseconds("statement_timeout", plan.statementTimeoutMs),
    idle_in_transaction_session_timeout: milliseconds("idle_in_transaction_session_timeout", plan.idleInTransactionTimeoutMs),
  };
}

/** Takes a role out of a group: a tenant role inherits nothing, but SET ROLE would still work. */
export function revokeMembership(group: string, role: string): string {
  return `REVOKE ${quoteName(group)} FROM ${quoteName(role)}`;
}

export function commentOnRole(role: string): string {
  return `COMMENT ON ROLE ${quoteName(role)} IS ${escapeLiteral(MANAGED_COMMENT)}`;
}

/** Owned by the session's user (the admin): the tenant cannot re-grant, alter or drop it. */
export function createDatabase(name: string): string {
  return `CREATE DATABASE ${quoteName(name)}`;
}

export function alterDatabaseOwner(name: string, owner: string): string {
  return `ALTER DATABASE ${quoteName(name)} OWNER TO ${quoteName(owner)}`;
}

export function commentOnDatabase(name: string): string {
  return `COMMENT ON DATABASE ${quoteName(name)} IS ${escapeLiteral(MANAGED_COMMENT)}`;
}

export function grantOnDatabase(name: string, privileges: readonly DatabasePrivilege[], to: string): string {
  return `GRANT ${privileges.join(", ")} ON DATABASE ${quoteName(name)} TO ${grantee(to)}`;
}

/** CASCADE also takes back what the grantee passed on, when it held a grant option. */
export function revokeOnDatabase(name: string, privileges: readonly DatabasePrivilege[], from: string, cascade = false): string {
  return `REVOKE ${privileges.join(", ")} ON DATABASE ${quoteName(name)} FROM ${grantee(from)}${cascade ? " CASCADE" : ""}`;
}

export function revokeGrantOptionOnDatabase(name: string, privileges: readonly DatabasePrivilege[], from: string): string {
  return `REVOKE GRANT OPTION FOR ${privileges.join(", ")} ON DATABASE ${quoteName(name)} FROM ${grantee(from)} CASCADE`;
}

/** Terminates the database's sessions first (PostgreSQL 13+): purging is meant to succeed. */
export function dropDatabase(name: string): string {
  return `DROP DATABASE IF EXISTS ${quoteName(name)} WITH (FORCE)`;
}

export function dropRole(role: string): string {
  return `DROP ROLE IF EXISTS ${quoteName(role)}`;
}

// Statements run inside a tenant database.

export function createSchema(name: string): string {
  return `CREATE SCHEMA ${quoteName(name)}`;
}

export function alterSchemaOwner(name: string, owner: string): string {
  return `ALTER SCHEMA ${quoteName(name)} OWNER TO ${quoteName(owner)}`;
}

export function grantOnSchema(name: string, privileges: readonly SchemaPrivilege[], to: string): string {
  return `GRANT ${privileges.join(", ")} ON SCHEMA ${quoteName(name)} TO ${grantee(to)}`;
}

export function revokeOnSchema(name: string, privileges: readonly SchemaPrivilege[], from: string, cascade = false): string {
  return `REVOKE ${privileges.join(", ")} ON SCHEMA ${quoteName(name)} FROM ${grantee(from)}${cascade ? " CASCADE" : ""}`;
}

export function revokeGrantOptionOnSchema(name: string, privileges: readonly SchemaPrivilege[], from: string): string {
  return `REVOKE GRANT OPTION FOR ${privileges.join(", ")} ON SCHEMA ${quoteName(name)} FROM ${grantee(from)} CASCADE`;
}
