// The one gateway to the Docker Engine API. Engine failures become catalogue errors here,
// so the rest of berth never parses Docker's messages.
import "./lazy-transports.js";
import Dockerode from "dockerode";
import { PassThrough } from "node:stream";
import { BerthError } from "../errors.js";

export type Docker = Dockerode;

/** Docker 20.10 (Debian's docker.io) speaks API 1.41; newer engines accept it too. */
export const DOCKER_API_VERSION = "v1.41";

export function connectDocker(): Docker {
  const host = process.env.DOCKER_HOST;
  if (host?.startsWith("unix://")) return new Dockerode({ socketPath: host.slice("unix://".length), version: DOCKER_API_VERSION });
  return new Dockerode({ socketPath: "/var/run/docker.sock", version: DOCKER_API_VERSION });
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

export async function pingEngine(docker: Docker): Promise<void> {
  await engine("connecting to Docker", () => docker.ping());
}

export async function imageExists(docker: Docker, ref: string): Promise<boolean> {
  try {
    await docker.getImage(ref).inspect();
    return true;
  } catch (error) {
    if ((error as EngineFailure).statusCode === 404) return false;
    throw engineError(error, `inspecting image ${ref}`);
  }
}

export async function inspectContainer(docker: Docker, name: string): Promise<Dockerode.ContainerInspectInfo | undefined> {
  try {
    return await docker.getContainer(name).inspect();
  } catch (error) {
    if ((error as EngineFailure).statusCode === 404) return undefined;
    throw engineError(error, `inspecting container ${name}`);
  }
}

/** Runs argv inside a running container; returns its exit code and combined output. */
export async function execIn(docker: Docker, container: string, argv: string[]): Promise<{ exitCode: number; output: string }> {
  return engine(`running ${argv[0]} in ${container}`, async () => {
    const exec = await docker.getContainer(container).exec({ Cmd: argv, AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({ hijack: true, stdin: false });
    const sink = new PassThrough();
    const chunks: Buffer[] = [];
    sink.on("data", (chunk: Buffer) => chunks.push(chunk));
    docker.modem.demuxStream(stream, sink, sink);
    await new Promise<void>((resolve, reject) => {
      stream.on("end", resolve);
      stream.on("close", resolve);
      stream.on("error", reject);
    });
    const info = await exec.inspect();
    return { exitCode: info.ExitCode ?? -1, output: Buffer.concat(chunks).toString("utf8") };
  });
}

/** Last lines of a container's log, for error messages about a container that failed. */
export async function logTail(docker: Docker, container: string, lines = 20): Promise<string> {
  try {
    const buffer = (await docker.getContainer(container).logs({ stdout: true, stderr: true, tail: lines, follow: false })) as unknown as Buffer;
    return demuxLogs(buffer).trimEnd();
  } catch {
    return "";
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Removes the containers, networks and volumes (and images, if asked) carrying every one of
 * `labels` ("key=value"), and nothing else. Errors on single objects are ignored: one already
 * gone, or still in use, does not stop the rest.
 */
export async function removeLabelled(docker: Docker, labels: string[], options: { images?: boolean } = {}): Promise<void> {
  const filters = JSON.stringify({ label: labels });
  for (const container of await docker.listContainers({ all: true, filters })) await docker.getContainer(container.Id).remove({ force: true }).catch(() => undefined);
  for (const network of await docker.listNetworks({ filters })) await docker.getNetwork(network.Id).remove().catch(() => undefined);
  for (const volume of (await docker.listVolumes({ filters })).Volumes ?? []) await docker.getVolume(volume.Name).remove().catch(() => undefined);
  if (!options.images) return;
  for (const image of await docker.listImages({ filters })) await docker.getImage(image.Id).remove({ force: true }).catch(() => undefined);
}

export interface ContainerEvent {
  /** die, destroy, start, "health_status: healthy", … */
  action: string;
  name: string;
  labels: Record<string, string>;
}

/**
 * Follows the engine's container events matching `filters` until `signal` aborts, handing
 * each to `onEvent`. Resolves once aborted; rejects if the event stream fails.
 */
export async function followContainerEvents(
  docker: Docker,
  filters: { event: string[]; label: string[] },
  signal: AbortSignal,
  onEvent: (event: ContainerEvent) => void,
): Promise<void> {
  const stream = await engine("following Docker events", () => docker.getEvents({ filters: JSON.stringify({ type: ["container"], ...filters }) }));
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
      (stream as unknown as { destroy(): void }).destroy();
      resolve();
    };
    if (signal.aborted) stop();
    signal.addEventListener("abort", stop, { once: true });
    stream.on("error", (error: Error) => (signal.aborted ? resolve() : reject(error)));
  });
}

export type HealthOutcome = { ok: true } | { ok: false; reason: string };

/** Where berth itself can check a container's health over HTTP (the host reaches bridge addresses). */
export interface HttpProbe {
  network: string;
  port: number;
  path: string;
}

/** Whether the container at `ip` answers the probe's path with a status below 400 (1 s bound). */
export async function answersHttp(ip: string, probe: HttpProbe): Promise<boolean> {
  try {
    const response = await fetch(`http://${ip}:${probe.port}${probe.path}`, { signal: AbortSignal.timeout(1000), redirect: "manual" });
    await response.body?.cancel();
    return response.status < 400;
  } catch {
    return false;
  }
}

/**
 * Why a container that was seen exited or restarted failed. Once its restart policy has
 * started it again the engine reports exit code 0 for the new run, so the code of the crash
 * comes from waiting for its next exit (it crashes the same way), bounded by 3 s.
 */
export async function exitReason(docker: Docker, container: string, info: Dockerode.ContainerInspectInfo): Promise<string> {
  const state = info.State;
  let code: number | string = state.ExitCode;
  if (state.Running && !state.Restarting) {
    const next = docker.getContainer(container).wait({ condition: "next-exit" }).then((result: { StatusCode: number }) => result.StatusCode, () => undefined);
    code = (await Promise.race([next, new Promise<undefined>((resolve) => setTimeout(resolve, 3000))])) ?? "unknown (restarted by its restart policy)";
  }
  return `the container exited with code ${code}${state.OOMKilled ? " (killed: out of memory)" : ""}`;
}

/**
 * Polls until the container is healthy (or running, when it has no health check). With a
 * probe, berth asks the app over HTTP itself every 50 ms instead of waiting for the engine's
 * first check (which runs only after a whole interval): the switch is not held up by it.
 */
export async function waitHealthy(docker: Docker, container: string, timeoutMs: number, probe?: HttpProbe): Promise<HealthOutcome> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await inspectContainer(docker, container);
    if (!info) return { ok: false, reason: "the container disappeared" };
    const state = info.State;
    // With a restart policy a crashing process is restarted at once: a restart is an exit.
    if (!state.Running || state.Restarting || info.RestartCount > 0) return { ok: false, reason: await exitReason(docker, container, info) };
    const health = state.Health?.Status;
    if (health === undefined || health === "healthy") return { ok: true };
    if (health === "unhealthy") {
      const last = state.Health?.Log?.at(-1)?.Output?.trim();
      return { ok: false, reason: `the health check failed${last ? `: ${last}` : ""}` };
    }
    const ip = probe ? info.NetworkSettings.Networks[probe.network]?.IPAddress : undefined;
    if (probe && ip && (await answersHttp(ip, probe))) return { ok: true };
    if (Date.now() > deadline) return { ok: false, reason: `not healthy after ${Math.round(timeoutMs / 1000)} s (status ${health})` };
    await sleep(50);
  }
}
