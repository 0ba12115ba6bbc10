// Shared pieces of the integration tests: a Docker client, cleanup by label, temp spec dirs.
import { execFile } from "node:child_process";
import { mkdtemp, mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { connectDocker, removeLabelled, type Docker } from "../../src/host/docker.js";

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const EXAMPLE_ROOT = join(REPO_ROOT, "examples", "reference-platform");
export const TEST_LABEL = "berth.test";

export const run = promisify(execFile);

export function docker(): Docker {
  return connectDocker();
}

/** Removes every container, network and volume carrying berth.test=true (and a platform label, if given). */
export async function cleanupByLabel(client: Docker, platform?: string): Promise<void> {
  await removeLabelled(client, [`${TEST_LABEL}=true`, ...(platform ? [`berth.platform=${platform}`] : [])]);
}

/** Writes a spec directory from inline texts: { "platform.yaml": ..., "apps/a.yaml": ... }. */
export async function writeSpec(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "berth-spec-"));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

/** HTTP GET through the proxy on 127.0.0.1 with a Host header; bounded by a timeout. */
export async function httpGet(port: number, host: string, path = "/", timeoutMs = 5000): Promise<{ status: number; headers: Headers; body: string }> {
  const { request } = await import("node:http");
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers: { host }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const headers = new Headers();
        for (const [key, value] of Object.entries(res.headers)) if (typeof value === "string") headers.set(key, value);
        resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString("utf8") });
      });
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${host}${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Stops dockerd (the one scripts/setup.sh started) by its PID and starts it again the same
 * way; containers come back by their restart policies. Bounded: 60 s each way.
 */
export async function restartEngine(): Promise<void> {
  const { spawn } = await import("node:child_process");
  const { openSync } = await import("node:fs");
  const { stdout } = await run("pidof", ["dockerd"]);
  const pid = Number(stdout.trim().split(/\s+/)[0]);
  process.kill(pid, "SIGTERM");
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(200)) {
    try {
      process.kill(pid, 0);
    } catch {
      break;
    }
  }
  const log = openSync("/var/log/berth-dockerd.log", "a");
  spawn("dockerd", [], { detached: true, stdio: ["ignore", log, log] }).unref();
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(200)) {
    if (await docker().ping().then(() => true, () => false)) return;
  }
  throw new Error("dockerd did not come back within 60 s");
}
