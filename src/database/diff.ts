// What to run to bring the server's roles, databases and grants to the plans: a pure diff
// of what was observed (pg_roles, pg_database, pg_namespace) against DatabasePlans.
// Nothing is dropped unless it is named in `purge` and carries berth's comment.
import { BerthError } from "../errors.js";
import type { DatabasePlan } from "../plan/types.js";
import {
  MANAGED_COMMENT,
  PUBLIC,
  REDACTED,
  TENANT_DATABASE_PRIVILEGES,
  TENANT_SCHEMA_PRIVILEGES,
  alterDatabaseOwner,
  alterRoleAttributes,
  alterRolePassword,
  alterSchemaOwner,
  commentOnDatabase,
  commentOnRole,
  createDatabase,
  createRole,
  createSchema,
  dropDatabase,
  dropRole,
  grantOnDatabase,
  grantOnSchema,
  revokeGrantOptionOnDatabase,
  revokeGrantOptionOnSchema,
  revokeMembership,
  revokeOnDatabase,
  revokeOnSchema,
  resetRoleDefaultInDatabase,
  roleDefaults,
  setRoleDefault,
  type DatabasePrivilege,
  type RoleTimeout,
  type SchemaPrivilege,
} from "./sql.js";

/** One privilege held on a database or schema, as aclexplode() lists it. */
export interface Grant {
  /** A role name, or PUBLIC. */
  grantee: string;
  privilege: string;
  isGrantable: boolean;
}

export interface ObservedRole {
  name: string;
  isSuperuser: boolean;
  inheritsPrivileges: boolean;
  canCreateRole: boolean;
  canCreateDatabase: boolean;
  canLogin: boolean;
  canReplicate: boolean;
  bypassesRls: boolean;
  /** -1: no limit. */
  connectionLimit: number;
  /** Session defaults (pg_roles.rolconfig), name → value as stored. */
  settings: Record<string, string>;
  /**
   * Per-database defaults (pg_db_role_setting), database → name → value. A role may set
   * these for itself, and they beat its own defaults: a tenant could lift its timeouts.
   */
  databaseSettings: Record<string, Record<string, string>>;
  /** Roles it is a member of. */
  memberOf: string[];
  comment: string | null;
  /**
   * Whether the server holds the password the store has for it. Unknown (undefined) when
   * the admin may not read pg_authid (a managed server): then it is set only at creation.
   */
  hasStoredPassword?: boolean;
}

export interface ObservedDatabase {
  name: string;
  owner: string;
  /** Explicit and default privileges alike (aclexplode of acldefault when datacl is null). */
  grants: Grant[];
  comment: string | null;
}

export interface ObservedServer {
  /** The role berth connects as (current_user). */
  admin: string;
  /** The database berth connects to (current_database()). */
  adminDatabase: string;
  /** At least every role that is planned or purged. */
  roles: ObservedRole[];
  databases: ObservedDatabase[];
}

/** The schema public of one tenant database; undefined when it was dropped. */
export interface ObservedSchema {
  owner: string;
  grants: Grant[];
}

/** A statement berth ran, safe to print: it never holds a password or its verifier. */
export interface Change {
  /** The role or database it changes. */
  target: string;
  /** The database it ran in; absent: the admin's own. */
  database?: string;
  statement: string;
}

/** A statement to run: a Change plus the real SQL (which may hold a password verifier). */
export interface Step extends Change {
  sql: string;
}

export interface ServerDiffOptions {
  /** SCRAM verifier of each planned role's password, used when the role needs one. */
  verifiers: Record<string, string>;
  /** Databases (and their roles, of the same name) of environments removed from the spec. */
  purge?: readonly string[];
}

/** Databases that exist in every cluster and that no tenant should reach. */
export const SYSTEM_DATABASES = ["postgres", "template1"] as const;

export const PUBLIC_SCHEMA = "public";

const DATABASE_PRIVILEGE_ORDER: readonly DatabasePrivilege[] = ["CREATE", "CONNECT", "TEMPORARY"];
const SCHEMA_PRIVILEGE_ORDER: readonly SchemaPrivilege[] = ["USAGE", "CREATE"];

const step = (target: string, sql: string, display = sql): Step => ({ target, statement: display, sql });

/** The statements that converge the server's roles and databases (not the schemas inside them). */
export function diffServer(observed: ObservedServer, plans: readonly DatabasePlan[], options: ServerDiffOptions): Step[] {
  const purge = [...new Set(options.purge ?? [])].sort();
  checkPlansAndPurge(observed, plans, purge);
  const roles = new Map(observed.roles.map((role) => [role.name, role]));
  const databases = new Map(observed.databases.map((database) => [database.name, database]));
  const tenantRoles = new Set(plans.map((plan) => plan.role));

  const steps: Step[] = [];
  for (const plan of plans) {
    const verifier = options.verifiers[plan.role];
    if (verifier === undefined) throw new BerthError("INTERNAL", `no password verifier for role ${plan.role}`);
    steps.push(...diffRole(roles.get(plan.role), plan, verifier));
  }
  for (const plan of plans) steps.push(...diffDatabase(databases.get(plan.name), plan, observed.admin));

  // The databases every cluster has: PUBLIC (and any tenant) keeps CONNECT and TEMPORARY on
  // them by default, so a tenant could otherwise open sessions there and count objects.
  const others = [...new Set<string>([...SYSTEM_DATABASES, observed.adminDatabase])].filter(
    (name) => !plans.some((plan) => plan.name === name),
  );
  for (const name of others) {
    const database = databases.get(name);
    if (!database) continue;
    steps.push(...revokeAll(database.name, database.grants, (grantee) => grantee === PUBLIC || tenantRoles.has(grantee)));
  }

  // Tenant databases were handled above: the purged role keeps nothing on them.
  const unplanned = observed.databases.filter((database) => !plans.some((plan) => plan.name === database.name));
  for (const name of purge) steps.push(...purgeEnvironment(name, roles.get(name), databases.get(name), unplanned));
  return steps;
}

function checkPlansAndPurge(observed: ObservedServer, plans: readonly DatabasePlan[], purge: readonly string[]): void {
  for (const plan of plans) {
    if (plan.role === observed.admin || plan.name === observed.adminDatabase) {
      throw new BerthError(
        "CONFLICT",
        `database ${plan.name} (role ${plan.role}) is the admin's own`,
        "Connect berth as another admin role and database, or rename the app.",
      );
    }
  }
  const planned = new Set(plans.flatMap((plan) => [plan.name, plan.role]));
  for (const name of purge) {
    if (planned.has(name)) {
      throw new BerthError("BAD_ARGUMENT", `cannot purge ${name}: an environment in the spec still uses it`, "Remove the environment from the spec first.");
    }
    if (name === observed.admin || name === observed.adminDatabase || (SYSTEM_DATABASES as readonly string[]).includes(name)) {
      throw new BerthError("BAD_ARGUMENT", `cannot purge ${name}: it is not a tenant database`);
    }
  }
}

function diffRole(role: ObservedRole | undefined, plan: DatabasePlan, verifier: string): Step[] {
  const steps: Step[] = [];
  const defaults = roleDefaults(plan);
  if (!role) {
    steps.push(step(plan.role, createRole(plan, verifier), createRole(plan, REDACTED)));
    for (const [name, value] of Object.entries(defaults)) {
      steps.push(step(plan.role, setRoleDefault(plan.role, name as RoleTimeout, Number(value))));
    }
    steps.push(step(plan.role, commentOnRole(plan.role)));
    return steps;
  }

  const hasTenantAttributes =
    role.canLogin &&
    !role.isSuperuser &&
    !role.canCreateDatabase &&
    !role.canCreateRole &&
    !role.canReplicate &&
    !role.bypassesRls &&
    !role.inheritsPrivileges &&
    role.connectionLimit === plan.connectionLimit;
  if (!hasTenantAttributes) steps.push(step(plan.role, alterRoleAttributes(plan)));
  if (role.hasStoredPassword === false) {
    steps.push(step(plan.role, alterRolePassword(plan.role, verifier), alterRolePassword(plan.role, REDACTED)));
  }
  for (const [name, value] of Object.entries(defaults)) {
    if (role.settings[name] !== value) steps.push(step(plan.role, setRoleDefault(plan.role, name as RoleTimeout, Number(value))));
  }
  for (const database of Object.keys(role.databaseSettings).sort()) {
    for (const name of Object.keys(defaults)) {
      if (role.databaseSettings[database]?.[name] !== undefined) {
        steps.push(step(plan.role, resetRoleDefaultInDatabase(plan.role, database, name as RoleTimeout)));
      }
    }
  }
  for (const group of [...role.memberOf].sort()) steps.push(step(plan.role, revokeMembership(group, plan.role)));
  if (role.comment !== MANAGED_COMMENT) steps.push(step(plan.role, commentOnRole(plan.role)));
  return steps;
}

function diffDatabase(database: ObservedDatabase | undefined, plan: DatabasePlan, admin: string): Step[] {
  const steps: Step[] = [];
  let current: ObservedDatabase;
  if (!database) {
    steps.push(step(plan.name, createDatabase(plan.name)));
    // What CREATE DATABASE leaves: acldefault('d', owner) — the owner all, PUBLIC CONNECT and TEMPORARY.
    current = {
      name: plan.name,
      owner: admin,
      grants: [
        ...DATABASE_PRIVILEGE_ORDER.map((privilege) => ({ grantee: admin, privilege, isGrantable: false })),
        { grantee: PUBLIC, privilege: "CONNECT", isGrantable: false },
        { grantee: PUBLIC, privilege: "TEMPORARY", isGrantable: false },
      ],
      comment: null,
    };
  } else if (database.owner !== admin) {
    // An owner may re-grant, alter and drop its database: the admin takes it over. ALTER OWNER
    // hands the old owner's own entries to the new one.
    steps.push(step(plan.name, alterDatabaseOwner(plan.name, admin)));
    current = { ...database, owner: admin, grants: database.grants.filter((grant) => grant.grantee !== database.owner) };
  } else {
    current = database;
  }
  if (current.comment !== MANAGED_COMMENT) steps.push(step(plan.name, commentOnDatabase(plan.name)));
  steps.push(
    ...diffGrants(current.grants, {
      desired: new Map([[plan.role, TENANT_DATABASE_PRIVILEGES]]),
      isIgnored: (grantee) => grantee === current.owner,
      order: DATABASE_PRIVILEGE_ORDER,
      grant: (privileges, to) => step(plan.name, grantOnDatabase(plan.name, privileges, to)),
      revoke: (privileges, from, cascade) => step(plan.name, revokeOnDatabase(plan.name, privileges, from, cascade)),
      revokeGrantOption: (privileges, from) => step(plan.name, revokeGrantOptionOnDatabase(plan.name, privileges, from)),
    }),
  );
  return steps;
}

/** Revokes every privilege on a database held by the grantees chosen. */
function revokeAll(name: string, grants: readonly Grant[], isChosen: (grantee: string) => boolean): Step[] {
  return diffGrants(
    grants.filter((grant) => isChosen(grant.grantee)),
    {
      desired: new Map(),
      isIgnored: () => false,
      order: DATABASE_PRIVILEGE_ORDER,
      grant: () => {
        throw new Error("unreachable: nothing is granted");
      },
      revoke: (privileges, from, cascade) => step(name, revokeOnDatabase(name, privileges, from, cascade)),
      revokeGrantOption: (privileges, from) => step(name, revokeGrantOptionOnDatabase(name, privileges, from)),
    },
  );
}

function purgeEnvironment(
  name: string,
  role: ObservedRole | undefined,
  database: ObservedDatabase | undefined,
  databases: readonly ObservedDatabase[],
): Step[] {
  const refuse = (what: string) =>
    new BerthError(
      "CONFLICT",
      `refusing to drop ${what} ${name}: it does not carry berth's comment '${MANAGED_COMMENT}', so berth did not create it`,
      `Drop it by hand if it really should go.`,
    );
  if (database && database.comment !== MANAGED_COMMENT) throw refuse("database");
  if (role && role.comment !== MANAGED_COMMENT) throw refuse("role");

  const steps: Step[] = [];
  if (database) steps.push(step(name, dropDatabase(name)));
  if (role) {
    // DROP ROLE fails while the role holds a privilege anywhere: take back what drift left.
    for (const other of databases) {
      if (other.name === name) continue;
      steps.push(...revokeAll(other.name, other.grants, (grantee) => grantee === name));
    }
    steps.push(step(name, dropRole(name)));
  }
  return steps;
}

/** The statements that converge the schema public inside one tenant database. */
export function diffSchema(schema: ObservedSchema | undefined, plan: DatabasePlan, admin: string): Step[] {
  const steps: Step[] = [];
  const inDatabase = (s: Step): Step => ({ ...s, database: plan.name });
  // pg_database_owner (PostgreSQL 14+) stands for the database's owner, the admin: the
  // tenant gets USAGE and CREATE, but cannot drop the schema or hand it to others.
  const owners = new Set(["pg_database_owner", admin]);
  let current: ObservedSchema;
  if (!schema) {
    steps.push(inDatabase(step(plan.name, createSchema(PUBLIC_SCHEMA))));
    current = { owner: admin, grants: SCHEMA_PRIVILEGE_ORDER.map((privilege) => ({ grantee: admin, privilege, isGrantable: false })) };
  } else if (!owners.has(schema.owner)) {
    steps.push(inDatabase(step(plan.name, alterSchemaOwner(PUBLIC_SCHEMA, "pg_database_owner"))));
    current = { owner: "pg_database_owner", grants: schema.grants.filter((grant) => grant.grantee !== schema.owner) };
  } else {
    current = schema;
  }
  steps.push(
    ...diffGrants(current.grants, {
      desired: new Map([[plan.role, TENANT_SCHEMA_PRIVILEGES]]),
      isIgnored: (grantee) => owners.has(grantee),
      order: SCHEMA_PRIVILEGE_ORDER,
      grant: (privileges, to) => inDatabase(step(plan.name, grantOnSchema(PUBLIC_SCHEMA, privileges, to))),
      revoke: (privileges, from, cascade) => inDatabase(step(plan.name, revokeOnSchema(PUBLIC_SCHEMA, privileges, from, cascade))),
      revokeGrantOption: (privileges, from) => inDatabase(step(plan.name, revokeGrantOptionOnSchema(PUBLIC_SCHEMA, privileges, from))),
    }),
  );
  return steps;
}

interface GrantDiff<P extends string> {
  /** grantee → the privileges it should hold, without grant option. */
  desired: ReadonlyMap<string, readonly P[]>;
  /** Grantees left alone (the owner, whose privileges are implicit). */
  isIgnored: (grantee: string) => boolean;
  order: readonly P[];
  grant: (privileges: P[], to: string) => Step;
  revoke: (privileges: P[], from: string, cascade: boolean) => Step;
  revokeGrantOption: (privileges: P[], from: string) => Step;
}

/** Revokes what no one should hold (PUBLIC first, then by name), then grants what is missing. */
function diffGrants<P extends string>(grants: readonly Grant[], diff: GrantDiff<P>): Step[] {
  const held = new Map<string, Map<string, boolean>>();
  for (const { grantee, privilege, isGrantable } of grants) {
    if (diff.isIgnored(grantee)) continue;
    const privileges = held.get(grantee) ?? new Map<string, boolean>();
    privileges.set(privilege, (privileges.get(privilege) ?? false) || isGrantable);
    held.set(grantee, privileges);
  }
  const grantees = [...new Set([...held.keys(), ...diff.desired.keys()])].sort((a, b) =>
    a === PUBLIC ? -1 : b === PUBLIC ? 1 : a < b ? -1 : a > b ? 1 : 0,
  );

  const steps: Step[] = [];
  for (const grantee of grantees) {
    const has = held.get(grantee) ?? new Map<string, boolean>();
    const wanted = new Set<string>(diff.desired.get(grantee) ?? []);
    const extra = diff.order.filter((privilege) => has.has(privilege) && !wanted.has(privilege));
    const grantable = diff.order.filter((privilege) => has.get(privilege) === true && wanted.has(privilege));
    const missing = diff.order.filter((privilege) => wanted.has(privilege) && !has.has(privilege));
    // With a grant option the grantee may have passed the privilege on: CASCADE takes that back too.
    if (extra.length > 0) steps.push(diff.revoke(extra, grantee, extra.some((privilege) => has.get(privilege) === true)));
    if (grantable.length > 0) steps.push(diff.revokeGrantOption(grantable, grantee));
    if (missing.length > 0) steps.push(diff.grant(missing, grantee));
  }
  return steps;
}
