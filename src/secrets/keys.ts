// The key file: berth's key-encryption keys (KEKs), 32 random bytes per version, kept apart
// from the state database so a copy of berth.db (a backup, a stolen disk image of
// /var/lib/berth) holds ciphertext only. Several versions live side by side so a rotation can
// re-wrap data keys under the new one while the old one still opens them.
//
// I/O here is synchronous on purpose: the secret store reads and writes the key file inside
// its SQLite write transaction, so two rotations (or a rotation and a `set`) cannot interleave
// and leave a row wrapped under a key that the file no longer holds.
import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { dirname, resolve } from "node:path";
import { BerthError } from "../errors.js";
import { KEY_BYTES, generateKey, type Kek } from "./crypto.js";

/** Overrides the key file's path (after an explicit path argument, before the default). */
export const KEY_FILE_ENV = "BERTH_SECRETS_KEY";

/** The KEK versions a key file holds, and which one wraps new data keys. */
export interface KeyRing {
  current: number;
  keys: ReadonlyMap<number, Buffer>;
}

/** On disk: `{ "current": 2, "keys": { "1": "<base64>", "2": "<base64>" } }`. */
interface KeyFile {
  current: number;
  keys: Record<string, string>;
}

/** The key file's path: the explicit path > BERTH_SECRETS_KEY > /etc/berth/PLATFORM/secrets.key. */
export function secretsKeyPath(platform: string, override?: string): string {
  return resolve(override ?? process.env[KEY_FILE_ENV] ?? `/etc/berth/${platform}/secrets.key`);
}

const HINT_PATH = `Run berth as the user that owns it, or point --secrets-key / ${KEY_FILE_ENV} at another path.`;

function fileError(path: string, action: string, error: unknown): BerthError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new BerthError("BAD_ARGUMENT", `cannot ${action} key file ${path}: ${code === "EROFS" ? "read-only file system" : "permission denied"}`, HINT_PATH, { cause: error });
  }
  if (code === "ENOSPC") return new BerthError("DISK_FULL", `cannot ${action} key file ${path}: no space left on device`, "Free some space, then try again.", { cause: error });
  return new BerthError("INTERNAL", `cannot ${action} key file ${path}: ${(error as Error).message}`, undefined, { cause: error });
}

function malformed(path: string, why: string): BerthError {
  return new BerthError("INTERNAL", `key file ${path} is not a berth key file: ${why}`, "Restore it from your backup of the key file; without it no secret can be decrypted.");
}

function parseKeyFile(path: string, text: string): KeyRing {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw malformed(path, "not JSON");
  }
  const file = data as Partial<KeyFile> | null;
  if (typeof file !== "object" || file === null || typeof file.keys !== "object" || file.keys === null) throw malformed(path, 'expected { "current": n, "keys": { "n": "<base64>" } }');
  const keys = new Map<number, Buffer>();
  for (const [version, encoded] of Object.entries(file.keys)) {
    const number = Number(version);
    if (!/^[1-9][0-9]*$/.test(version) || !Number.isSafeInteger(number)) throw malformed(path, `key version "${version}" is not a positive integer`);
    const key = typeof encoded === "string" ? Buffer.from(encoded, "base64") : Buffer.alloc(0);
    if (key.length !== KEY_BYTES || key.toString("base64") !== encoded) throw malformed(path, `key version ${version} is not ${KEY_BYTES} bytes of base64`);
    keys.set(number, key);
  }
  if (typeof file.current !== "number" || !keys.has(file.current)) throw malformed(path, `"current" must name one of the key versions`);
  return { current: file.current, keys };
}

/**
 * The key file's keys, or undefined when there is no key file. A key file that anyone but its
 * owner may read, or that is not a regular file, is refused: its keys may have been copied.
 */
export function readKeyRing(path: string): KeyRing | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw fileError(path, "read", error);
  }
  try {
    // fstat of the open file, not stat of the path: the checked file is the file read.
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new BerthError("BAD_ARGUMENT", `key file ${path} is not a regular file`, HINT_PATH);
    if ((stat.mode & 0o077) !== 0) {
      throw new BerthError(
        "BAD_ARGUMENT",
        `key file ${path} has mode ${(stat.mode & 0o777).toString(8).padStart(4, "0")}: it must be readable by its owner only (0600)`,
        `Check who could have read it (and rotate with berth secrets rotate-key if anyone might have), then run: chmod 600 ${path}`,
      );
    }
    return parseKeyFile(path, readFileSync(fd, "utf8"));
  } catch (error) {
    if (error instanceof BerthError) throw error;
    throw fileError(path, "read", error);
  } finally {
    closeSync(fd);
  }
}

/** Writes the key file atomically with mode 0600: temp file, fsync, rename, fsync of the directory. */
export function writeKeyRing(path: string, ring: KeyRing): void {
  if (!ring.keys.has(ring.current)) throw new BerthError("INTERNAL", `key ring's current version ${ring.current} is not among its keys`);
  const file: KeyFile = { current: ring.current, keys: {} };
  for (const [version, key] of [...ring.keys].sort(([a], [b]) => a - b)) file.keys[String(version)] = key.toString("base64");
  const directory = dirname(path);
  const temp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    // "wx": never write through a file (or link) someone else placed at the temp name.
    const fd = openSync(temp, "wx", 0o600);
    try {
      writeSync(fd, JSON.stringify(file, null, 2) + "\n");
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw fileError(path, "write", error);
  }
  // Without the directory's fsync, a power cut can bring back the old file after the new
  // keys have already wrapped data keys in the database.
  const dirFd = openSync(directory, "r");
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/** A key ring with one fresh key, version 1. */
export function newKeyRing(): KeyRing {
  return { current: 1, keys: new Map([[1, generateKey()]]) };
}

/** The ring plus a fresh key, one version above the highest, made current. */
export function withNewKey(ring: KeyRing): KeyRing {
  const version = Math.max(0, ...ring.keys.keys()) + 1;
  return { current: version, keys: new Map([...ring.keys, [version, generateKey()]]) };
}

/** The ring without the given versions; the current version is never removed. */
export function withoutKeys(ring: KeyRing, versions: Iterable<number>): KeyRing {
  const keys = new Map(ring.keys);
  for (const version of versions) {
    if (version === ring.current) throw new BerthError("INTERNAL", `key version ${version} is current and cannot be retired`);
    keys.delete(version);
  }
  return { current: ring.current, keys };
}

/** The key that wraps new data keys. */
export function currentKek(ring: KeyRing): Kek {
  return { version: ring.current, key: ring.keys.get(ring.current)! };
}
