// Who may do what, and what was done: API tokens (stored as SHA-256 hashes, never their
// values) and the audit log, in the control plane's SQLite file beside the releases.
// The audit table refuses UPDATE and DELETE by trigger: it can only grow.
import type Database from "better-sqlite3";
import { openStateDatabase } from "./db.js";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { BerthError } from "../errors.js";

export type Scope = { kind: "admin" } | { kind: "app"; app: string } | { kind: "environment"; app: string; env: string };

export interface Token {
  id: string;
  name: string;
  scope: Scope;
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

/** An audit entry's result from the HTTP status berthd answers (or would have): ok below 400, refused below 500, else failed. */
export function auditResult(status: number): "ok" | "refused" | "failed" {
  return status < 400 ? "ok" : status < 500 ? "refused" : "failed";
}

export interface AuditEntry {
  id: string;
  at: string;
  actor: string;
  tokenId: string | null;
  operation: string;
  target: string;
  source: string;
  status: number;
  result: "ok" | "refused" | "failed";
}

interface TokenRow {
  id: string;
  name: string;
  scope_app: string | null;
  scope_env: string | null;
  hash: string;
  created_at: string;
  created_by: string;
  revoked_at: string | null;
  last_used_at: string | null;
}

interface AuditRow {
  id: number;
  at: string;
  actor: string;
  token_id: string | null;
  operation: string;
  target: string;
  source: string;
  status: number;
  result: AuditEntry["result"];
}

const SCHEMA = `
create table if not exists tokens (
  id text primary key,
  name text not null,
  scope_app text,
  scope_env text,
  hash text not null,
  created_at text not null,
  created_by text not null,
  revoked_at text,
  last_used_at text
);
create table if not exists audit (
  id integer primary key,
  at text not null,
  actor text not null,
  token_id text,
  operation text not null,
  target text not null,
  source text not null,
  status integer not null,
  result text not null
);
create index if not exists audit_target on audit (target);
create trigger if not exists audit_no_update before update on audit
  begin select raise(abort, 'the audit log is append-only'); end;
create trigger if not exists audit_no_delete before delete on audit
  begin select raise(abort, 'the audit log is append-only'); end;
`;

/** A token's value: berth_<12 hex id>_<43 base64url secret>. Only its hash is stored. */
export const TOKEN_PATTERN = /^berth_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

/** How precisely a token's last use is kept. */
const LAST_USED_RESOLUTION_MS = 60_000;

const sha256 = (text: string) => createHash("sha256").update(text).digest();
const now = () => new Date().toISOString();

function toToken(row: TokenRow): Token {
  const scope: Scope = row.scope_app === null
    ? { kind: "admin" }
    : row.scope_env === null
      ? { kind: "app", app: row.scope_app }
      : { kind: "environment", app: row.scope_app, env: row.scope_env };
  return { id: row.id, name: row.name, scope, createdAt: row.created_at, createdBy: row.created_by, revokedAt: row.revoked_at, lastUsedAt: row.last_used_at };
}

export function describeScope(scope: Scope): string {
  return scope.kind === "admin" ? "admin" : scope.kind === "app" ? `app ${scope.app}` : `environment ${scope.app}/${scope.env}`;
}

/** Whether a token of this scope may act on the app (and environment, when given). */
export function scopeAllows(scope: Scope, app?: string, env?: string): boolean {
  if (scope.kind === "admin") return true;
  if (app === undefined || scope.app !== app) return false;
  if (scope.kind === "app") return true;
  return env !== undefined && scope.env === env;
}

export class AccessStore {
  private readonly db: Database.Database;

  constructor(stateDir: string) {
    this.db = openStateDatabase(stateDir, SCHEMA);
  }

  close(): void {
    this.db.close();
  }

  /** Creates a token; its value is returned here once and never again. */
  createToken(name: string, scope: Scope, createdBy: string): { token: Token; value: string } {
    const id = randomBytes(6).toString("hex");
    const secret = randomBytes(32).toString("base64url");
    this.db
      .prepare("insert into tokens (id, name, scope_app, scope_env, hash, created_at, created_by) values (?, ?, ?, ?, ?, ?, ?)")
      .run(id, name, scope.kind === "admin" ? null : scope.app, scope.kind === "environment" ? scope.env : null, sha256(secret).toString("hex"), now(), createdBy);
    return { token: this.token(id)!, value: `berth_${id}_${secret}` };
  }

  token(id: string): Token | undefined {
    const row = this.db.prepare("select * from tokens where id = ?").get(id) as TokenRow | undefined;
    return row && toToken(row);
  }

  tokens(): Token[] {
    return (this.db.prepare("select * from tokens order by created_at, id").all() as TokenRow[]).map(toToken);
  }

  revokeToken(id: string): Token {
    const token = this.token(id);
    if (!token) throw new BerthError("NOT_FOUND", `no token ${id}`, "See: berth tokens list");
    if (token.revokedAt === null) this.db.prepare("update tokens set revoked_at = ? where id = ?").run(now(), id);
    return this.token(id)!;
  }

  /** The live token a presented value belongs to; undefined for unknown, malformed or revoked ones. */
  authenticate(value: string): Token | undefined {
    const match = TOKEN_PATTERN.exec(value);
    if (!match) return undefined;
    const row = this.db.prepare("select * from tokens where id = ?").get(match[1]) as TokenRow | undefined;
    if (!row || row.revoked_at !== null) return undefined;
    if (!timingSafeEqual(Buffer.from(row.hash, "hex"), sha256(match[2]!))) return undefined;
    // Recorded at most once a minute: not a synchronous write on every request.
    if (row.last_used_at !== null && Date.now() - Date.parse(row.last_used_at) < LAST_USED_RESOLUTION_MS) return toToken(row);
    const usedAt = now();
    this.db.prepare("update tokens set last_used_at = ? where id = ?").run(usedAt, row.id);
    return toToken({ ...row, last_used_at: usedAt });
  }

  hasAdminToken(): boolean {
    return this.db.prepare("select 1 from tokens where scope_app is null and revoked_at is null").get() !== undefined;
  }

  audit(entry: Omit<AuditEntry, "id" | "at">): void {
    this.db
      .prepare("insert into audit (at, actor, token_id, operation, target, source, status, result) values (?, ?, ?, ?, ?, ?, ?, ?)")
      .run(now(), entry.actor, entry.tokenId, entry.operation, entry.target, entry.source, entry.status, entry.result);
  }

  /**
   * Entries newest first. `app` keeps those whose target is the app or one of its
   * environments; with `env` too, only that environment's.
   */
  auditLog(options: { app?: string; env?: string; limit: number; before?: number }): { entries: AuditEntry[]; next: string | null } {
    const exact = options.app === undefined ? null : options.env === undefined ? options.app : `${options.app}/${options.env}`;
    const prefix = options.app === undefined || options.env !== undefined ? null : `${options.app.replace(/[\\%_]/g, "\\$&")}/%`;
    const rows = this.db
      .prepare(
        `select * from audit where (? is null or target = ? or target like ? escape '\\') and (? is null or id < ?) order by id desc limit ?`,
      )
      .all(exact, exact, prefix, options.before ?? null, options.before ?? null, options.limit + 1) as AuditRow[];
    const page = rows.slice(0, options.limit);
    const entries = page.map((row) => ({ id: String(row.id), at: row.at, actor: row.actor, tokenId: row.token_id, operation: row.operation, target: row.target, source: row.source, status: row.status, result: row.result }));
    return { entries, next: rows.length > options.limit ? String(page.at(-1)!.id) : null };
  }
}
