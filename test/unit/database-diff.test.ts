// The pure diff of tenant roles, databases and schemas: exact statements for a fresh
// server, none for a converged one, and the repair of each kind of drift.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BerthError } from "../../src/errors.js";
import { diffSchema, diffServer, type Grant, type ObservedDatabase, type ObservedRole, type ObservedServer, type Step } from "../../src/database/diff.js";
import { MANAGED_COMMENT, PUBLIC } from "../../src/database/sql.js";
import type { DatabasePlan } from "../../src/plan/types.js";

const FILTER: DatabasePlan = {
  name: "filter_ical_production",
  role: "filter_ical_production",
  connectionLimit: 20,
  statementTimeoutMs: 30000,
  idleInTransactionTimeoutMs: 60000,
};
const GABS: DatabasePlan = {
  name: "gabs_massage_staging",
  role: "gabs_massage_staging",
  connectionLimit: 10,
  statementTimeoutMs: 15000,
  idleInTransactionTimeoutMs: 60000,
};
const VERIFIERS = { filter_ical_production: "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy", gabs_massage_staging: "SCRAM-SHA-256$4096:eA==$eQ==:eg==" };

const grants = (grantee: string, ...privileges: string[]): Grant[] => privileges.map((privilege) => ({ grantee, privilege, isGrantable: false }));
/** What initdb and CREATE DATABASE leave: the owner all, PUBLIC CONNECT and TEMPORARY. */
const defaultDatabase = (name: string, owner = "berth"): ObservedDatabase => ({
  name,
  owner,
  grants: [...grants(PUBLIC, "TEMPORARY", "CONNECT"), ...grants(owner, "CREATE", "TEMPORARY", "CONNECT")],
  comment: null,
});
const freshServer = (): ObservedServer => ({
  admin: "berth",
  adminDatabase: "berth",
  roles: [],
  databases: [defaultDatabase("berth"), defaultDatabase("postgres"), defaultDatabase("template1"), { ...defaultDatabase("template0"), grants: [...grants(PUBLIC, "CONNECT"), ...grants("berth", "CREATE", "TEMPORARY", "CONNECT")] }],
});
const tenantRole = (plan: DatabasePlan): ObservedRole => ({
  name: plan.role,
  isSuperuser: false,
  inheritsPrivileges: false,
  canCreateRole: false,
  canCreateDatabase: false,
  canLogin: true,
  canReplicate: false,
  bypassesRls: false,
  connectionLimit: plan.connectionLimit,
  settings: { statement_timeout: String(plan.statementTimeoutMs), idle_in_transaction_session_timeout: String(plan.idleInTransactionTimeoutMs) },
  databaseSettings: {},
  memberOf: [],
  comment: MANAGED_COMMENT,
  hasStoredPassword: true,
});
const tenantDatabase = (plan: DatabasePlan): ObservedDatabase => ({
  name: plan.name,
  owner: "berth",
  grants: [...grants("berth", "CREATE", "TEMPORARY", "CONNECT"), ...grants(plan.role, "TEMPORARY", "CONNECT")],
  comment: MANAGED_COMMENT,
});
const convergedServer = (...plans: DatabasePlan[]): ObservedServer => {
  const server = freshServer();
  const revoked = (database: ObservedDatabase) => ({ ...database, grants: database.grants.filter((grant) => grant.grantee !== PUBLIC) });
  return {
    ...server,
    roles: plans.map(tenantRole),
    databases: [
      ...server.databases.map((database) => (database.name === "template0" ? database : revoked(database))),
      ...plans.map(tenantDatabase),
    ],
  };
};
const sqlOf = (steps: Step[]) => steps.map((step) => step.sql);

void describe("diffServer", () => {
  void it("creates role and database on a fresh server, and takes PUBLIC's access to every database away", () => {
    const steps = diffServer(freshServer(), [FILTER], { verifiers: VERIFIERS });
    assert.deepEqual(sqlOf(steps), [
      `CREATE ROLE "filter_ical_production" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 20 PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy'`,
      `ALTER ROLE "filter_ical_production" SET statement_timeout = 30000`,
      `ALTER ROLE "filter_ical_production" SET idle_in_transaction_session_timeout = 60000`,
      `COMMENT ON ROLE "filter_ical_production" IS 'managed by berth'`,
      `CREATE DATABASE "filter_ical_production"`,
      `COMMENT ON DATABASE "filter_ical_production" IS 'managed by berth'`,
      `REVOKE CONNECT, TEMPORARY ON DATABASE "filter_ical_production" FROM PUBLIC`,
      `GRANT CONNECT, TEMPORARY ON DATABASE "filter_ical_production" TO "filter_ical_production"`,
      `REVOKE CONNECT, TEMPORARY ON DATABASE "postgres" FROM PUBLIC`,
      `REVOKE CONNECT, TEMPORARY ON DATABASE "template1" FROM PUBLIC`,
      `REVOKE CONNECT, TEMPORARY ON DATABASE "berth" FROM PUBLIC`,
    ]);
    assert.deepEqual(
      steps.map((step) => step.target),
      [...Array(4).fill("filter_ical_production"), ...Array(4).fill("filter_ical_production"), "postgres", "template1", "berth"],
    );
    assert.ok(steps.every((step) => step.database === undefined), "all run in the admin's database");
  });

  void it("never shows the password verifier in a change", () => {
    const steps = diffServer(freshServer(), [FILTER], { verifiers: VERIFIERS });
    assert.equal(
      steps[0]!.statement,
      `CREATE ROLE "filter_ical_production" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 20 PASSWORD '<redacted>'`,
    );
    assert.ok(!JSON.stringify(steps.map(({ sql: _sql, ...change }) => change)).includes("SCRAM"));
  });

  void it("changes nothing on a converged server", () => {
    assert.deepEqual(diffServer(convergedServer(FILTER, GABS), [FILTER, GABS], { verifiers: VERIFIERS }), []);
  });

  void it("resets a tenant role's attributes, timeouts, memberships, password and comment", () => {
    const server = convergedServer(FILTER);
    server.roles = [
      {
        ...tenantRole(FILTER),
        canCreateDatabase: true,
        inheritsPrivileges: true,
        connectionLimit: -1,
        settings: { statement_timeout: "0", search_path: "app" },
        databaseSettings: { filter_ical_production: { idle_in_transaction_session_timeout: "0", work_mem: "64MB" }, other: { statement_timeout: "0" } },
        memberOf: ["pg_read_all_data", "gabs_massage_staging"],
        comment: null,
        hasStoredPassword: false,
      },
    ];
    const steps = diffServer(server, [FILTER], { verifiers: VERIFIERS });
    assert.deepEqual(sqlOf(steps), [
      `ALTER ROLE "filter_ical_production" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 20`,
      `ALTER ROLE "filter_ical_production" WITH PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy'`,
      `ALTER ROLE "filter_ical_production" SET statement_timeout = 30000`,
      `ALTER ROLE "filter_ical_production" SET idle_in_transaction_session_timeout = 60000`,
      `ALTER ROLE "filter_ical_production" IN DATABASE "filter_ical_production" RESET idle_in_transaction_session_timeout`,
      `ALTER ROLE "filter_ical_production" IN DATABASE "other" RESET statement_timeout`,
      `REVOKE "gabs_massage_staging" FROM "filter_ical_production"`,
      `REVOKE "pg_read_all_data" FROM "filter_ical_production"`,
      `COMMENT ON ROLE "filter_ical_production" IS 'managed by berth'`,
    ]);
    assert.equal(steps[1]!.statement, `ALTER ROLE "filter_ical_production" WITH PASSWORD '<redacted>'`);
  });

  void it("leaves the password alone when it cannot be read (no pg_authid access)", () => {
    const server = convergedServer(FILTER);
    const role = tenantRole(FILTER);
    delete role.hasStoredPassword;
    server.roles = [role];
    assert.deepEqual(diffServer(server, [FILTER], { verifiers: VERIFIERS }), []);
  });

  void it("takes over a database a tenant owns, and grants it back only CONNECT and TEMPORARY", () => {
    const server = convergedServer(FILTER);
    server.databases = server.databases.map((database) =>
      database.name === FILTER.name
        ? { ...defaultDatabase(FILTER.name, FILTER.role), comment: MANAGED_COMMENT }
        : database,
    );
    assert.deepEqual(sqlOf(diffServer(server, [FILTER], { verifiers: VERIFIERS })), [
      `ALTER DATABASE "filter_ical_production" OWNER TO "berth"`,
      `REVOKE CONNECT, TEMPORARY ON DATABASE "filter_ical_production" FROM PUBLIC`,
      `GRANT CONNECT, TEMPORARY ON DATABASE "filter_ical_production" TO "filter_ical_production"`,
    ]);
  });

  void it("revokes another tenant's access (with what it passed on) and a tenant's grant option and CREATE", () => {
    const server = convergedServer(FILTER, GABS);
    server.databases = server.databases.map((database) =>
      database.name === FILTER.name
        ? {
            ...database,
            grants: [
              ...grants("berth", "CREATE", "TEMPORARY", "CONNECT"),
              { grantee: FILTER.role, privilege: "CONNECT", isGrantable: true },
              ...grants(FILTER.role, "TEMPORARY", "CREATE"),
              { grantee: GABS.role, privilege: "CONNECT", isGrantable: true },
            ],
          }
        : database.name === "postgres"
          ? { ...database, grants: [...database.grants, ...grants(GABS.role, "CONNECT")] }
          : database,
    );
    assert.deepEqual(sqlOf(diffServer(server, [FILTER, GABS], { verifiers: VERIFIERS })), [
      `REVOKE CREATE ON DATABASE "filter_ical_production" FROM "filter_ical_production"`,
      `REVOKE GRANT OPTION FOR CONNECT ON DATABASE "filter_ical_production" FROM "filter_ical_production" CASCADE`,
      `REVOKE CONNECT ON DATABASE "filter_ical_production" FROM "gabs_massage_staging" CASCADE`,
      `REVOKE CONNECT ON DATABASE "postgres" FROM "gabs_massage_staging"`,
    ]);
  });

  void it("drops a purged environment's database and role, after taking back what the role held elsewhere", () => {
    const server = convergedServer(FILTER, GABS);
    server.databases = server.databases.map((database) =>
      database.name === "template1" ? { ...database, grants: [...database.grants, ...grants(GABS.role, "TEMPORARY")] } : database,
    );
    const steps = diffServer(server, [FILTER], { verifiers: VERIFIERS, purge: [GABS.name] });
    assert.deepEqual(sqlOf(steps), [
      // The other tenant's role is no longer planned: its grants on postgres/template1 go with the purge.
      `DROP DATABASE IF EXISTS "gabs_massage_staging" WITH (FORCE)`,
      `REVOKE TEMPORARY ON DATABASE "template1" FROM "gabs_massage_staging"`,
      `DROP ROLE IF EXISTS "gabs_massage_staging"`,
    ]);
    assert.deepEqual(diffServer(convergedServer(FILTER), [FILTER], { verifiers: VERIFIERS, purge: [GABS.name] }), [], "purging what is gone does nothing");
  });

  void it("keeps unplanned databases unless purged", () => {
    assert.deepEqual(diffServer(convergedServer(FILTER, GABS), [FILTER], { verifiers: VERIFIERS }), []);
  });

  void it("refuses to purge what berth did not create, or what is still planned", () => {
    const server = convergedServer(FILTER, GABS);
    server.databases = server.databases.map((database) => (database.name === GABS.name ? { ...database, comment: "someone else's" } : database));
    assert.throws(
      () => diffServer(server, [FILTER], { verifiers: VERIFIERS, purge: [GABS.name] }),
      (error: unknown) => error instanceof BerthError && error.code === "CONFLICT" && /refusing to drop database gabs_massage_staging/.test(error.message),
    );
    assert.throws(
      () => diffServer(server, [FILTER], { verifiers: VERIFIERS, purge: [FILTER.name] }),
      (error: unknown) => error instanceof BerthError && error.code === "BAD_ARGUMENT",
    );
    assert.throws(
      () => diffServer(server, [FILTER], { verifiers: VERIFIERS, purge: ["postgres"] }),
      (error: unknown) => error instanceof BerthError && error.code === "BAD_ARGUMENT",
    );
  });

  void it("refuses a plan that names the admin's own database or role", () => {
    assert.throws(
      () => diffServer(freshServer(), [{ ...FILTER, name: "berth" }], { verifiers: VERIFIERS }),
      (error: unknown) => error instanceof BerthError && error.code === "CONFLICT",
    );
  });

  void it("quotes names and values", () => {
    const odd: DatabasePlan = { ...FILTER, name: 'we"ird', role: "o'brien" };
    const steps = diffServer(freshServer(), [odd], { verifiers: { "o'brien": "it's" } });
    assert.equal(steps[0]!.sql, `CREATE ROLE "o'brien" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 20 PASSWORD 'it''s'`);
    assert.equal(steps[4]!.sql, `CREATE DATABASE "we""ird"`);
    assert.equal(steps[7]!.sql, `GRANT CONNECT, TEMPORARY ON DATABASE "we""ird" TO "o'brien"`);
  });
});

void describe("diffSchema", () => {
  // PostgreSQL 15: public belongs to pg_database_owner; PUBLIC may use it but not create in it.
  const pg15Public = { owner: "pg_database_owner", grants: [...grants("pg_database_owner", "USAGE", "CREATE"), ...grants(PUBLIC, "USAGE")] };

  void it("gives the tenant USAGE and CREATE on public, and PUBLIC nothing", () => {
    const steps = diffSchema(pg15Public, FILTER, "berth");
    assert.deepEqual(sqlOf(steps), [
      `REVOKE USAGE ON SCHEMA "public" FROM PUBLIC`,
      `GRANT USAGE, CREATE ON SCHEMA "public" TO "filter_ical_production"`,
    ]);
    assert.ok(steps.every((step) => step.database === FILTER.name && step.target === FILTER.name));
  });

  void it("takes CREATE from PUBLIC where an older server gave it", () => {
    const pg14Public = { owner: "berth", grants: [...grants("berth", "USAGE", "CREATE"), ...grants(PUBLIC, "USAGE", "CREATE")] };
    assert.deepEqual(sqlOf(diffSchema(pg14Public, FILTER, "berth")).slice(0, 1), [`REVOKE USAGE, CREATE ON SCHEMA "public" FROM PUBLIC`]);
  });

  void it("changes nothing when converged", () => {
    const converged = { owner: "pg_database_owner", grants: [...grants("pg_database_owner", "USAGE", "CREATE"), ...grants(FILTER.role, "USAGE", "CREATE")] };
    assert.deepEqual(diffSchema(converged, FILTER, "berth"), []);
  });

  void it("hands a schema owned by the tenant back to the database owner", () => {
    const owned = { owner: FILTER.role, grants: [...grants(FILTER.role, "USAGE", "CREATE"), ...grants(PUBLIC, "USAGE")] };
    assert.deepEqual(sqlOf(diffSchema(owned, FILTER, "berth")), [
      `ALTER SCHEMA "public" OWNER TO "pg_database_owner"`,
      `REVOKE USAGE ON SCHEMA "public" FROM PUBLIC`,
      `GRANT USAGE, CREATE ON SCHEMA "public" TO "filter_ical_production"`,
    ]);
  });

  void it("recreates a dropped public schema", () => {
    assert.deepEqual(sqlOf(diffSchema(undefined, FILTER, "berth")), [
      `CREATE SCHEMA "public"`,
      `GRANT USAGE, CREATE ON SCHEMA "public" TO "filter_ical_production"`,
    ]);
  });
});
