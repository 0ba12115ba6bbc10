// berthd as a platform container (spec `control:`), managed by `berth apply` like the proxy
// and PostgreSQL: created when missing, replaced when its configuration changes, restarted
// by the engine. It runs with the host's network and the Docker socket, and sees the state
// directory, the spec and the secrets key at their host paths, so it works exactly as
// berthd on the host would (and writes files the proxy container mounts from the host).
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import type Dockerode from "dockerode";
import { BerthError } from "../errors.js";
import { engine, inspectContainer, logTail, waitHealthy, type Docker } from "../host/docker.js";
import type { ControlPlan } from "../plan/types.js";
import type { Change } from "./apply.js";
import { configHashOf, TENANT_LOG_CONFIG, withConfigHash } from "./containers.js";
import type { Progress } from "./images.js";

const DOCKER_SOCKET = "/var/run/docker.sock";
/** Where secret files for tenants are written (a tmpfs on the host). */
const SECRET_FILES_ROOT = "/run/berth";

export function controlCreateOptions(control: ControlPlan, paths: { stateDir: string; keyPath: string }): Dockerode.ContainerCreateOptions {
  const [host, port] = control.listen.split(":") as [string, string];
  const probeHost = host === "0.0.0.0" ? "127.0.0.1" : host;
  return withConfigHash({
    name: control.container,
    Image: control.image,
    Cmd: ["--spec", control.specRoot, "--state-dir", paths.stateDir, "--listen", control.listen],
    Env: [`BERTH_SECRETS_KEY=${paths.keyPath}`],
    Labels: control.labels,
    StopSignal: "SIGTERM",
    StopTimeout: 45,
    Healthcheck: {
      Test: ["CMD", "curl", "-fsk", "-o", "/dev/null", `https://${probeHost}:${port}/openapi.json`],
      Interval: 5_000_000_000,
      Timeout: 3_000_000_000,
      Retries: 3,
      StartPeriod: 60_000_000_000,
    },
    HostConfig: {
      NetworkMode: "host",
      // Host PIDs: deploy locks record the PID of their holder, which berth on the host checks.
      PidMode: "host",
      Binds: [
        `${DOCKER_SOCKET}:${DOCKER_SOCKET}`,
        `${paths.stateDir}:${paths.stateDir}`,
        `${control.specRoot}:${control.specRoot}:ro`,
        ...control.sourceDirs.filter((dir) => !dir.startsWith(`${control.specRoot}/`)).map((dir) => `${dir}:${dir}:ro`),
        `${dirname(paths.keyPath)}:${dirname(paths.keyPath)}`,
        `${SECRET_FILES_ROOT}:${SECRET_FILES_ROOT}`,
      ],
      RestartPolicy: { Name: "unless-stopped" },
      SecurityOpt: ["no-new-privileges:true"],
      LogConfig: TENANT_LOG_CONFIG,
    },
  });
}

/** Brings the berthd container to the plan; returns what changed. */
export async function ensureControl(docker: Docker, control: ControlPlan, paths: { stateDir: string; keyPath: string }, progress: Progress): Promise<Change[]> {
  const options = controlCreateOptions(control, paths);
  const name = control.container;
  const changes: Change[] = [];
  let current = await inspectContainer(docker, name);
  if (current && current.Config.Labels["berth.config-hash"] !== configHashOf(options)) {
    progress(`replacing ${name}`);
    // SIGTERM first: berthd finishes or hands over its running operations to the journal.
    await engine(`stopping ${name}`, () => docker.getContainer(name).stop({ t: 45 }).catch(() => undefined));
    await engine(`removing ${name}`, () => docker.getContainer(name).remove({ force: true }));
    current = undefined;
    changes.push({ kind: "replaced", target: name });
  }
  if (!current) {
    for (const dir of [paths.stateDir, dirname(paths.keyPath), SECRET_FILES_ROOT]) await mkdir(dir, { recursive: true, mode: 0o700 });
    progress(`starting ${name}`);
    await engine(`creating ${name}`, () => docker.createContainer(options));
    await engine(`starting ${name}`, () => docker.getContainer(name).start());
    if (changes.length === 0) changes.push({ kind: "created", target: name });
  } else if (!current.State.Running) {
    await engine(`starting ${name}`, () => docker.getContainer(name).start());
    changes.push({ kind: "started", target: name });
  }
  if (changes.length > 0) {
    const health = await waitHealthy(docker, name, 120_000);
    if (!health.ok) throw new BerthError("INTERNAL", `berthd did not become healthy: ${health.reason}\n${await logTail(docker, name)}`, "Check the log above.");
  }
  return changes;
}
