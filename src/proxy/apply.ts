// Safe proxy changes: render into a new generation directory, `nginx -t` it inside the proxy
// container, swap the `current` symlink atomically, reload gracefully. On failure the running
// configuration is untouched and nginx's own words are shown.
//
// A generation that differs from the live one only in its route table needs no reload: the
// running proxy's router checks the staged table (it parses, and fits the configuration the
// workers run), `current` is swapped, and every worker adopts the table within ~50 ms.
//
// A generation holds every file of its configuration, but only what changed is written: an
// unchanged file is a hard link to the live generation's, and a manifest (the hash of each file)
// tells what changed without reading the live files back. What nginx checks is narrowed the same
// way, when that is as good as checking everything (see `narrowCheck`).
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { link, mkdir, open, readdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { dirname, join } from "node:path";
import { BerthError } from "../errors.js";
import { engine, execIn, type Docker } from "../host/docker.js";
import { writeFileAtomic, writeIfChanged } from "../host/files.js";
import { configFiles } from "./layout.js";
import { GENERATION_HOST, SITES_INCLUDE } from "./nginx-conf.js";

/** Where the proxy's directory is mounted inside its container. */
export const PROXY_MOUNT = "/etc/berth";
const KEPT_GENERATIONS = 3;
/** Beside a generation's files; nginx never reads it (it includes only nginx.conf's own includes). */
const MANIFEST = "berth-manifest.json";
/** The narrowed check's main file, in the generation directory so relative includes resolve alike. */
const CHECK_CONF = "berth-check.conf";
/** Up to this many written files are fsynced one by one; more, and the filesystem is synced once. */
const FSYNC_EACH_MAX = 32;

export interface ProxyFiles {
  config: Record<string, string>;
  pages: Record<string, string>;
  /** The rendered token (RenderedProxy.token), returned by stageProxyConfig for reloadProxy. */
  token?: string;
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

/** What berth knows about a generation it wrote. */
interface Manifest {
  version: 1;
  /** Whether nginx accepted it: the whole of it, or a narrowed check equivalent to that. */
  validated: boolean;
  /** sha256 of each file, by path relative to the generation. */
  files: Record<string, string>;
  /** Certificate and key files the configuration names, as nginx saw them when it was checked. */
  certificates: Record<string, string>;
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

async function readManifest(generationDir: string): Promise<Manifest | undefined> {
  try {
    const manifest = JSON.parse(await readFile(join(generationDir, MANIFEST), "utf8")) as Manifest;
    return manifest.version === 1 && typeof manifest.files === "object" ? manifest : undefined;
  } catch {
    return undefined;
  }
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** A generation written by an older berth has no manifest: its files are read back and compared. */
async function sameAsGeneration(base: string, config: Record<string, string>): Promise<boolean> {
  for (const [path, content] of Object.entries(config)) {
    if ((await readFile(join(base, path), "utf8").catch(() => undefined)) !== content) return false;
  }
  const entries = await readdir(base, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile() && entry.name !== MANIFEST).length === Object.keys(config).length;
}

/** Validates the configuration whose main file is at this path inside the proxy container. */
export type ProxyValidator = (mainFileInContainer: string) => Promise<{ ok: boolean; output: string }>;

/** Validates with `nginx -t` in the running proxy container. */
export function validateInContainer(docker: Docker, container: string): ProxyValidator {
  return async (mainFile) => {
    const { exitCode, output } = await execIn(docker, container, ["nginx", "-t", "-q", "-c", mainFile]);
    return { ok: exitCode === 0, output };
  };
}

export interface StagedProxy {
  changed: boolean;
  generation: number;
  /**
   * What was checked: everything, only the changed files (see narrowCheck), nothing (no
   * validator, or no change), nothing now because this very configuration was prepared and
   * checked before (see StageOptions.swap), or the route table alone, by the running router.
   */
  checked: "all" | "changed" | "none" | "earlier" | "route-table";
  /**
   * The new generation differs from the one nginx runs only in its route table: the workers
   * adopt it without a reload (awaitRouteTable). False when anything else changed, or nothing.
   */
  isRouteTableOnly: boolean;
  /** The live configuration's token, when the files carried one. */
  token?: string;
}

/** What the running proxy's router says of a staged generation's route table (see renderGenerationConf). */
export interface RouteTableCheck {
  /** fits: the workers would adopt it; other-configuration: it parses, for a configuration nginx does not run yet; unanswered: no router answered. */
  verdict: "fits" | "other-configuration" | "rejected" | "unanswered";
  /** Why the router rejected it. */
  output: string;
}

/** Asks the running proxy's router about the route table of a staged generation (by number). */
export type RouteTableChecker = (generation: number) => Promise<RouteTableCheck>;

export interface StageOptions {
  /**
   * false: prepare only — write and check the generation, but leave `current` alone. A later
   * stage of byte-identical files (with the same certificates) swaps to it without writing or
   * checking again: a deploy prepares the switch while its new containers boot.
   */
  swap?: boolean;
  /**
   * The running proxy's router (routeTableChecker). With it, a changed route table is checked
   * before the swap (nginx -t cannot: it runs no Lua), and a change of the table alone needs
   * no nginx -t and no reload. Without it, the table is checked when nginx loads it on reload.
   */
  checkRouteTable?: RouteTableChecker;
}

/**
 * Writes pages (additive, by name), then the config as a new generation when it differs from
 * the live one, validates it and swaps `current` to it. Does not reload: the caller does,
 * once the proxy container is attached to every network the config points at; and then
 * `pruneGenerations`, which is no business of the switch.
 */
export async function stageProxyConfig(dir: ProxyDir, files: ProxyFiles, validate: ProxyValidator | undefined, options: StageOptions = {}): Promise<StagedProxy> {
  await mkdir(dir.gen, { recursive: true });
  const token = files.token ? { token: files.token } : {};
  const live = await currentGeneration(dir);
  const liveDir = live === undefined ? undefined : join(dir.gen, String(live));
  const [pagesChanged, liveManifest] = await Promise.all([writePages(dir, files.pages), liveDir ? readManifest(liveDir) : undefined]);
  const hashes = Object.fromEntries(Object.entries(files.config).map(([path, content]) => [path, sha256(content)]));
  if (live !== undefined && liveDir !== undefined) {
    const isSame = liveManifest
      ? sameKeys(liveManifest.files, hashes) && Object.entries(hashes).every(([path, hash]) => liveManifest.files[path] === hash)
      : await sameAsGeneration(liveDir, files.config);
    if (isSame) return { changed: pagesChanged, generation: live, checked: "none", isRouteTableOnly: false, ...token };
  }
  const certificates = await certificateStates(dir, files.config);
  // Only the table differs from a generation nginx accepted, and nginx read the same certificates.
  const isTableOnlyChange =
    liveManifest?.validated === true &&
    differsInRouteTableOnly(liveManifest.files, hashes) &&
    sameKeys(liveManifest.certificates ?? {}, certificates) &&
    Object.entries(certificates).every(([path, state]) => state !== "unknown" && liveManifest.certificates[path] === state);
  if (validate && options.swap !== false) {
    const prepared = await preparedGeneration(dir, live, hashes, certificates);
    if (prepared !== undefined) {
      await swapTo(dir, prepared);
      return { changed: true, generation: prepared, checked: "earlier", isRouteTableOnly: isTableOnlyChange, ...token };
    }
  }

  const generation = ((await generations(dir)).at(-1) ?? 0) + 1;
  const staging = join(dir.gen, `${generation}.staging`);
  const final = join(dir.gen, String(generation));
  await rm(staging, { recursive: true, force: true });
  const reusable = (path: string) => liveManifest !== undefined && liveDir !== undefined && liveManifest.files[path] === hashes[path];
  const written = await writeGeneration(staging, files.config, (path) => (reusable(path) ? join(liveDir!, path) : undefined));
  await rename(staging, final);

  // Validate before swapping: a broken file behind `current` would survive until nginx restarts.
  let checked: StagedProxy["checked"] = "none";
  let isRouteTableOnly = false;
  if (validate) {
    const isTableChanged = liveManifest?.files[configFiles.routeTable] !== hashes[configFiles.routeTable];
    const checkTable = async () => (isTableChanged && options.checkRouteTable ? options.checkRouteTable(generation) : undefined);
    const checkNginx = async () =>
      checkWithNginx(validate, final, generation, liveDir && liveManifest ? await narrowCheck(liveDir, liveManifest, files.config, written, certificates) : undefined);
    const rejectTable = async (check: RouteTableCheck | undefined) => {
      if (check?.verdict !== "rejected") return;
      await rm(final, { recursive: true, force: true });
      throw new BerthError(
        "PROXY_CONFIG_REJECTED",
        `the proxy's router rejected the new route table; the running one is unchanged:\n${check.output.trim()}`,
        "This is a bug in berth's rendering or an unusual value in the spec; report it with the message above.",
      );
    };
    if (isTableOnlyChange) {
      // The rest of the configuration is the one nginx accepted and runs: nothing for nginx -t to check.
      const tableCheck = await checkTable();
      await rejectTable(tableCheck);
      isRouteTableOnly = tableCheck?.verdict === "fits";
      checked = isRouteTableOnly ? "route-table" : await checkNginx();
    } else {
      // Both at once; nginx's verdict first (a generation it rejected is gone before the router may read it).
      const [tableCheck, nginxCheck] = await Promise.allSettled([checkTable(), checkNginx()]);
      if (nginxCheck.status === "rejected") throw nginxCheck.reason;
      if (tableCheck.status === "rejected") throw tableCheck.reason;
      await rejectTable(tableCheck.value);
      checked = nginxCheck.value;
    }
  }
  const manifest: Manifest = { version: 1, validated: validate !== undefined, files: hashes, certificates };
  await writeFile(join(final, MANIFEST), JSON.stringify(manifest));
  if (options.swap === false) return { changed: true, generation, checked, isRouteTableOnly, ...token };
  await swapTo(dir, generation);
  return { changed: true, generation, checked, isRouteTableOnly, ...token };
}

/**
 * nginx -t of a written generation: the narrowed main file when there is one, else nginx.conf;
 * a rejected generation is removed. A narrowed file nginx rejects is checked whole before the
 * verdict: the sites left out may hold what nginx.conf needs (a variable only routed sites set).
 */
async function checkWithNginx(validate: ProxyValidator, final: string, generation: number, narrowed: string | undefined): Promise<"all" | "changed"> {
  if (narrowed !== undefined) await writeFile(join(final, CHECK_CONF), narrowed);
  let result = await validate(`${PROXY_MOUNT}/gen/${generation}/${narrowed !== undefined ? CHECK_CONF : "nginx.conf"}`);
  if (!result.ok && narrowed !== undefined) {
    await rm(join(final, CHECK_CONF), { force: true });
    result = await validate(`${PROXY_MOUNT}/gen/${generation}/nginx.conf`);
    if (result.ok) return "all";
  }
  if (!result.ok) {
    await rm(final, { recursive: true, force: true });
    throw new BerthError(
      "PROXY_CONFIG_REJECTED",
      `nginx rejected the new configuration; the running one is unchanged:\n${result.output.trim()}`,
      "This is a bug in berth's rendering or an unusual value in the spec; report it with the message above.",
    );
  }
  if (narrowed !== undefined) await rm(join(final, CHECK_CONF), { force: true });
  return narrowed !== undefined ? "changed" : "all";
}

/** The same files, all alike but the route table, which differs. */
function differsInRouteTableOnly(live: Record<string, string>, hashes: Record<string, string>): boolean {
  const table = configFiles.routeTable;
  if (!sameKeys(live, hashes) || !(table in hashes) || live[table] === hashes[table]) return false;
  return Object.entries(hashes).every(([path, hash]) => path === table || live[path] === hash);
}

async function swapTo(dir: ProxyDir, generation: number): Promise<void> {
  const link = `${dir.current}.new`;
  await rm(link, { force: true });
  await symlink(`gen/${generation}`, link);
  await rename(link, dir.current);
}

/**
 * A generation newer than the live one, prepared (StageOptions.swap false) and checked, whose
 * files are exactly these and whose certificates are as nginx saw them then. Its check holds
 * whatever went live since: a checked generation is valid as a whole, not relative to another.
 */
async function preparedGeneration(dir: ProxyDir, live: number | undefined, hashes: Record<string, string>, certificates: Record<string, string>): Promise<number | undefined> {
  const newer = (await generations(dir)).filter((generation) => live === undefined || generation > live).reverse();
  for (const generation of newer) {
    const manifest = await readManifest(join(dir.gen, String(generation)));
    if (!manifest?.validated || !sameKeys(manifest.files, hashes) || !sameKeys(manifest.certificates ?? {}, certificates)) continue;
    if (Object.entries(hashes).some(([path, hash]) => manifest.files[path] !== hash)) continue;
    if (Object.entries(certificates).some(([path, state]) => state === "unknown" || manifest.certificates[path] !== state)) continue;
    return generation;
  }
  return undefined;
}

function sameKeys(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => key in b);
}

/**
 * Pages are shared by all generations and written in place (atomically), only when changed;
 * a manifest of their hashes saves reading a page per environment back on every change.
 */
async function writePages(dir: ProxyDir, pages: Record<string, string>): Promise<boolean> {
  const manifestPath = join(dir.pages, ".berth-pages.json");
  const known = await readFile(manifestPath, "utf8").then((text) => JSON.parse(text) as Record<string, string>, () => undefined);
  const hashes = Object.fromEntries(Object.entries(pages).map(([path, content]) => [path, sha256(content)]));
  const wrote = await Promise.all(
    Object.entries(pages).map(async ([path, content]) => {
      if (known?.[path] === hashes[path]) return false;
      return writeIfChanged(join(dir.pages, path), content);
    }),
  );
  if (Object.entries(hashes).some(([path, hash]) => known?.[path] !== hash)) await writeFileAtomic(manifestPath, JSON.stringify({ ...known, ...hashes }));
  return wrote.some(Boolean);
}

/**
 * Writes a generation: each file either linked from the live generation (`reuse` names it) or
 * written. Then made durable before anyone can point at it: the written files and every
 * directory (the links are directory entries) synced one by one, or, when many were written,
 * the whole filesystem at once. Returns the paths it wrote.
 */
async function writeGeneration(staging: string, config: Record<string, string>, reuse: (path: string) => string | undefined): Promise<string[]> {
  const folders = [...new Set(Object.keys(config).map((path) => dirname(join(staging, path))))].sort();
  await mkdir(staging, { recursive: true });
  await Promise.all(folders.map((folder) => mkdir(folder, { recursive: true })));
  const written: string[] = [];
  await Promise.all(
    Object.entries(config).map(async ([path, content]) => {
      const source = reuse(path);
      if (source && (await link(source, join(staging, path)).then(() => true, () => false))) return;
      await writeFile(join(staging, path), content);
      written.push(path);
    }),
  );
  if (written.length > FSYNC_EACH_MAX) await syncFilesystem(staging);
  else await Promise.all([...written.map((path) => join(staging, path)), ...new Set([staging, ...folders])].map(fsync));
  return written;
}

async function fsync(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** One syncfs(2) for the whole generation instead of an fsync per file. */
async function syncFilesystem(path: string): Promise<void> {
  await fsync(path);
  await new Promise<void>((resolve) => execFile("sync", ["-f", path], () => resolve()));
}

/**
 * The files nginx reads besides the configuration that a check depends on: certificates and
 * keys. A state is the file's identity and version; one that cannot be known (a path outside
 * the proxy's mount) is "unknown", which never compares equal, so such a config is always
 * checked whole.
 */
async function certificateStates(dir: ProxyDir, config: Record<string, string>): Promise<Record<string, string>> {
  const paths = new Set<string>();
  for (const content of Object.values(config)) {
    for (const match of content.matchAll(/^\s*ssl_certificate(?:_key)?\s+("?)([^";\s]+)\1\s*;/gm)) paths.add(match[2]!);
  }
  const states = await Promise.all(
    [...paths].map(async (path): Promise<[string, string]> => {
      if (!path.startsWith(`${PROXY_MOUNT}/`)) return [path, "unknown"];
      const info = await stat(join(dir.root, path.slice(PROXY_MOUNT.length + 1))).catch(() => undefined);
      return [path, info ? `${info.dev}:${info.ino}:${info.size}:${info.mtimeMs}:${info.ctimeMs}` : "missing"];
    }),
  );
  return Object.fromEntries(states.sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * The lines of a file that reach beyond its own blocks: anything at http level (upstream
 * names, servers), and in a server the names, ports, variables it sets, files it includes and
 * certificates. Two versions with the same shape differ only in what nginx checks within
 * the file itself (locations, routes, upstream addresses, headers, limits).
 */
function shape(content: string): string {
  return content
    .split("\n")
    .filter((line) => {
      const text = line.trim();
      if (text === "" || text.startsWith("#") || text === "}") return false;
      return !/^\s/.test(line) || /^(listen|server_name|set|include|ssl_certificate|ssl_certificate_key|http2|ssl_reject_handshake)\b/.test(text);
    })
    .join("\n");
}

/**
 * When checking only the changed files is as good as checking everything, the main file of
 * that narrower check (nginx.conf with its sites include narrowed to the changed sites), else
 * undefined. It is when:
 * - the live generation was itself checked (by induction, it is valid as a whole);
 * - the same files exist, nginx.conf is the same, and every certificate and key is the one
 *   nginx read then (a renewed certificate gets checked with everything);
 * - every changed file keeps its shape: the same server names and listen lines (so the
 *   shared server-name hash builds as before), upstream names (no new duplicate), variables.
 * Changed files outside sites/ are still checked, through nginx.conf's own includes.
 */
async function narrowCheck(
  liveDir: string,
  live: Manifest,
  config: Record<string, string>,
  written: string[],
  certificates: Record<string, string>,
): Promise<string | undefined> {
  const main = config["nginx.conf"];
  const sitesLine = `include ${SITES_INCLUDE};`;
  if (!live.validated || main === undefined || written.includes("nginx.conf") || !sameKeys(live.files, config)) return undefined;
  if (main.split("\n").filter((line) => line.trim() === sitesLine).length !== 1) return undefined;
  const liveCertificates = live.certificates ?? {};
  if (!sameKeys(liveCertificates, certificates) || Object.entries(certificates).some(([path, state]) => state === "unknown" || liveCertificates[path] !== state)) return undefined;
  for (const path of written) {
    // The route table names nothing nginx checks; the router checks it (StageOptions.checkRouteTable).
    if (path === configFiles.routeTable) continue;
    const before = await readFile(join(liveDir, path), "utf8").catch(() => undefined);
    if (before === undefined || shape(before) !== shape(config[path]!)) return undefined;
  }
  const sitePrefix = SITES_INCLUDE.slice(0, SITES_INCLUDE.lastIndexOf("/") + 1);
  const changedSites = written.filter((path) => path.startsWith(sitePrefix)).sort();
  // No site changed (the route table alone, checked with everything when no router can check
  // it): a main file without any site would lack the variables the sites define.
  if (changedSites.length === 0) return undefined;
  return main
    .split("\n")
    .flatMap((line) => (line.trim() === sitesLine ? changedSites.map((path) => line.replace(SITES_INCLUDE, path)) : [line]))
    .join("\n");
}

/** Removes all but the last KEPT_GENERATIONS generations (never the live one). */
export async function pruneGenerations(dir: ProxyDir): Promise<void> {
  const live = await currentGeneration(dir);
  const all = await generations(dir);
  await Promise.all(
    all.slice(0, Math.max(0, all.length - KEPT_GENERATIONS)).filter((old) => old !== live).map((old) => rm(join(dir.gen, String(old)), { recursive: true, force: true })),
  );
}

/** nginx's workers by pid, each with its title: "worker process", or "worker process is shutting down". */
type Workers = Map<string, string>;

/**
 * The proxy's workers, read from /proc when `master` is given (one this process sees: the
 * master's children and their titles, no engine round trip), else from the engine's process list.
 */
async function workersOf(docker: Docker, container: string, master: ProxyMaster | undefined): Promise<Workers> {
  if (master) {
    const workers: Workers = new Map();
    try {
      const children = (await readFile(`/proc/${master.pid}/task/${master.pid}/children`, "utf8")).split(" ").filter(Boolean);
      for (const pid of children) {
        const title = await readFile(`/proc/${pid}/cmdline`, "utf8").then((raw) => raw.replace(/\0+/g, " ").trim(), () => "");
        if (/worker process/.test(title)) workers.set(pid, title);
      }
      return workers;
    } catch {
      // The list went away between reads (nginx restarting): the engine answers instead.
    }
  }
  const top = (await engine(`listing ${container}'s processes`, () => docker.getContainer(container).top())) as { Titles: string[]; Processes: string[][] };
  const pid = top.Titles.indexOf("PID");
  const command = top.Titles.findIndex((title) => title === "CMD" || title === "COMMAND");
  return new Map(top.Processes.filter((row) => /worker process/.test(row[command] ?? "")).map((row) => [row[pid]!, row[command]!]));
}

const isServing = (title: string | undefined) => title !== undefined && !/shutting down/.test(title);

/**
 * Whether none of the workers `before` the reload still takes new connections: each has
 * exited or is shutting down (nginx closes a worker's listening sockets as it names it so).
 */
function oldWorkersDone(before: Workers, now: Workers): boolean {
  return [...before.keys()].every((pid) => !isServing(now.get(pid)));
}

/** Where berth asks nginx which configuration serves: the token of the staged one, and the proxy's addresses (port 80 inside). */
export interface ReloadProbe {
  token: string;
  /** "ip" or "ip:port"; each is tried in turn. */
  addresses: string[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The token the worker that accepted a fresh connection answers, or undefined. */
export async function askToken(address: string): Promise<string | undefined> {
  const answer = await askGenerationServer(address, "/");
  return answer?.status === 200 ? answer.body.trim() : undefined;
}

/** Whether a fresh connection to one of the probe's addresses is answered with its token (tried in turn). */
export async function answersToken(probe: ReloadProbe): Promise<boolean> {
  for (const address of probe.addresses) if ((await askToken(address)) === probe.token) return true;
  return false;
}

/** The generation server's answer to a path, on a fresh connection, or undefined when none came. */
function askGenerationServer(address: string, path: string): Promise<{ status: number; body: string } | undefined> {
  const [host, port] = /^(.*?)(?::(\d+))?$/.exec(address)!.slice(1);
  return new Promise((resolve) => {
    const req = request({ host: host!.replace(/^\[|\]$/g, ""), port: Number(port ?? 80), path, headers: { host: GENERATION_HOST }, agent: false, timeout: 1000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", () => resolve(undefined));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
    req.end();
  });
}

/** Asks the router of the proxy at these addresses (as ReloadProbe.addresses) about a staged route table. */
export function routeTableChecker(addresses: string[]): RouteTableChecker {
  return async (generation) => {
    for (const address of addresses) {
      const answer = await askGenerationServer(address, `/route-table?generation=${generation}`);
      if (answer?.status === 200 && (answer.body === "fits" || answer.body === "other-configuration")) return { verdict: answer.body, output: "" };
      if (answer?.status === 422) return { verdict: "rejected", output: answer.body };
    }
    return { verdict: "unanswered", output: "" };
  };
}

/** How long the workers may take to adopt a swapped route table (they look every 50 ms) before berth reloads instead. */
const ROUTE_TABLE_TIMEOUT_MS = 2_000;

/**
 * After a swap to a generation whose only change is its route table (StagedProxy.isRouteTableOnly):
 * true once every worker routes by it (a fresh connection gets its token; the router answers
 * "pending" while any worker lags), false if that did not happen in time — the caller reloads.
 */
export async function awaitRouteTable(probe: ReloadProbe, timeoutMs = ROUTE_TABLE_TIMEOUT_MS): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let round = 0; Date.now() < deadline; round++) {
    if (await answersToken(probe)) return true;
    await sleep(round < 100 ? 5 : 20);
  }
  return false;
}

/** The proxy container's main process (nginx's master), as the engine reported it: its full id and host pid. */
export interface ProxyMaster {
  containerId: string;
  pid: number;
}

/**
 * Signals nginx's master directly, as the engine would, when this process sees it: the pid is in
 * this PID namespace, belongs to the container (its cgroup names the container's id) and may
 * be signalled. Spares the engine round trip (tens to hundreds of ms on a busy host) on the
 * way to every switch. False when it cannot; the caller asks the engine then.
 */
export async function signalMaster(master: ProxyMaster, name: NodeJS.Signals): Promise<boolean> {
  return (await isMasterVisible(master)) && signal(master, name);
}

/** Signals a master already known to be visible; false when the kernel refuses. */
function signal(master: ProxyMaster, name: NodeJS.Signals): boolean {
  try {
    process.kill(master.pid, name);
    return true;
  } catch {
    return false;
  }
}

/** Whether `master.pid`, in this PID namespace, is the proxy container's process (its cgroup names the container). */
async function isMasterVisible(master: ProxyMaster): Promise<boolean> {
  if (!Number.isInteger(master.pid) || master.pid <= 1 || !/^[0-9a-f]{64}$/.test(master.containerId)) return false;
  const cgroup = await readFile(`/proc/${master.pid}/cgroup`, "utf8").catch(() => "");
  return cgroup.includes(master.containerId);
}

/**
 * Graceful reload: old workers finish their requests, new ones take the new config. nginx's
 * master is the container's main process, so SIGHUP reaches it directly (`nginx -s reload`
 * would parse the whole configuration once more just to find the pid): from this process when
 * `master` is given and signalMaster can, otherwise through the engine.
 *
 * Returns once every new connection meets the new configuration: new workers run (with a
 * probe, a fresh connection answered with the new token, asked every 10 ms; without one, a
 * worker pid that was not there before) and every old worker has exited or is shutting down.
 * An old worker that has not yet heard the master's word still accepts connections and routes
 * them by the old configuration, so a caller must not stop what that pointed at any sooner.
 */
export async function reloadProxy(docker: Docker, container: string, options: { probe?: ReloadProbe; timeoutMs?: number; master?: ProxyMaster } = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  const { probe } = options;
  // Seen from here or not, once: /proc is read for the workers every round only when it is.
  const master = options.master && (await isMasterVisible(options.master)) ? options.master : undefined;
  const before = await workersOf(docker, container, master);
  if (!(master && signal(master, "SIGHUP"))) {
    await engine(`reloading ${container}`, () => docker.getContainer(container).kill({ signal: "SIGHUP" }));
  }
  let isNewServing = false;
  for (let round = 0; Date.now() < deadline; round++) {
    if (probe && !isNewServing) isNewServing = await answersToken(probe);
    const now = await workersOf(docker, container, master);
    if (!probe) isNewServing = [...now].some(([pid, title]) => !before.has(pid) && isServing(title));
    if (isNewServing && oldWorkersDone(before, now)) return;
    await sleep(round < 100 ? 10 : 50);
  }
  throw new BerthError("PROXY_CONFIG_REJECTED", `nginx did not hand new connections to workers with the new configuration within ${timeoutMs / 1000} s`, "Check `docker logs` of the proxy container.");
}
