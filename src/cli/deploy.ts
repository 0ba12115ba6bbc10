// Release commands: deploy, rollback, releases, status.
import type { Command } from "commander";
import type { DeployDeps } from "../deploy/deploy.js";
import { BerthError } from "../errors.js";
import { planPlatform } from "../plan/plan.js";
import type { PlatformPlan } from "../plan/types.js";
import { loadSpec } from "../spec/index.js";
import type { Release } from "../state/store.js";
import type { OperationView } from "../api/operations.js";
import { audited, localActor } from "./audit.js";
import { call, follow, remoteOf, type Remote } from "./remote.js";

interface SpecOptions {
  host?: string;
  spec?: string;
  stateDir?: string;
  env?: string;
  json?: boolean;
}

const progress = (line: string) => process.stderr.write(`${line}\n`);

/** The spec: --spec > BERTH_SPEC > the current directory. */
export async function openPlatform(options: SpecOptions): Promise<{ plan: PlatformPlan; stateDir: string; deps: DeployDeps }> {
  const { root, spec } = await loadSpec(options.spec ?? process.env.BERTH_SPEC ?? ".");
  const plan = planPlatform(spec, { root });
  const stateDir = options.stateDir ?? process.env.BERTH_STATE_DIR ?? `/var/lib/berth/${plan.platform}`;
  const { connectDocker, Store, containerPostgres, SecretStore, secretsKeyPath } = await import("./heavy.js");
  const docker = connectDocker();
  const secrets = new SecretStore(stateDir, { keyPath: secretsKeyPath(plan.platform) });
  const deps: DeployDeps = {
    docker,
    stateDir,
    store: new Store(stateDir),
    databases: containerPostgres(docker, stateDir),
    progress,
    secrets,
  };
  return { plan, stateDir, deps };
}

function requireEnv(options: SpecOptions, command: string): string {
  if (!options.env) throw new BerthError("BAD_ARGUMENT", `${command} needs --env ENV`, `For example: berth ${command} APP --env staging`);
  return options.env;
}

function parseImages(values: string[]): Record<string, string> {
  const images: Record<string, string> = {};
  for (const value of values) {
    const match = /^([a-z][a-z0-9-]*)=(\S+)$/.exec(value);
    if (!match) throw new BerthError("BAD_ARGUMENT", `--image ${value}: expected COMPONENT=IMAGE, like backend=berth/api:v2`);
    images[match[1]!] = match[2]!;
  }
  return images;
}

function describeRelease(release: Release): string {
  const images = Object.entries(release.images).map(([c, ref]) => `${c}=${ref}`).join(" ");
  const took = release.timings.done !== undefined ? `  ${(release.timings.done / 1000).toFixed(1)} s` : "";
  const failure = release.failure ? `\n      ${release.failure.split("\n")[0]}` : "";
  const secrets = typeof release.secretsVersion === "number" ? `  secrets v${release.secretsVersion}` : "";
  return `r${release.number}  ${release.status.padEnd(11)} ${release.createdAt}  ${release.actor}  ${release.reason}${took}\n      ${images}${secrets}${failure}`;
}

/** Starts a long operation on berthd and follows its progress to the end. */
export async function runRemoteOperation(remote: Remote, path: string, body: unknown): Promise<OperationView> {
  const started = await call<OperationView>(remote, "POST", path, body);
  progress(`${started.kind} ${started.id} started on ${remote.url}`);
  return follow<OperationView>(remote, started.id, progress);
}

export function withSpecOptions(command: Command): Command {
  return command
    .option("--host <url>", "a remote berthd (default BERTH_HOST, or host: in ~/.config/berth/config.yaml)")
    .option("--spec <path>", "spec directory (default BERTH_SPEC, or the current directory)")
    .option("--state-dir <dir>", "state directory (default /var/lib/berth/PLATFORM, or BERTH_STATE_DIR)");
}

export function registerDeployCommands(cli: Command): void {
  withSpecOptions(
    cli
      .command("deploy")
      .description("Roll out a new release of an app environment with zero downtime")
      .argument("<app>", "app name")
      .option("--env <env>", "environment, e.g. staging")
      .option("--image <component=image...>", "image to roll out for a component (repeatable); others keep theirs")
      .option("--ref <ref>", "git branch, tag or commit to build from (apps with source.git)")
      .option("--upload [dir]", "with --host: build from this local directory (default .), sent as the build context (honours .dockerignore)")
      .option("--reason <text>", "why, recorded with the release", "deploy")
      .option("--drain <seconds>", "how long replaced containers keep running after the switch", "2")
      .option("--health-window <seconds>", "how long the new release must stay healthy before the old one goes", "3")
      .option("--json", "print the release as JSON"),
  ).action(async (app: string, options: SpecOptions & { image?: string[]; ref?: string; upload?: string | true; reason: string; drain: string; healthWindow: string }) => {
    const given = [options.ref !== undefined && "--ref", options.image !== undefined && "--image", options.upload !== undefined && "--upload"].filter(Boolean);
    if (given.length > 1) throw new BerthError("BAD_ARGUMENT", `use one of --ref, --image or --upload, not ${given.join(" and ")}`);
    const env = requireEnv(options, "deploy");
    const remote = await remoteOf(options);
    if (options.upload !== undefined && !remote) throw new BerthError("BAD_ARGUMENT", "--upload sends the source to a remote berthd: give --host (or BERTH_HOST)", "On the server itself, deploy builds the spec's source directly.");
    if (remote) {
      let source: string | undefined;
      if (options.upload !== undefined) {
        const dir = options.upload === true ? "." : options.upload;
        const { packSource } = await import("./upload.js");
        const packed = await packSource(dir);
        progress(`uploading ${dir}: ${packed.files} files (after .dockerignore)`);
        source = (await call<{ id: string }>(remote, "POST", `/v1/apps/${app}/envs/${env}/sources`, undefined, { stream: packed.stream, type: "application/gzip" })).id;
      }
      const images = parseImages(options.image ?? []);
      const body = { ...(Object.keys(images).length > 0 ? { images } : {}), ...(options.ref === undefined ? {} : { ref: options.ref }), ...(source ? { source } : {}), reason: options.reason };
      const done = await runRemoteOperation(remote, `/v1/apps/${app}/envs/${env}/deploys`, body);
      process.stdout.write(options.json ? JSON.stringify(done.release, null, 2) + "\n" : `${app}/${env}: r${done.release?.number} is serving\n`);
      return;
    }
    const { plan, stateDir, deps } = await openPlatform(options);
    const { deploy } = await import("./heavy.js");
    const release = await audited(stateDir, "createDeploy", `${app}/${env}`, () =>
      deploy(
        plan,
        { app, env, images: parseImages(options.image ?? []), ...(options.ref === undefined ? {} : { ref: options.ref }), actor: localActor(), reason: options.reason },
        deps,
        { drainMs: Number(options.drain) * 1000, healthWindowMs: Number(options.healthWindow) * 1000 },
      ),
    );
    process.stdout.write(options.json ? JSON.stringify(release, null, 2) + "\n" : `${app}/${env}: r${release.number} is serving\n`);
  });

  withSpecOptions(
    cli
      .command("rollback")
      .description("Roll out an earlier release again (no rebuild)")
      .argument("<app>", "app name")
      .option("--env <env>", "environment")
      .option("--to <release>", "release number, e.g. 3 or r3 (default: the one before the active)")
      .option("--json", "print the release as JSON"),
  ).action(async (app: string, options: SpecOptions & { to?: string }) => {
    const env = requireEnv(options, "rollback");
    const to = options.to === undefined ? undefined : Number(options.to.replace(/^r/, ""));
    if (to !== undefined && !Number.isInteger(to)) throw new BerthError("BAD_ARGUMENT", `--to ${options.to}: expected a release number like r3`);
    const remote = await remoteOf(options);
    if (remote) {
      const done = await runRemoteOperation(remote, `/v1/apps/${app}/envs/${env}/rollback`, to === undefined ? {} : { to });
      process.stdout.write(options.json ? JSON.stringify(done.release, null, 2) + "\n" : `${app}/${env}: r${done.release?.number} (${done.release?.reason}) is serving\n`);
      return;
    }
    const { plan, stateDir, deps } = await openPlatform(options);
    const { rollback } = await import("./heavy.js");
    const release = await audited(stateDir, "createRollback", `${app}/${env}`, () => rollback(plan, { app, env, ...(to === undefined ? {} : { to }), actor: localActor() }, deps));
    process.stdout.write(options.json ? JSON.stringify(release, null, 2) + "\n" : `${app}/${env}: r${release.number} (${release.reason}) is serving\n`);
  });

  withSpecOptions(
    cli
      .command("releases")
      .description("List an app environment's releases, newest first")
      .argument("<app>", "app name")
      .option("--env <env>", "environment")
      .option("--json", "print as JSON"),
  ).action(async (app: string, options: SpecOptions) => {
    const env = requireEnv(options, "releases");
    const remote = await remoteOf(options);
    let releases: Release[];
    if (remote) releases = (await call<{ releases: Release[] }>(remote, "GET", `/v1/apps/${app}/envs/${env}/releases`)).releases;
    else {
      const { plan, deps } = await openPlatform(options);
      const { environmentOf } = await import("./heavy.js");
      environmentOf(plan, app, env);
      releases = deps.store.releases(app, env);
    }
    if (options.json) process.stdout.write(JSON.stringify(releases, null, 2) + "\n");
    else process.stdout.write(releases.length === 0 ? `${app}/${env}: no releases yet (berth apply runs the spec's images)\n` : releases.map(describeRelease).join("\n") + "\n");
  });

  withSpecOptions(
    cli.command("status").description("What serves each environment: release, containers, health").option("--json", "print as JSON"),
  ).action(async (options: SpecOptions) => {
    const remote = await remoteOf(options);
    const rows: { app: string; env: string; release: string | null; deploying: string | null; domains: string[]; containers: { name: string; state: string }[] }[] = [];
    if (remote) rows.push(...(await call<{ environments: typeof rows }>(remote, "GET", "/v1/status")).environments);
    else {
      const { plan, deps } = await openPlatform(options);
      const { recoverDeploys, withReleases, inspectContainer } = await import("./heavy.js");
      await recoverDeploys(plan, deps);
      for (const env of withReleases(plan, deps.store.activeReleases()).environments) {
        const release = deps.store.activeRelease(env.app, env.env);
        const containers = [];
        for (const container of env.components.flatMap((c) => c.containers)) {
          const info = await inspectContainer(deps.docker, container.name);
          containers.push({ name: container.name, state: info ? (info.State.Health?.Status ?? info.State.Status) : "missing" });
        }
        const lock = deps.store.lockOf(env.app, env.env);
        rows.push({ app: env.app, env: env.env, release: release ? `r${release.number}` : null, deploying: lock ? `r${deps.store.releaseById(lock.releaseId)?.number}` : null, domains: env.domains, containers });
      }
    }
    if (options.json) {
      process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
      return;
    }
    for (const row of rows) {
      const states = row.containers.map((c) => `${c.name} ${c.state}`).join(", ");
      process.stdout.write(`${`${row.app}/${row.env}`.padEnd(28)} ${(row.release ?? "-").padEnd(5)}${row.deploying ? ` deploying ${row.deploying}` : ""}  ${states}\n`);
    }
  });
}
