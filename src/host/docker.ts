// The Docker Engine API through dockerode, for everything that creates, starts, execs and
// removes. Engine failures become catalogue errors (engine.ts), so the rest of berth never
// parses Docker's messages.
import "./lazy-transports.js";
import Dockerode from "dockerode";
import { PassThrough } from "node:stream";
import { DOCKER_API_VERSION, demuxLogs, dockerSocketPath, engine, engineError } from "./engine.js";

export type Docker = Dockerode;

export { DOCKER_API_VERSION, demuxLogs, engine, engineError } from "./engine.js";

export function connectDocker(): Docker {
  return new Dockerode({ socketPath: dockerSocketPath(), version: DOCKER_API_VERSION });
}

interface EngineFailure {
  statusCode?: number;
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
