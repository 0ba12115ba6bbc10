// The CLI against a remote berthd: where it is (--host > BERTH_HOST > config file), the
// token (BERTH_TOKEN > config file, which must be mode 0600), the CA that signs berthd's
// certificate (BERTH_CA > config file; berthd's self-signed cert.pem works as its own CA).
// Problems berthd answers become BerthErrors, so exit codes match the local commands.
import { readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
// undici is loaded by the commands that talk to berthd, not by every start of the CLI.
import type { Agent } from "undici";
import { parse } from "yaml";
import { BerthError, type ErrorCode } from "../errors.js";

export interface RemoteOptions {
  host?: string;
}

export interface Remote {
  url: string;
  token: string;
  agent: Agent;
}

interface ConfigFile {
  host?: string;
  token?: string;
  ca?: string;
}

export function configPath(): string {
  return join(process.env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "berth", "config.yaml");
}

async function readConfig(): Promise<ConfigFile> {
  const path = configPath();
  const info = await stat(path).catch(() => undefined);
  if (!info) return {};
  const config = (parse(await readFile(path, "utf8")) ?? {}) as ConfigFile;
  if (typeof config !== "object") throw new BerthError("BAD_ARGUMENT", `${path}: expected a mapping with host, token, ca`);
  if (config.token !== undefined && (info.mode & 0o077) !== 0) {
    throw new BerthError("BAD_ARGUMENT", `${path} holds a token but others can read it (mode ${(info.mode & 0o777).toString(8)})`, `Run: chmod 600 ${path}`);
  }
  return config;
}

/** The remote berthd to talk to, or undefined when the command runs locally. */
export async function remoteOf(options: RemoteOptions): Promise<Remote | undefined> {
  const config = options.host === undefined && process.env.BERTH_HOST === undefined ? await readConfig() : undefined;
  const host = options.host ?? process.env.BERTH_HOST ?? config?.host;
  if (host === undefined || host === "") return undefined;
  const fileConfig = config ?? (await readConfig());
  const token = process.env.BERTH_TOKEN ?? fileConfig.token;
  if (!token) throw new BerthError("BAD_ARGUMENT", `no token for ${host}`, `Set BERTH_TOKEN, or token: in ${configPath()} (mode 0600).`);
  const url = /^https?:\/\//.test(host) ? host.replace(/\/+$/, "") : `https://${host}`;
  const caPath = process.env.BERTH_CA ?? fileConfig.ca;
  const ca = caPath ? await readFile(caPath, "utf8").catch(() => {
    throw new BerthError("BAD_ARGUMENT", `cannot read the CA file ${caPath}`, "Point BERTH_CA at berthd's certificate (STATE_DIR/api/cert.pem on the server).");
  }) : undefined;
  const { Agent } = await import("undici");
  return { url, token, agent: new Agent({ connect: ca ? { ca } : {}, keepAliveTimeout: 10_000 }) };
}

const CODE_BY_STATUS: Record<number, ErrorCode> = {
  400: "BAD_ARGUMENT",
  401: "UNAUTHORIZED",
  403: "FORBIDDEN",
  404: "NOT_FOUND",
  405: "BAD_ARGUMENT",
  409: "CONFLICT",
  413: "BAD_ARGUMENT",
  415: "BAD_ARGUMENT",
  422: "SPEC_INVALID",
  424: "IMAGE_MISSING",
  503: "ENGINE_UNAVAILABLE",
  507: "DISK_FULL",
};

interface ProblemBody {
  status: number;
  detail: string;
  hint?: string;
  errors?: { path: string; message: string }[];
}

export function problemError(problem: ProblemBody): BerthError {
  const fields = problem.errors?.map((e) => `  ${e.path}: ${e.message}`).join("\n");
  return new BerthError(CODE_BY_STATUS[problem.status] ?? "INTERNAL", `${problem.detail}${fields ? `\n${fields}` : ""}`, problem.hint);
}

export async function call<T>(remote: Remote, method: "GET" | "POST" | "PUT" | "DELETE", path: string, body?: unknown, raw?: { stream: Readable; type: string }): Promise<T> {
  const { request } = await import("undici");
  let response;
  try {
    response = await request(`${remote.url}${path}`, {
      method,
      dispatcher: remote.agent,
      headers: {
        authorization: `Bearer ${remote.token}`,
        ...(body !== undefined ? { "content-type": "application/json" } : raw ? { "content-type": raw.type } : {}),
      },
      body: body !== undefined ? JSON.stringify(body) : raw?.stream,
    });
  } catch (error) {
    const cause = (error as { code?: string; cause?: { code?: string } }).code ?? (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    throw new BerthError("DAEMON_UNAVAILABLE", `cannot reach berthd at ${remote.url}: ${cause}`, "Is berthd running there? Check --host / BERTH_HOST, and BERTH_CA for its certificate.");
  }
  const text = await response.body.text();
  const parsed = text === "" ? undefined : (JSON.parse(text) as unknown);
  if (response.statusCode >= 400) throw problemError(parsed as ProblemBody);
  return parsed as T;
}

/** Follows an operation's Server-Sent Events: progress lines to `onProgress`; returns the final operation. */
export async function follow<T extends { state: string; error: ProblemBody | null }>(remote: Remote, operationId: string, onProgress: (message: string) => void): Promise<T> {
  const { request } = await import("undici");
  const response = await request(`${remote.url}/v1/operations/${operationId}/events`, {
    dispatcher: remote.agent,
    headers: { authorization: `Bearer ${remote.token}`, accept: "text/event-stream" },
    bodyTimeout: 0,
  });
  if (response.statusCode >= 400) throw problemError(JSON.parse(await response.body.text()) as ProblemBody);
  let buffered = "";
  for await (const chunk of response.body) {
    buffered += (chunk as Buffer).toString("utf8");
    let end: number;
    while ((end = buffered.indexOf("\n\n")) !== -1) {
      const frame = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const type = /^event: (.+)$/m.exec(frame)?.[1];
      const data = /^data: (.*)$/m.exec(frame)?.[1];
      if (!type || data === undefined) continue;
      if (type === "progress") onProgress((JSON.parse(data) as { message: string }).message);
      if (type === "end") {
        const operation = JSON.parse(data) as T;
        if (operation.state === "failed" && operation.error) throw problemError(operation.error);
        return operation;
      }
    }
  }
  throw new BerthError("DAEMON_UNAVAILABLE", `the event stream of ${operationId} ended early`, `Read its final state: GET /v1/operations/${operationId}`);
}
