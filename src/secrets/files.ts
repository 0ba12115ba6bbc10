// Secrets as files (spec: secrets.as: files). The values never enter a container's
// configuration (no environment variable, so not in `docker inspect`): each is a file
// /run/secrets/NAME, read-only, in a directory of the host's tmpfs (/run) that is
// bind-mounted read-only into the container. Never under the state directory: /run is
// memory, gone at a reboot (`berth apply` writes the files again).
//
// Layout: /run/berth/PLATFORM/secrets/            0700 root, .version-key (0600)
//           APP-COMPONENT-ENV/                      0700 root, .current
//             VERSION/NAME                          the files a container sees
// VERSION is an HMAC of the values under a random host key, so a directory is written once
// and never changed while a container uses it: the old and the new containers of a deploy
// each read their own values. The name reveals nothing of the values (keyed), and the
// container's configuration holds only VERSION, which changes when a value does, so the
// container is replaced then.
//
// Ownership: with a numeric `user: UID[:GID]` the files are 0400 (directory 0500) owned by
// that user. A user given by name, or the image's, cannot be resolved on the host: the files
// are then 0444 (directory 0555), readable by the container's processes only, since the host
// directories above them are 0700 root.
import { createHmac, randomBytes } from "node:crypto";
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { BerthError } from "../errors.js";
import type { Docker } from "../host/docker.js";

/** Where the container sees its secret files. */
export const SECRETS_MOUNT = "/run/secrets";

/** Set in the container when its secrets are files: where they are. */
export const SECRETS_DIR_VAR = "BERTH_SECRETS_DIR";

/** Set in the container when its secrets are files: the version directory mounted (an HMAC, no value). */
export const SECRETS_VERSION_VAR = "BERTH_SECRETS_VERSION";

/** Label of a container with secret files: the host directory mounted at /run/secrets. */
export const SECRET_FILES_LABEL = "berth.secret-files";

const VERSION_PATTERN = /^[0-9a-f]{32}$/;
const KEY_FILE = ".version-key";
const CURRENT_FILE = ".current";

/** The host's root of berth's runtime files: /run/berth, or BERTH_RUN_DIR (tests, non-root development). */
export function runRoot(): string {
  return resolve(process.env.BERTH_RUN_DIR ?? "/run/berth");
}

export function secretFilesRoot(platform: string): string {
  return join(runRoot(), platform, "secrets");
}

export interface SecretFilesTarget {
  platform: string;
  app: string;
  env: string;
  component: string;
  /** The container's user from the spec (`user:`), if any. */
  user?: string;
}

export function componentDir(target: Omit<SecretFilesTarget, "user">): string {
  return join(secretFilesRoot(target.platform), `${target.app}-${target.component}-${target.env}`);
}

/** The host directory of one version of a component's secret files. */
export function secretFilesDir(target: Omit<SecretFilesTarget, "user">, version: string): string {
  if (!VERSION_PATTERN.test(version)) throw new BerthError("INTERNAL", `secret files version ${JSON.stringify(version)} is not one berth made`);
  return join(componentDir(target), version);
}

/** uid and gid when the spec's user is numeric; undefined when only the container knows who it is. */
export function numericOwner(user: string | undefined): { uid: number; gid: number } | undefined {
  const match = user === undefined ? null : /^(\d+)(?::(\d+))?$/.exec(user);
  if (user === "root") return { uid: 0, gid: 0 };
  if (!match) return undefined;
  return { uid: Number(match[1]), gid: Number(match[2] ?? 0) };
}

function fail(doing: string, error: unknown): never {
  const code = (error as NodeJS.ErrnoException).code;
  throw new BerthError(
    code === "ENOSPC" ? "DISK_FULL" : "INTERNAL",
    `cannot ${doing}: ${(error as Error).message}`,
    code === "EACCES" || code === "EPERM"
      ? `Secret files are written to ${runRoot()} and owned by the container's user: run berth as root, or set BERTH_RUN_DIR.`
      : undefined,
    { cause: error },
  );
}

/** The random key versions are made with; created once per boot (it lives on the tmpfs). */
function versionKey(root: string): Buffer {
  const file = join(root, KEY_FILE);
  try {
    const fd = openSync(file, "wx", 0o600);
    try {
      writeSync(fd, randomBytes(32));
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") fail(`create ${file}`, error);
  }
  const key = readFileSync(file);
  if (key.length !== 32) throw new BerthError("INTERNAL", `${file} is not a 32-byte key`, "Remove it; berth makes a new one (containers with secret files are then replaced at the next apply).");
  return key;
}

/**
 * Writes the component's secret files (once per version; a second call finds them) and
 * returns their version. Synchronous: a handful of small files on a tmpfs.
 */
export function writeSecretFiles(target: SecretFilesTarget, values: Record<string, string>): string {
  const root = secretFilesRoot(target.platform);
  const owner = numericOwner(target.user);
  try {
    mkdirSync(root, { recursive: true, mode: 0o700 });
    chmodSync(root, 0o700);
  } catch (error) {
    fail(`create ${root}`, error);
  }
  const entries = Object.entries(values).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const version = createHmac("sha256", versionKey(root))
    .update(JSON.stringify({ owner: owner ?? null, entries }))
    .digest("hex")
    .slice(0, 32);
  const parent = componentDir(target);
  const dir = secretFilesDir(target, version);
  try {
    mkdirSync(parent, { recursive: true, mode: 0o700 });
    if (!existsSync(dir)) {
      // Written aside, then renamed into place: a container never sees half of a version.
      const temp = mkdtempSync(join(parent, ".tmp-"));
      try {
        for (const [name, value] of entries) {
          const file = join(temp, name);
          writeFileSync(file, value, { mode: 0o400, flag: "wx" });
          if (owner) chownSync(file, owner.uid, owner.gid);
          else chmodSync(file, 0o444);
        }
        if (owner) chownSync(temp, owner.uid, owner.gid);
        chmodSync(temp, owner ? 0o500 : 0o555);
        renameSync(temp, dir);
      } catch (error) {
        rmSync(temp, { recursive: true, force: true });
        // Another berth wrote the same version meanwhile: it is the same content.
        const code = (error as NodeJS.ErrnoException).code;
        if (!((code === "ENOTEMPTY" || code === "EEXIST") && existsSync(dir))) throw error;
      }
    }
    // The version the next container of this component mounts: kept while none uses it yet.
    writeFileSync(join(parent, CURRENT_FILE), version, { mode: 0o600 });
  } catch (error) {
    if (error instanceof BerthError) throw error;
    fail(`write the secret files of ${target.app}/${target.component}/${target.env}`, error);
  }
  return version;
}

/** The labels and mount a tenant container gets for a version of its secret files. */
export function secretFilesMount(target: Omit<SecretFilesTarget, "user">, version: string): { label: Record<string, string>; mount: { Type: "bind"; Source: string; Target: string; ReadOnly: true } } {
  const dir = secretFilesDir(target, version);
  return { label: { [SECRET_FILES_LABEL]: dir }, mount: { Type: "bind", Source: dir, Target: SECRETS_MOUNT, ReadOnly: true } };
}

/** A secret-files directory named by a label, if it is one of berth's under /run/berth/PLATFORM/secrets. */
function versionDirOf(platform: string | undefined, label: string | undefined): string | undefined {
  if (!platform || !label) return undefined;
  const dir = resolve(label);
  const root = secretFilesRoot(platform);
  return dirname(dirname(dir)) === root && VERSION_PATTERN.test(basename(dir)) ? dir : undefined;
}

/**
 * Before a container is removed: what to clean up after it. The release command's one-off
 * container cleans up nothing (the containers it precedes mount the same files).
 */
export async function secretFilesOf(docker: Docker, name: string): Promise<{ release(): Promise<void> } | undefined> {
  let labels: Record<string, string>;
  try {
    labels = (await docker.getContainer(name).inspect()).Config.Labels ?? {};
  } catch {
    return undefined;
  }
  const platform = labels["berth.platform"];
  const dir = versionDirOf(platform, labels[SECRET_FILES_LABEL]);
  if (!dir || labels["berth.role"] === "release") return undefined;
  return { release: () => removeUnusedSecretFiles(docker, platform!, dirname(dir)) };
}

/**
 * Removes the versions of a component's secret files that no container (running or not)
 * mounts. The current version (the one the next container will mount) stays while any
 * container of the component is left; once none is, everything goes.
 */
export async function removeUnusedSecretFiles(docker: Docker, platform: string, component: string): Promise<void> {
  const containers = await docker.listContainers({ all: true, filters: JSON.stringify({ label: [`berth.platform=${platform}`, SECRET_FILES_LABEL] }) });
  const used = new Set(containers.map((c) => versionDirOf(platform, c.Labels[SECRET_FILES_LABEL])).filter((dir): dir is string => dir !== undefined));
  const isComponentLeft = [...used].some((dir) => dirname(dir) === component);
  const current = isComponentLeft ? readFileOrEmpty(join(component, CURRENT_FILE)) : "";
  let entries: string[];
  try {
    entries = readdirSync(component);
  } catch {
    return;
  }
  for (const entry of entries) {
    const dir = join(component, entry);
    if (!VERSION_PATTERN.test(entry) || used.has(dir) || entry === current) continue;
    await rm(dir, { recursive: true, force: true });
  }
  if (!isComponentLeft) await rm(component, { recursive: true, force: true });
}

function readFileOrEmpty(file: string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return "";
  }
}
