// A real berthd for the tests: a child process on a spec directory, its own state
// directory, secrets key and API port; stopped with SIGTERM by its PID.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { removeLabelled, type Docker } from "../../src/host/docker.js";
import { REPO_ROOT } from "./helpers.js";

export const API_PORT = 18770;

export interface Daemon {
  url: string;
  stateDir: string;
  adminToken: string;
  ca: string;
  caPath: string;
  env: Record<string, string>;
  process: ChildProcess;
  /** Every log line so far (JSON). */
  log: string[];
  /** Everything berthd (and its jobs) wrote to stderr so far. */
  stderr(): string;
  stop(): Promise<number | null>;
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  text: string;
}

export async function startDaemon(specDir: string, options: { reconcile?: boolean; port?: number; stateDir?: string } = {}): Promise<Daemon> {
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), "berthd-state-")));
  const port = options.port ?? API_PORT;
  const env = { ...process.env, BERTH_SECRETS_KEY: join(stateDir, "..", `${stateDir.split("/").pop()}.key`), BERTH_LOG_LEVEL: "info" } as Record<string, string>;
  const args = ["--spec", specDir, "--state-dir", stateDir, "--listen", `127.0.0.1:${port}`, ...(options.reconcile === false ? ["--no-reconcile"] : [])];
  // As an executable, the way it is installed: its #! line carries berthd's V8 flags.
  const child = spawn(join(REPO_ROOT, "bin", "berthd"), args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const log: string[] = [];
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const serving = new Promise<void>((resolve, reject) => {
    let buffered = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        log.push(line);
        if (line.includes('"berthd is serving"')) resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`berthd exited with ${code} before serving: ${stderr}\n${log.join("\n")}`)));
    setTimeout(() => reject(new Error(`berthd did not serve within 60 s: ${stderr}`)), 60_000).unref();
  });
  await serving;
  const caPath = join(stateDir, "api", "cert.pem");
  const daemon: Daemon = {
    url: `https://127.0.0.1:${port}`,
    stateDir,
    adminToken: (await readFile(join(stateDir, "admin.token"), "utf8")).trim(),
    ca: await readFile(caPath, "utf8"),
    caPath,
    env,
    process: child,
    log,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      const timeout = setTimeout(() => child.kill("SIGKILL"), 40_000);
      const code = await exited;
      clearTimeout(timeout);
      return code;
    },
  };
  return daemon;
}

/** One API request; the answer's body parsed when it is JSON. */
export function api(daemon: Daemon, token: string | undefined, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const raw = body === undefined ? undefined : typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  return rawRequest(daemon, method, path, {
    ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    ...(raw !== undefined && typeof body !== "string" && !Buffer.isBuffer(body) ? { "content-type": "application/json" } : {}),
    ...headers,
  }, raw);
}

let agent: Agent | undefined;

export async function rawRequest(daemon: Daemon, method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<Answer> {
  agent ??= new Agent({ connect: { ca: daemon.ca } });
  const response = await request(`${daemon.url}${path}`, { method: method as "GET", headers, ...(body === undefined ? {} : { body }), dispatcher: agent });
  const text = await response.body.text();
  let parsed: unknown = text;
  if (/json/.test(String(response.headers["content-type"] ?? ""))) parsed = JSON.parse(text) as unknown;
  return { status: response.statusCode, headers: response.headers, body: parsed, text };
}

export async function closeAgent(): Promise<void> {
  await agent?.close();
  agent = undefined;
}

/** Removes the containers, networks and volumes labelled with this platform's name. */
export async function cleanupPlatform(client: Docker, platform: string): Promise<void> {
  await removeLabelled(client, [`berth.platform=${platform}`]);
}

/** Polls until `check` returns a value (not undefined), up to `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
