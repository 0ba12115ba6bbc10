// What berth says when the Docker engine fails, and a small client for the engine's socket
// that needs nothing but node:http. berthd's own process uses that client for the few reads
// it serves itself (container listing, image check, log tail, events): dockerode and its
// transports cost it ~10 MB of resident memory, so they load only in the processes that
// deploy and reconcile (see src/daemon/jobs.ts), which use host/docker.ts.
import { request, type IncomingMessage } from "node:http";
import type { ContainerInfo } from "dockerode";
import { BerthError } from "../errors.js";

/** Docker 20.10 (Debian's docker.io) speaks API 1.41; newer engines accept it too. */
export const DOCKER_API_VERSION = "v1.41";

/** The engine's socket: DOCKER_HOST when it names a unix socket, else the usual one. */
export function dockerSocketPath(): string {
  const host = process.env.DOCKER_HOST;
  return host?.startsWith("unix://") ? host.slice("unix://".length) : "/var/run/docker.sock";
}

interface EngineFailure {
  statusCode?: number;
  code?: string;
  message?: string;
  json?: { message?: string };
}

/** Maps an engine failure to a catalogue error naming what was being done. */
export function engineError(error: unknown, doing: string): BerthError {
  if (error instanceof BerthError) return error;
  const failure = error as EngineFailure;
  const detail = (failure.json?.message ?? failure.message ?? String(error)).trim();
  if (failure.code === "ECONNREFUSED" || failure.code === "ENOENT" || failure.code === "EACCES") {
    return new BerthError(
      "ENGINE_UNAVAILABLE",
      `${doing}: the Docker engine is not reachable (${failure.code} on /var/run/docker.sock)`,
      "Start it (e.g. `bash scripts/setup.sh`, or `systemctl start docker`) and try again.",
      { cause: error },
    );
  }
  if (/no space left on device/i.test(detail)) {
    return new BerthError("DISK_FULL", `${doing}: the disk is full (${detail})`, "Free disk space (old images: `docker image ls --filter label=berth.managed=true`) and try again.", { cause: error });
  }
  if (/port is already allocated|address already in use/i.test(detail)) {
    return new BerthError("PORT_TAKEN", `${doing}: a port is already taken (${detail})`, "Stop what listens there, or change proxy.httpPort/httpsPort in platform.yaml.", { cause: error });
  }
  if (failure.statusCode === 404 && /no such image/i.test(detail)) {
    return new BerthError("IMAGE_MISSING", `${doing}: image not found (${detail})`, "Build or load the image on this host first; berth does not pull from registries it cannot reach.", { cause: error });
  }
  return new BerthError("INTERNAL", `${doing}: ${detail}`, undefined, { cause: error });
}

/** Runs `call`, turning engine failures into catalogue errors. */
export async function engine<T>(doing: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw engineError(error, doing);
  }
}

/** Non-TTY container logs are multiplexed: an 8-byte frame header before each chunk. */
export function demuxLogs(buffer: Buffer): string {
  const out: string[] = [];
  for (let offset = 0; offset + 8 <= buffer.length; ) {
    const size = buffer.readUInt32BE(offset + 4);
    out.push(buffer.subarray(offset + 8, offset + 8 + size).toString("utf8"));
    offset += 8 + size;
  }
  return out.join("");
}

export interface ContainerEvent {
  /** die, destroy, start, "health_status: healthy", … */
  action: string;
  name: string;
  labels: Record<string, string>;
}

const readAll = (response: IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    response.on("data", (chunk: Buffer) => chunks.push(chunk));
    response.on("end", () => resolve(Buffer.concat(chunks)));
    response.on("error", reject);
  });

/** GET requests to the Engine API over its unix socket. */
export class EngineClient {
  constructor(private readonly socketPath = dockerSocketPath()) {}

  /** The answer's stream once its status is below 400; otherwise a failure shaped as engineError reads it. */
  private get(path: string, query: Record<string, string> = {}, signal?: AbortSignal): Promise<IncomingMessage> {
    const search = new URLSearchParams(query).toString();
    return new Promise((resolve, reject) => {
      const call = request({ socketPath: this.socketPath, path: `/${DOCKER_API_VERSION}${path}${search ? `?${search}` : ""}`, ...(signal ? { signal } : {}) }, (response) => {
        if ((response.statusCode ?? 500) < 400) return resolve(response);
        readAll(response).then((body) => {
          let message = body.toString("utf8");
          try {
            message = (JSON.parse(message) as { message?: string }).message ?? message;
          } catch {
            // Not JSON: the text itself is the message.
          }
          reject(Object.assign(new Error(message), { statusCode: response.statusCode, json: { message } }));
        }, reject);
      });
      call.on("error", reject);
      call.end();
    });
  }

  private async json<T>(path: string, query?: Record<string, string>): Promise<T> {
    return JSON.parse((await readAll(await this.get(path, query))).toString("utf8")) as T;
  }

  listContainers(filters: Record<string, string[]>): Promise<ContainerInfo[]> {
    return engine("listing containers", () => this.json<ContainerInfo[]>("/containers/json", { all: "1", filters: JSON.stringify(filters) }));
  }

  async imageExists(ref: string): Promise<boolean> {
    try {
      await readAll(await this.get(`/images/${encodeURIComponent(ref)}/json`));
      return true;
    } catch (error) {
      if ((error as EngineFailure).statusCode === 404) return false;
      throw engineError(error, `inspecting image ${ref}`);
    }
  }

  /** Last lines of a container's log; empty when there is no such container. */
  async logTail(container: string, lines = 20): Promise<string> {
    try {
      return demuxLogs(await readAll(await this.get(`/containers/${encodeURIComponent(container)}/logs`, { stdout: "1", stderr: "1", tail: String(lines) }))).trimEnd();
    } catch (error) {
      if ((error as EngineFailure).statusCode === 404) return "";
      throw engineError(error, `reading the log of ${container}`);
    }
  }

  /**
   * Follows the engine's container events matching `filters` until `signal` aborts, handing
   * each to `onEvent`. Resolves once aborted; rejects if the event stream fails.
   */
  async followContainerEvents(filters: { event: string[]; label: string[] }, signal: AbortSignal, onEvent: (event: ContainerEvent) => void): Promise<void> {
    if (signal.aborted) return;
    const stream = await engine("following Docker events", () => this.get("/events", { filters: JSON.stringify({ type: ["container"], ...filters }) }, signal)).catch((error: unknown) => {
      if (signal.aborted) return undefined;
      throw error;
    });
    if (!stream) return;
    let buffered = "";
    stream.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        if (line.trim() === "") continue;
        const event = JSON.parse(line) as { status?: string; Action?: string; Actor?: { Attributes?: Record<string, string> } };
        const { name = "", ...labels } = event.Actor?.Attributes ?? {};
        onEvent({ action: event.Action ?? event.status ?? "event", name, labels });
      }
    });
    await new Promise<void>((resolve, reject) => {
      const stop = () => {
        stream.destroy();
        resolve();
      };
      if (signal.aborted) stop();
      signal.addEventListener("abort", stop, { once: true });
      stream.on("error", (error: Error) => (signal.aborted ? resolve() : reject(engineError(error, "following Docker events"))));
      stream.on("end", () => (signal.aborted ? resolve() : reject(new BerthError("ENGINE_UNAVAILABLE", "following Docker events: the engine closed the event stream"))));
    });
  }
}
