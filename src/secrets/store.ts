// Secrets per app environment: encrypted, versioned, in the control plane's SQLite file
// (berth.db, beside the Store's tables) with the key-encryption keys in a key file elsewhere.
// Every set or unset appends a row (a deletion is a marker row), so each secret keeps its
// history and each environment has a secrets version that a release can record.
import type Database from "better-sqlite3";
import { openStateDatabase } from "../state/db.js";
import { isAbsolute, relative, resolve } from "node:path";
import { BerthError } from "../errors.js";
import { DecryptionError, openSecret, rewrapKey, sealSecret, type SecretRef } from "./crypto.js";
import { currentKek, newKeyRing, readKeyRing, withNewKey, withoutKeys, writeKeyRing, type KeyRing } from "./keys.js";

export const SECRET_NAME_PATTERN = /^[A-Z_][A-Z0-9_]*$/;
export const MAX_NAME_LENGTH = 128;
export const MAX_VALUE_BYTES = 64 * 1024;
/** Names berth sets itself in a tenant's environment; a secret must not shadow them. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set(["DATABASE_URL", "BERTH_SECRETS_DIR", "BERTH_SECRETS_VERSION"]);

/** A live secret as `list` shows it: never its value. */
export interface SecretInfo {
  name: string;
  /** The secret's own version: 1 for the first set, +1 for every set or unset since. */
  version: number;
  updatedAt: string;
}

/** One row of a secret's history. */
export interface SecretVersion {
  name: string;
  version: number;
  createdAt: string;
  isDeleted: boolean;
  /** The key version that wraps its data key; null for a deletion marker. */
  kekVersion: number | null;
}

/** What one set or unset did. */
export interface SecretsChange {
  /** The environment's secrets version after the change. */
  version: number;
  changed: SecretVersion[];
}

/** What a key rotation did. */
export interface KeyRotation {
  /** The new current key version. */
  kekVersion: number;
  /** How many data keys (every stored version of every secret) were re-wrapped. */
  rewrapped: number;
  /** Key versions still in the key file that no stored secret uses any more. */
  unusedVersions: number[];
}

interface SecretRow {
  app: string;
  env: string;
  name: string;
  version: number;
  revision: number;
  is_deleted: number;
  ciphertext: Buffer | null;
  wrapped_key: Buffer | null;
  kek_version: number | null;
  created_at: string;
}

const SCHEMA = `
create table if not exists secret_versions (
  id integer primary key,
  app text not null,
  env text not null,
  name text not null,
  -- per secret: 1, 2, 3, …
  version integer not null,
  -- per environment: the secrets version this row belongs to (one per set/unset call)
  revision integer not null,
  is_deleted integer not null default 0,
  ciphertext blob,
  wrapped_key blob,
  kek_version integer,
  created_at text not null,
  unique (app, env, name, version)
);
create index if not exists secret_versions_by_revision on secret_versions (app, env, revision);
`;

/** Why a name cannot be a secret's name, or undefined when it can. */
export function secretNameProblem(name: string): string | undefined {
  if (name.length === 0) return "secret name is empty: expected an environment variable name like API_KEY";
  if (name.length > MAX_NAME_LENGTH) return `secret name ${name.slice(0, 32)}… is ${name.length} characters; the limit is ${MAX_NAME_LENGTH}`;
  if (!SECRET_NAME_PATTERN.test(name)) return `secret name "${name}": expected an environment variable name of capital letters, digits and _, not starting with a digit, like API_KEY`;
  if (RESERVED_NAMES.has(name)) {
    return `secret name ${name} is reserved: berth sets it ${name === "DATABASE_URL" ? "from the environment's database" : "when secrets are files (secrets.as: files)"}`;
  }
  return undefined;
}

/** Why a value cannot be stored under `name`, or undefined when it can. Never quotes the value. */
export function secretValueProblem(name: string, value: string): string | undefined {
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > MAX_VALUE_BYTES) return `secret ${name}: the value is ${bytes} bytes; the limit is ${MAX_VALUE_BYTES} (64 KiB)`;
  if (value.includes("\0")) return `secret ${name}: the value contains a NUL character, which an environment variable cannot carry`;
  if (Buffer.from(value, "utf8").toString("utf8") !== value) return `secret ${name}: the value is not valid Unicode text`;
  return undefined;
}

function checkScope(app: string, env: string): void {
  for (const [field, value] of [["app", app], ["env", env]] as const) {
    if (value === "" || value.includes("/")) throw new BerthError("BAD_ARGUMENT", `${field} "${value}": expected a name without "/"`);
  }
}

const now = () => new Date().toISOString();
const refOf = (row: SecretRow): SecretRef => ({ app: row.app, env: row.env, name: row.name, version: row.version });
const toVersion = (row: SecretRow): SecretVersion => ({ name: row.name, version: row.version, createdAt: row.created_at, isDeleted: row.is_deleted === 1, kekVersion: row.kek_version });

export class SecretStore {
  private readonly db: Database.Database;
  readonly keyPath: string;

  /**
   * Opens `<stateDir>/berth.db` (the Store's file) and the key file at `keyPath`, which must
   * lie outside the state directory: a backup of the state would otherwise carry its keys.
   */
  constructor(stateDir: string, options: { keyPath: string }) {
    this.keyPath = resolve(options.keyPath);
    const inState = relative(resolve(stateDir), this.keyPath);
    if (inState === "" || (!inState.startsWith("..") && !isAbsolute(inState))) {
      throw new BerthError(
        "BAD_ARGUMENT",
        `key file ${this.keyPath} is inside the state directory ${resolve(stateDir)}: a copy of the state would carry the keys that decrypt it`,
        "Keep it elsewhere (the default is /etc/berth/PLATFORM/secrets.key): pass --secrets-key PATH or set BERTH_SECRETS_KEY.",
      );
    }
    this.db = openStateDatabase(stateDir, SCHEMA);
  }

  close(): void {
    this.db.close();
  }

  /** Adds a version of one secret. */
  set(app: string, env: string, name: string, value: string): SecretVersion {
    return this.setMany(app, env, { [name]: value }).changed[0]!;
  }

  /** Adds a version of each secret, all in one transaction; nothing is written if any is refused. */
  setMany(app: string, env: string, values: Readonly<Record<string, string>>): SecretsChange {
    checkScope(app, env);
    const entries = Object.entries(values);
    if (entries.length === 0) throw new BerthError("BAD_ARGUMENT", "no secrets to set", "For example: berth secrets set APP --env ENV API_KEY=…");
    for (const [name, value] of entries) {
      const problem = secretNameProblem(name) ?? secretValueProblem(name, value);
      if (problem) throw new BerthError("BAD_ARGUMENT", problem, "Nothing was changed.");
    }
    return this.db
      .transaction(() => {
        // The key file is read inside the write transaction: a concurrent rotation cannot
        // retire the key this row is wrapped with between the read and the insert.
        const kek = currentKek(this.writableKeyRing());
        const revision = this.version(app, env) + 1;
        const createdAt = now();
        const changed = entries.map(([name, value]) => {
          const version = this.lastVersion(app, env, name) + 1;
          const sealed = sealSecret({ app, env, name, version }, value, kek);
          this.db
            .prepare(
              "insert into secret_versions (app, env, name, version, revision, is_deleted, ciphertext, wrapped_key, kek_version, created_at) values (?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
            )
            .run(app, env, name, version, revision, sealed.ciphertext, sealed.wrappedKey, sealed.kekVersion, createdAt);
          return { name, version, createdAt, isDeleted: false, kekVersion: sealed.kekVersion };
        });
        return { version: revision, changed };
      })
      .immediate();
  }

  /** Adds a deletion marker for one secret. */
  unset(app: string, env: string, name: string): SecretVersion {
    return this.unsetMany(app, env, [name]).changed[0]!;
  }

  /** Adds a deletion marker for each secret, in one transaction; each must be set now. */
  unsetMany(app: string, env: string, names: readonly string[]): SecretsChange {
    checkScope(app, env);
    if (names.length === 0) throw new BerthError("BAD_ARGUMENT", "no secrets to unset", "For example: berth secrets unset APP --env ENV API_KEY");
    return this.db
      .transaction(() => {
        const live = new Set(this.list(app, env).map((secret) => secret.name));
        const missing = names.filter((name) => !live.has(name));
        if (missing.length > 0) {
          throw new BerthError("NOT_FOUND", `${app}/${env} has no secret ${missing.join(", ")}`, `Nothing was changed. See what is set: berth secrets list ${app} --env ${env}`);
        }
        const revision = this.version(app, env) + 1;
        const createdAt = now();
        const changed = [...new Set(names)].map((name) => {
          const version = this.lastVersion(app, env, name) + 1;
          this.db
            .prepare("insert into secret_versions (app, env, name, version, revision, is_deleted, created_at) values (?, ?, ?, ?, ?, 1, ?)")
            .run(app, env, name, version, revision, createdAt);
          return { name, version, createdAt, isDeleted: true, kekVersion: null };
        });
        return { version: revision, changed };
      })
      .immediate();
  }

  /** The live secrets' names, versions and dates, by name. Never values. */
  list(app: string, env: string): SecretInfo[] {
    return this.latest(app, env, Number.MAX_SAFE_INTEGER)
      .filter((row) => row.is_deleted === 0)
      .map((row) => ({ name: row.name, version: row.version, updatedAt: row.created_at }));
  }

  /** Every version of one secret, oldest first. Never values. */
  history(app: string, env: string, name: string): SecretVersion[] {
    const rows = this.db.prepare("select * from secret_versions where app = ? and env = ? and name = ? order by version").all(app, env, name) as SecretRow[];
    return rows.map(toVersion);
  }

  /** The environment's secrets version: changes with every set and unset; 0 before the first. */
  version(app: string, env: string): number {
    const row = this.db.prepare("select coalesce(max(revision), 0) as revision from secret_versions where app = ? and env = ?").get(app, env) as { revision: number };
    return row.revision;
  }

  /**
   * The decrypted value of every live secret, by name — as of secrets version `at` (default:
   * now), so a rollback can get back the secrets its release was made with. If any secret
   * cannot be decrypted this throws, naming each one: a deploy must fail rather than start
   * an environment with some of its secrets missing.
   */
  values(app: string, env: string, options: { at?: number } = {}): Record<string, string> {
    checkScope(app, env);
    return this.db
      .transaction(() => {
        const rows = this.latest(app, env, options.at ?? Number.MAX_SAFE_INTEGER).filter((row) => row.is_deleted === 0);
        if (rows.length === 0) return {};
        // Read under the write lock, so no rotation or retirement changes the file between
        // reading the rows and reading the keys they name.
        let ring: KeyRing | undefined;
        let ringProblem: string | undefined;
        try {
          ring = readKeyRing(this.keyPath);
          if (!ring) ringProblem = `the key file ${this.keyPath} does not exist`;
        } catch (error) {
          if (!(error instanceof BerthError)) throw error;
          ringProblem = error.message;
        }
        const result: Record<string, string> = {};
        const failures: string[] = [];
        for (const row of rows) {
          const problem = ringProblem ?? this.openRow(row, ring!, result);
          if (problem) failures.push(`${row.name} (version ${row.version}): ${problem}`);
        }
        if (failures.length > 0) {
          throw new BerthError(
            "INTERNAL",
            `cannot decrypt the secrets of ${app}/${env}: ${failures.join("; ")}`,
            `No secret was used. Restore the key file that holds those key versions, or set the named secrets again: berth secrets set ${app} --env ${env} NAME`,
          );
        }
        return result;
      })
      .immediate();
  }

  /**
   * Makes a new key version current and re-wraps every stored data key (every version of
   * every secret) under it, in one transaction; values and their ciphertexts are unchanged.
   * Older key versions stay in the key file until `retireKeys` drops them.
   */
  rotateKey(): KeyRotation {
    return this.db
      .transaction(() => {
        const ring = readKeyRing(this.keyPath);
        if (!ring) {
          // No key file yet: the first key is the rotation (refused if secrets need a lost one).
          return { kekVersion: this.writableKeyRing().current, rewrapped: 0, unusedVersions: [] };
        }
        const next = withNewKey(ring);
        const kek = currentKek(next);
        // The key file gets the new key before any row names it. Should the transaction fail,
        // the file merely holds one unused key; every older key stays.
        writeKeyRing(this.keyPath, next);
        const rows = this.db.prepare("select * from secret_versions where is_deleted = 0 order by id").all() as SecretRow[];
        const update = this.db.prepare("update secret_versions set wrapped_key = ?, kek_version = ? where app = ? and env = ? and name = ? and version = ?");
        for (const row of rows) {
          const from = row.kek_version === null ? undefined : ring.keys.get(row.kek_version);
          if (!from || !row.wrapped_key) {
            throw this.unreadable(row, row.kek_version === null ? "its row has no key version" : `key version ${row.kek_version} is not in ${this.keyPath}`);
          }
          let wrapped: Buffer;
          try {
            wrapped = rewrapKey(refOf(row), row.wrapped_key, from, kek);
          } catch (error) {
            if (error instanceof DecryptionError) throw this.unreadable(row, error.message);
            throw error;
          }
          update.run(wrapped, kek.version, row.app, row.env, row.name, row.version);
        }
        return { kekVersion: kek.version, rewrapped: rows.length, unusedVersions: this.unusedKeyVersions(next) };
      })
      .immediate();
  }

  /** Drops from the key file the key versions that no stored secret uses; returns them. */
  retireKeys(): number[] {
    return this.db
      .transaction(() => {
        const ring = readKeyRing(this.keyPath);
        if (!ring) return [];
        const unused = this.unusedKeyVersions(ring);
        if (unused.length > 0) writeKeyRing(this.keyPath, withoutKeys(ring, unused));
        return unused;
      })
      .immediate();
  }

  /** The latest row of each name as of `revision`, deletion markers included, by name. */
  private latest(app: string, env: string, revision: number): SecretRow[] {
    return this.db
      .prepare(
        `select s.* from secret_versions s
         where s.app = ? and s.env = ? and s.version = (
           select max(t.version) from secret_versions t where t.app = s.app and t.env = s.env and t.name = s.name and t.revision <= ?)
         order by s.name`,
      )
      .all(app, env, revision) as SecretRow[];
  }

  private lastVersion(app: string, env: string, name: string): number {
    const row = this.db.prepare("select coalesce(max(version), 0) as version from secret_versions where app = ? and env = ? and name = ?").get(app, env, name) as { version: number };
    return row.version;
  }

  /** Decrypts one row into `into`; returns why it could not, never the value. */
  private openRow(row: SecretRow, ring: KeyRing, into: Record<string, string>): string | undefined {
    if (row.kek_version === null || !row.ciphertext || !row.wrapped_key) return "its row has no ciphertext or key version";
    const kek = ring.keys.get(row.kek_version);
    if (!kek) return `key version ${row.kek_version} is not in ${this.keyPath}`;
    try {
      into[row.name] = openSecret(refOf(row), { ciphertext: row.ciphertext, wrappedKey: row.wrapped_key }, kek);
      return undefined;
    } catch (error) {
      if (error instanceof DecryptionError) return error.message;
      throw error;
    }
  }

  private unreadable(row: SecretRow, problem: string): BerthError {
    return new BerthError(
      "INTERNAL",
      `key rotation stopped: secret ${row.name} of ${row.app}/${row.env} (version ${row.version}) cannot be decrypted: ${problem}`,
      "Nothing was re-wrapped. Restore the key file that holds that key version, then rotate again.",
    );
  }

  private unusedKeyVersions(ring: KeyRing): number[] {
    const used = new Set((this.db.prepare("select distinct kek_version as v from secret_versions where kek_version is not null").all() as { v: number }[]).map((row) => row.v));
    return [...ring.keys.keys()].filter((version) => version !== ring.current && !used.has(version)).sort((a, b) => a - b);
  }

  /**
   * The key ring to encrypt with; a first key file is created when there is none. If the
   * database already holds secrets, a missing key file is lost, not new: refuse, rather than
   * start a fresh key whose version numbers collide with the lost ones.
   */
  private writableKeyRing(): KeyRing {
    const ring = readKeyRing(this.keyPath);
    if (ring) return ring;
    const used = (this.db.prepare("select distinct kek_version as v from secret_versions where kek_version is not null order by v").all() as { v: number }[]).map((row) => row.v);
    if (used.length > 0) {
      throw new BerthError(
        "NOT_FOUND",
        `the key file ${this.keyPath} does not exist, but berth.db holds secrets encrypted under key version${used.length > 1 ? "s" : ""} ${used.join(", ")}`,
        "Restore the key file from your backup of it (or point --secrets-key / BERTH_SECRETS_KEY at it). Nothing was changed.",
      );
    }
    const created = newKeyRing();
    writeKeyRing(this.keyPath, created);
    return created;
  }
}
