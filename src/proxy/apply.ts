// Safe proxy changes: render into a new generation directory, `nginx -t` it inside the proxy
// container, swap the `current` symlink atomically, reload gracefully. On failure the running
// configuration is untouched and nginx's own words are shown.
import { execFile } from "node:child_process";
import { mkdir, open, readdir, readFile, readlink, rename, rm, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BerthError } from "../errors.js";
import { engine, execIn, type Docker } from "../host/docker.js";
import { writeIfChanged } from "../host/files.js";

/** Where the proxy's directory is mounted inside its container. */
export const PROXY_MOUNT = "/etc/berth";
const KEPT_GENERATIONS = 3;

export interface ProxyFiles {
  config: Record<string, string>;
  pages: Record<string, string>;
}

export interface ProxyDir {
  root: string;
  gen: string;
  current: string;
  pages: string;
  certs: string;
}

export function proxyDir(stateDir: string): ProxyDir {
  const root = join(stateDir, "proxy");
  return { root, gen: join(root, "gen"), current: join(root, "current"), pages: join(root, "pages"), certs: join(root, "certs") };
}

async function currentGeneration(dir: ProxyDir): Promise<number | undefined> {
  const target = await readlink(dir.current).catch(() => undefined);
  const match = target ? /(\d+)$/.exec(target) : null;
  return match ? Number(match[1]) : undefined;
}

async function generations(dir: ProxyDir): Promise<number[]> {
  const entries = await readdir(dir.gen).catch(() => [] as string[]);
  return entries.filter((entry) => /^\d+$/.test(entry)).map(Number).sort((a, b) => a - b);
}

async function sameAsGeneration(dir: ProxyDir, generation: number, config: Record<string, string>): Promise<boolean> {
  const base = join(dir.gen, String(generation));
  for (const [path, content] of Object.entries(config)) {
    if ((await readFile(join(base, path), "utf8").catch(() => undefined)) !== content) return false;
  }
  const listed = await listFiles(base);
  return listed.length === Object.keys(config).length;
}

async function listFiles(base: string): Promise<string[]> {
  const entries = await readdir(base, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
}

export type ProxyValidator = (generationDirInContainer: string) => Promise<{ ok: boolean; output: string }>;

/** Validates with `nginx -t` in the running proxy container. */
export function validateInContainer(docker: Docker, container: string): ProxyValidator {
  return async (generation) => {
    const { exitCode, output } = await execIn(docker, container, ["nginx", "-t", "-q", "-c", `${generation}/nginx.conf`]);
    return { ok: exitCode === 0, output };
  };
}

export interface StagedProxy {
  changed: boolean;
  generation: number;
}

/**
 * Writes pages (additive, by name), then the config as a new generation when it differs from
 * the live one, validates it and swaps `current` to it. Does not reload: the caller does,
 * once the proxy container is attached to every network the config points at.
 */
export async function stageProxyConfig(dir: ProxyDir, files: ProxyFiles, validate: ProxyValidator | undefined): Promise<StagedProxy> {
  await mkdir(dir.gen, { recursive: true });
  let changed = false;
  for (const [path, content] of Object.entries(files.pages)) {
    if (await writeIfChanged(join(dir.pages, path), content)) changed = true;
  }
  const live = await currentGeneration(dir);
  if (live !== undefined && (await sameAsGeneration(dir, live, files.config))) return { changed, generation: live };

  const generation = ((await generations(dir)).at(-1) ?? 0) + 1;
  const staging = join(dir.gen, `${generation}.staging`);
  await rm(staging, { recursive: true, force: true });
  // The staging directory is not live until the symlink swap: plain writes, then one sync.
  const folders = new Set(Object.keys(files.config).map((path) => dirname(join(staging, path))));
  await Promise.all([...folders].map((folder) => mkdir(folder, { recursive: true })));
  await Promise.all(Object.entries(files.config).map(([path, content]) => writeFile(join(staging, path), content)));
  await syncFilesystem(staging);
  const final = join(dir.gen, String(generation));
  await rename(staging, final);

  // Validate before swapping: a broken file behind `current` would survive until nginx restarts.
  if (validate) {
    const result = await validate(`${PROXY_MOUNT}/gen/${generation}`);
    if (!result.ok) {
      await rm(final, { recursive: true, force: true });
      throw new BerthError(
        "PROXY_CONFIG_REJECTED",
        `nginx rejected the new configuration; the running one is unchanged:\n${result.output.trim()}`,
        "This is a bug in berth's rendering or an unusual value in the spec; report it with the message above.",
      );
    }
  }
  const link = `${dir.current}.new`;
  await rm(link, { force: true });
  await symlink(`gen/${generation}`, link);
  await rename(link, dir.current);
  await pruneGenerations(dir, generation);
  return { changed: true, generation };
}

/** One syncfs(2) for the whole generation instead of an fsync per file. */
async function syncFilesystem(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await new Promise<void>((resolve) => execFile("sync", ["-f", path], () => resolve()));
}

async function pruneGenerations(dir: ProxyDir, live: number): Promise<void> {
  const all = await generations(dir);
  for (const old of all.slice(0, Math.max(0, all.length - KEPT_GENERATIONS))) {
    if (old !== live) await rm(join(dir.gen, String(old)), { recursive: true, force: true });
  }
}

/** PIDs of nginx workers that serve the current configuration (not those shutting down). */
async function activeWorkers(docker: Docker, container: string): Promise<Set<string>> {
  const top = (await engine(`listing ${container}'s processes`, () => docker.getContainer(container).top())) as { Titles: string[]; Processes: string[][] };
  const pid = top.Titles.indexOf("PID");
  const command = top.Titles.findIndex((title) => title === "CMD" || title === "COMMAND");
  return new Set(top.Processes.filter((row) => /worker process$/.test(row[command] ?? "")).map((row) => row[pid]!));
}

/**
 * Graceful reload: old workers finish their requests, new ones take the new config. nginx's
 * master is the container's main process, so SIGHUP reaches it directly (`nginx -s reload`
 * would parse the whole configuration once more just to find the pid). Returns once new
 * workers run: until then the old configuration still routes, so a caller must not stop
 * what it pointed at any sooner.
 */
export async function reloadProxy(docker: Docker, container: string, timeoutMs = 30_000): Promise<void> {
  const before = await activeWorkers(docker, container);
  await engine(`reloading ${container}`, () => docker.getContainer(container).kill({ signal: "SIGHUP" }));
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 20))) {
    const now = await activeWorkers(docker, container);
    if ([...now].some((pid) => !before.has(pid))) return;
  }
  throw new BerthError("PROXY_CONFIG_REJECTED", `nginx did not start workers with the new configuration within ${timeoutMs / 1000} s`, "Check `docker logs` of the proxy container.");
}
